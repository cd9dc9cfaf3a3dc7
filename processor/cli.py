"""Placeholder until this subcommand is implemented."""

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print(f"snoop {args.command}: not implemented yet", file=sys.stderr)
    return 2

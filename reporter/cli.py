"""`snoop reporter`: persist reports atomically and checkpoint tracers (unprivileged)."""

from __future__ import annotations

import argparse
import sys

from snoop.common import outputs, process
from snoop.common.config import PROCESS_OPTIONS, add_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, PROCESS_OPTIONS["reporter"])


def run(args: argparse.Namespace) -> int:
    config = process.load_config(args, "reporter")
    if config is None:
        return 2
    problem = outputs.report_location_problem(config)
    if problem:
        print(f"snoop reporter: {problem}", file=sys.stderr)
        return 2
    process.setup_logging(config, "reporter")
    from snoop.reporter.service import serve  # after config: a config error stays cheap

    return serve(config, process.stop_on_signals())

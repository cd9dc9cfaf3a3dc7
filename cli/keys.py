"""`snoop keys`: CurveZMQ key pairs for tcp:// links between hosts."""

from __future__ import annotations

import argparse
import sys

from snoop.common import outputs
from snoop.common.transport import generate_keypair


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="where NAME.key and NAME.key_secret are written")
    parser.add_argument("name", help="key pair name, for example 'processor' or 'tracer-node1'")


def run(args: argparse.Namespace) -> int:
    problem = outputs.directory_problem(args.directory)
    if problem:
        print(f"snoop keys: {problem}", file=sys.stderr)
        return 2
    try:
        public, secret = generate_keypair(args.directory, args.name)
    except OSError as exc:
        print(f"snoop keys: cannot write to {args.directory}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"public key: {public}\nsecret key: {secret}")
    return 0

"""`snoop keys generate DIR [NAME ...]`: CurveZMQ key pairs for tcp:// links between hosts."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from snoop.common import outputs
from snoop.common.transport import generate_keypair


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION",
                                    parser_class=type(parser))
    actions.required = True
    generate = actions.add_parser(
        "generate", help="write NAME.key (public) and NAME.key_secret (mode 0600) in DIR",
        description="Write a CurveZMQ key pair per NAME: NAME.key, the public key to copy "
                    "to peers (a server's allow-list, a client's SNOOP_CURVE_SERVER_KEY), "
                    "and NAME.key_secret, readable by its owner only.")
    generate.add_argument("directory", metavar="DIR", help="where the key files are written")
    generate.add_argument("names", metavar="NAME", nargs="*",
                          help="key pair names, e.g. 'server' or 'node1' (default: this host's "
                               "name)")
    generate.add_argument("--force", action="store_true",
                          help="replace key pairs that exist (peers holding the old public "
                               "key are refused until they get the new one)")


def run(args: argparse.Namespace) -> int:
    problem = outputs.directory_problem(args.directory)
    if problem:
        print(f"snoop keys: {problem}", file=sys.stderr)
        return 2
    names = args.names or [socket.gethostname()]
    for name in names:
        if not name or "/" in name or name.startswith("."):
            print(f"snoop keys: {name!r}: expected a name without '/' that does not start "
                  "with '.'", file=sys.stderr)
            return 2
        existing = [p for p in (f"{name}.key", f"{name}.key_secret")
                    if os.path.exists(os.path.join(args.directory, p))]
        if existing and not args.force:
            print(f"snoop keys: {os.path.join(args.directory, existing[0])} exists: a new "
                  "pair would lock out every peer holding the old key (--force replaces it)",
                  file=sys.stderr)
            return 2
    for name in names:
        try:
            public, secret = generate_keypair(args.directory, name)
        except OSError as exc:
            print(f"snoop keys: cannot write to {args.directory}: {exc.strerror}",
                  file=sys.stderr)
            return 2
        print(f"public key: {public}\nsecret key: {secret}")
    return 0

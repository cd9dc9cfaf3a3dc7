"""`snoop`: one console script; each subcommand lives in the package that does the work.

A subcommand module provides `configure(parser)` (its flags) and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Sequence

import prometheus_client

from snoop.common import process

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "tracer": ("snoop.tracer.cli", "load the BPF program and stream file accesses (privileged)"),
    "processor": ("snoop.processor.cli", "normalize, filter and deduplicate tracer events"),
    "reporter": ("snoop.reporter.cli", "persist reports atomically and checkpoint tracers"),
    "run": ("snoop.cli.run", "run tracer, processor and reporter under supervisord"),
    "record": ("snoop.cli.record", "run a command in its own cgroup and report its files"),
    "report": ("snoop.slim.report_cli", "merge, diff or summarize reports"),
    "slim": ("snoop.slim.cli", "build a slim image from an image and its reports"),
    "keys": ("snoop.cli.keys", "generate CurveZMQ key pairs for tcp:// links"),
    "receive": ("snoop.receiver.cli", "store reporters' deltas centrally, serve image reports"),
    "watch": ("snoop.tracer.watch.cli", "watch live which processes open, read, write and close "
              "which files (privileged)"),
}


DAEMONS = ("tracer", "processor", "reporter")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line gives one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _version() -> str:
    try:
        return importlib.metadata.version("snoop")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="snoop",
        description="Record every file a workload touches, and slim its image from that.",
    )
    parser.add_argument("--version", action="version", version=f"snoop {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure(sub)
        sub.set_defaults(run=module.run, subparser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A `*_created` series per counter doubles the exposition and says nothing a
    # process_start_time_seconds does not.
    prometheus_client.disable_created_metrics()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for token in argv:
        if token in SUBCOMMANDS:
            break
        if token.startswith("-") and token not in ("-h", "--help", "--version"):
            parser.error(f"unrecognized argument: {token}")
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Flags before the command are the top-level parser's, which knows no others.
        (getattr(args, "subparser", None) or parser).error(
            f"unrecognized arguments: {' '.join(extra)}")
    supervised = args.command in DAEMONS and os.environ.get(process.FATAL_FILE_ENV)
    if supervised:
        process.die_with_parent()
    try:
        code = args.run(args)
    except KeyboardInterrupt:
        return 130
    if supervised and code not in (0, None):
        process.note_fatal(args.command, code)  # a handled error: no restart fixes it
    return code


if __name__ == "__main__":
    sys.exit(main())

"""`snoop watch`: flags, then a WatchSession until --duration, SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from snoop.common import preflight
from snoop.tracer.build import LoadError
from snoop.tracer.watch.options import ALL_OPS, DEFAULT_OPS, OptionsError, options_from


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", action="append", metavar="DIR",
                        help="only paths under DIR (resolved, absolute); repeatable")
    parser.add_argument("--comm", action="append", metavar="NAME",
                        help="only processes named NAME (filtered in the kernel); repeatable")
    parser.add_argument("--pid", type=int, help="only this process (filtered in the kernel)")
    parser.add_argument("--op", metavar="OPS",
                        help=f"comma-separated, of {','.join(ALL_OPS)}, or all "
                             f"(default {','.join(DEFAULT_OPS)}); read, write and close "
                             "hooks are loaded only when asked for")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cgroup", action="append", metavar="PATH",
                       help="only this cgroup and its descendants; repeatable")
    where.add_argument("--container", action="append", metavar="ID",
                       help="only this container; repeatable")
    where.add_argument("--all", action="store_true", help="every process but Snoop (default)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="repeated reads and writes: one line per fd per S seconds")
    parser.add_argument("--ring-buffer", type=int, default=8 * 1024 * 1024, metavar="BYTES",
                        help="kernel ring buffer size (default 8 MiB); what does not fit is "
                             "counted, and shown in the summary")


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
    except OptionsError as exc:
        print(f"snoop watch: {exc}", file=sys.stderr)
        return 2
    problems = preflight.problems()
    if problems:  # one line each, as `snoop run` says them
        for problem in problems:
            print(f"snoop watch: BPF cannot work here: {problem}", file=sys.stderr)
        return 2
    from snoop.tracer.watch.session import WatchSession

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return WatchSession(options, sys.stdout, sys.stderr, stop).run()
    except LoadError as exc:
        print(f"snoop watch: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `snoop watch | head`
        return 0

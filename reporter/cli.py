"""`snoop reporter`: persist reports atomically and checkpoint tracers (unprivileged)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from snoop.common import logs
from snoop.common.config import ConfigError, add_arguments, load


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = load(os.environ, args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"snoop reporter: config error: {line}", file=sys.stderr)
        return 2
    logs.setup("reporter", config.log_level.value)
    from snoop.reporter.service import serve  # after config: a config error stays cheap

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return serve(config, stop)

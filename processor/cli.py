"""`snoop processor`: normalize, filter and deduplicate tracer events (unprivileged)."""

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
            print(f"snoop processor: config error: {line}", file=sys.stderr)
        return 2
    logs.setup("processor", config.log_level.value)
    from snoop.processor.service import serve  # after config: a config error stays cheap

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return serve(config, stop)

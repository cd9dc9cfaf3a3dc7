"""`snoop processor`: normalize, filter and deduplicate tracer events (unprivileged)."""

from __future__ import annotations

import argparse

from snoop.common import process
from snoop.common.config import PROCESS_OPTIONS, add_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, PROCESS_OPTIONS["processor"])


def run(args: argparse.Namespace) -> int:
    config = process.load_config(args, "processor")
    if config is None:
        return 2
    process.setup_logging(config, "processor")
    from snoop.processor.service import serve  # after config: a config error stays cheap

    return serve(config, process.stop_on_signals())

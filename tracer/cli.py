"""`snoop tracer`: the privileged process."""

from __future__ import annotations

import argparse
import sys

from prometheus_client import CollectorRegistry

from snoop.common import config as config_mod
from snoop.common import preflight, process
from snoop.common.transport import TransportError
from snoop.tracer.build import LoadError
from snoop.tracer.cgroups import CgroupError


def configure(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser, config_mod.PROCESS_OPTIONS["tracer"])


def run(args: argparse.Namespace) -> int:
    config = process.load_config(args, "tracer")
    if config is None:
        return 2
    problems = preflight.problems()
    if problems:
        for problem in problems:
            print(f"snoop tracer: BPF cannot work here: {problem}", file=sys.stderr)
        return 1
    log = process.setup_logging(config, "tracer")
    from snoop.tracer.service import Tracer

    registry = CollectorRegistry()
    stop = process.stop_on_signals()
    try:
        tracer = Tracer(config, registry, stop)
    except (TransportError, CgroupError, OSError) as exc:
        print(f"snoop tracer: {exc}", file=sys.stderr)
        return 2
    health = process.start_health(config, registry, lambda: tracer.is_ready, "tracer")
    if health is None:
        return 2
    try:
        return tracer.run()
    except LoadError as exc:
        log.error("cannot load BPF", extra={"error": str(exc)})
        print(f"snoop tracer: {exc}", file=sys.stderr)
        return 1
    finally:
        health.stop()

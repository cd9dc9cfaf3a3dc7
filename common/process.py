"""What every Snoop process does at start: parse config, set up logs and the health server."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from snoop.common import config as config_mod
from snoop.common import logs
from snoop.common.health import HealthServer

# Set by `snoop run` for supervisord's programs: a file where a program that exits on an
# error no restart can fix (a bad port, a missing privilege, a bad setting) says so, so
# that `snoop run` stops everything instead of supervisord restarting it forever. A crash
# (an exception nobody handled) is not written there: a restart may well fix it.
FATAL_FILE_ENV = "SNOOP_FATAL_FILE"
PR_SET_PDEATHSIG = 1


def note_fatal(command: str, code: int) -> None:
    path = os.environ.get(FATAL_FILE_ENV)
    if not path:
        return
    try:
        with open(path, "a") as handle:
            handle.write(f"{command} {code}\n")
    except OSError:
        pass  # the exit code still tells supervisord


def die_with_parent() -> None:
    """SIGTERM this process when its parent dies (Linux), so none outlives its stack."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def load_config(args: argparse.Namespace, command: str) -> config_mod.Config | None:
    """The validated config, or None after printing one line per problem."""
    try:
        return config_mod.load(os.environ, args)
    except config_mod.ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"snoop {command}: config error: {line}", file=sys.stderr)
        return None


def start_health(config: config_mod.Config, registry: CollectorRegistry,
                 ready: Callable[[], bool], command: str) -> HealthServer | None:
    try:
        return HealthServer(config.metrics_addr, registry, ready).start()
    except OSError as exc:
        print(f"snoop {command}: cannot serve metrics on {config.metrics_addr}: {exc.strerror}",
              file=sys.stderr)
        return None


def setup_logging(config: config_mod.Config, command: str):
    return logs.setup(command, config.log_level.value, text=logs.wants_text(
        config.log_format.value))


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the process's cue for an orderly stop."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop

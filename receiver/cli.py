"""`snoop receive`: the central receiver reporters push deltas to (docs/receiver.md).

    snoop receive --tokens-file FILE [--listen HOST:PORT] [--db URL]
                  [--max-body-bytes SIZE] [--max-concurrent-deltas N]
                  [--key-ttl DURATION] [--log-format text|json]

Bad input (a flag, the tokens file) gives one line on stderr and exit code 2; a
database that cannot be reached or migrated, or an address that cannot be bound, one
line and exit code 1. SIGTERM or SIGINT stops it cleanly: requests under way finish,
then the database is closed, and the exit code is 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn

from snoop.common import logs
from snoop.receiver import config as receiver_config
from snoop.receiver.app import create_app
from snoop.receiver.config import ConfigError, LogFormat, ReceiverConfig
from snoop.receiver.store import StoreError, open_store

log = logging.getLogger("snoop.receiver")
PROG = "snoop receive"


def configure(parser: argparse.ArgumentParser) -> None:
    receiver_config.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = receiver_config.load(os.environ, args)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"{PROG}: config error: {line}", file=sys.stderr)
        return 2
    logs.setup("receiver", "info", text=config.log_format is LogFormat.TEXT)
    logging.getLogger("uvicorn.error").addFilter(_drop_color)
    try:
        listener = _listen(config)
    except OSError as exc:
        print(f"{PROG}: cannot listen on {config.listen}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    with listener:
        try:
            store = open_store(config.db_url)
        except StoreError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
        try:
            return _serve(config, store, listener)
        finally:
            store.close()


def _drop_color(record: logging.LogRecord) -> bool:
    """uvicorn's lines carry an ANSI-coloured copy of their message; ours have fields."""
    record.__dict__.pop("color_message", None)
    return True


def _listen(config: ReceiverConfig) -> socket.socket:
    """Bound before the database is opened: a port in use is one clear line."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    return socket.create_server((config.host, config.port), family=family, backlog=2048)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn raises a caught signal again once it has stopped, which would kill the
        # process before the store is closed; for this command a signal is a clean stop.
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _serve(config: ReceiverConfig, store, listener: socket.socket) -> int:
    app = create_app(config, store=store)
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                    server_header=False, timeout_graceful_shutdown=30))
    log.info("receiving deltas", extra={"listen": config.listen,
                                        "tokens": len(config.tokens)})
    server.run(sockets=[listener])
    log.info("stopped")
    return 0 if server.started else 1

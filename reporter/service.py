"""The reporter process: sockets, the receive/journal/write/publish loop and an orderly stop.

Loop: apply FileUpdates as they come (each is appended to the journal first); every
~100 ms fsync the journal and, when that made new tracer batches persisted, publish a
Checkpoint; every report interval (or sooner, when the journal grows big) run a write
round, which empties the journal; re-publish the checkpoint every second for tracers
that subscribed late. At start, spool a full snapshot of every report the push spool
does not know, and push what the spool holds.
On stop: apply what is waiting, write, sync, publish a final checkpoint.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from snoop.common.config import Config
from snoop.common.health import HealthServer
from snoop.common.protocol import FileUpdates, MessageType
from snoop.common.transport import (
    UPDATES_HWM,
    Receiver,
    Security,
    Sender,
    SocketCollector,
    TransportError,
    new_context,
)
from snoop.reporter import metrics
from snoop.reporter.deltas import DeltaSpooler
from snoop.reporter.durable import SYNC_EVERY, DurableReporter
from snoop.reporter.push import Pusher, delta_url, new_client
from snoop.reporter.spool import Spool
from snoop.reporter.writer import ReportFiles, UnreadableReport

log = logging.getLogger("snoop.reporter")

PUBLISH_EVERY = 1.0
DRAIN_FOR = 1.5
PUSH_GRACE = 1.5
EARLY_ROUND_EVERY = 1.0  # at most this often when the journal asks for a round


def security(config: Config) -> Security:
    return Security(secret_key_file=config.curve_secret_key,
                    server_key_file=config.curve_server_key,
                    allowed_keys_dir=config.curve_allowed_keys,
                    insecure_tcp=config.insecure_tcp)


def new_sender_id() -> str:
    return f"reporter/{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def new_pusher(config: Config, spool: Spool) -> Pusher:
    verify: bool | str = (config.api_ca_file or True) if config.api_tls_verify else False
    return Pusher(config.api_endpoint, config.api_token, spool, client=new_client(verify))


def open_spool(config: Config, directory: str) -> Spool:
    """The push spool, with the origin deltas name this reporter by (with a workload id,
    a workload fleet-wide): SNOOP_NODE_NAME, else the one the spool was first opened
    with, else the host name. Kept, so a host renamed (a pod rescheduled) is no new
    origin."""
    spool = Spool(directory, config.spool_max_bytes, origin=config.node_name,
                  endpoint=delta_url(config.api_endpoint)).open()
    spool.origin = spool.origin or socket.gethostname()
    return spool


def serve(config: Config, stop: threading.Event, registry: CollectorRegistry | None = None,
          clock: Callable[[], float] = time.monotonic,
          make_pusher: Callable[[Config, Spool], Pusher] = new_pusher) -> int:
    """Run until `stop` is set; 0 on a clean stop, 1 when setup fails."""
    registry = registry or CollectorRegistry()
    files = ReportFiles(config.report_path, config.report_dir)
    pusher = deltas = None
    try:
        if config.api_endpoint:
            files.prepare()
            spool = open_spool(config, files.spool_dir)
            pusher = make_pusher(config, spool)
            deltas = DeltaSpooler(spool)
    except OSError as exc:
        log.error("cannot use the push spool", extra={"path": files.spool_dir,
                                                        "error": str(exc)})
        return 1
    reporter = DurableReporter(config, files, new_sender_id(), pusher=pusher, deltas=deltas)
    try:
        reporter.load()
    except OSError as exc:
        log.error("cannot use the report location", extra={"error": str(exc)})
        reporter.close()
        return 1
    except UnreadableReport as exc:
        log.error(str(exc))
        reporter.close()
        return 1
    try:
        return _serve(config, reporter, pusher, stop, registry, clock)
    finally:
        reporter.close()


def _serve(config: Config, reporter: DurableReporter, pusher: Pusher | None,
           stop: threading.Event, registry: CollectorRegistry,
           clock: Callable[[], float]) -> int:
    metrics.register(registry, reporter)
    bound = threading.Event()
    try:
        health = HealthServer(config.metrics_addr, registry,
                              lambda: bound.is_set() and reporter.ready()).start()
    except OSError as exc:
        log.error("cannot serve metrics", extra={"addr": config.metrics_addr, "error": str(exc)})
        return 1
    context = new_context()
    sockets: list = []
    try:
        receiver = Receiver(context, config.endpoint("updates"), (MessageType.FILE_UPDATES,),
                            bind=True, security=security(config), hwm=UPDATES_HWM)
        sockets.append(receiver)
        publisher = Sender(context, config.endpoint("checkpoint"), bind=True, publish=True,
                           security=security(config))
        sockets.append(publisher)
    except TransportError as exc:
        log.error("cannot bind", extra={"error": str(exc)})
        for sock in sockets:
            sock.close(linger=0)
        context.term()
        health.stop()
        return 1
    if pusher is not None:
        pusher.start()
        reporter.write_round()  # reports never pushed in full are spooled at once
    registry.register(SocketCollector(sockets))
    bound.set()
    log.info("reporter ready", extra={
        "updates": receiver.endpoint, "checkpoint": publisher.endpoint,
        "metrics_port": health.port, "sender": reporter.sender_id,
        "report": config.report_dir or config.report_path})
    try:
        _loop(reporter, receiver, publisher, stop, config.report_interval, clock)
        _finish(reporter, receiver, publisher, clock)
    finally:
        receiver.close(linger=0)
        publisher.close(linger=500)
        context.term()
        if pusher is not None:
            pusher.stop(PUSH_GRACE)
        health.stop()
    return 0


def _apply(reporter: DurableReporter, receiver: Receiver,
           first: tuple[object, bytes]) -> None:
    for message, encoded in [first, *receiver.recv_all_encoded(limit=1000)]:
        if isinstance(message, FileUpdates):
            reporter.apply(message, encoded)  # journalled as it came
    reporter.note_invalid(receiver.invalid)


def _loop(reporter: DurableReporter, receiver: Receiver, publisher: Sender,
          stop: threading.Event, interval: float, clock: Callable[[], float]) -> None:
    next_write = clock() + interval
    next_publish = clock()
    next_sync = clock() + SYNC_EVERY
    next_early = clock()
    while not stop.is_set():
        wait = min(next_write, next_publish, next_sync) - clock()
        received = receiver.recv_encoded(timeout=max(0.0, min(wait, SYNC_EVERY)))
        if received is not None:
            _apply(reporter, receiver, received)
        reporter.note_invalid(receiver.invalid)
        now = clock()
        if now >= next_sync:
            next_sync = now + SYNC_EVERY
            if reporter.sync_journal():
                next_publish = now  # tell tracers at once
        if now >= next_write or (now >= next_early and reporter.wants_round()):
            next_write = now + interval
            next_early = now + EARLY_ROUND_EVERY
            if reporter.write_round():
                next_publish = now
        if now >= next_publish:
            publisher.send(reporter.checkpoint())
            next_publish = now + PUBLISH_EVERY


def _finish(reporter: DurableReporter, receiver: Receiver, publisher: Sender,
            clock: Callable[[], float]) -> None:
    started = clock()
    while clock() - started < DRAIN_FOR:
        received = receiver.recv_encoded(timeout=0.05)
        if received is None:
            break
        _apply(reporter, receiver, received)
    ok = reporter.write_round(final=True)
    reporter.sync_journal()  # when the write failed, the journal still confirms
    publisher.send(reporter.checkpoint())
    log.info("reporter stopped", extra={"final_write": {True: "ok", False: "failed",
                                                        None: "nothing to write"}[ok],
                                        "updates": reporter.counts.updates})

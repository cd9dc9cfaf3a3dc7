"""The processor process: sockets, the receive/flush loop and an orderly stop.

Loop: wait up to the next flush for tracer messages, hand each to the pipeline, and
every ~100 ms (at once when a unit is full) flush pending FileUpdates to the reporter.
A refused send leaves everything pending and backs off up to a second. On stop, drain
what the socket already holds, flush until empty or the deadline, and leave.
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
from snoop.common.protocol import MessageType
from snoop.common.transport import Receiver, Security, Sender, TransportError, new_context
from snoop.processor import metrics
from snoop.processor.pipeline import Pipeline

log = logging.getLogger("snoop.processor")

FLUSH_EVERY = 0.1
MAX_BACKOFF = 1.0
DRAIN_FOR = 1.5  # on stop: read what tracers already sent
STOP_WITHIN = 3.0  # on stop: give up flushing after this long (whole stop stays < 5 s)


def security(config: Config) -> Security:
    return Security(secret_key_file=config.curve_secret_key,
                    server_key_file=config.curve_server_key,
                    allowed_keys_dir=config.curve_allowed_keys,
                    insecure_tcp=config.insecure_tcp)


def new_sender_id(process: str) -> str:
    return f"{process}/{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def serve(config: Config, stop: threading.Event, registry: CollectorRegistry | None = None,
          clock: Callable[[], float] = time.monotonic) -> int:
    """Run until `stop` is set; 0 on a clean stop, 1 when the sockets cannot be set up."""
    registry = registry or CollectorRegistry()
    pipeline = Pipeline(config, new_sender_id("processor"))
    metrics.register(registry, pipeline)
    context = new_context()
    bound = threading.Event()
    try:
        health = HealthServer(config.metrics_addr, registry, bound.is_set).start()
    except OSError as exc:
        log.error("cannot serve metrics", extra={"addr": config.metrics_addr, "error": str(exc)})
        context.term()
        return 1
    try:
        receiver = Receiver(context, config.endpoint("events"),
                            (MessageType.EVENT_BATCH, MessageType.TRACER_STATS),
                            bind=True, security=security(config))
    except TransportError as exc:
        log.error("cannot listen for tracers", extra={"error": str(exc)})
        health.stop()
        context.term()
        return 1
    try:
        sender = Sender(context, config.endpoint("updates"), security=security(config))
    except TransportError as exc:
        log.error("cannot reach the reporter", extra={"error": str(exc)})
        receiver.close(linger=0)
        health.stop()
        context.term()
        return 1
    bound.set()
    log.info("processor ready", extra={"events": receiver.endpoint, "updates": sender.endpoint,
                                       "metrics_port": health.port,
                                       "sender": pipeline.sender_id})
    try:
        _loop(pipeline, receiver, sender, stop, clock)
        _finish(pipeline, receiver, sender, clock)
    finally:
        receiver.close(linger=0)
        sender.close(linger=1000)
        context.term()
        health.stop()
    return 0


def _loop(pipeline: Pipeline, receiver: Receiver, sender: Sender, stop: threading.Event,
          clock: Callable[[], float]) -> None:
    next_flush = clock() + FLUSH_EVERY
    backoff = FLUSH_EVERY
    reporter_away = False
    while not stop.is_set():
        message = receiver.recv(timeout=max(0.0, min(next_flush - clock(), FLUSH_EVERY)))
        if message is not None:
            pipeline.handle(message)
            for more in receiver.recv_all(limit=1000):
                pipeline.handle(more)
        pipeline.note_invalid(receiver.invalid)
        now = clock()
        # A full unit goes out at once, unless the reporter is away: then back off.
        if now < next_flush and (reporter_away or not pipeline.backlog()):
            continue
        if pipeline.flush(sender.send):
            backoff = FLUSH_EVERY
            if reporter_away:
                reporter_away = False
                log.info("reporter reachable again")
        else:
            backoff = min(MAX_BACKOFF, backoff * 2)
            if not reporter_away:
                reporter_away = True
                log.warning("reporter not reachable; keeping updates and retrying",
                            extra={"endpoint": sender.endpoint})
        next_flush = now + backoff


def _finish(pipeline: Pipeline, receiver: Receiver, sender: Sender,
            clock: Callable[[], float]) -> None:
    started = clock()
    while clock() - started < DRAIN_FOR:
        messages = receiver.recv_all(limit=1000)
        if not messages:
            break
        for message in messages:
            pipeline.handle(message)
    pipeline.note_invalid(receiver.invalid)
    while not pipeline.flush(sender.send):
        if clock() - started > STOP_WITHIN:
            log.error("stopping with updates the reporter did not take; tracers re-send them",
                      extra={"pending_files": pipeline.outbox.pending_files})
            return
        time.sleep(0.05)
    log.info("processor stopped", extra={"batches": pipeline.counts.batches,
                                         "updates_sent": pipeline.counts.updates_sent})

"""The processor process: sockets, the receive/flush loop and an orderly stop.

The loop is flow.turn() over and over: take in at most a few tracer messages while the
outbox has room, flush to the reporter when due. When the reporter does not keep up the
processor stops taking in, and the tracers feel it as refused sends (processor/flow.py).
On stop, drain what the socket holds as far as it can be handed on, flush until empty
or the deadline, and leave.
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
from snoop.common.transport import (
    EVENTS_HWM,
    UPDATES_HWM,
    Receiver,
    Security,
    Sender,
    SocketCollector,
    TransportError,
    new_context,
)
from snoop.processor import flow, metrics
from snoop.processor.pipeline import Pipeline

log = logging.getLogger("snoop.processor")

DRAIN_FOR = 1.5  # on stop: read what tracers already sent
STOP_WITHIN = 3.0  # on stop: give up flushing after this long (whole stop stays < 5 s)
QUIET = 10.0  # "reporter takes updates again" only after this long without a refusal


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
                            bind=True, security=security(config), hwm=EVENTS_HWM)
    except TransportError as exc:
        log.error("cannot listen for tracers", extra={"error": str(exc)})
        health.stop()
        context.term()
        return 1
    try:
        sender = Sender(context, config.endpoint("updates"), security=security(config),
                        hwm=UPDATES_HWM)
    except TransportError as exc:
        log.error("cannot reach the reporter", extra={"error": str(exc)})
        receiver.close(linger=0)
        health.stop()
        context.term()
        return 1
    registry.register(SocketCollector([receiver, sender]))
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


def _loop(pipeline: Pipeline, receiver: Receiver, outlet: flow.Outlet, stop: threading.Event,
          clock: Callable[[], float]) -> None:
    pacer = flow.Pacer(next_flush=clock() + flow.FLUSH_EVERY)
    warned = False
    last_refusal = 0.0
    while not stop.is_set():
        flow.turn(pipeline, receiver, outlet, pacer, clock)
        # Log the reporter's push-back once, not at every refused try of a slow reporter.
        if pacer.refused:
            last_refusal = clock()
            if not warned:
                warned = True
                log.warning("reporter not taking updates (slow or away): keeping them, and "
                            "taking in no tracer messages while the outbox is full",
                            extra={"endpoint": outlet.endpoint,
                                   "pending_files": pipeline.outbox.pending_files})
        elif warned and clock() - last_refusal >= QUIET:
            warned = False
            log.info("reporter takes updates again",
                     extra={"intake_pauses": pipeline.counts.intake_pauses})


def _finish(pipeline: Pipeline, receiver: Receiver, outlet: flow.Outlet,
            clock: Callable[[], float]) -> None:
    if not flow.finish(pipeline, receiver, outlet, clock, DRAIN_FOR, STOP_WITHIN):
        log.error("stopping with updates the reporter did not take; tracers re-send them",
                  extra={"pending_files": pipeline.outbox.pending_files})
        return
    log.info("processor stopped", extra={"batches": pipeline.counts.batches,
                                         "updates_sent": pipeline.counts.updates_sent})

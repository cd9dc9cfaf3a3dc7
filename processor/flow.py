"""Flow control: the processor takes in only what it can hand on to the reporter.

One turn of the loop (`turn()`):
1. Intake. While the outbox has room (`Pipeline.has_room()`), take at most
   MAX_MESSAGES_PER_TURN tracer messages, waiting for the first one no longer than until
   the next flush is due. While the outbox is full (the reporter is slow or away), take
   nothing: messages stay in the events socket, its high-water mark fills, and the
   tracers' non-blocking sends are refused. A refused tracer holds its records in the
   kernel's ring buffer, so the ring buffer is the one place where events are lost,
   and the kernel counts them exactly. Nothing the processor took in is ever dropped.
2. Flush, when due: at once when a unit or the outbox is full (unless the last send was
   refused), and every FLUSH_EVERY otherwise. A refused send leaves everything pending,
   and the next try comes MIN_BACKOFF later while the reporter took a message within
   the last SLOW_FOR (it is slow, and takes more soon); after that, tries back off,
   doubling up to MAX_BACKOFF (it is away).
While intake is paused, a turn only waits for the reporter (`Outlet.wait_writable`)
and flushes.

No sockets here: the loop works on an `Inbox` and an `Outlet`, so tests drive it with
stand-ins and a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from snoop.common.protocol import FileUpdates, Message
from snoop.processor.pipeline import Pipeline

# Bounded input per turn: at most this many tracer messages between two flush checks.
MAX_MESSAGES_PER_TURN = 32
FLUSH_EVERY = 0.1
MIN_BACKOFF = 0.005
MAX_BACKOFF = 1.0
SLOW_FOR = 0.1  # a reporter that took a message this recently is slow, not away


class Inbox(Protocol):
    """Where tracer messages come from (a transport.Receiver)."""

    invalid: int  # running count of invalid messages dropped

    def recv(self, timeout: float = 0.0) -> Message | None: ...


class Outlet(Protocol):
    """Where FileUpdates go (the reporter link)."""

    endpoint: str

    def send(self, message: FileUpdates) -> bool: ...

    def wait_writable(self, timeout: float) -> bool:
        """Wait at most `timeout` s for room to send; True when there is room now,
        False when there is none or it cannot tell."""
        ...


@dataclass
class Pacer:
    """When the next flush is due, and how hard the reporter is pushing back."""

    next_flush: float
    backoff: float = MIN_BACKOFF
    refused: bool = False  # the last flush left something pending
    last_progress: float = float("-inf")  # when a flush last sent something

    def due(self, now: float, urgent: bool) -> bool:
        return now >= self.next_flush or (urgent and not self.refused)

    def flushed(self, now: float, done: bool, progressed: bool) -> None:
        if progressed:
            self.last_progress = now
        if done:
            self.refused = False
            self.backoff = MIN_BACKOFF
            self.next_flush = now + FLUSH_EVERY
            return
        self.refused = True
        if now - self.last_progress <= SLOW_FOR:
            self.backoff = MIN_BACKOFF
        else:
            self.backoff = min(MAX_BACKOFF, self.backoff * 2)
        self.next_flush = now + self.backoff


def intake(pipeline: Pipeline, inbox: Inbox, limit: int, wait: float) -> int:
    """Take up to `limit` messages while the outbox has room, waiting up to `wait` s for
    the first; returns how many were taken."""
    taken = 0
    while taken < limit and pipeline.has_room():
        message = inbox.recv(wait if taken == 0 else 0.0)
        if message is None:
            break
        pipeline.handle(message)
        taken += 1
    pipeline.note_invalid(inbox.invalid)
    return taken


def flush(pipeline: Pipeline, outlet: Outlet) -> tuple[bool, bool]:
    """Send what is pending; (nothing left pending, at least one message went out)."""
    before = pipeline.counts.updates_sent
    done = pipeline.flush(outlet.send)
    return done, pipeline.counts.updates_sent > before


def turn(pipeline: Pipeline, inbox: Inbox, outlet: Outlet, pacer: Pacer,
         clock: Callable[[], float]) -> int:
    """One turn of the loop (see the module's doc); returns the messages taken in."""
    now = clock()
    wait = max(0.0, min(pacer.next_flush - now, FLUSH_EVERY))
    writable = False
    if pipeline.has_room():
        taken = intake(pipeline, inbox, MAX_MESSAGES_PER_TURN, wait)
    else:
        taken = 0
        writable = outlet.wait_writable(wait)
    now = clock()
    # A full unit, or a full outbox, need not wait for the timer.
    if writable or pacer.due(now, pipeline.backlog() > 0 or pipeline.paused):
        pacer.flushed(now, *flush(pipeline, outlet))
    return taken


def finish(pipeline: Pipeline, inbox: Inbox, outlet: Outlet, clock: Callable[[], float],
           drain_for: float, stop_within: float) -> bool:
    """On stop: take what the socket already holds, as far as it can be handed on, for up
    to `drain_for` s; then flush until nothing is pending or `stop_within` s have passed.
    True when everything went out. What is left in the socket or the outbox was never
    covered, so its tracers re-send it."""
    started = clock()
    while clock() - started < drain_for:
        room = pipeline.has_room()
        taken = intake(pipeline, inbox, MAX_MESSAGES_PER_TURN, 0.0) if room else 0
        done, progressed = flush(pipeline, outlet)
        if room and not taken:
            break  # the socket is empty
        if not done and not progressed:
            outlet.wait_writable(FLUSH_EVERY)
    while True:
        done, _ = flush(pipeline, outlet)
        if done:
            return True
        if clock() - started > stop_within:
            return False
        outlet.wait_writable(0.05)

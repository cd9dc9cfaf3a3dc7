"""Flow control on stand-ins: a flood of tracer batches meets a slow reporter.

No sockets and no real time: the tracer stand-in holds every batch the processor does
not take (as a tracer whose send is refused does), the reporter stand-in accepts one
message per interval of a fake clock, and everything it accepts goes through the real
codec.
"""

from __future__ import annotations

from collections import deque

import pytest

from snoop.common.config import Config
from snoop.common.protocol import (
    MAX_BATCH_EVENTS,
    AccessKind,
    Event,
    EventBatch,
    FileUpdates,
    Header,
    Message,
    Workload,
    decode,
    encode,
)
from snoop.processor import flow
from snoop.processor.outbox import Outbox
from snoop.processor.pipeline import Pipeline

W = Workload("w1", "/docker/w1", "w1")
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class HoldingTracer:
    """An Inbox: batches wait here until the processor takes them; none is ever lost."""

    def __init__(self, clock: Clock, batches: int, paths_per_batch: int,
                 cost: float = 0.0005) -> None:
        self.clock = clock
        self.cost = cost  # fake seconds the processor spends per message
        self.invalid = 0
        self.waiting: deque[Message] = deque(
            EventBatch(Header("t1", seq),
                       tuple(Event(1, 1, 1, AccessKind.READ, b"/f/%d/%d" % (seq, i))
                             for i in range(paths_per_batch)),
                       {1: W}, sent_at=T0)
            for seq in range(1, batches + 1))
        self.paths = {e.path for m in self.waiting for e in m.events}

    def recv(self, timeout: float = 0.0) -> Message | None:
        if not self.waiting:
            self.clock.now += timeout
            return None
        self.clock.now += self.cost
        return self.waiting.popleft()


class SlowReporter:
    """An Outlet that takes one message per `interval` of the fake clock."""

    def __init__(self, clock: Clock, interval: float, can_poll: bool) -> None:
        self.clock = clock
        self.interval = interval
        self.can_poll = can_poll  # a transport that can wait for room (POLLOUT), or not
        self.endpoint = "stand-in"
        self.next_accept = 0.0
        self.away_until = 0.0
        self.got: list[FileUpdates] = []
        self.refused = 0

    def send(self, message: FileUpdates) -> bool:
        now = self.clock.now
        if now < self.away_until or now < self.next_accept:
            self.refused += 1
            return False
        self.next_accept = now + self.interval
        self.got.append(decode(encode(message)))  # what we build must be a valid message
        return True

    def wait_writable(self, timeout: float) -> bool:
        ready = max(self.next_accept, self.away_until)
        if self.can_poll and ready - self.clock.now <= timeout:
            self.clock.now = max(self.clock.now, ready)
            return True
        self.clock.now += timeout
        return False

    def paths(self) -> set[bytes]:
        return {f.path for m in self.got for u in m.updates for f in u.files}

    def covered(self) -> set[int]:
        return {s for m in self.got for lo, hi in m.covers.get("t1", ())
                for s in range(lo, hi + 1)}


def run(pipeline: Pipeline, tracer: HoldingTracer, reporter: SlowReporter, clock: Clock,
        turns: int = 100_000) -> list[int]:
    pacer = flow.Pacer(next_flush=clock() + flow.FLUSH_EVERY)
    taken = []
    for _ in range(turns):
        if not tracer.waiting and pipeline.outbox.empty():
            return taken
        taken.append(flow.turn(pipeline, tracer, reporter, pacer, clock))
    raise AssertionError(f"not done after {turns} turns: {len(tracer.waiting)} batches "
                         f"waiting, {pipeline.outbox.pending_files} files pending")


def small_outbox() -> Outbox:
    return Outbox(max_pending_files=8192, max_pending_units=8)


@pytest.mark.parametrize("can_poll", [False, True], ids=["sleeping", "polling"])
def test_a_flood_into_a_slow_reporter_loses_nothing_and_stays_bounded(can_poll: bool) -> None:
    clock = Clock()
    # 400 batches of 250 new paths: 100,000 files, 12 times what the outbox may hold.
    tracer = HoldingTracer(clock, batches=400, paths_per_batch=250)
    reporter = SlowReporter(clock, interval=0.02, can_poll=can_poll)
    pipeline = Pipeline(Config(), "proc-1", outbox=small_outbox())
    taken = run(pipeline, tracer, reporter, clock)
    assert reporter.paths() == tracer.paths  # every file, none dropped
    assert reporter.covered() == set(range(1, 401))
    outbox = pipeline.outbox
    assert outbox.peak_files <= outbox.max_pending_files + 250 - 1
    assert outbox.peak_units <= outbox.max_pending_units + 1
    assert max(taken) <= flow.MAX_MESSAGES_PER_TURN
    assert pipeline.counts.intake_pauses > 0  # the reporter really was the bottleneck
    # Messages as full as a unit may be, one per interval: the reporter set the pace.
    assert len(reporter.got) <= 100_000 // 4000 + 2
    assert clock.now < 1.5 * len(reporter.got) * reporter.interval


def test_while_the_reporter_is_away_intake_stops_at_the_bound_and_nothing_is_dropped() -> None:
    clock = Clock()
    tracer = HoldingTracer(clock, batches=100, paths_per_batch=100)
    reporter = SlowReporter(clock, interval=0.0, can_poll=False)
    reporter.away_until = 30.0
    pipeline = Pipeline(Config(), "proc-1", outbox=small_outbox())
    pacer = flow.Pacer(next_flush=flow.FLUSH_EVERY)
    while clock.now < 29.0:
        flow.turn(pipeline, tracer, reporter, pacer, clock)
    # The outbox took what it may hold (the bound, 8192, fell inside batch 82); the
    # rest waits with the tracer.
    assert pipeline.outbox.pending_files == 8200 and len(tracer.waiting) == 18
    assert pipeline.paused and pipeline.counts.intake_pauses == 1
    # Away: tries back off to one a second, each a refused send.
    assert reporter.refused <= 29 / flow.MAX_BACKOFF + 12
    run(pipeline, tracer, reporter, clock)
    assert reporter.paths() == tracer.paths
    assert reporter.covered() == set(range(1, 101))


def test_input_per_turn_is_bounded_even_when_everything_flows() -> None:
    clock = Clock()
    tracer = HoldingTracer(clock, batches=200, paths_per_batch=1, cost=0.0)
    reporter = SlowReporter(clock, interval=0.0, can_poll=True)
    pipeline = Pipeline(Config(), "proc-1")
    taken = run(pipeline, tracer, reporter, clock)
    assert taken[:6] == [flow.MAX_MESSAGES_PER_TURN] * 6
    assert reporter.paths() == tracer.paths


def test_stop_takes_in_only_what_it_can_hand_on() -> None:
    clock = Clock()
    tracer = HoldingTracer(clock, batches=100, paths_per_batch=100)
    reporter = SlowReporter(clock, interval=0.0, can_poll=False)
    reporter.away_until = 1e9  # gone for good
    pipeline = Pipeline(Config(), "proc-1", outbox=small_outbox())
    assert not flow.finish(pipeline, tracer, reporter, clock, drain_for=1.5, stop_within=3.0)
    assert 3.0 < clock.now < 3.5
    # The rest was never taken, so never covered: its tracer re-sends it.
    assert pipeline.outbox.pending_files == 8200 and len(tracer.waiting) == 18
    # The same stop with a reporter that takes everything drains the socket too.
    reporter.away_until = 0.0
    assert flow.finish(pipeline, tracer, reporter, clock, drain_for=1.5, stop_within=3.0)
    assert reporter.paths() == tracer.paths and not tracer.waiting


def test_a_batch_of_the_largest_size_still_fits_over_the_bound() -> None:
    clock = Clock()
    tracer = HoldingTracer(clock, batches=4, paths_per_batch=MAX_BATCH_EVENTS)
    reporter = SlowReporter(clock, interval=0.01, can_poll=True)
    pipeline = Pipeline(Config(), "proc-1", outbox=Outbox(max_pending_files=100))
    run(pipeline, tracer, reporter, clock)
    assert reporter.paths() == tracer.paths
    assert pipeline.outbox.peak_files <= 100 + MAX_BATCH_EVENTS - 1

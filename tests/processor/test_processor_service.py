"""The processor loop on real ipc:// sockets, run in a thread."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from snoop.common import transport
from snoop.common.config import Config
from snoop.common.protocol import (
    AccessKind,
    Event,
    EventBatch,
    FileUpdates,
    Header,
    MessageType,
    TracerStats,
    Workload,
)
from snoop.common.transport import Receiver, Sender, new_context
from snoop.processor.outbox import MAX_PENDING_FILES, MAX_PENDING_UNITS
from snoop.processor.service import serve
from tests.support.net import free_port

W = Workload("w1", "/docker/w1", "w1")
# Messages an ipc:// link holds beyond both high-water marks: the kernel's socket buffers
# and ZeroMQ's write batching (measured: up to 102 batches of 50 paths, with HWMs of 4).
KERNEL_SLACK = 200


class Running:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.config = Config(run_dir=str(tmp_path / "run"), metrics_addr=f"127.0.0.1:{self.port}",
                             report_interval=30.0)
        self.stop = threading.Event()
        self.registry = CollectorRegistry()
        self.result: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(serve(self.config, self.stop, self.registry)))
        self.context = new_context()
        self.tracer = Sender(self.context, self.config.endpoint("events"), hwm=transport.EVENTS_HWM)
        self.thread.start()
        self.wait_ready()

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                if self.http("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("processor never ready")
            time.sleep(0.02)

    def send(self, message) -> None:
        deadline = time.monotonic() + 5
        while not self.tracer.send(message):
            assert time.monotonic() < deadline, "processor did not take the message"
            time.sleep(0.01)

    def finish(self, timeout: float = 6.0) -> int:
        started = time.monotonic()
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "processor did not stop"
        assert time.monotonic() - started < 5.5
        return self.result[0]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(6)
        self.tracer.close(linger=0)
        self.context.term()


def batch(seq: int, *paths: bytes) -> EventBatch:
    return EventBatch(Header("t1", seq), tuple(Event(1, 1, 1, AccessKind.READ, p) for p in paths),
                      {1: W}, sent_at=time.time())


def collect(reporter: Receiver, until, timeout: float = 5.0) -> list[FileUpdates]:
    got: list[FileUpdates] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        assert time.monotonic() < deadline, f"timed out; got {got}"
        message = reporter.recv(0.05)
        if message is not None:
            got.append(message)
    return got


def paths_in(messages: list[FileUpdates]) -> set[bytes]:
    return {f.path for m in messages for u in m.updates for f in u.files}


def covered(messages: list[FileUpdates]) -> set[int]:
    return {s for m in messages for lo, hi in m.covers.get("t1", ()) for s in range(lo, hi + 1)}


@pytest.fixture
def running(tmp_path: Path):
    r = Running(tmp_path)
    yield r
    r.close()


def test_forwards_new_files_and_covers(running: Running) -> None:
    reporter = Receiver(running.context, running.config.endpoint("updates"),
                        (MessageType.FILE_UPDATES,), bind=True)
    try:
        running.send(batch(1, b"/etc/passwd", b"/dev/null"))
        running.send(batch(2, b"/etc/passwd", b"/bin//sh"))
        running.send(TracerStats(Header("t1", 3), time.time(), 0, 0, 0, {"openat": 3}))
        got = collect(reporter, lambda g: covered(g) >= {1, 2, 3})
        assert paths_in(got) == {b"/etc/passwd", b"/bin/sh"}
        status, text = running.http("/metrics")
        assert status == 200
        assert "snoop_batches_received_total 2.0" in text
        assert 'snoop_events_total{syscall="openat"} 3.0' in text
        assert 'snoop_unique_files{workload="w1"} 2.0' in text
        assert "snoop_events_excluded_total 1.0" in text
        assert running.finish() == 0
    finally:
        reporter.close(linger=0)


def test_keeps_updates_while_reporter_is_away(running: Running) -> None:
    running.send(batch(1, b"/a"))
    running.send(batch(2, b"/b"))
    time.sleep(0.3)  # several flushes fail: nobody is listening
    reporter = Receiver(running.context, running.config.endpoint("updates"),
                        (MessageType.FILE_UPDATES,), bind=True)
    try:
        got = collect(reporter, lambda g: covered(g) >= {1, 2})
        assert paths_in(got) == {b"/a", b"/b"}
        assert "snoop_update_sends_blocked_total" in running.http("/metrics")[1]
    finally:
        reporter.close(linger=0)


def test_stop_drains_and_flushes_what_was_received(running: Running) -> None:
    reporter = Receiver(running.context, running.config.endpoint("updates"),
                        (MessageType.FILE_UPDATES,), bind=True)
    try:
        # The processor connected before this socket existed: wait out its reconnect.
        running.send(batch(1, b"/probe"))
        collect(reporter, lambda g: 1 in covered(g))
        for seq in range(2, 52):
            running.send(batch(seq, *[b"/f/%d/%d" % (seq, i) for i in range(20)]))
        assert running.finish() == 0
        got = collect(reporter, lambda g: covered(g) >= set(range(2, 52)))
        assert len(paths_in(got)) == 50 * 20
    finally:
        reporter.close(linger=0)


def test_stop_without_reporter_gives_up_in_time(running: Running) -> None:
    running.send(batch(1, b"/never/delivered"))
    time.sleep(0.2)
    assert running.finish() == 0  # finish() also checks it took under 5.5 s


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def flood(running: Running, first: int, count: int, per_batch: int,
          stalled_for: float = 0.0, within: float = 20.0) -> tuple[int, int]:
    """Send batches of new paths as a tracer does: a refused batch is held and retried.
    With `stalled_for`, stop once sends stay refused that long; returns (sent, refusals)."""
    sent = refusals = 0
    deadline = time.monotonic() + within
    seq = first
    refused_since = None
    while seq < first + count:
        assert time.monotonic() < deadline, f"flood stuck at seq {seq}"
        if running.tracer.send(batch(seq, *[b"/flood/%d/%d" % (seq, i)
                                            for i in range(per_batch)])):
            sent += 1
            seq += 1
            refused_since = None
            continue
        refusals += 1
        now = time.monotonic()
        refused_since = refused_since or now
        if stalled_for and now - refused_since >= stalled_for:
            break
        time.sleep(0.002)
    return sent, refusals


def wait_until_paused(running: Running) -> None:
    deadline = time.monotonic() + 10
    while metric(running.http("/metrics")[1], "snoop_intake_paused") != 1.0:
        assert time.monotonic() < deadline, "the processor never filled its outbox"
        time.sleep(0.02)


def test_a_stalled_processor_pushes_back_to_the_tracer(running: Running) -> None:
    """No reporter: the outbox fills, intake stops, the events socket's high-water marks
    fill, and the tracer's non-blocking send is refused for good."""
    per_batch = 50
    sent, refusals = flood(running, 1, 100_000, per_batch, stalled_for=0.5)
    wait_until_paused(running)
    # Refused for good now: the processor takes nothing more.
    more, refusals_after = flood(running, sent + 1, 100_000, per_batch, stalled_for=0.5)
    sent += more
    assert refusals and refusals_after
    text = running.http("/metrics")[1]
    assert metric(text, "snoop_intake_paused") == 1.0
    assert metric(text, "snoop_intake_pauses_total") == 1.0
    taken = metric(text, "snoop_batches_received_total")
    assert metric(text, "snoop_pending_files") == taken * per_batch
    assert taken * per_batch < MAX_PENDING_FILES + per_batch
    # What the processor did not take waits in ZeroMQ's queues: the tracer's send HWM,
    # the processor's receive HWM, and what the kernel's socket buffers hold.
    queued = sent - taken
    assert queued <= 2 * transport.EVENTS_HWM + KERNEL_SLACK, queued


def test_a_flood_into_a_reporter_that_comes_late_and_is_slow_loses_nothing(
        running: Running) -> None:
    per_batch = 200
    # The reporter is away: the processor takes in up to its bound, then stops.
    sent, _ = flood(running, 1, 400, per_batch, stalled_for=0.3)
    wait_until_paused(running)
    reporter = Receiver(running.context, running.config.endpoint("updates"),
                        (MessageType.FILE_UPDATES,), bind=True)
    got: list[FileUpdates] = []
    stop = threading.Event()

    def slow_reporter() -> None:
        while not stop.is_set():
            message = reporter.recv(0.05)
            if message is not None:
                got.append(message)
                time.sleep(0.01)  # applies and writes slowly

    thread = threading.Thread(target=slow_reporter)
    thread.start()
    try:
        flood(running, sent + 1, 400 - sent, per_batch)
        deadline = time.monotonic() + 30
        while covered(got) != set(range(1, 401)):
            assert time.monotonic() < deadline, f"covered {len(covered(got))} of 400"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
        reporter.close(linger=0)
    assert paths_in(got) == {b"/flood/%d/%d" % (seq, i) for seq in range(1, 401)
                             for i in range(per_batch)}
    text = running.http("/metrics")[1]
    assert metric(text, "snoop_intake_pauses_total") >= 1
    assert metric(text, "snoop_pending_files_peak") < MAX_PENDING_FILES + per_batch
    assert metric(text, "snoop_pending_units_peak") <= MAX_PENDING_UNITS + 1


def test_the_processor_exports_its_own_memory_and_cpu(running: Running) -> None:
    text = running.http("/metrics")[1]
    assert metric(text, "process_resident_memory_bytes") > 1_000_000
    assert "process_cpu_seconds_total" in text

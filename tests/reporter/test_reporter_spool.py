"""The push spool on disk, and the deltas write rounds put in it: what the endpoint is
sent adds up to every report, across restarts, spool failures and the spool's bound."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from snoop.common.config import Config
from snoop.common.delta import decode_delta, delta_key
from snoop.common.protocol import (
    FileSeen,
    FileUpdates,
    Header,
    TracerStats,
    Workload,
    WorkloadUpdate,
)
from snoop.reporter.core import Reporter
from snoop.reporter.deltas import DeltaSpooler
from snoop.reporter.spool import Prepared, Spool
from snoop.reporter.writer import ReportFiles
from tests.reporter.test_reporter_core import READ, W1, W2, fu

NOW = 1_700_000_000.0
P = Prepared.of


def bodies(spool: Spool) -> list[bytes]:
    """Every delta still spooled, oldest first, delivering each (as a pusher would)."""
    out = []
    while (record := spool.peek()) is not None:
        body = gzip.decompress(record.body)
        assert record.key == delta_key(body)
        out.append(body)
        spool.done(record)
    return out


# ------------------------------------------------------------ the spool itself

def test_records_come_back_in_order_and_segments_go_when_delivered(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"), 1 << 20).open()
    spool.append([P("w1", b"a"), P("w2", b"b")])
    spool.append([P("w1", b"c")])
    assert spool.records() == 3 and len(os.listdir(tmp_path / "s")) == 2
    first = spool.peek()
    assert (first.workload_id, gzip.decompress(first.body)) == ("w1", b"a")
    assert spool.peek() == first  # not delivered yet: the same again
    spool.done(first)
    assert bodies(spool) == [b"b", b"c"]
    assert spool.records() == 0 and spool.bytes() == 0
    assert not [n for n in os.listdir(tmp_path / "s") if n.endswith(".seg")]


def test_a_restart_finds_what_was_not_delivered(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), 1 << 20).open()
    spool.append([P("w1", b"a"), P("w1", b"b")], known=["w1"])
    spool.done(spool.peek())
    (tmp_path / "000000000099-1.seg.tmp").write_bytes(b"torn")  # a write cut short
    again = Spool(str(tmp_path), 1 << 20).open()
    # The segment's delivered record comes again (the receiver drops it by its key).
    assert bodies(again) == [b"a", b"b"]
    assert again.known == {"w1"}
    assert not (tmp_path / "000000000099-1.seg.tmp").exists()
    again.append([P("w2", b"c")])
    assert bodies(Spool(str(tmp_path), 1 << 20).open()) == [b"c"]


def test_over_the_bound_the_oldest_go_and_their_workloads_resync(tmp_path: Path,
                                                                  caplog) -> None:
    spool = Spool(str(tmp_path), 3000).open()
    spool.append([P("w1", os.urandom(1000))], known=["w1", "w2"])
    spool.append([P("w2", os.urandom(1000))])
    assert spool.counts.dropped == 0 and spool.known == {"w1", "w2"}
    spool.append([P("w3", os.urandom(1500))], known=["w3"])
    assert spool.counts.dropped == 1 and spool.known == {"w2", "w3"}
    assert [r.workload_id for r in [spool.peek()]] == ["w2"]
    assert "over its bound" in caplog.text
    assert Spool(str(tmp_path), 3000).open().known == {"w2", "w3"}
    # The newest segment stays even when it alone is over the bound.
    spool.append([P("w4", os.urandom(5000))])
    assert spool.records() == 1 and spool.known == set()
    assert spool.snapshot_budget() == 0
    bodies(spool)
    assert spool.snapshot_budget() == 1500 and spool.empty()


def test_a_drop_forgets_only_workloads_with_undelivered_deltas(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), 5000).open()
    spool.append([P("w1", os.urandom(1000)), P("w2", os.urandom(1000)),
                  P("w3", os.urandom(1000))], known=["w1", "w2", "w3", "w4"])
    spool.done(spool.peek())  # w1's delta is delivered
    spool.append([P("w3", os.urandom(1000), full=True)])  # a newer snapshot of w3
    assert spool.bytes() < 4000  # the delivered delta no longer counts
    spool.append([P("w4", os.urandom(2500))])
    # The first segment went: w1 was delivered, w3 has a newer snapshot; only w2 resyncs.
    assert spool.counts.dropped == 2 and spool.known == {"w1", "w3", "w4"}


def test_a_drop_whose_state_cannot_be_written_keeps_the_segments(tmp_path: Path,
                                                                  monkeypatch) -> None:
    spool = Spool(str(tmp_path), 1500).open()
    spool.append([P("w1", os.urandom(1000))], known=["w1"])
    import snoop.reporter.spool as spool_module

    real = spool_module.write_atomically

    def full(path: str, data, mode: int = 0o644) -> None:
        if path.endswith("state.json"):
            raise OSError(28, "No space left on device", path)
        real(path, data, mode)

    monkeypatch.setattr(spool_module, "write_atomically", full)
    spool.append([P("w2", os.urandom(1000))])
    assert spool.counts.dropped == 1 and spool.counts.write_errors == 1
    monkeypatch.undo()
    # On disk, the dropped segment is still there, and the stale `known` with it.
    again = Spool(str(tmp_path), 1 << 20).open()
    assert again.known == {"w1"} and again.records() == 2


def test_the_spool_keeps_its_origin_and_forgets_all_for_another_endpoint(
        tmp_path: Path, caplog) -> None:
    spool = Spool(str(tmp_path), 1 << 20, origin="", endpoint="http://a/v1/deltas").open()
    spool.origin = "pod-abc"  # what the host was called the first time
    spool.append([P("w1", b"a")], known=["w1"])
    renamed = Spool(str(tmp_path), 1 << 20, endpoint="http://a/v1/deltas").open()
    assert renamed.origin == "pod-abc" and renamed.known == {"w1"}
    moved = Spool(str(tmp_path), 1 << 20, endpoint="http://b/v1/deltas").open()
    assert moved.known == set() and "another origin or endpoint" in caplog.text
    named = Spool(str(tmp_path), 1 << 20, origin="node-7", endpoint="http://a/v1/deltas").open()
    assert named.origin == "node-7" and named.known == set()


def test_a_backlog_of_snapshots_over_the_bound_drains_without_livelock(tmp_path: Path) -> None:
    """20 workloads whose snapshots together pass the bound, an endpoint taking 5 deltas
    a round: every workload's files arrive, and the spool settles."""
    bound = 100_000
    reporter = pushing(tmp_path, max_bytes=bound)
    workloads = [Workload(f"c{i:02d}", f"/docker/c{i:02d}", f"c{i:02d}") for i in range(20)]
    expected: dict[str, set[bytes]] = {}
    for i, w in enumerate(workloads):
        # Random names: they do not compress, so each snapshot is ~10 KB on disk.
        paths = [b"/r/" + os.urandom(24).hex().encode() for _ in range(150)]
        expected[w.key] = set(paths)
        reporter.apply(fu(i + 1, {}, (w, paths)))
    spool = reporter.deltas.spool
    spool.known.clear()  # as after a drop of everything
    received: dict[str, set[bytes]] = {}
    for _ in range(40):
        reporter.write_round()
        for _ in range(5):
            record = spool.peek()
            if record is None:
                break
            delta = decode_delta(gzip.decompress(record.body))
            received.setdefault(delta.workload_id, set()).update(delta.report.files)
            spool.done(record)
        assert spool.bytes() <= bound + bound // 2
    assert received == expected
    assert spool.records() == 0 and reporter.snapshots_waiting() == 0


def test_unreadable_state_and_segments_mean_sending_everything_again(tmp_path: Path,
                                                                     caplog) -> None:
    spool = Spool(str(tmp_path), 1 << 20).open()
    spool.append([P("w1", b"a")], known=["w1"])
    (tmp_path / "state.json").write_text("{nope")
    assert Spool(str(tmp_path), 1 << 20).open().known == set()
    assert "state unreadable" in caplog.text
    spool.append([P("w1", b"b")], known=["w1"])
    (tmp_path / "000000000005-2.seg").write_bytes(b"\xc1\xc1 not msgpack")
    again = Spool(str(tmp_path), 1 << 20).open()
    assert bodies(again) == [b"a", b"b"]
    assert again.known == set() and again.counts.dropped == 2


def test_a_failing_disk_raises_and_changes_nothing(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), 1 << 20).open()
    (tmp_path / "000000000001-1.seg").mkdir()  # the rename onto it fails, even for root
    with pytest.raises(OSError):
        spool.append([P("w1", b"a")], known=["w1"])
    assert spool.records() == 0 and spool.known == set() and spool.counts.write_errors == 1
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


# ------------------------------------------------------------ deltas from write rounds

def pushing(tmp_path: Path, *, node: bool = True, max_bytes: int = 1 << 20,
            clock=lambda: NOW, **spooler) -> Reporter:
    files = ReportFiles(str(tmp_path / "report.json"), str(tmp_path / "reports") if node else "",
                        wall=clock)
    files.prepare()
    spool = Spool(files.spool_dir, max_bytes).open()
    spool.origin = "node-a"
    reporter = Reporter(Config(), files, "rep-1", deltas=DeltaSpooler(spool, **spooler),
                        clock=clock)
    reporter.load()
    return reporter


def sent(reporter: Reporter) -> list:
    return [decode_delta(b) for b in bodies(reporter.deltas.spool)]


def test_a_new_report_goes_whole_then_only_what_is_new(tmp_path: Path) -> None:
    reporter = pushing(tmp_path)
    reporter.apply(fu(1, {}, (W1, [b"/a", b"/b"]), (W2, [b"/x"])))
    assert reporter.write_round() is True
    first = sent(reporter)
    assert [(d.workload_id, d.full, sorted(d.report.files)) for d in first] == [
        ("/system.slice/cron.service", True, [b"/x"]), ("c1", True, [b"/a", b"/b"])]
    assert first[0].origin == "node-a" and first[1].report.workload_key == "c1"
    reporter.apply(fu(2, {}, (W1, [b"/a", b"/c"])))  # /a again: nothing new about it
    reporter.write_round()
    [delta] = sent(reporter)
    assert (delta.workload_id, delta.full, list(delta.report.files)) == ("c1", False, [b"/c"])
    assert delta.report.total_events == 4  # counters as they are now
    assert reporter.write_round() is None and sent(reporter) == []


def test_counters_alone_make_a_delta_without_files(tmp_path: Path) -> None:
    reporter = pushing(tmp_path)
    reporter.apply(fu(1, {}, (W1, [b"/a"])))
    reporter.write_round()
    sent(reporter)
    reporter.apply(FileUpdates(Header("proc", 2), (WorkloadUpdate(W1, (), 7),), {}))
    reporter.write_round(final=True)  # else at most once a minute (below)
    [delta] = sent(reporter)
    assert delta.report.files == {} and delta.report.total_events == 8


def test_a_report_from_before_the_push_is_sent_whole_at_the_first_round(tmp_path: Path) -> None:
    reporter = pushing(tmp_path)
    reporter.apply(fu(1, {}, (W1, [b"/a", b"/b"])))
    reporter.write_round()
    for name in os.listdir(reporter.files.spool_dir):  # as if pushing was never on
        path = os.path.join(reporter.files.spool_dir, name)
        if os.path.isfile(path):
            os.unlink(path)
    again = pushing(tmp_path)
    assert again.snapshots_waiting() == 1
    assert again.write_round() is True  # nothing new arrived: the snapshot is due anyway
    [delta] = sent(again)
    assert delta.full and sorted(delta.report.files) == [b"/a", b"/b"]
    assert again.snapshots_waiting() == 0 and again.write_round() is None


def test_a_spool_that_cannot_be_written_fails_the_round_and_forgets_nothing(
        tmp_path: Path) -> None:
    reporter = pushing(tmp_path)
    reporter.apply(fu(1, {}, (W1, [b"/a"])))
    reporter.write_round()
    sent(reporter)
    reporter.apply(fu(2, {}, (W1, [b"/b"])))
    blocker = Path(reporter.files.spool_dir) / f"{reporter.deltas.spool._next_seq:012d}-1.seg"
    blocker.mkdir()
    assert reporter.write_round() is False
    assert sorted(load_files(reporter)) == [b"/a"]  # the report waits for its delta
    blocker.rmdir()
    assert reporter.write_round() is True
    [delta] = sent(reporter)
    assert list(delta.report.files) == [b"/b"]
    assert sorted(load_files(reporter)) == [b"/a", b"/b"]


def load_files(reporter: Reporter) -> list[bytes]:
    from snoop.common.report import load_report
    return list(load_report(reporter.files.path_for("c1", "c1")).files)


def test_a_long_outage_over_the_bound_still_delivers_every_file(tmp_path: Path) -> None:
    """Rounds keep spooling while nothing is delivered; the bound drops old deltas, and
    the workload's full snapshot, once there is room, carries what they held."""
    reporter = pushing(tmp_path, max_bytes=6000)
    expected = set()
    for seq in range(1, 40):
        paths = [f"/data/{seq}/{n}-{'x' * 40}".encode() for n in range(5)]
        expected |= set(paths)
        reporter.apply(fu(seq, {}, (W1, paths)))
        assert reporter.write_round() is True
    spool = reporter.deltas.spool
    assert spool.counts.dropped > 0
    assert "c1" not in spool.known and reporter.snapshots_waiting() == 1
    received: set[bytes] = set()
    for delta in sent(reporter):  # the endpoint is back: the backlog goes out
        received |= set(delta.report.files)
    assert reporter.write_round() is True  # now there is room: the snapshot
    [snapshot] = sent(reporter)
    assert snapshot.full
    received |= set(snapshot.report.files)
    assert received == expected


def test_a_big_report_goes_as_several_deltas(tmp_path: Path) -> None:
    reporter = pushing(tmp_path, max_files=7)
    paths = [f"/lib/{n}".encode() for n in range(30)]
    reporter.apply(fu(1, {}, (W1, paths)))
    reporter.write_round()
    parts = sent(reporter)
    assert len(parts) == 6 and all(len(d.report.files) <= 7 for d in parts)
    assert sorted(p for d in parts for p in d.report.files) == sorted(paths)
    assert reporter.deltas.spool.known == {"c1"}


def test_counters_alone_are_sent_at_most_once_a_minute_but_at_the_stop(tmp_path: Path) -> None:
    now = [1000.0]
    reporter = pushing(tmp_path, clock=lambda: NOW)
    reporter.deltas._clock = lambda: now[0]
    reporter.apply(fu(1, {}, (W1, [b"/a"])))
    reporter.write_round()
    sent(reporter)
    for seq in range(2, 6):  # counters change every round
        reporter.apply(FileUpdates(Header("proc", seq), (WorkloadUpdate(W1, (), 1),), {}))
        now[0] += 10
        reporter.write_round()
    assert sent(reporter) == []
    now[0] += 30  # a minute since the last delta
    reporter.write_round()
    assert [d.report.total_events for d in sent(reporter)] == [5]
    assert reporter.write_round() is None
    reporter.apply(FileUpdates(Header("proc", 6), (WorkloadUpdate(W1, (), 1),), {}))
    reporter.write_round()  # too soon again ...
    assert [d.report.total_events for d in sent(reporter)] == []
    reporter.apply(FileUpdates(Header("proc", 7), (WorkloadUpdate(W1, (), 1),), {}))
    reporter.write_round(final=True)  # ... but the last round sends it
    [delta] = sent(reporter)
    assert delta.report.total_events == 7 and delta.report.files == {}


def test_a_report_no_workload_named_yet_is_not_pushed(tmp_path: Path) -> None:
    reporter = pushing(tmp_path, node=False)
    reporter.apply(FileUpdates(Header("proc", 1), (), {}, tracer_stats=(
        TracerStats(Header("t", 1), started_at=NOW, kernel_dropped=1, read_failures=0,
                    unresolved=0, events_by_syscall={}),)))
    reporter.write_round()
    assert sent(reporter) == [] and reporter.snapshots_waiting() == 0
    reporter.apply(fu(2, {}, (Workload("c9", "/docker/c9", "c9"), [b"/a"])))
    reporter.write_round()
    [delta] = sent(reporter)
    assert delta.workload_id == "c9" and delta.full


def test_sidecar_reports_push_under_their_key(tmp_path: Path) -> None:
    reporter = pushing(tmp_path, node=False)
    reporter.apply(fu(1, {}, (Workload("c9", "/docker/c9", "c9"), [b"/a"])))
    reporter.write_round()
    [delta] = sent(reporter)
    assert delta.workload_id == "c9" and delta.full


def test_reporter_without_push_tracks_nothing(tmp_path: Path) -> None:
    files = ReportFiles(str(tmp_path / "r.json"), "")
    reporter = Reporter(Config(), files, "rep-1")
    reporter.load()
    reporter.apply(FileUpdates(Header("p", 1), (WorkloadUpdate(
        W1, (FileSeen(b"/a", READ, 1.0, 1.0),), 1),), {}))
    assert reporter.store.changed == {} and reporter.snapshots_waiting() == 0

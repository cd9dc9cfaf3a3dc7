"""The journaled reporter on real files: batches confirmed once in the journal, replayed
after a crash (a dropped process, or a real SIGKILL), never counted twice."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from snoop.common.config import Config
from snoop.common.protocol import (
    AccessKind,
    CaptureCounts,
    FileSeen,
    FileUpdates,
    Header,
    TracerStats,
    Workload,
    WorkloadUpdate,
    kinds_mask,
)
from snoop.common.report import load_report, write_atomically
from snoop.reporter.durable import DurableReporter
from snoop.reporter.journal import Journal
from snoop.reporter.writer import ReportFiles, report_filename

NOW = time.time()
W1 = Workload("c1", "/docker/c1", "c1")
W2 = Workload("/system.slice/cron.service", "/system.slice/cron.service", "")
READ = kinds_mask(AccessKind.READ)


def fu(seq: int, covers: dict, *parts: tuple[Workload, list[bytes]], stats=(), gaps: int = 0,
       capture: CaptureCounts | None = None) -> FileUpdates:
    return FileUpdates(
        Header("proc", seq),
        tuple(WorkloadUpdate(w, tuple(FileSeen(p, READ, NOW, NOW) for p in paths), len(paths),
                             unresolved=1, capture=capture or CaptureCounts(io_uring_ops=1))
              for w, paths in parts),
        covers=covers, tracer_stats=tuple(stats), gaps=gaps)


def stats(seq: int, kernel_dropped: int) -> TracerStats:
    return TracerStats(Header("t1", seq), NOW - 10, kernel_dropped, 0, 0)


class FailingWrite:
    """write_atomically, except for paths containing `match` while `failing`."""

    def __init__(self, match: str) -> None:
        self.match = match
        self.failing = False

    def __call__(self, path: str, text: str) -> None:
        if self.failing and self.match in path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        write_atomically(path, text)


def make(base: Path, *, node: bool = False, write=write_atomically,
         journal_bytes: int | None = None) -> DurableReporter:
    files = ReportFiles(str(base / "report.json"), str(base / "reports") if node else "",
                        write=write)
    journal = (Journal(files.journal_path, max_bytes=journal_bytes)
               if journal_bytes is not None else None)
    reporter = DurableReporter(Config(), files, "rep-1", journal=journal)
    reporter.load()
    return reporter


def crash(reporter: DurableReporter) -> None:
    """What a SIGKILL leaves: the files as they are. (The kernel closes the fds.)"""
    reporter.close()


def counters(reporter: DurableReporter, key: str = "") -> dict:
    report = reporter.store.reports[key]
    reporter.store.render(key)  # reporter-wide counters are filled in at render
    c = report.coverage
    return {"files": set(report.files), "total_events": report.total_events,
            "unresolved": c.unresolved_paths, "io_uring": c.io_uring_ops,
            "kernel_dropped": c.kernel_dropped, "gaps": c.message_gaps}


def test_confirmed_once_in_the_journal_before_any_report_write(tmp_path: Path) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {"t1": ((1, 2),)}, (W1, [b"/etc/passwd", b"/bin/sh"])))
    assert r.checkpoint().persisted == {}  # appended, not yet fsynced
    assert r.sync_journal() is True
    assert r.checkpoint().persisted == {"t1": ((1, 2),)}
    assert r.sync_journal() is False  # nothing new
    assert not (tmp_path / "report.json").exists()
    crash(r)
    again = make(tmp_path)
    assert again.checkpoint().persisted == {"t1": ((1, 2),)}
    assert counters(again)["files"] == {b"/etc/passwd", b"/bin/sh"}
    assert counters(again)["total_events"] == 2
    assert again.write_round() is True
    assert set(load_report(tmp_path / "report.json").files) == {b"/etc/passwd", b"/bin/sh"}
    assert again.journal.size == 0 and os.path.getsize(again.files.journal_path) == 0


def test_replay_is_idempotent(tmp_path: Path) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"]), stats=[stats(1, 2)], gaps=1))
    assert r.write_round() is True
    r.apply(fu(2, {"t1": ((2, 3),)}, (W1, [b"/b", b"/c"]), stats=[stats(3, 5)], gaps=2))
    r.sync_journal()
    expected = {"files": {b"/a", b"/b", b"/c"}, "total_events": 3, "unresolved": 2,
                "io_uring": 2, "kernel_dropped": 5, "gaps": 3}
    assert counters(r) == expected
    crash(r)
    for _ in range(3):  # crash again right after each replay, before any write
        again = make(tmp_path)
        assert counters(again) == expected
        assert again.checkpoint().persisted == {"t1": ((1, 3),)}
        crash(again)
    again = make(tmp_path)
    assert again.write_round() is True
    crash(again)
    last = make(tmp_path)
    assert counters(last) == expected
    assert last.journal.counts.replayed == 0


def test_crash_between_report_and_state_write_counts_nothing_twice(tmp_path: Path) -> None:
    write = FailingWrite(".state.json")
    r = make(tmp_path, write=write)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"]), stats=[stats(1, 2)], gaps=1))
    assert r.write_round() is True
    r.apply(fu(2, {"t1": ((2, 2),)}, (W1, [b"/b", b"/c"]), stats=[stats(2, 5)], gaps=2))
    r.sync_journal()
    write.failing = True  # the report is written, the state is not: as if killed between
    assert r.write_round() is False
    on_disk = load_report(tmp_path / "report.json")
    assert on_disk.total_events == 3 and on_disk.coverage.message_gaps == 3  # already in
    crash(r)
    again = make(tmp_path)
    assert counters(again) == {"files": {b"/a", b"/b", b"/c"}, "total_events": 3,
                               "unresolved": 2, "io_uring": 2, "kernel_dropped": 5,
                               "gaps": 3}
    assert again.journal.counts.replayed == 1


def test_crash_after_the_state_write_before_the_journal_reset(tmp_path: Path) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"]), gaps=1))
    r.sync_journal()
    journal_before = Path(r.files.journal_path).read_bytes()
    assert r.write_round() is True
    crash(r)
    Path(r.files.journal_path).write_bytes(journal_before)  # the reset never happened
    again = make(tmp_path)
    assert again.journal.counts.replayed == 1  # read back, but the reports hold it
    assert counters(again)["total_events"] == 1 and counters(again)["gaps"] == 1
    again.apply(fu(2, {"t1": ((2, 2),)}, (W1, [b"/b"])))
    again.sync_journal()
    crash(again)
    last = make(tmp_path)
    assert counters(last)["total_events"] == 2 and counters(last)["gaps"] == 1
    assert last.journal.last_seq == 2


def test_node_mode_crash_mid_round_counts_nothing_twice(tmp_path: Path) -> None:
    write = FailingWrite("c1.json")  # reports are written in key order: W2's first
    r = make(tmp_path, node=True, write=write)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"]), (W2, [b"/x"])))
    assert r.write_round() is True
    r.apply(fu(2, {"t1": ((2, 2),)}, (W1, [b"/b"]), (W2, [b"/y"])))
    r.sync_journal()
    write.failing = True  # W2's report is rewritten, then the round stops
    assert r.write_round() is False
    path = tmp_path / "reports" / report_filename(W2.key)
    assert load_report(path).total_events == 2
    assert load_report(tmp_path / "reports" / "c1.json").total_events == 1
    crash(r)
    again = make(tmp_path, node=True)
    assert counters(again, "c1")["total_events"] == 2
    assert counters(again, W2.key)["total_events"] == 2
    assert counters(again, W2.key)["files"] == {b"/x", b"/y"}
    assert again.write_round() is True
    assert load_report(tmp_path / "reports" / "c1.json").total_events == 2
    assert load_report(path).total_events == 2 and load_report(path).coverage.io_uring_ops == 2


def test_processor_gaps_are_counted_once_across_a_replay(tmp_path: Path) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"])))
    r.apply(fu(3, {"t1": ((2, 2),)}, (W1, [b"/b"])))  # processor seq 2 never came
    r.sync_journal()
    assert counters(r)["gaps"] == 1
    crash(r)
    again = make(tmp_path)
    assert counters(again)["gaps"] == 1
    again.apply(fu(4, {"t1": ((3, 3),)}, (W1, [b"/c"])))  # carries on: no new gap
    assert counters(again)["gaps"] == 1
    assert again.counts.updates == 1  # replays are not messages received


def test_a_torn_append_loses_only_the_unconfirmed_record(tmp_path: Path) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"])))
    r.sync_journal()
    size = r.journal.size
    r.apply(fu(2, {"t1": ((2, 2),)}, (W1, [b"/b"])))
    assert r.checkpoint().persisted == {"t1": ((1, 1),)}  # /b was never confirmed
    crash(r)
    with open(r.files.journal_path, "r+b") as handle:  # the crash cut the append short
        handle.truncate(size + 7)
    again = make(tmp_path)
    assert counters(again)["files"] == {b"/a"}
    assert again.checkpoint().persisted == {"t1": ((1, 1),)}  # the tracer re-sends 2
    assert again.journal.counts.torn == 1


def test_a_full_journal_falls_back_to_confirming_by_write_rounds(tmp_path: Path,
                                                                 caplog) -> None:
    r = make(tmp_path, journal_bytes=1000)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/small"])))
    assert r.sync_journal() is True
    r.apply(fu(2, {"t1": ((2, 2),)}, (W1, [b"/big/%0100d" % i for i in range(20)])))
    r.apply(fu(3, {"t1": ((3, 3),)}, (W1, [b"/after"])))  # must not follow a hole
    assert r.sync_journal() is False
    assert r.checkpoint().persisted == {"t1": ((1, 1),)}
    assert r.journal.suspended and r.journal.last_seq == 1
    assert r.write_round() is True  # the report holds 2 and 3 now: confirmed, and resumed
    assert r.checkpoint().persisted == {"t1": ((1, 3),)}
    assert r.journal.suspended is None
    r.apply(fu(4, {"t1": ((4, 4),)}, (W1, [b"/later"])))
    assert r.sync_journal() is True
    assert r.checkpoint().persisted == {"t1": ((1, 4),)}
    assert any("journal suspended" in rec.getMessage() for rec in caplog.records)


def test_state_file_says_what_the_reports_hold(tmp_path: Path) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a", b"/b"])))
    r.apply(fu(2, {"t1": ((2, 2),)}, (W1, [b"/c"])))
    assert r.write_round() is True
    state = json.loads((tmp_path / ".report.json.state.json").read_text())
    assert state["journal"]["through"] == 2
    assert state["journal"]["reports"][""]["total_events"] == 3
    assert state["journal"]["reports"][""]["io_uring_ops"] == 2
    assert state["persisted"]["t1"]["ranges"] == [[1, 2]]


def test_corrupt_state_replays_the_whole_journal_without_doubling(tmp_path: Path) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"])))
    r.sync_journal()
    journal_before = Path(r.files.journal_path).read_bytes()
    assert r.write_round() is True
    crash(r)
    Path(r.files.journal_path).write_bytes(journal_before)
    (tmp_path / ".report.json.state.json").write_text("{broken")
    again = make(tmp_path)
    assert counters(again)["files"] == {b"/a"} and counters(again)["total_events"] == 1


CHILD = textwrap.dedent("""
    import sys, time
    from snoop.common.config import Config
    from snoop.common.protocol import (AccessKind, FileSeen, FileUpdates, Header, Workload,
                                       WorkloadUpdate, kinds_mask)
    from snoop.reporter.durable import DurableReporter
    from snoop.reporter.writer import ReportFiles

    r = DurableReporter(Config(), ReportFiles(sys.argv[1]), "child")
    r.load()
    w = Workload("c1", "/docker/c1", "c1")
    now = time.time()
    for n in range(1, 51):
        files = tuple(FileSeen(b"/lib/%d/%d.so" % (n, i), kinds_mask(AccessKind.READ), now, now)
                      for i in range(20))
        r.apply(FileUpdates(Header("proc", n), (WorkloadUpdate(w, files, 20),),
                            covers={"t1": ((n, n),)}))
        if n % 10 == 0:
            r.sync_journal()
    print(r.checkpoint().persisted["t1"], flush=True)
    time.sleep(60)
""")


def test_sigkill_right_after_confirming_loses_nothing(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(report)],
                             stdout=subprocess.PIPE, text=True)
    try:
        confirmed = child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        child.stdout.close()
    assert confirmed == "((1, 50),)"
    assert not report.exists()  # nothing was written but the journal
    again = make(tmp_path)
    assert again.checkpoint().persisted == {"t1": ((1, 50),)}
    assert len(again.store.reports[""].files) == 1000
    assert again.store.reports[""].total_events == 1000
    assert again.write_round() is True
    assert len(load_report(report).files) == 1000


def test_the_journal_confirms_while_report_writes_fail(tmp_path: Path) -> None:
    write = FailingWrite("report.json")
    write.failing = True
    r = make(tmp_path, write=write)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"])))
    assert r.sync_journal() is True
    assert r.write_round() is False and not r.ready()
    assert r.checkpoint().persisted == {"t1": ((1, 1),)}
    assert r.journal.size > 0  # kept: the reports do not hold it
    crash(r)
    again = make(tmp_path)
    assert again.write_round() is True
    assert set(load_report(tmp_path / "report.json").files) == {b"/a"}


def test_a_big_journal_asks_for_a_write_round(tmp_path: Path, monkeypatch) -> None:
    from snoop.reporter import durable

    monkeypatch.setattr(durable, "ROUND_AT_BYTES", 2000)
    r = make(tmp_path)
    n = 0
    while not r.wants_round():
        n += 1
        r.apply(fu(n, {"t1": ((n, n),)}, (W1, [b"/lib/%d" % n])))
    assert r.write_round() is True
    assert not r.wants_round() and r.journal.size == 0

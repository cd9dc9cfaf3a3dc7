"""Write rounds, checkpoints, restarts and write failures, on real files."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snoop.common.config import Config
from snoop.common.protocol import (
    SEQ_MAX,
    AccessKind,
    FileSeen,
    FileUpdates,
    Header,
    TracerStats,
    Workload,
    WorkloadUpdate,
    kinds_mask,
)
from snoop.common.report import load_report, write_atomically
from snoop.reporter.core import Reporter
from snoop.reporter.writer import ReportFiles, UnreadableReport, report_filename

W1 = Workload("c1", "/docker/c1", "c1")
W2 = Workload("/system.slice/cron.service", "/system.slice/cron.service", "")
READ = kinds_mask(AccessKind.READ)


def fu(seq: int, covers: dict, *parts: tuple[Workload, list[bytes]], stats=()) -> FileUpdates:
    return FileUpdates(
        Header("proc", seq),
        tuple(WorkloadUpdate(w, tuple(FileSeen(p, READ, 100.0, 100.0) for p in paths), len(paths))
              for w, paths in parts),
        covers=covers, tracer_stats=tuple(stats))


def make(tmp_path: Path, *, node: bool = False, write=write_atomically, **config) -> Reporter:
    files = ReportFiles(str(tmp_path / "report.json"), str(tmp_path / "reports") if node else "",
                        write=write, wall=lambda: 1_700_000_000.0)
    reporter = Reporter(Config(**config), files, "rep-1", clock=lambda: 1_700_000_000.0)
    reporter.load()
    return reporter


class FailingWrite:
    """write_atomically, except for paths chosen to fail with `error`."""

    def __init__(self, error: int = errno.ENOSPC, match: str = "") -> None:
        self.error = error
        self.match = match
        self.failing = True

    def __call__(self, path: str, text: str) -> None:
        if self.failing and self.match in path:
            raise OSError(self.error, os.strerror(self.error), path)
        write_atomically(path, text)


def test_filenames_are_safe_and_distinct() -> None:
    cid = "a" * 64
    assert report_filename(cid) == cid + ".json"
    names = {report_filename(k) for k in ("/a/b", "/a_b", "a/b", "/a/b/", "..", ".hidden", "",
                                          "x" * 300, "x" * 301, "caf\udce9")}
    assert len(names) == 10
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name) < 140
    assert report_filename("/system.slice/cron.service").startswith("system.slice_cron.service-")


def test_round_writes_report_state_and_checkpoint(tmp_path: Path) -> None:
    r = make(tmp_path, image_ref="app:1")
    assert r.write_round() is None  # nothing to do
    r.apply(fu(1, {"t1": ((1, 2),)}, (W1, [b"/etc/passwd", b"/bin/sh"])))
    assert r.checkpoint().persisted == {}  # applied, not yet on disk
    assert r.write_round() is True
    report = load_report(tmp_path / "report.json")
    assert set(report.files) == {b"/etc/passwd", b"/bin/sh"}
    assert report.image_ref == "app:1" and report.total_events == 2
    assert r.checkpoint().persisted == {"t1": ((1, 2),)}
    assert (tmp_path / ".report.json.state.json").exists()
    assert r.write_round() is None  # unchanged: no write
    assert r.counts.writes == 1


def test_injected_enospc_keeps_old_report_and_holds_the_checkpoint(tmp_path: Path,
                                                                   caplog) -> None:
    write = FailingWrite(errno.ENOSPC)
    write.failing = False
    r = make(tmp_path, write=write)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"])))
    assert r.write_round() is True
    before = (tmp_path / "report.json").read_bytes()
    write.failing = True
    r.apply(fu(2, {"t1": ((2, 2),)}, (W1, [b"/b"])))
    assert r.write_round() is False
    assert r.write_round() is False  # retried next interval, still failing, no crash
    failures = [rec for rec in caplog.records if rec.getMessage().startswith("report write")]
    assert len(failures) == 1 and failures[0].errno == errno.ENOSPC
    assert (tmp_path / "report.json").read_bytes() == before
    assert r.counts.write_errors == 2 and not r.ready()
    assert r.checkpoint().persisted == {"t1": ((1, 1),)}
    write.failing = False
    assert r.write_round() is True and r.ready()
    assert set(load_report(tmp_path / "report.json").files) == {b"/a", b"/b"}
    assert r.checkpoint().persisted == {"t1": ((1, 2),)}


def test_state_write_failure_holds_the_checkpoint(tmp_path: Path) -> None:
    write = FailingWrite(errno.EACCES, match=".state.json")
    r = make(tmp_path, write=write)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"])))
    assert r.write_round() is False
    assert r.checkpoint().persisted == {}
    write.failing = False
    assert r.write_round() is True
    assert r.checkpoint().persisted == {"t1": ((1, 1),)}


def test_node_mode_partial_failure_persists_nothing(tmp_path: Path) -> None:
    write = FailingWrite(errno.EROFS, match="system.slice")
    r = make(tmp_path, node=True, write=write)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"]), (W2, [b"/b"])))
    assert r.write_round() is False
    assert r.checkpoint().persisted == {}
    write.failing = False
    assert r.write_round() is True
    assert r.checkpoint().persisted == {"t1": ((1, 1),)}
    names = sorted(os.listdir(tmp_path / "reports"))
    assert names == [".snoop-reporter-state.json", "c1.json", report_filename(W2.key)]
    assert load_report(tmp_path / "reports" / report_filename(W2.key)).workload == W2.key


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_real_enospc_on_a_full_tmpfs(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small") as small:
        r = make(small)
        r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"])))
        assert r.write_round() is True
        before = (small / "report.json").read_bytes()
        big = [b"/usr/lib/%0200d" % i for i in range(400)]  # ~150 KB of JSON > 64k
        r.apply(fu(2, {"t1": ((2, 2),)}, (W1, big)))
        assert r.write_round() is False
        assert (small / "report.json").read_bytes() == before
        assert sorted(os.listdir(small)) == [".report.json.state.json", "report.json"]
        assert r.checkpoint().persisted == {"t1": ((1, 1),)}


def test_read_only_filesystem_keeps_old_report(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", size="1m") as ro:
        r = make(ro)
        r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/a"])))
        assert r.write_round() is True
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        r.apply(fu(2, {"t1": ((2, 2),)}, (W1, [b"/b"])))
        assert r.write_round() is False
        assert set(load_report(ro / "report.json").files) == {b"/a"}
        subprocess.run(["mount", "-o", "remount,rw", str(ro)], check=True)
        assert r.write_round() is True
        assert set(load_report(ro / "report.json").files) == {b"/a", b"/b"}


def test_restart_loads_reports_and_state(tmp_path: Path) -> None:
    for node in (False, True):
        base = tmp_path / ("node" if node else "side")
        base.mkdir()
        r = make(base, node=node)
        r.apply(fu(1, {"t1": ((1, 3),)}, (W1, [b"/a"]),
                   stats=[TracerStats(Header("t1", 3), 1.0, 4, 1, 0)]))
        assert r.write_round() is True
        again = make(base, node=node)
        assert again.checkpoint().persisted == {"t1": ((1, 3),)}
        assert again.store.tracers.totals()["kernel_dropped"] == 4
        again.apply(fu(1, {"t1": ((4, 4),)}, (W1, [b"/b"])))
        assert again.write_round() is True
        key = "c1" if node else ""
        path = again.files.path_for(key)
        report = load_report(path)
        assert set(report.files) == {b"/a", b"/b"}
        assert report.coverage.kernel_dropped == 4 and report.total_events == 2
        assert again.checkpoint().persisted == {"t1": ((1, 4),)}


def test_an_unreadable_report_stops_the_reporter_and_is_left_untouched(tmp_path: Path) -> None:
    """Its state may say batches are persisted whose files only it holds: starting
    without it would lose them silently."""
    (tmp_path / "report.json").write_text('{"files": [truncated')
    with pytest.raises(UnreadableReport, match="report.json cannot be read"):
        make(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["report.json"]
    assert (tmp_path / "report.json").read_text() == '{"files": [truncated'


def test_unreadable_report_in_node_mode_and_corrupt_state(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "c2.json").write_text(json.dumps({"workload": "c2", "files": ["/ok"]}))
    (reports / ".snoop-reporter-state.json").write_text("{not json")
    r = make(tmp_path, node=True)
    assert set(r.store.reports) == {"c2"}
    names = sorted(os.listdir(reports))
    assert any(n.startswith(".snoop-reporter-state.json.corrupt-") for n in names)
    assert r.checkpoint().persisted == {}
    (reports / "c1.json").write_text("[]")
    with pytest.raises(UnreadableReport, match="c1.json"):
        make(tmp_path, node=True)


def test_non_utf8_path_survives_json_and_restart(tmp_path: Path) -> None:
    odd = b"/data/caf\xe9/\xff\xfe\x80.bin"
    r = make(tmp_path)
    r.apply(fu(1, {}, (W1, [odd, b"/plain"])))
    assert r.write_round() is True
    text = (tmp_path / "report.json").read_text(encoding="utf-8")  # valid UTF-8 on disk
    assert "\\udce9" in text
    again = make(tmp_path)
    assert set(again.store.reports[""].files) == {odd, b"/plain"}
    again.apply(fu(1, {}, (W1, [b"/x"])))
    assert again.write_round() is True
    assert odd in load_report(tmp_path / "report.json").files


# ---------------------------------------------------------------- values that crashed or
# wiped a reporter (issue 9, item 4)


def test_absurd_times_never_crash_a_write_round(tmp_path: Path) -> None:
    r = make(tmp_path)
    for seq, when in enumerate((1e17, 3e11, float("inf")), start=1):
        r.apply(FileUpdates(Header("proc", seq), (WorkloadUpdate(
            W1, (FileSeen(b"/%d" % seq, READ, when, when),), 1),), covers={"t1": ((seq, seq),)}))
        assert r.write_round() is True
    report = load_report(tmp_path / "report.json")  # and what was written loads again
    assert report.recovery is None and set(report.files) == {b"/1", b"/2", b"/3"}


def write_year_11476(report_path: Path, files: int) -> None:
    """A report as an older reporter wrote it after an EventBatch with sent_at=3e11."""
    data = json.loads(report_path.read_text())
    victim = data["files"][7]
    data["file_details"][victim]["first_seen"] = "11476-08-15T05:20:00.000Z"
    data["file_details"][victim]["last_seen"] = "11476-08-15T05:20:00.000Z"
    data["last_updated_at"] = "11476-08-15T05:20:00.000Z"
    assert len(data["files"]) == files
    report_path.write_text(json.dumps(data))


def test_a_report_with_an_unreadable_entry_keeps_its_history(tmp_path: Path, caplog) -> None:
    r = make(tmp_path)
    paths = [b"/usr/lib/%03d.so" % i for i in range(162)]
    r.apply(fu(1, {"t1": ((1, 40),)}, (W1, paths)))
    assert r.write_round() is True
    report_path = tmp_path / "report.json"
    write_year_11476(report_path, 162)
    damaged = report_path.read_bytes()

    again = make(tmp_path)  # the restart that used to move everything aside
    assert set(again.store.reports[""].files) == set(paths)
    assert again.files.corrupt_moved == 0
    assert again.checkpoint().persisted == {"t1": ((1, 40),)}  # and the state agrees
    [kept] = [n for n in os.listdir(tmp_path) if ".unreadable-" in n]
    assert kept == "report.json.unreadable-20231114T221320Z"
    assert (tmp_path / kept).read_bytes() == damaged
    lines = [rec for rec in caplog.records if "cannot be read" in rec.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "ERROR"
    assert lines[0].files == 162 and lines[0].kept_as == str(tmp_path / kept)
    assert again.counts.recovered_reports == 1

    again.apply(fu(2, {"t1": ((41, 41),)}, (W1, [b"/new"])))
    assert again.write_round() is True
    rewritten = load_report(report_path)
    assert rewritten.recovery is None and len(rewritten.files) == 163
    assert (tmp_path / kept).read_bytes() == damaged  # the original survives the rewrite


def test_no_copy_of_an_unreadable_report_means_no_start(tmp_path: Path, monkeypatch) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/usr/lib/%03d.so" % i for i in range(10)])))
    assert r.write_round() is True
    write_year_11476(tmp_path / "report.json", 10)
    damaged = (tmp_path / "report.json").read_bytes()

    def no_space(path, suffix):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("snoop.reporter.core.keep_copy", no_space)
    with pytest.raises(OSError):
        make(tmp_path)
    assert (tmp_path / "report.json").read_bytes() == damaged  # refused to overwrite it


def test_a_processor_seq_jump_counts_no_gaps(tmp_path: Path) -> None:
    r = make(tmp_path)
    r.apply(fu(1, {}, (W1, [b"/a"])))
    r.apply(fu(SEQ_MAX, {}, (W1, [b"/b"])))  # once 9.2e18 "lost" messages
    assert (r.counts.gaps, r.counts.seq_jumps, r.store.message_gaps) == (0, 1, 0)
    r.apply(fu(2, {}, (W1, [b"/c"])))  # as far back: numbering starts again here
    r.apply(fu(5, {}, (W1, [b"/d"])))
    assert (r.counts.gaps, r.counts.seq_jumps, r.store.message_gaps) == (2, 2, 2)
    assert set(r.store.reports[""].files) == {b"/a", b"/b", b"/c", b"/d"}  # content kept


def test_reporter_process_refuses_an_unreadable_report_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("not a report")
    env = {**os.environ, "SNOOP_REPORT_PATH": str(tmp_path / "report.json"),
           "SNOOP_RUN_DIR": str(tmp_path / "run"), "SNOOP_METRICS_ADDR": "127.0.0.1:0"}
    done = subprocess.run([sys.executable, "-m", "snoop.cli", "reporter"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in (done.stderr + done.stdout).splitlines() if "cannot be read" in line]
    assert len(lines) == 1, done.stderr + done.stdout
    assert (tmp_path / "report.json").read_text() == "not a report"


def test_the_reporter_exports_its_own_memory_and_cpu(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from snoop.reporter import metrics as reporter_metrics

    registry = CollectorRegistry()
    reporter_metrics.register(registry, make(tmp_path))
    assert registry.get_sample_value("process_resident_memory_bytes") > 1_000_000
    assert registry.get_sample_value("process_cpu_seconds_total") is not None


CID = "4f3c2a1b9e8d" + "0" * 52
NAMED = Workload(CID, f"/docker/{CID}", CID, "shop/web")


def test_node_mode_names_reports_for_what_their_workloads_are(tmp_path: Path) -> None:
    r = make(tmp_path, node=True)
    root = Workload("/", "/", "")
    r.apply(fu(1, {"t1": ((1, 1),)}, (NAMED, [b"/a"]), (W1, [b"/b"]), (root, [b"/c"])))
    assert r.write_round() is True
    names = sorted(os.listdir(tmp_path / "reports"))
    assert names == [".snoop-reporter-state.json", "c1.json",
                     report_filename("/"), "shop_web-4f3c2a1b9e8d.json"]
    assert report_filename("/").startswith("root-cgroup-")
    report = load_report(tmp_path / "reports" / "shop_web-4f3c2a1b9e8d.json")
    assert (report.workload, report.workload_key, report.container_id) == ("shop/web", CID, CID)
    # After a restart the report is found again by its key, in the same file.
    again = make(tmp_path, node=True)
    again.apply(fu(2, {"t1": ((2, 2),)}, (NAMED, [b"/d"])))
    assert again.write_round() is True
    assert sorted(os.listdir(tmp_path / "reports")) == names
    report = load_report(tmp_path / "reports" / "shop_web-4f3c2a1b9e8d.json")
    assert set(report.files) == {b"/a", b"/d"}


def test_a_name_learnt_later_names_the_report_in_the_file_it_has(tmp_path: Path) -> None:
    r = make(tmp_path, node=True)
    bare = Workload(CID, f"/docker/{CID}", CID)  # the engine did not answer at first
    r.apply(fu(1, {"t1": ((1, 1),)}, (bare, [b"/a"])))
    assert r.write_round() is True
    r.apply(fu(2, {"t1": ((2, 2),)}, (NAMED, [b"/b"])))
    assert r.write_round() is True
    assert sorted(os.listdir(tmp_path / "reports")) == [".snoop-reporter-state.json",
                                                         f"{CID}.json"]
    report = load_report(tmp_path / "reports" / f"{CID}.json")
    assert (report.workload, set(report.files)) == ("shop/web", {b"/a", b"/b"})
    # A name never replaces another one.
    r.apply(fu(3, {"t1": ((3, 3),)}, (Workload(CID, "", CID, "other"), [b"/c"])))
    assert r.write_round() is True
    assert load_report(tmp_path / "reports" / f"{CID}.json").workload == "shop/web"


@pytest.mark.parametrize("config, name", [
    ({"workload_name": "nightly backup"}, "nightly backup"),
    ({"pod_name": "web-7d9f", "namespace": "prod"}, "prod/web-7d9f"),
    ({}, "shop/web"),
])
def test_the_sidecar_report_is_named_as_configured_or_for_its_first_workload(
        tmp_path: Path, config: dict, name: str) -> None:
    r = make(tmp_path, **config)
    r.apply(fu(1, {"t1": ((1, 1),)}, (NAMED, [b"/a"]), (W1, [b"/b"])))
    assert r.write_round() is True
    report = load_report(tmp_path / "report.json")
    assert (report.workload, report.workload_key) == (name, CID)


def test_a_report_from_before_workload_keys_is_found_by_its_workload(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    old = json.loads(_report_text(W1, [b"/a"]))
    del old["workload_key"]
    (reports / "c1.json").write_text(json.dumps(old))
    r = make(tmp_path, node=True)
    r.apply(fu(1, {"t1": ((1, 1),)}, (W1, [b"/b"])))
    assert r.write_round() is True
    assert sorted(os.listdir(reports)) == [".snoop-reporter-state.json", "c1.json"]
    assert set(load_report(reports / "c1.json").files) == {b"/a", b"/b"}


def _report_text(workload: Workload, paths: list[bytes]) -> str:
    from snoop.common.report import Report

    report = Report(workload=workload.key, workload_key=workload.key)
    for path in paths:
        report.add_file(path, READ, 100.0, 100.0)
    return report.dumps()

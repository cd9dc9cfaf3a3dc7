"""The report model: JSON fields, reversible non-UTF-8 paths, atomic writes, merges."""

from __future__ import annotations

import json
import os

import pytest

from snoop.common.protocol import AccessKind, CaptureCounts, kinds_mask
from snoop.common.report import (
    Coverage,
    Report,
    ReportError,
    load_report,
    path_from_json,
    path_to_json,
    write_atomically,
)


def make_report() -> Report:
    report = Report(workload="abc", container_id="abc", image_ref="app:1", labels={"a": "b"},
                    started_at=1000.0, last_updated_at=2000.0, total_events=9)
    report.add_file(b"/usr/bin/python3", kinds_mask(AccessKind.EXEC, AccessKind.STAT),
                    1000.5, 1500.0)
    report.add_file(b"/data/caf\xe9\xff", kinds_mask(AccessKind.READ), 1001.0, 1001.0)
    report.coverage.kernel_dropped = 2
    return report


def test_plan_fields_are_present_and_files_sorted():
    data = json.loads(make_report().dumps())
    for name in ("container_id", "image_ref", "image_digest", "pod_name", "namespace",
                 "labels", "started_at", "last_updated_at", "files", "total_events",
                 "dropped_events"):
        assert name in data
    assert data["files"] == sorted(data["files"])
    assert data["dropped_events"] == 2
    assert data["file_details"]["/usr/bin/python3"]["kinds"] == ["exec", "stat"]


def test_round_trip_keeps_everything_including_non_utf8_paths(tmp_path):
    report = make_report()
    path = tmp_path / "r.json"
    write_atomically(path, report.dumps())
    assert path.read_bytes().isascii()
    again = load_report(path)
    assert again.files.keys() == report.files.keys()
    assert again.files[b"/data/caf\xe9\xff"].kinds == kinds_mask(AccessKind.READ)
    assert again.to_json() == report.to_json()


@pytest.mark.parametrize("raw", [b"/plain", b"/caf\xc3\xa9", b"/\x80\xff", b"/a\\udcff"])
def test_path_escaping_is_reversible(raw):
    assert path_from_json(path_to_json(raw)) == raw


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    write_atomically(target, "old\n")

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError):
        write_atomically(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize("content, message", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a Snoop report"),
    (b'{"files": [1]}', "expected non-empty path strings"),
    (b'{"files": [], "schema": 99}', "report schema 99"),
])
def test_files_that_are_not_reports_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ReportError, match=message):
        load_report(path)


def test_merge_is_a_union_with_widened_times():
    a, b = make_report(), Report(workload="abc", started_at=900.0, last_updated_at=2500.0)
    b.add_file(b"/usr/bin/python3", kinds_mask(AccessKind.READ), 950.0, 2400.0)
    b.add_file(b"/etc/hosts", kinds_mask(AccessKind.READ), 960.0, 960.0)
    a.merge(b)
    assert set(a.files) == {b"/usr/bin/python3", b"/data/caf\xe9\xff", b"/etc/hosts"}
    detail = a.files[b"/usr/bin/python3"]
    assert detail.kinds == kinds_mask(AccessKind.EXEC, AccessKind.STAT, AccessKind.READ)
    assert (detail.first_seen, detail.last_seen) == (950.0, 2400.0)
    assert (a.started_at, a.last_updated_at) == (900.0, 2500.0)


def test_a_report_from_before_the_capture_counters_loads_with_them_at_zero(tmp_path):
    old = json.loads(make_report().dumps())
    for name in ("paths_too_long", "uncertain_paths", "io_uring_ops"):
        del old["coverage"][name]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    coverage = load_report(path).coverage
    assert (coverage.paths_too_long, coverage.uncertain_paths, coverage.io_uring_ops) == (0, 0, 0)
    assert coverage.kernel_dropped == 2


def test_capture_counts_land_in_the_coverage_fields_of_the_same_name():
    coverage = Coverage(io_uring_ops=1)
    coverage.add_capture(CaptureCounts(paths_too_long=2, uncertain_paths=3, io_uring_ops=4))
    assert (coverage.paths_too_long, coverage.uncertain_paths, coverage.io_uring_ops) == (2, 3, 5)
    again = Report.from_json(json.loads(Report(coverage=coverage).dumps())).coverage
    assert again == coverage


def test_io_uring_use_is_explained_in_one_line():
    assert Coverage(kernel_dropped=1).warnings() == []
    [line] = Coverage(io_uring_ops=3).warnings()
    assert "io_uring" in line and "incomplete" in line and "\n" not in line

"""The report model: JSON fields, reversible non-UTF-8 paths, atomic writes, merges."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from snoop.common.outcomes import FOUND, only_absent
from snoop.common.protocol import COUNT_MAX, AccessKind, CaptureCounts, kinds_mask
from snoop.common.report import (
    REPORT_TIME_MAX,
    Coverage,
    Report,
    ReportError,
    iso_time,
    keep_copy,
    load_report,
    parse_iso_time,
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


def outcome_report() -> Report:
    report = make_report()
    report.add_file(b"/data/caf\xe9\xff", 0, 1001.0, 1001.0, FOUND, ["python3", "caf\udce9"])
    report.add_file(b"/root/.cargo/bin/basename", kinds_mask(AccessKind.EXEC), 1002.0, 1002.0,
                    1 << errno.ENOENT, ["sh"])
    report.add_file(b"/etc/shadow", kinds_mask(AccessKind.READ), 1003.0, 1003.0,
                    1 << errno.EACCES | 1 << 62 | 1 << 61, ["id"])
    return report


def test_each_file_says_what_its_accesses_found_and_who_made_them():
    details = json.loads(outcome_report().dumps())["file_details"]
    assert details["/data/caf\udce9\udcff"] | {"first_seen": 0} == {
        "kinds": ["read"], "found": True, "errors": [], "comms": ["python3", "caf\udce9"],
        "first_seen": 0, "last_seen": "1970-01-01T00:16:41.000Z"}
    assert (details["/root/.cargo/bin/basename"]["found"],
            details["/root/.cargo/bin/basename"]["errors"]) == (False, ["ENOENT"])
    assert details["/etc/shadow"]["errors"] == ["EACCES", "ENODATA", "errno>=62"]
    assert details["/usr/bin/python3"]["found"] is None  # nothing known: not "missing"


def test_outcomes_and_process_names_merge_as_sets():
    report = outcome_report()
    report.add_file(b"/root/.cargo/bin/basename", 0, 1005.0, 1005.0,
                    FOUND | 1 << errno.ENOTDIR, ["bash", "sh"])
    detail = report.files[b"/root/.cargo/bin/basename"]
    assert (detail.found, detail.comms) == (True, ("sh", "bash"))
    for name in "abcdefghijk":
        report.add_file(b"/etc/shadow", 0, 1005.0, 1005.0, 0, [name])
    assert len(report.files[b"/etc/shadow"].comms) == 8  # MAX_COMMS


def test_a_report_from_before_outcomes_loads_with_none_known(tmp_path):
    old = json.loads(outcome_report().dumps())
    for detail in old["file_details"].values():
        del detail["found"], detail["errors"], detail["comms"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    again = load_report(path)
    assert {d.found for d in again.files.values()} == {None}
    assert again.recovery is None
    # Merged with a newer report that saw the path missing, it is still "not known":
    # the old one may have found it, so slim keeps it.
    newer = outcome_report()
    again.merge(newer)
    basename = again.files[b"/root/.cargo/bin/basename"]
    assert basename.found is None and not only_absent(basename.outcomes)


def test_unreadable_outcomes_are_noted_and_the_path_kept(tmp_path):
    data = json.loads(outcome_report().dumps())
    data["file_details"]["/etc/shadow"].update(found="yes", errors=["EBOGUS"], comms=[3])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    again = load_report(path)
    assert b"/etc/shadow" in again.files
    assert again.recovery is not None and again.recovery.problems == 3


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


# ---------------------------------------------------------------- times and counters that
# passed validation once, or come from files written before it (issue 9, item 4)


@pytest.mark.parametrize("timestamp, text", [
    (1e17, "9999-12-31T23:59:59.999Z"),  # overflowed gmtime and crashed the reporter
    (3e11, "9999-12-31T23:59:59.999Z"),  # was written as the year 11476, unreadable
    (float("inf"), "9999-12-31T23:59:59.999Z"),
    (-5.0, "1970-01-01T00:00:00.000Z"),
    (float("nan"), "1970-01-01T00:00:00.000Z"),
    (1_800_000_000.25, "2027-01-15T08:00:00.250Z"),
])
def test_iso_time_never_raises_and_writes_only_what_loads_again(timestamp, text):
    assert iso_time(timestamp) == text
    assert 0.0 <= parse_iso_time(text) <= REPORT_TIME_MAX


def test_a_report_with_absurd_times_renders_and_loads_again(tmp_path):
    report = make_report()
    report.add_file(b"/from/the/future", kinds_mask(AccessKind.READ), 3e11, 1e17)
    report.last_updated_at = 1e17
    path = tmp_path / "r.json"
    write_atomically(path, report.dumps())
    again = load_report(path)
    assert again.recovery is None
    assert again.files[b"/from/the/future"].last_seen == REPORT_TIME_MAX


def year_11476_report(tmp_path, files: int = 162):
    """What the reporter wrote after one EventBatch with sent_at=3e11."""
    report = Report(workload="abc", started_at=1_800_000_000.0, last_updated_at=1_800_000_100.0)
    for i in range(files):
        report.add_file(b"/usr/lib/%d.so" % i, kinds_mask(AccessKind.READ), 1_800_000_001.0,
                        1_800_000_002.0)
    data = json.loads(report.dumps())
    data["file_details"]["/usr/lib/7.so"]["last_seen"] = "11476-08-15T05:20:00.000Z"
    data["last_updated_at"] = "11476-08-15T05:20:00.000Z"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    return path


def test_an_entry_it_cannot_parse_costs_no_other_entry(tmp_path):
    again = load_report(year_11476_report(tmp_path))
    assert len(again.files) == 162  # the unreadable time falls back; the path stays
    assert again.files[b"/usr/lib/7.so"].last_seen >= again.files[b"/usr/lib/7.so"].first_seen
    assert again.recovery is not None
    assert again.recovery.problems == 2 and again.recovery.lost_paths == 0
    assert "unreadable time" in again.recovery.first
    assert again.recovery.path == str(tmp_path / "r.json")


def test_every_readable_path_is_kept_from_a_damaged_report(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({
        "files": ["/a", 1, "", "/b", "/c\ud800", "/d"],
        "file_details": {"/a": {"kinds": ["read", "teleport"], "first_seen": 7},
                         "/b": "not an object"},
        "coverage": {"kernel_dropped": "many", "io_uring_ops": 3},
        "labels": ["not", "an", "object"],
        "total_events": -4,
    }))
    again = load_report(path)
    assert set(again.files) == {b"/a", b"/b", b"/d"}
    assert again.files[b"/a"].kinds == kinds_mask(AccessKind.READ)
    assert (again.coverage.kernel_dropped, again.coverage.io_uring_ops) == (0, 3)
    assert again.labels == {} and again.total_events == 0
    assert again.recovery.lost_paths == 3  # 1, "" and a lone surrogate are no paths
    assert again.recovery.problems == 9


def test_counters_saturate_at_int64():
    a = Report(total_events=COUNT_MAX - 1, coverage=Coverage(message_gaps=COUNT_MAX))
    a.merge(Report(total_events=5, coverage=Coverage(message_gaps=1, kernel_dropped=2)))
    assert (a.total_events, a.coverage.message_gaps, a.coverage.kernel_dropped) == \
        (COUNT_MAX, COUNT_MAX, 2)
    a.coverage.add_capture(CaptureCounts(io_uring_ops=COUNT_MAX))
    a.coverage.add_capture(CaptureCounts(io_uring_ops=COUNT_MAX))
    assert a.coverage.io_uring_ops == COUNT_MAX


def test_keep_copy_keeps_the_old_content_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "r.json"
    write_atomically(path, "old\n")
    kept = keep_copy(path, ".unreadable-1")
    again = keep_copy(path, ".unreadable-1")
    write_atomically(path, "new\n")
    assert (kept, again) == (f"{path}.unreadable-1", f"{path}.unreadable-1-1")
    assert Path(kept).read_text() == Path(again).read_text() == "old\n"


def test_a_report_damaged_on_disk_is_read_line_by_line(tmp_path):
    report = make_report()
    for i in range(100):
        report.add_file(b"/usr/lib/%03d.so" % i, kinds_mask(AccessKind.READ), 1000.0, 1000.0)
    lines = report.dumps().splitlines()
    middle = next(i for i, line in enumerate(lines) if '"/usr/lib/050.so"' in line)
    lines[middle] = '  "/usr/lib/05\x00garbage'  # one entry of `files` destroyed
    cut = next(i for i, line in enumerate(lines) if '"/usr/lib/090.so": {' in line)
    path = tmp_path / "r.json"
    path.write_text("\n".join(lines[:cut]) + '\n  "/usr/lib/090.so": {"kin')  # torn write
    again = load_report(path)
    assert len(again.files) == 101  # every path but the destroyed one
    assert b"/usr/lib/050.so" not in again.files
    assert again.files[b"/usr/bin/python3"].kinds == kinds_mask(AccessKind.EXEC, AccessKind.STAT)
    assert again.files[b"/usr/lib/095.so"].first_seen == 1000.0  # its detail was lost
    assert (again.workload, again.image_ref) == ("abc", "app:1")
    assert again.coverage.kernel_dropped == 0  # written after the tear (the state file has it)
    assert again.recovery.first.startswith("not JSON")
    assert again.recovery.problems == 3  # not JSON, and two broken lines


def test_each_file_line_is_what_json_writes_for_its_detail():
    # dumps() builds the lines itself (a shared head per kinds, outcomes and names).
    report = outcome_report()
    text = report.dumps()
    assert json.loads(text)["file_details"] == report.to_json()["file_details"]
    encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ": ")).encode
    for path, detail in report.files.items():
        assert detail.line == f"{encode(path_to_json(path))}: {encode(detail.to_json())}"

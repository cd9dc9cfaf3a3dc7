"""`snoop report merge | diff | summary` on crafted reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snoop.cli.main import main
from snoop.common.report import Coverage, load_report
from snoop.slim.report_cli import directory_of, group_by_directory

from .helpers import KIND_BITS, make_report

BAD_UTF8 = "/data/caf\udce9"  # the byte 0xE9 alone: not UTF-8


@pytest.fixture
def reports(tmp_path: Path) -> tuple[Path, Path]:
    a = make_report({"/usr/bin/python3": ["exec"], "/etc/app.conf": ["read", "stat"],
                     "/usr/lib/x/libc.so.6": ["read"], BAD_UTF8: ["read"]},
                    workload="shop", container_id="abc", labels={"team": "a"},
                    started_at=500.0, last_updated_at=3000.0, total_events=40)
    a.coverage = Coverage(kernel_dropped=2, message_gaps=1)
    b = make_report({"/etc/app.conf": ["write"], "/usr/bin/tar": ["exec"]},
                    workload="shop", image_ref="shop:1", labels={"team": "b", "tier": "web"},
                    started_at=100.0, last_updated_at=9000.0, total_events=10)
    b.coverage = Coverage(kernel_dropped=3)
    (tmp_path / "a.json").write_text(a.dumps())
    (tmp_path / "b.json").write_text(b.dumps())
    return tmp_path / "a.json", tmp_path / "b.json"


def test_merge_keeps_metadata_counters_and_detail(reports: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    a, b = reports
    out = tmp_path / "m.json"
    assert main(["report", "merge", str(a), str(b), "-o", str(out)]) == 0
    merged = load_report(out)
    assert sorted(merged.files) == sorted([b"/usr/bin/python3", b"/etc/app.conf",
                                           b"/usr/lib/x/libc.so.6", b"/data/caf\xe9",
                                           b"/usr/bin/tar"])
    conf = merged.files[b"/etc/app.conf"]
    assert conf.kinds == KIND_BITS["read"] | KIND_BITS["stat"] | KIND_BITS["write"]
    assert merged.total_events == 50 and merged.coverage.kernel_dropped == 5
    assert merged.coverage.message_gaps == 1 and merged.dropped_events == 5
    assert (merged.container_id, merged.image_ref) == ("abc", "shop:1")
    assert merged.labels == {"team": "a", "tier": "web"}
    assert (merged.started_at, merged.last_updated_at) == (100.0, 9000.0)
    assert json.loads(out.read_text())["files"] == sorted(json.loads(out.read_text())["files"])


def test_diff_groups_by_directory(reports: tuple[Path, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, b = reports
    assert main(["report", "diff", str(a), str(b)]) == 1
    text = capsys.readouterr().out
    only_a, only_b = text.split(f"only in {b}")
    assert f"only in {a}: 3 files" in only_a
    assert "  /usr/lib/x/\n    libc.so.6\n" in only_a and "python3" in only_a
    assert "caf\\xe9" in only_a and "app.conf" not in text
    assert ": 1 files\n  /usr/bin/\n    tar\n" in only_b
    assert main(["report", "diff", str(a), str(b), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["only_in_a"]["/usr/bin"] == ["python3"]
    assert data["only_in_a"]["/data"] == ["caf\udce9"]
    assert data["only_in_b"] == {"/usr/bin": ["tar"]}
    assert main(["report", "diff", str(a), str(a)]) == 0


def test_summary_table_and_json(reports: tuple[Path, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = reports
    assert main(["report", "summary", str(a), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["files"] == 4 and data["total_events"] == 40 and data["dropped_events"] == 2
    assert data["by_directory"] == {"/data": 1, "/etc": 1, "/usr/bin": 1, "/usr/lib": 1}
    assert data["by_kind"] == {"read": 3, "exec": 1, "stat": 1}
    assert data["coverage"]["kernel_dropped"] == 2 and data["complete"] is False
    assert main(["report", "summary", str(a), "--depth", "1"]) == 0
    table = capsys.readouterr().out
    assert "2  /usr\n" in table and "3  read" in table and "workload: shop" in table
    assert "2  kernel_dropped" in table and "complete: NO" in table


@pytest.mark.parametrize("action", [["summary"], ["diff", "OTHER"], ["merge", "-o", "M"]])
def test_not_a_report_is_one_line_and_exit_2(tmp_path: Path, action: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"files": "not a list"}')
    good = tmp_path / "good.json"
    good.write_text(make_report({"/a": ["read"]}).dumps())
    argv = ["report", action[0], str(bad)] + [
        str(good) if arg == "OTHER" else str(tmp_path / arg) if arg == "M" else arg
        for arg in action[1:]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a Snoop report" in err and str(bad) in err
    assert not (tmp_path / "M").exists()


def test_directory_helpers() -> None:
    assert directory_of(b"/usr/lib/x/libc.so", 2) == b"/usr/lib"
    assert directory_of(b"/etc/passwd", 2) == b"/etc"
    assert directory_of(b"/vmlinuz", 2) == b"/"
    assert group_by_directory([b"/b/2", b"/a/1", b"/top", b"/b/1"]) == {
        b"/": [b"top"], b"/a": [b"1"], b"/b": [b"1", b"2"]}


def test_summary_counts_capture_coverage_and_explains_io_uring(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = make_report({"/a": ["read"]})
    report.coverage = Coverage(io_uring_ops=3)
    (tmp_path / "r.json").write_text(report.dumps())
    assert main(["report", "summary", str(tmp_path / "r.json"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["coverage"]["io_uring_ops"] == 3 and data["complete"] is False
    assert len(data["warnings"]) == 1 and "io_uring" in data["warnings"][0]
    assert main(["report", "summary", str(tmp_path / "r.json")]) == 0
    table = capsys.readouterr().out
    assert "3  io_uring_ops" in table and "complete: NO" in table
    [warning] = [line for line in table.splitlines() if "warning:" in line]
    assert "io_uring" in warning and "may be incomplete" in warning
    for name in ("paths_too_long", "uncertain_paths"):
        report.coverage = Coverage(**{name: 1})
        (tmp_path / "r.json").write_text(report.dumps())
        assert main(["report", "summary", str(tmp_path / "r.json"), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["coverage"][name] == 1 and data["complete"] is False


def test_summary_shows_found_files_apart_from_failed_probes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = make_report({
        "/usr/bin/basename": ["exec", "found"],
        "/root/.cargo/bin/basename": ["exec", "ENOENT"],
        "/usr/local/bin/basename": ["exec", "ENOENT"],
        "/etc/app.conf/x": ["stat", "ENOTDIR"],
        "/etc/shadow": ["read", "EACCES"],
        "/etc/old": ["read"],  # no outcome known
    })
    path = tmp_path / "r.json"
    path.write_text(report.dumps())
    assert main(["report", "summary", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcomes"] == {
        "found": 1, "never_found": 3, "failed": 1, "outcome_unknown": 1,
        "not_found_by_error": {"ENOENT": 2, "EACCES": 1, "ENOTDIR": 1}}
    assert main(["report", "summary", str(path)]) == 0
    assert ("1 found, 3 only probed and never found, 1 there but never accessed, 1 of no "
            "known outcome (errors: ENOENT 2, EACCES 1, ENOTDIR 1)") in capsys.readouterr().out

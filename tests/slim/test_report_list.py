"""`snoop report list DIR`: one line per workload's report, unreadable ones named."""

from __future__ import annotations

import json
import subprocess
import sys

from snoop.common.report import Report

SNOOP = [sys.executable, "-m", "snoop.cli"]


def write(directory, name: str, workload: str, files: int, dropped: int = 0) -> None:
    report = Report(workload=workload, last_updated_at=1_800_000_000.0)
    for i in range(files):
        report.add_file(f"/usr/lib/f{i}".encode(), 2, 1_800_000_000.0, 1_800_000_000.0)
    report.coverage.kernel_dropped = dropped
    (directory / name).write_text(report.dumps())


def test_list_shows_one_line_per_report(tmp_path):
    write(tmp_path, "web.json", "compose/web", 3)
    write(tmp_path, "db.json", "compose/db", 1200, dropped=5)
    result = subprocess.run([*SNOOP, "report", "list", str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["workload", "files", "dropped", "complete", "last", "updated",
                                "report"]
    assert lines[1].split()[:4] == ["compose/db", "1,200", "5", "NO"]
    assert lines[2].split()[:4] == ["compose/web", "3", "0", "yes"]
    as_json = json.loads(subprocess.run([*SNOOP, "report", "list", str(tmp_path), "--json"],
                                        capture_output=True, text=True, timeout=60).stdout)
    assert [(r["workload"], r["files"]) for r in as_json["reports"]] == [
        ("compose/db", 1200), ("compose/web", 3)]


def test_an_unreadable_report_is_named_and_the_rest_still_listed(tmp_path):
    write(tmp_path, "web.json", "compose/web", 3)
    (tmp_path / "broken.json").write_text("[1, 2")
    result = subprocess.run([*SNOOP, "report", "list", str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "compose/web" in result.stdout
    assert result.stderr.startswith("snoop report list: cannot read broken.json: ")
    assert "Traceback" not in result.stderr

"""What the tracer saw but could not list reaches the report's coverage, end to end, and
`snoop report summary` says the list may be incomplete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]

SNOOP = [sys.executable, "-m", "snoop.cli"]
WORKLOADS = Path(__file__).parent.parent / "tracer" / "oracle_workloads"


def test_io_uring_requests_are_counted_in_the_report(tmp_path):
    binary = tmp_path / "uring"
    subprocess.run(["gcc", "-O1", f"-I{WORKLOADS}", "-o", str(binary),
                    str(WORKLOADS / "limits" / "uring.c"), "-luring"], check=True)
    (tmp_path / "ur").mkdir()
    for name in ("f0", "f1", "f2", "plain"):
        (tmp_path / "ur" / name).write_text("x")
    out = tmp_path / "r.json"
    result = subprocess.run([*SNOOP, "record", "-o", str(out), "--", str(binary), "3"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_bytes())
    assert report["coverage"]["io_uring_ops"] == 6  # an open and a statx per file
    assert str(tmp_path / "ur" / "plain") in report["files"]
    assert not any("/ur/f" in f for f in report["files"])
    summary = subprocess.run([*SNOOP, "report", "summary", str(out)], capture_output=True,
                             text=True, timeout=60)
    assert "complete: NO" in summary.stdout
    assert "io_uring" in summary.stdout

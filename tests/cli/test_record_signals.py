"""`snoop record` stopped from outside: SIGTERM goes to CMD and the report is still
written; a SIGKILLed record leaves none of its processes behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snoop.tracer import cgroups

pytestmark = pytest.mark.bpf
SNOOP = [sys.executable, "-m", "snoop.cli"]


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_for_cgroup(pid: int, timeout: float = 120.0) -> str:
    """The cgroup record made for CMD, once CMD is in it."""
    path = cgroups.abspath(cgroups.discover_cgroup2_root(), f"/snoop-record-{pid}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(path, "cgroup.procs").read_text().split():
                return path
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("CMD never started in its cgroup")


def test_sigterm_is_passed_to_the_command_and_the_report_still_written(tmp_path):
    out = tmp_path / "r.json"
    record = subprocess.Popen([*SNOOP, "record", "-o", str(out), "--", "sh", "-c",
                               "cat /etc/hostname >/dev/null; exec sleep 60"],
                              stderr=subprocess.PIPE, text=True)
    try:
        cgroup = wait_for_cgroup(record.pid)
        time.sleep(1.0)  # cat has run
        record.send_signal(signal.SIGTERM)
        _, err = record.communicate(timeout=120)
    finally:
        if record.poll() is None:
            record.kill()
            record.wait()
    assert record.returncode == 128 + signal.SIGTERM, err  # sleep died of the SIGTERM
    assert "Traceback" not in err
    assert "/etc/hostname" in json.loads(out.read_text())["files"]
    assert not os.path.exists(cgroup)


def test_a_killed_record_leaves_no_process_behind(tmp_path):
    record = subprocess.Popen([*SNOOP, "record", "-o", str(tmp_path / "r.json"), "--",
                               "sleep", "60"], stderr=subprocess.DEVNULL)
    daemons: list[int] = []
    cgroup = ""
    run_dir = b""
    try:
        cgroup = wait_for_cgroup(record.pid)
        daemons = [pid for pid in children(record.pid)
                   if b"snoop.cli" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(daemons) == 3, daemons
        environ = Path(f"/proc/{daemons[0]}/environ").read_bytes().split(b"\0")
        run_dir = next(e for e in environ if e.startswith(b"SNOOP_RUN_DIR=")).split(b"=", 1)[1]
        record.kill()
        record.wait()
        deadline = time.monotonic() + 30
        while [p for p in daemons if os.path.exists(f"/proc/{p}")] and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in daemons if os.path.exists(f"/proc/{p}")], daemons
    finally:
        for pid in daemons:  # only if the test failed: they are ours
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)
        if run_dir.startswith(b"/tmp/snoop-record-"):
            shutil.rmtree(run_dir, ignore_errors=True)  # a killed record cannot remove it
        if cgroup and os.path.isdir(cgroup):
            for pid in Path(cgroup, "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)  # CMD (sleep), started by this test's record
            cgroups.remove_cgroup(cgroup, timeout=10.0)
        # The cgroup record made for itself (it shares the root cgroup otherwise): a
        # killed record cannot remove it; its tracer's detacher leaves it within seconds.
        own = cgroups.abspath(cgroups.discover_cgroup2_root(), f"/snoop-{record.pid}")
        if os.path.isdir(own):
            cgroups.remove_cgroup(own, timeout=30.0)

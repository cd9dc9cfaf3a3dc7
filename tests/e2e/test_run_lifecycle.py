"""`snoop run` as a whole: an error no restart can fix stops it with one line and a
non-zero exit, and no Snoop process outlives it, however it ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_pipeline import SNOOP, SnoopRun
from tests.support.net import free_port_block

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_taken_metrics_port_stops_the_run_with_one_line_and_exit_1(tmp_path, cgroup):
    port = free_port_block()
    # The reporter's port (base + 2) is taken: no restart can fix that.
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port + 2))
        taken.listen()
        env = {**os.environ, "SNOOP_TARGET_MODE": "cgroup", "SNOOP_TARGET_CGROUP": cgroup.rel,
               "SNOOP_REPORT_PATH": str(tmp_path / "r.json"),
               "SNOOP_RUN_DIR": str(tmp_path / "run"),
               "SNOOP_METRICS_ADDR": f"127.0.0.1:{port}"}
        started = time.monotonic()
        result = subprocess.run([*SNOOP, "run"], env=env, capture_output=True, text=True,
                                timeout=120)
    assert result.returncode == 1
    assert time.monotonic() - started < 60
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("snoop run: stopped: the reporter cannot run"), result.stderr
    assert f"127.0.0.1:{port + 2}" in result.stdout + result.stderr  # the reporter's line
    assert "Traceback" not in result.stdout + result.stderr
    assert "CRIT" not in result.stdout + result.stderr


def test_no_snoop_process_outlives_a_killed_run(tmp_path, cgroup):
    run = SnoopRun(tmp_path, cgroup.rel)
    try:
        pids = [run.pid_of(name) for name in ("tracer", "processor", "reporter")]
        children = Path(f"/proc/{run.proc.pid}/task/{run.proc.pid}/children").read_text().split()
        supervisord = int(children[0])
        assert "CRIT" not in run.log()
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait()
        assert wait_gone([supervisord, *pids]) == []
    finally:
        run.close()

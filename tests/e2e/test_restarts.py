"""SIGKILLs under load, with supervisord restarting what was killed: every file the
workload touched reaches the report (the kernel side keeps capturing while the tracer
is down; unconfirmed batches and unread records survive in the spool and the ring)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from snoop.common.report import parse_iso_time
from tests.e2e.test_pipeline import READY_TIMEOUT, SnoopRun
from tests.support.net import is_ready

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]

PORT_OFFSET = {"tracer": 0, "processor": 1, "reporter": 2}

# A new file every 10 ms until the stop file appears; prints how many it made.
WORKLOAD = """
import os, sys, time
work, stop = sys.argv[1], sys.argv[2]
i = 0
while not os.path.exists(stop) and i < 20000:
    with open(os.path.join(work, f"f{i}"), "w"):
        pass
    i += 1
    time.sleep(0.01)
print(i, flush=True)
"""


def wait_ready(run: SnoopRun, program: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    time.sleep(0.3)
    while not is_ready(run.port + PORT_OFFSET[program]):
        assert time.monotonic() < deadline, f"{program} was not restarted: {run.log()}"
        time.sleep(0.1)


def run_under_kills(run: SnoopRun, cgroup, tmp_path, kill) -> None:
    work = tmp_path / "work"
    work.mkdir()
    stop = tmp_path / "stop"
    workload = cgroup.popen([sys.executable, "-c", WORKLOAD, str(work), str(stop)],
                            stdout=subprocess.PIPE, text=True)
    try:
        kill()
    finally:
        stop.write_text("")
        out, _ = workload.communicate(timeout=60)
    made = int(out.strip())
    assert made > 100
    expected = {os.fsencode(work / f"f{i}") for i in range(made)}
    missing = run.wait_for_files(expected, timeout=60)
    assert not missing, f"{len(missing)} of {len(expected)} files missing: {sorted(missing)[:5]}"
    assert run.stop() == 0, run.log()
    assert not expected - run.files()


def test_tracer_sigkilled_five_times_loses_no_file(snoop_run, cgroup, tmp_path):
    chance = random.Random(9)

    def kill() -> None:
        for _ in range(5):
            time.sleep(chance.uniform(0.5, 2.0))
            os.kill(snoop_run.pid_of("tracer"), signal.SIGKILL)
            wait_ready(snoop_run, "tracer")
        time.sleep(1.0)

    run_under_kills(snoop_run, cgroup, tmp_path, kill)


def test_all_three_sigkilled_at_once_lose_no_file(snoop_run, cgroup, tmp_path):
    def kill() -> None:
        for _ in range(2):
            time.sleep(1.5)
            pids = [snoop_run.pid_of(p) for p in PORT_OFFSET]
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            for program in PORT_OFFSET:
                wait_ready(snoop_run, program)
        time.sleep(1.0)

    run_under_kills(snoop_run, cgroup, tmp_path, kill)


def test_time_with_no_tracer_attached_is_an_unobserved_interval(start_snoop_run):
    """Stopped cleanly, the kernel side goes; started again, the tracer says from when to
    when nothing was seen, and the report is no longer complete."""
    first = start_snoop_run()
    assert first.stop() == 0, first.log()
    stopped_at = time.time()
    time.sleep(1.0)  # what happens now is seen by nobody
    second = start_snoop_run()
    deadline = time.monotonic() + 30
    intervals: list = []
    while time.monotonic() < deadline and not intervals:
        time.sleep(0.5)
        with contextlib.suppress(FileNotFoundError, ValueError):
            intervals = second.report_data()["coverage"]["unobserved"]
    assert len(intervals) == 1, intervals
    start, end = (parse_iso_time(t) for t in intervals[0])
    assert start <= stopped_at + 0.5 and end >= stopped_at + 1.0, (start, end, stopped_at)
    summary = subprocess.run([sys.executable, "-m", "snoop.cli", "report", "summary",
                              str(second.report)], capture_output=True, text=True)
    assert "complete: NO" in summary.stdout and "no tracer was attached" in summary.stdout
    assert second.stop() == 0, second.log()

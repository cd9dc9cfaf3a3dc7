"""The whole sidecar for real: `snoop run` (supervisord, BPF, three processes) and
`snoop record`, against workloads in test cgroups, with strace as the oracle."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from snoop.tracer import cgroups
from snoop.tracer.kernel import pin_dir_of, remove_pins
from tests.support.net import free_port_block, is_ready
from tests.support.strace_oracle import strace_paths

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]

SNOOP = [sys.executable, "-m", "snoop.cli"]
READY_TIMEOUT = 120.0
EXCLUDED = (b"/proc", b"/sys", b"/dev")


class SnoopRun:
    """`snoop run` as a subprocess, tracing one test cgroup, reporting to one file."""

    def __init__(self, tmp: Path, cgroup_rel: str, extra_env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.report = tmp / "report.json"
        self.run_dir = tmp / "run"
        self.port = free_port_block()
        self.log_path = tmp / "snoop-run.log"
        env = {
            **os.environ,
            "SNOOP_TARGET_MODE": "cgroup",
            "SNOOP_TARGET_CGROUP": cgroup_rel,
            "SNOOP_REPORT_PATH": str(self.report),
            "SNOOP_RUN_DIR": str(self.run_dir),
            "SNOOP_REPORT_INTERVAL": "1s",
            "SNOOP_METRICS_ADDR": f"127.0.0.1:{self.port}",
            **(extra_env or {}),
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (lives as long as the run)
        self.proc = subprocess.Popen([*SNOOP, "run"], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(is_ready(self.port + i) for i in range(3)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"snoop run did not become ready: {self.log()}")
            time.sleep(0.25)

    def log(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")[-5000:]

    def pid_of(self, program: str) -> int:
        out = subprocess.run(
            [shutil.which("supervisorctl", path=os.path.dirname(sys.executable)) or
             "supervisorctl", "-c", str(self.run_dir / "supervisord.conf"), "pid", program],
            capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    def files(self) -> set[bytes]:
        if not self.report.exists():
            return set()
        data = json.loads(self.report.read_bytes())
        return {p.encode("utf-8", "surrogateescape") for p in data["files"]}

    def report_data(self) -> dict:
        return json.loads(self.report.read_bytes())

    def peak_rss_kb(self, program: str) -> int:
        with open(f"/proc/{self.pid_of(program)}/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))

    def wait_for_files(self, wanted: set[bytes], timeout: float = 30.0) -> set[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = wanted - self.files()
            if not missing:
                return set()
            time.sleep(0.25)
        return wanted - self.files()

    def stop(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def close(self) -> None:
        """Whatever happened, leave no Snoop process of this run behind, nor the cgroup
        `snoop run` made (a killed run cannot remove it itself)."""
        made = os.path.join(cgroups.discover_cgroup2_root(), f"snoop-{self.proc.pid}")
        if self.proc.poll() is None:
            children = []
            for program in ("tracer", "processor", "reporter"):
                with contextlib.suppress(subprocess.CalledProcessError, ValueError):
                    children.append(self.pid_of(program))
            self.proc.kill()
            self.proc.wait()
            for pid in children:
                if pid > 0:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        remove_pins(pin_dir_of(str(self.run_dir)))  # a killed tracer leaves its kernel side
        if os.path.isdir(made):
            with contextlib.suppress(cgroups.CgroupError):
                cgroups.remove_cgroup(made, timeout=20.0)
        self._log.close()


def excluded(path: bytes) -> bool:
    return any(path == p or path.startswith(p + b"/") for p in EXCLUDED)


# ---------------------------------------------------------------- tests


def test_report_holds_exactly_the_workload_paths_minus_exclusions(snoop_run, cgroup):
    cat = os.path.realpath(shutil.which("cat"))
    argv = [cat, "/etc/hostname", "/etc/passwd", "/etc/os-release", "/proc/self/status",
            "/dev/null"]
    oracle = {p for p in strace_paths(argv, os.getcwd()) if not excluded(p)}
    assert b"/etc/passwd" in oracle and cat.encode() in oracle
    result = cgroup.run(argv, stdout=subprocess.DEVNULL)
    assert result.returncode == 0
    assert not snoop_run.wait_for_files(oracle), snoop_run.log()
    time.sleep(1.5)  # one more report interval: nothing extra may appear
    # The launcher's chdir to the cwd, inside the cgroup, is the workload's first access.
    assert snoop_run.files() == oracle | {os.getcwd().encode()}


def test_sigterm_writes_the_final_report_and_exits_0(snoop_run, cgroup, tmp_path):
    marker = tmp_path / f"last-{uuid.uuid4().hex}"
    marker.write_text("x")
    cgroup.run(["cat", str(marker)], stdout=subprocess.DEVNULL)
    assert snoop_run.stop() == 0, snoop_run.log()
    assert str(marker).encode() in snoop_run.files()

    own = os.path.join(cgroups.discover_cgroup2_root(), f"snoop-{snoop_run.proc.pid}")
    assert not os.path.exists(own), "snoop run left its cgroup behind"
    data = json.loads(snoop_run.report.read_bytes())
    assert data["files"] == sorted(data["files"])
    for field in ("container_id", "image_ref", "image_digest", "pod_name", "namespace",
                  "labels", "started_at", "last_updated_at", "total_events",
                  "dropped_events"):
        assert field in data


def test_sigkill_of_each_process_loses_nothing_downstream(snoop_run, cgroup, tmp_path):
    """Kill processor, reporter and tracer in turn while a workload touches new files.

    After each kill and restart, every file touched so far must reach the report: files
    touched while the processor or reporter was dead come from the tracer's re-sends.
    While the tracer itself is dead nothing can be seen; that window (and the last
    batch delay before its kill) is not counted as expected.
    """
    work = tmp_path / "work"
    work.mkdir()
    stop = threading.Event()
    touched: list[tuple[float, bytes]] = []
    torn_reads: list[str] = []

    def workload() -> None:
        for i in range(100_000):
            if stop.is_set():
                return
            path = work / f"f{i}"
            path.write_text("x")
            moment = time.monotonic()
            cgroup.run(["cat", str(path)], stdout=subprocess.DEVNULL)
            touched.append((moment, str(path).encode()))
            time.sleep(0.1)

    def watch_report() -> None:
        while not stop.is_set():
            try:
                json.loads(snoop_run.report.read_bytes())
            except FileNotFoundError:
                pass
            except ValueError as exc:
                torn_reads.append(str(exc))
            time.sleep(0.01)

    tracer_down: list[tuple[float, float]] = []

    def expected_until(moment: float) -> set[bytes]:
        return {path for when, path in list(touched) if when <= moment
                and not any(down - 0.2 <= when <= up for down, up in tracer_down)}

    threads = [threading.Thread(target=workload), threading.Thread(target=watch_report)]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    try:
        for program in ("processor", "reporter", "tracer"):
            time.sleep(2.0)
            pid = snoop_run.pid_of(program)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            port = snoop_run.port + {"tracer": 0, "processor": 1, "reporter": 2}[program]
            deadline = time.monotonic() + READY_TIMEOUT
            time.sleep(0.5)
            while not is_ready(port):
                assert time.monotonic() < deadline, f"{program} not restarted"
                time.sleep(0.1)
            if program == "tracer":
                tracer_down.append((killed_at, time.monotonic()))
            time.sleep(1.0)
            wanted = expected_until(time.monotonic())
            missing = snoop_run.wait_for_files(wanted, timeout=45)
            when = {path: moment for moment, path in touched}
            assert not missing, (
                f"after killing the {program} at {killed_at - start:.2f}s: {len(missing)} of "
                f"{len(wanted)} files missing, touched at "
                f"{sorted(round(when[p] - start, 2) for p in missing)}s")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert snoop_run.stop() == 0, snoop_run.log()
    expected = expected_until(time.monotonic())
    assert len(expected) > 30
    missing = expected - snoop_run.files()
    assert not missing, f"{len(missing)} of {len(expected)} files missing after the stop"
    assert not torn_reads


def test_record_reports_a_short_shell_and_passes_its_exit_code(tmp_path):
    out = tmp_path / "r.json"
    result = subprocess.run(
        [*SNOOP, "record", "-o", str(out), "--", "sh", "-c",
         "cd /etc && cat passwd hostname >/dev/null; exit 3"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-3000:]
    files = set(json.loads(out.read_bytes())["files"])
    assert {"/etc/passwd", "/etc/hostname"} <= files
    cat = shutil.which("cat")
    assert cat in files or os.path.realpath(cat) in files
    sh = shutil.which("sh")
    assert sh in files or os.path.realpath(sh) in files
    assert not any(f.startswith(("/proc/", "/sys/", "/dev/")) for f in files)

"""End to end: fake tracer -> `snoop processor` -> `snoop reporter` -> report on disk, with
checkpoints back to the tracer. Real processes, real ipc:// sockets in a temp dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from snoop_fake_tracer import WORKLOAD, FakeTracer

from snoop.common.protocol import AccessKind, Workload
from snoop.common.report import load_report
from snoop.reporter.writer import report_filename

pytestmark = pytest.mark.e2e


class Proc:
    """One `python -m snoop.cli ...` child; its JSON log lines go to a file."""

    def __init__(self, name: str, args: list[str], tmp_path: Path) -> None:
        self.name = name
        self.log_path = tmp_path / f"{name}.{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        env = {k: v for k, v in os.environ.items() if not k.startswith("SNOOP_")}
        self.popen = subprocess.Popen([sys.executable, "-m", "snoop.cli", name, *args],
                                      stdout=self.log, stderr=self.log, env=env)
        self.ready = self.wait_log(f"{name} ready")

    def lines(self) -> list[dict]:
        out = []
        for raw in self.log_path.read_bytes().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"msg": raw.decode(errors="replace")})
        return out

    def wait_log(self, msg: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if line.get("msg") == msg:
                    return line
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {msg!r} log line; "
                                     f"log:\n{self.log_path.read_text(errors='replace')}")
            time.sleep(0.02)

    def http(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.ready['metrics_port']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def stop(self, timeout: float = 6.0) -> tuple[int, float]:
        started = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            rc = self.popen.wait(timeout)
        finally:
            self.kill()
        return rc, time.monotonic() - started

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)
        self.log.close()


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


@pytest.fixture
def tracers():
    made: list[FakeTracer] = []
    yield made
    for tracer in made:
        tracer.close()


def common_args(tmp_path: Path) -> list[str]:
    return ["--run-dir", str(tmp_path / "run"), "--metrics-addr", "127.0.0.1:0",
            "--report-interval", "200ms"]


def start(procs: list[Proc], name: str, tmp_path: Path, *extra: str) -> Proc:
    proc = Proc(name, [*common_args(tmp_path), *extra], tmp_path)
    procs.append(proc)
    return proc


def fake_tracer(tracers: list[FakeTracer], tmp_path: Path, sender: str = "fake/1") -> FakeTracer:
    run = tmp_path / "run"
    tracer = FakeTracer(f"ipc://{run}/events.sock", f"ipc://{run}/checkpoint.sock", sender)
    tracers.append(tracer)
    return tracer


SENT = [b"/etc/passwd", b"/etc//hosts", b"/usr/lib/../bin/python3", b"/dev/null",
        b"/devices/not-excluded", b"/proc/self/maps", b"/sys/fs/cgroup/x", b"/data/caf\xe9",
        b"/etc/passwd"]
# The unresolved relative path is counted, not listed.
EXPECTED = {b"/etc/passwd", b"/etc/hosts", b"/usr/bin/python3", b"/devices/not-excluded",
            b"/data/caf\xe9"}


def test_batches_reach_the_report_and_are_checkpointed(tmp_path: Path, procs, tracers) -> None:
    report_path = tmp_path / "out" / "report.json"
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path),
                     "--image-ref", "app:1")
    processor = start(procs, "processor", tmp_path)
    tracer = fake_tracer(tracers, tmp_path)
    seqs = [tracer.send_batch(SENT[:5]), tracer.send_batch(SENT[5:]),
            tracer.send_batch([b"./app/./config.yaml"], resolved=False),
            tracer.send_stats(kernel_dropped=3),
            tracer.send_batch([b"/usr/bin/python3"], kind=AccessKind.EXEC)]
    tracer.wait_persisted(seqs)
    assert tracer.unconfirmed == {}
    report = load_report(report_path)
    assert set(report.files) == EXPECTED
    assert report.files[b"/usr/bin/python3"].kinds == (1 << AccessKind.READ | 1 << AccessKind.EXEC)
    assert report.image_ref == "app:1" and report.container_id == WORKLOAD.container_id
    assert report.coverage.kernel_dropped == 3
    assert report.coverage.unresolved_paths == 1
    assert report.total_events == 11
    status, metrics = reporter.http("/metrics")
    assert status == 200 and "snoop_report_writes_total" in metrics
    assert reporter.http("/readyz")[0] == 200 and processor.http("/readyz")[0] == 200
    for proc in (processor, reporter):
        rc, took = proc.stop()
        assert rc == 0 and took < 5.5, (proc.name, rc, took)
        proc.wait_log(f"{proc.name} stopped", timeout=0)


def metric(proc: Proc, name: str) -> float:
    for line in proc.http("/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{proc.name}: no metric {name}")


def test_reporter_killed_mid_stream_loses_nothing(tmp_path: Path, procs, tracers) -> None:
    report_path = tmp_path / "report.json"
    # A slow first reporter: after a write, it holds new updates in memory for seconds.
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path),
                     "--report-interval", "3s")
    # The processor refreshes last_seen once per report interval: keep that out of the way,
    # so only the re-send bypass can bring lost paths back.
    start(procs, "processor", tmp_path, "--report-interval", "10m")
    tracer = fake_tracer(tracers, tmp_path)
    expected: set[bytes] = set()

    def send(first: int, last: int) -> list[int]:
        seqs = []
        for n in range(first, last):
            paths = [b"/lib/%d/%d.so" % (n, i) for i in range(50)]
            expected.update(paths)
            seqs.append(tracer.send_batch(paths))
        return seqs

    early = send(0, 10)
    tracer.wait_persisted(early)
    updates_before = metric(reporter, "snoop_updates_received_total")
    late = send(10, 30)
    deadline = time.monotonic() + 2
    while metric(reporter, "snoop_updates_received_total") == updates_before:
        assert time.monotonic() < deadline, "reporter never received the late batches"
        time.sleep(0.02)
    time.sleep(0.2)
    assert metric(reporter, "snoop_reports_pending") == 1  # in memory, not yet on disk
    reporter.popen.send_signal(signal.SIGKILL)
    reporter.popen.wait(5)
    late += send(30, 40)  # reporter down: the processor holds these
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path))
    tracer.poll(1.0)  # the new reporter persists what the processor held, not the lost part
    on_disk = set(load_report(report_path).files)
    lost = expected - on_disk
    assert lost, "nothing was lost by the kill: this test would prove nothing"
    assert all(s in tracer.unconfirmed for s in late[:20])
    # The real tracer re-sends unconfirmed batches after a timeout or a reporter restart.
    tracer.wait_persisted(early + late, timeout=30, resend_every=1.0)
    assert len(tracer.reporters) == 2
    assert set(load_report(report_path).files) == expected
    rc, _ = reporter.stop()
    assert rc == 0
    assert set(load_report(report_path).files) == expected


def test_restarted_reporter_keeps_weeks_of_observation(tmp_path: Path, procs, tracers) -> None:
    report_path = tmp_path / "report.json"
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path))
    start(procs, "processor", tmp_path)
    tracer = fake_tracer(tracers, tmp_path)
    tracer.wait_persisted([tracer.send_batch([b"/old/file"])])
    assert reporter.stop()[0] == 0
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path))
    tracer.wait_persisted([tracer.send_batch([b"/new/file"])])
    assert set(load_report(report_path).files) == {b"/old/file", b"/new/file"}


def test_node_mode_writes_one_report_per_workload(tmp_path: Path, procs, tracers) -> None:
    report_dir = tmp_path / "reports"
    start(procs, "reporter", tmp_path, "--report-dir", str(report_dir))
    start(procs, "processor", tmp_path, "--exclude-paths", "/proc,/tmp/*.log")
    tracer = fake_tracer(tracers, tmp_path)
    service = Workload("/system.slice/cron.service", "/system.slice/cron.service", "")
    seqs = [tracer.send_batch([b"/a", b"/dev/null"]),
            tracer.send_batch([b"/b", b"/tmp/x.log", b"/tmp/x.txt"], workload=service)]
    tracer.wait_persisted(seqs)
    by_name = {name: load_report(report_dir / name) for name in os.listdir(report_dir)
               if not name.startswith(".")}
    assert {name: set(r.files) for name, r in by_name.items()} == {
        report_filename(WORKLOAD.key): {b"/a", b"/dev/null"},
        report_filename(service.key): {b"/b", b"/tmp/x.txt"},
    }
    assert by_name[report_filename(service.key)].workload == service.key


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_write_errors_are_survived_and_retried(tmp_path: Path, procs, tracers) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        report_path = mount / "report.json"
        reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path))
        start(procs, "processor", tmp_path)
        tracer = fake_tracer(tracers, tmp_path)
        tracer.wait_persisted([tracer.send_batch([b"/first"])])
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        seq = tracer.send_batch([b"/second"])
        deadline = time.monotonic() + 10
        while reporter.http("/readyz")[0] != 503:
            assert time.monotonic() < deadline, "reporter never reported the failed write"
            time.sleep(0.05)
        tracer.poll(0.5)
        assert seq in tracer.unconfirmed  # not on disk, so not checkpointed
        assert set(load_report(report_path).files) == {b"/first"}
        metrics = reporter.http("/metrics")[1]
        errors = [line for line in metrics.splitlines()
                  if line.startswith("snoop_report_write_errors_total ")]
        assert errors and float(errors[0].split()[1]) >= 1
        assert reporter.popen.poll() is None
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        tracer.wait_persisted([seq])
        assert set(load_report(report_path).files) == {b"/first", b"/second"}
        assert reporter.http("/readyz")[0] == 200
        assert reporter.stop()[0] == 0
    finally:
        for proc in procs:
            proc.kill()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_written_reports_are_pushed_to_the_api(tmp_path: Path, procs, tracers) -> None:
    received: list[tuple[dict, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((json.loads(body), self.headers.get("Authorization", "")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/reports"
        reporter = start(procs, "reporter", tmp_path, "--report-path",
                         str(tmp_path / "report.json"), "--api-endpoint", url,
                         "--api-token", "tok")
        start(procs, "processor", tmp_path)
        tracer = fake_tracer(tracers, tmp_path)
        tracer.wait_persisted([tracer.send_batch([b"/pushed"])])
        deadline = time.monotonic() + 10
        while not any("/pushed" in body["files"] for body, _ in received):
            assert time.monotonic() < deadline, f"no push received: {received}"
            time.sleep(0.05)
        assert all(auth == "Bearer tok" for _, auth in received)
        assert metric(reporter, "snoop_report_pushes_total") >= 1
        assert reporter.stop()[0] == 0
    finally:
        server.shutdown()
        server.server_close()


def test_config_errors_exit_2(tmp_path: Path) -> None:
    for name in ("processor", "reporter"):
        result = subprocess.run(
            [sys.executable, "-m", "snoop.cli", name, "--report-interval", "soon",
             "--metrics-addr", "nope"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2
        assert all(line.startswith(f"snoop {name}: config error: ") for line in lines)

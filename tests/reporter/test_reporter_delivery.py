"""End to end: fake tracer -> `snoop processor` -> `snoop reporter` -> report on disk (and
the API), with checkpoints back to the tracer. Real processes, real ipc:// sockets in a
temp dir, a local HTTP endpoint on loopback.

A checkpoint follows the reporter's journal, not its report writes: a batch confirmed
is in the journal, and in the report after the next write round (`wait_report`)."""

from __future__ import annotations

import errno
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
from snoop.common.report import Report, ReportError, load_report
from snoop.reporter.delivery import version_key
from snoop.reporter.writer import report_filename
from tests.support.net import free_port

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


def wait_report(path: Path, check, timeout: float = 10.0) -> Report:
    """The report at `path` once `check(report)` holds (write rounds run every 200 ms)."""
    deadline = time.monotonic() + timeout
    report = None
    while True:
        try:
            report = load_report(path)
        except ReportError:
            report = None
        if report is not None and check(report):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: never as expected; last seen: "
                                 f"{report and sorted(report.files)}")
        time.sleep(0.05)


SENT = [b"/etc/passwd", b"/etc//hosts", b"/usr/lib/../bin/python3", b"/dev/null",
        b"/devices/not-excluded", b"/proc/self/maps", b"/sys/fs/cgroup/x", b"/data/caf\xe9",
        b"/etc/passwd"]
# The unresolved relative path is counted, not listed.
EXPECTED = {b"/etc/passwd", b"/etc/hosts", b"/usr/bin/python3", b"/devices/not-excluded",
            b"/data/caf\xe9"}


def test_batches_reach_the_report_and_are_checkpointed(tmp_path: Path, procs, tracers) -> None:
    report_path = tmp_path / "out" / "report.json"
    report_path.parent.mkdir()  # a report file goes into a directory that exists
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
    report = wait_report(report_path, lambda r: set(r.files) == EXPECTED
                         and b"/usr/bin/python3" in r.files
                         and r.files[b"/usr/bin/python3"].kinds & (1 << AccessKind.EXEC))
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


def test_reporter_killed_right_after_confirming_loses_nothing(tmp_path: Path, procs,
                                                              tracers) -> None:
    """SIGKILL (a whole-container OOM kill) right after the checkpoint: the tracer has
    forgotten those batches, and the restarted reporter still has every file, once."""
    report_path = tmp_path / "report.json"
    # No write round before the kill: what the tracer forgets is only in the journal.
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path),
                     "--report-interval", "10m")
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

    confirmed = send(0, 30)
    tracer.wait_persisted(confirmed)  # no re-sends: confirmed once, forgotten
    assert tracer.unconfirmed == {}
    assert not report_path.exists()
    assert metric(reporter, "snoop_reports_pending") == 1
    reporter.popen.send_signal(signal.SIGKILL)
    reporter.popen.wait(5)
    held = send(30, 40)  # reporter down: the processor holds these
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path))
    tracer.wait_persisted(held)
    assert metric(reporter, "snoop_journal_replayed_total") >= 1
    report = wait_report(report_path, lambda r: set(r.files) == expected)
    assert report.total_events == 40 * 50  # replayed once, not twice
    assert len(tracer.reporters) == 2
    # Killed again, this time after a write round: nothing is replayed twice.
    reporter.popen.send_signal(signal.SIGKILL)
    reporter.popen.wait(5)
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path))
    tracer.wait_persisted([tracer.send_batch([b"/after/second/kill"])])
    expected.add(b"/after/second/kill")
    report = wait_report(report_path, lambda r: set(r.files) == expected)
    assert report.total_events == 40 * 50 + 1
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
    wait_report(report_path, lambda r: set(r.files) == {b"/old/file", b"/new/file"})


def test_node_mode_writes_one_report_per_workload(tmp_path: Path, procs, tracers) -> None:
    report_dir = tmp_path / "reports"
    start(procs, "reporter", tmp_path, "--report-dir", str(report_dir))
    start(procs, "processor", tmp_path, "--exclude-paths", "/proc,/tmp/*.log")
    tracer = fake_tracer(tracers, tmp_path)
    service = Workload("/system.slice/cron.service", "/system.slice/cron.service", "")
    seqs = [tracer.send_batch([b"/a", b"/dev/null"]),
            tracer.send_batch([b"/b", b"/tmp/x.log", b"/tmp/x.txt"], workload=service)]
    tracer.wait_persisted(seqs)
    wait_report(report_dir / report_filename(service.key), lambda r: b"/b" in r.files)
    wait_report(report_dir / report_filename(WORKLOAD.key), lambda r: b"/a" in r.files)
    by_name = {name: load_report(report_dir / name) for name in os.listdir(report_dir)
               if not name.startswith(".")}
    assert {name: set(r.files) for name, r in by_name.items()} == {
        report_filename(WORKLOAD.key): {b"/a", b"/dev/null"},
        report_filename(service.key): {b"/b", b"/tmp/x.txt"},
    }
    assert by_name[report_filename(service.key)].workload == service.key


def fill(directory: Path) -> Path:
    """Fill the file system holding `directory` to the last page."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_write_errors_are_survived_and_retried(tmp_path: Path, procs, tracers) -> None:
    # A full disk, not a read-only remount: the journal keeps its file open for writing,
    # and a file system with files open for writing cannot be remounted read-only.
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        report_path = mount / "report.json"
        reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path))
        start(procs, "processor", tmp_path)
        tracer = fake_tracer(tracers, tmp_path)
        tracer.wait_persisted([tracer.send_batch([b"/first"])])
        wait_report(report_path, lambda r: b"/first" in r.files)
        deadline = time.monotonic() + 5
        while os.path.getsize(mount / ".report.json.journal"):  # emptied after the round
            assert time.monotonic() < deadline, "journal never emptied"
            time.sleep(0.05)
        filler = fill(mount)
        seq = tracer.send_batch([b"/second"])
        deadline = time.monotonic() + 10
        while reporter.http("/readyz")[0] != 503:
            assert time.monotonic() < deadline, "reporter never reported the failed write"
            time.sleep(0.05)
        tracer.poll(0.5)
        assert seq in tracer.unconfirmed  # neither in the journal nor the report
        assert set(load_report(report_path).files) == {b"/first"}
        assert metric(reporter, "snoop_report_write_errors_total") >= 1
        assert metric(reporter, "snoop_journal_errors_total") >= 1
        assert metric(reporter, "snoop_journal_suspended") == 1
        assert reporter.popen.poll() is None
        filler.unlink()
        tracer.wait_persisted([seq])
        wait_report(report_path, lambda r: set(r.files) == {b"/first", b"/second"})
        assert reporter.http("/readyz")[0] == 200
        assert metric(reporter, "snoop_journal_suspended") == 0
        assert reporter.stop()[0] == 0
    finally:
        for proc in procs:
            proc.kill()
        subprocess.run(["umount", "-l", str(mount)], check=False)


class Endpoint:
    """A report API on loopback that records every POST (body and headers) and answers 204."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[tuple[dict, dict]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((json.loads(body), dict(self.headers)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/reports"

    def keys(self) -> list[str]:
        return [headers["Idempotency-Key"] for _, headers in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints():
    made: list[Endpoint] = []

    def make(port: int = 0) -> Endpoint:
        made.append(Endpoint(port))
        return made[-1]

    yield make
    for endpoint in made:
        endpoint.close()


def wait_until(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_written_reports_are_pushed_to_the_api(tmp_path: Path, procs, tracers,
                                               endpoints) -> None:
    api = endpoints()
    reporter = start(procs, "reporter", tmp_path, "--report-path",
                     str(tmp_path / "report.json"), "--api-endpoint", api.url,
                     "--api-token", "tok")
    start(procs, "processor", tmp_path)
    tracer = fake_tracer(tracers, tmp_path)
    tracer.wait_persisted([tracer.send_batch([b"/pushed"])])
    wait_until(lambda: any("/pushed" in body["files"] for body, _ in api.posts),
               f"no push received: {api.posts}")
    assert all(headers["Authorization"] == "Bearer tok" for _, headers in api.posts)
    assert len(set(api.keys())) == len(api.posts)
    assert metric(reporter, "snoop_report_pushes_total") >= 1
    assert reporter.stop()[0] == 0


def delivered_versions(report_dir: Path) -> set[str]:
    """The idempotency key of every report file's current version."""
    keys = set()
    for name in os.listdir(report_dir):
        if name.endswith(".json") and not name.startswith("."):
            text = (report_dir / name).read_bytes()
            keys.add(version_key(json.loads(text)["workload"], text))
    return keys


def test_reports_arrive_after_an_outage_that_outlasts_the_workload(tmp_path: Path, procs,
                                                                   tracers,
                                                                   endpoints) -> None:
    """The endpoint is down (connection refused) for 3 s after the last batch: with
    nothing new arriving, every report still arrives, each version once."""
    port = free_port()
    report_dir = tmp_path / "reports"
    reporter = start(procs, "reporter", tmp_path, "--report-dir", str(report_dir),
                     "--api-endpoint", f"http://127.0.0.1:{port}/reports")
    start(procs, "processor", tmp_path)
    tracer = fake_tracer(tracers, tmp_path)
    service = Workload("/system.slice/cron.service", "/system.slice/cron.service", "")
    tracer.wait_persisted([tracer.send_batch([b"/a"]),
                           tracer.send_batch([b"/b"], workload=service)])
    wait_report(report_dir / report_filename(service.key), lambda r: b"/b" in r.files)
    wait_until(lambda: metric(reporter, "snoop_report_push_errors_total") >= 1,
               "no failed push")
    time.sleep(3.0)  # the workload is quiet; the endpoint is still down
    assert metric(reporter, "snoop_report_pushes_total") == 0
    api = endpoints(port)
    assert len(delivered_versions(report_dir)) == 2
    wait_until(lambda: delivered_versions(report_dir) <= set(api.keys()),
               f"not delivered: {api.posts}", timeout=20)
    time.sleep(0.5)
    assert len(api.keys()) == len(set(api.keys()))  # each version exactly once
    assert {body["workload"] for body, _ in api.posts} == {WORKLOAD.key, service.key}
    assert metric(reporter, "snoop_report_pushes_waiting") == 0
    assert reporter.stop()[0] == 0


def test_a_restarted_reporter_pushes_what_it_loaded_once(tmp_path: Path, procs, tracers,
                                                         endpoints) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/reports"
    report_path = tmp_path / "report.json"
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path),
                     "--api-endpoint", url)
    start(procs, "processor", tmp_path)
    tracer = fake_tracer(tracers, tmp_path)
    tracer.wait_persisted([tracer.send_batch([b"/loaded"])])
    wait_report(report_path, lambda r: b"/loaded" in r.files)
    assert reporter.stop()[0] == 0  # the endpoint was down all along: never delivered
    api = endpoints(port)
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path),
                     "--api-endpoint", url)
    wait_until(lambda: api.posts, "the loaded report was never pushed")
    [(body, headers)] = api.posts
    assert body["files"] == ["/loaded"]
    text = report_path.read_bytes()
    assert headers["Idempotency-Key"] == version_key(json.loads(text)["workload"], text)
    assert reporter.stop()[0] == 0
    reporter = start(procs, "reporter", tmp_path, "--report-path", str(report_path),
                     "--api-endpoint", url)
    time.sleep(1.5)
    assert len(api.posts) == 1  # known delivered: not pushed again
    assert reporter.stop()[0] == 0


def test_config_errors_exit_2(tmp_path: Path) -> None:
    for name in ("processor", "reporter"):
        result = subprocess.run(
            [sys.executable, "-m", "snoop.cli", name, "--report-interval", "soon",
             "--metrics-addr", "nope"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2
        assert all(line.startswith(f"snoop {name}: config error: ") for line in lines)

"""Delivery to a real `snoop receive`, through real processes: a fake tracer (no BPF)
feeds a processor and a reporter, which pushes deltas over HTTP.

- The endpoint is down for 30 s while workloads keep touching new files, then comes
  back: every delta is delivered, and none counts twice. With SQLite and PostgreSQL.
- The reporter is SIGKILLed while its spool holds deltas the endpoint never got; after
  a restart they are delivered.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from snoop.common.protocol import Workload
from snoop.common.report import Report
from tests.reporter.snoop_fake_tracer import FakeTracer
from tests.support.net import free_port, is_ready, wait_healthy
from tests.support.postgres import postgres_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e

SNOOP = [sys.executable, "-m", "snoop.cli"]
TOKEN = "t0ken-for-the-delivery-test"
IMAGE = "shop:1.0"
WORKLOADS = [Workload(f"{n:02d}" * 32, f"/docker/{n:02d}" * 32, f"{n:02d}" * 32)
             for n in range(1, 4)]
OUTAGE = 30.0


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


class Processes:
    """Processes this test started, each ended by its PID, even on failure."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "ab")  # noqa: SIM115 (closed with the child)
        child = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.running[name] = child
        return child

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        child = self.running.pop(name)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
        try:
            return child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait(10)

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for name in list(self.running):
            self.stop(name, signal.SIGKILL)


class Stack:
    """Processor and reporter for the fake tracer, and a receiver on `api_port`."""

    def __init__(self, tmp_path: Path, db: str) -> None:
        self.procs = Processes(tmp_path)
        self.db = db
        self.api_port = free_port()
        self.processor_port = free_port()
        self.reporter_port = free_port()
        self.run_dir = tmp_path / "run"
        self.run_dir.mkdir()
        self.tokens = tmp_path / "tokens"
        self.tokens.write_text(f"# the test's reporter\n{TOKEN}\n")
        self.tokens.chmod(0o600)
        self.env = {
            "SNOOP_RUN_DIR": str(self.run_dir), "SNOOP_LOG_FORMAT": "json",
            "SNOOP_REPORT_DIR": str(tmp_path / "reports"), "SNOOP_REPORT_INTERVAL": "1s",
            "SNOOP_API_ENDPOINT": f"http://127.0.0.1:{self.api_port}",
            "SNOOP_API_TOKEN": TOKEN, "SNOOP_IMAGE_REF": IMAGE, "SNOOP_NODE_NAME": "node-a"}
        (tmp_path / "reports").mkdir()
        self.tracer: FakeTracer | None = None

    def start_processor(self) -> None:
        self.procs.start("processor", [*SNOOP, "processor"], {
            **self.env, "SNOOP_METRICS_ADDR": f"127.0.0.1:{self.processor_port}"})
        wait_for(lambda: is_ready(self.processor_port), 30, "processor ready")

    def start_reporter(self) -> None:
        self.procs.start("reporter", [*SNOOP, "reporter"], {
            **self.env, "SNOOP_METRICS_ADDR": f"127.0.0.1:{self.reporter_port}"})
        wait_for(lambda: is_ready(self.reporter_port), 30, "reporter ready")

    def start_receiver(self) -> None:
        child = self.procs.start("receiver", [*SNOOP, "receive", "--listen",
                                              f"127.0.0.1:{self.api_port}", "--db", self.db,
                                              "--tokens-file", str(self.tokens)], {})
        wait_healthy(f"http://127.0.0.1:{self.api_port}", child, 60)

    def connect_tracer(self) -> FakeTracer:
        self.tracer = FakeTracer(f"ipc://{self.run_dir}/events.sock",
                                 f"ipc://{self.run_dir}/checkpoint.sock")
        return self.tracer

    def union(self) -> dict:
        reply = httpx.get(f"http://127.0.0.1:{self.api_port}/v1/report",
                          params={"image": IMAGE}, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"})
        if reply.status_code == 404:
            return {"files": [], "file_details": {}, "workload_count": 0}
        assert reply.status_code == 200, reply.text
        return reply.json()

    def spooled(self) -> float:
        return metric(self.reporter_port, "snoop_report_spool_deltas")

    def close(self) -> None:
        if self.tracer is not None:
            self.tracer.close()
        self.procs.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(request, tmp_path: Path):
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path / 'receiver.db'}"
    else:
        db = request.getfixturevalue("postgres_server").new_database("delivery")
    stack = Stack(tmp_path, db)
    try:
        yield stack
    finally:
        stack.close()


def touch(tracer: FakeTracer, round_: int, per_workload: int = 20) -> set[str]:
    """New files in each workload; returns their paths."""
    sent = set()
    for workload in WORKLOADS:
        paths = [f"/srv/{workload.key[:6]}/r{round_}/f{n}".encode()
                 for n in range(per_workload)]
        tracer.send_batch(paths, workload=workload)
        sent |= {p.decode() for p in paths}
    return sent


def assert_delivered_once(stack: Stack, sent: set[str]) -> None:
    union = stack.union()
    assert set(union["files"]) == sent
    assert union["workload_count"] == len(WORKLOADS)  # one per workload, not per delta
    assert {d["workloads"] for d in union["file_details"].values()} == {1}
    report = Report.from_json(union)
    assert report.coverage.counters() == dict.fromkeys(report.coverage.counters(), 0)


def test_an_outage_of_30_s_delivers_every_delta_once(stack: Stack) -> None:
    stack.start_processor()
    stack.start_reporter()
    tracer = stack.connect_tracer()
    sent: set[str] = set()
    started = time.monotonic()
    round_ = 0
    while time.monotonic() - started < OUTAGE:  # the endpoint is down all this time
        round_ += 1
        sent |= touch(tracer, round_)
        tracer.poll(0.1)
        time.sleep(2.0)
    wait_for(lambda: stack.spooled() >= 5, 20, "deltas in the spool")
    assert metric(stack.reporter_port, "snoop_report_push_errors_total") >= 3
    assert metric(stack.reporter_port, "snoop_report_pushes_total") == 0
    stack.start_receiver()
    # The pusher backs off by at most 60 s; then the spool drains.
    wait_for(lambda: stack.spooled() == 0, 120, "the spool to drain")
    assert_delivered_once(stack, sent)
    # A repeat of everything the reporter ever pushed changes nothing: stop it and start
    # it again with its spool state gone, so every report goes again as a snapshot.
    assert stack.procs.stop("reporter") == 0
    spool = Path(stack.env["SNOOP_REPORT_DIR"]) / ".snoop-reporter-spool" / "state.json"
    spool.unlink()
    stack.start_reporter()
    wait_for(lambda: metric(stack.reporter_port, "snoop_report_pushes_total") >= 3, 60,
             "the snapshots")
    assert_delivered_once(stack, sent)


def documented_reporter_metrics() -> dict[str, str]:
    """The reporter's rows of docs/metrics.md, those only with an API endpoint included."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    rows = re.findall(r"^\| `([a-z_]+)(?:\{[a-z_]+\})?` \| (counter|gauge) \| ([^|]+) \|",
                      doc.read_text(), re.M)
    return {name: kind for name, kind, where in rows
            if "reporter" in [w.strip().split(" ")[0] for w in where.split(",")]}


def test_a_pushing_reporter_exposes_the_documented_metrics(stack: Stack) -> None:
    stack.start_reporter()
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.reporter_port}/metrics",
                                timeout=5) as reply:
        families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", reply.read().decode(), re.M))
    assert families == documented_reporter_metrics()


def test_a_sigkilled_reporter_delivers_its_spool_after_the_restart(stack: Stack) -> None:
    stack.start_processor()
    stack.start_reporter()
    tracer = stack.connect_tracer()
    sent: set[str] = set()
    seqs = []
    for round_ in range(1, 4):
        sent |= touch(tracer, round_)
        seqs.append(tracer.seq)
    tracer.wait_persisted(seqs, timeout=30)
    wait_for(lambda: stack.spooled() >= len(WORKLOADS), 20, "deltas in the spool")
    assert stack.procs.stop("reporter", signal.SIGKILL) == -signal.SIGKILL
    stack.start_receiver()
    stack.start_reporter()
    wait_for(lambda: stack.spooled() == 0 and
             metric(stack.reporter_port, "snoop_report_pushes_total") >= 1, 60,
             "the spool to drain after the restart")
    assert_delivered_once(stack, sent)

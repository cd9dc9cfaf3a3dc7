"""Fan-in over a network: three tracers, each on its own "host" (a network namespace
joined by a veth pair), send to one processor and one reporter over tcp:// with CURVE.
The reporter keeps one correct report per workload; a client whose key is not allowed
gets nothing recorded, and its refusal is counted."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from snoop.common.protocol import AccessKind, Event, EventBatch, Header, Workload
from snoop.common.transport import Security, Sender, new_context
from tests.support.net import free_port
from tests.support.netns import NetNamespace
from tests.tracer import harness

pytestmark = [pytest.mark.e2e, pytest.mark.bpf, pytest.mark.timeout(600)]
SNOOP = [sys.executable, "-m", "snoop.cli"]
READY_TIMEOUT = 180.0
TRACERS = 3


def ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def metric(address: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


class Processes:
    """Snoop processes this test started, stopped (then killed) at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, tuple[subprocess.Popen, str]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str], metrics: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(argv, env={**os.environ, **env, "SNOOP_METRICS_ADDR": metrics},
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.running[name] = (proc, metrics)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for name, (proc, metrics) in self.running.items():
            while not ready(metrics):
                assert proc.poll() is None, f"{name} exited:\n{self.log(name)}"
                assert time.monotonic() < deadline, f"{name} not ready:\n{self.log(name)}"
                time.sleep(0.25)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self, name: str, timeout: float = 60.0) -> int | None:
        proc = self.running[name][0]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)


def keys(directory: Path, *names: str) -> None:
    for name in names:
        subprocess.run([*SNOOP, "keys", str(directory), name], check=True,
                       capture_output=True, timeout=60)


def test_three_tracers_on_three_hosts_fan_into_one_reporter(tmp_path):
    key_dir, allowed = tmp_path / "keys", tmp_path / "keys" / "allowed"
    keys(key_dir, "server", *(f"node{i}" for i in range(TRACERS)), "intruder")
    allowed.mkdir(mode=0o700)
    for i in range(TRACERS):
        (allowed / f"node{i}.key").write_bytes((key_dir / f"node{i}.key").read_bytes())
    reports = tmp_path / "reports"
    events_port, checkpoint_port = free_port(), free_port()
    server = {"SNOOP_CURVE_SECRET_KEY": str(key_dir / "server.key_secret"),
              "SNOOP_CURVE_ALLOWED_KEYS": str(allowed)}
    namespaces: list[NetNamespace] = []
    workloads: list[harness.TestCgroup] = []
    procs = Processes(tmp_path)
    try:
        for i in range(TRACERS):
            namespaces.append(NetNamespace.create(77, i + 1))
            workloads.append(harness.make_test_cgroup("snoop-fan"))
        procs.start("reporter", [*SNOOP, "reporter"], {
            **server, "SNOOP_UPDATES_ENDPOINT": f"ipc://{tmp_path}/updates.sock",
            "SNOOP_CHECKPOINT_ENDPOINT": f"tcp://0.0.0.0:{checkpoint_port}",
            "SNOOP_REPORT_DIR": str(reports), "SNOOP_REPORT_INTERVAL": "0.5s"},
            f"127.0.0.1:{free_port()}")
        processor_metrics = f"127.0.0.1:{free_port()}"
        procs.start("processor", [*SNOOP, "processor"], {
            **server, "SNOOP_EVENTS_ENDPOINT": f"tcp://0.0.0.0:{events_port}",
            "SNOOP_UPDATES_ENDPOINT": f"ipc://{tmp_path}/updates.sock",
            "SNOOP_REPORT_INTERVAL": "0.5s"}, processor_metrics)
        for i, (ns, cgroup) in enumerate(zip(namespaces, workloads, strict=True)):
            run_dir = tmp_path / f"run{i}"
            procs.start(f"tracer{i}", ns.command([*SNOOP, "tracer"]), {
                "SNOOP_TARGET_MODE": "cgroup", "SNOOP_TARGET_CGROUP": cgroup.rel,
                "SNOOP_RUN_DIR": str(run_dir),
                "SNOOP_EVENTS_ENDPOINT": f"tcp://{ns.host_address}:{events_port}",
                "SNOOP_CHECKPOINT_ENDPOINT": f"tcp://{ns.host_address}:{checkpoint_port}",
                "SNOOP_CURVE_SECRET_KEY": str(key_dir / f"node{i}.key_secret"),
                "SNOOP_CURVE_SERVER_KEY": str(key_dir / "server.key")},
                f"{ns.address}:{free_port()}")
        procs.wait_ready()

        # Each workload reads files of its own.
        own: list[set[str]] = []
        for i, cgroup in enumerate(workloads):
            files = {str(tmp_path / f"w{i}-{n}.txt") for n in range(5)}
            for name in files:
                Path(name).write_text(name)
            assert cgroup.run(["cat", *sorted(files)], stdout=subprocess.DEVNULL).returncode == 0
            own.append(files)

        # A client whose key is not allowed: nothing it sends is recorded.
        context = new_context()
        stranger = Sender(context, f"tcp://{namespaces[0].host_address}:{events_port}",
                          security=Security(secret_key_file=str(key_dir / "intruder.key_secret"),
                                            server_key_file=str(key_dir / "server.key")))
        forged = "/forged/by/a/stranger"
        batch = EventBatch(Header("tracer/stranger/1/1", 1), (
            Event(1, 1, 1, AccessKind.READ, forged.encode()),), {1: Workload("/stranger")},
            sent_at=time.time())
        deadline = time.monotonic() + 10
        while not metric(processor_metrics, "snoop_curve_clients_rejected_total"):
            assert time.monotonic() < deadline, "the stranger's handshake was never refused"
            stranger.send(batch)  # queued at most: the handshake fails
            time.sleep(0.2)
        stranger.close(linger=0)
        context.term()

        by_key: dict[str, dict] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            by_key = {data["workload_key"]: data for data in
                      (json.loads(p.read_text()) for p in reports.glob("[!.]*.json"))}
            if all(own[i] <= set(by_key.get(c.rel, {}).get("files", ()))
                   for i, c in enumerate(workloads)):
                break
            time.sleep(0.5)
        rejected = metric(processor_metrics, "snoop_curve_clients_rejected_total")

        for i in range(TRACERS):
            assert procs.stop(f"tracer{i}") == 0, procs.log(f"tracer{i}")
        assert procs.stop("processor") == 0, procs.log("processor")
        assert procs.stop("reporter") == 0, procs.log("reporter")
        by_key = {data["workload_key"]: data for data in
                  (json.loads(p.read_text()) for p in reports.glob("[!.]*.json"))}
        for i, cgroup in enumerate(workloads):
            report = by_key.get(cgroup.rel)
            assert report is not None, sorted(by_key)
            files = set(report["files"])
            assert own[i] <= files, sorted(own[i] - files)
            others = set().union(*(own[j] for j in range(TRACERS) if j != i))
            assert not files & others, sorted(files & others)
            assert not any(report["coverage"][name] for name in
                           ("kernel_dropped", "message_gaps", "invalid_messages",
                            "pending_dropped"))
        assert "/stranger" not in by_key
        assert not any(forged in data["files"] for data in by_key.values())
        assert rejected >= 1
    finally:
        procs.stop_all()
        for cgroup in workloads:
            cgroup.remove()
        for ns in namespaces:
            ns.remove()

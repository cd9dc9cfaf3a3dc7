"""Fan-in over a network: tracers, each on its own "host" (a network namespace joined by
a veth pair), send to one processor and one reporter over tcp:// with CURVE.

- Three tracers: the reporter keeps one correct report per workload; a client whose key
  is not allowed gets nothing recorded, and its refusal is counted.
- One tracer cut off from the processor for 30 s (its link down) while its workload
  keeps touching new files: afterwards the report holds them all, or its coverage
  counters say how many were given up.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import msgpack
import pytest

from snoop.common.protocol import AccessKind, Event, EventBatch, Header, Workload, encode
from snoop.common.transport import Security, Sender, new_context
from tests.support.net import free_port, is_ready
from tests.support.netns import NetNamespace
from tests.tracer import harness

pytestmark = [pytest.mark.e2e, pytest.mark.bpf, pytest.mark.timeout(600)]
SNOOP = [sys.executable, "-m", "snoop.cli"]
READY_TIMEOUT = 180.0
TRACERS = 3


def ready(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    return is_ready(int(port), host)


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
        subprocess.run([*SNOOP, "keys", "generate", str(directory), name], check=True,
                       capture_output=True, timeout=60)


class Fleet:
    """A processor and a reporter on this host, and one tracer per network namespace,
    each watching a workload cgroup of its own; all linked over tcp:// with CURVE."""

    def __init__(self, tmp_path: Path, tracers: int, extra_clients: tuple[str, ...] = ()) -> None:
        self.tmp = tmp_path
        self.key_dir = tmp_path / "keys"
        clients = (*(f"node{i}" for i in range(tracers)), *extra_clients)
        keys(self.key_dir, "server", *clients, "intruder")
        allowed = self.key_dir / "allowed"
        allowed.mkdir(mode=0o700)
        for name in clients:
            (allowed / f"{name}.key").write_bytes((self.key_dir / f"{name}.key").read_bytes())
        self.reports = tmp_path / "reports"
        self.events_port, checkpoint_port = free_port(), free_port()
        server = {"SNOOP_CURVE_SECRET_KEY": str(self.key_dir / "server.key_secret"),
                  "SNOOP_CURVE_ALLOWED_KEYS": str(allowed)}
        self.namespaces: list[NetNamespace] = []
        self.workloads: list[harness.TestCgroup] = []
        self.procs = Processes(tmp_path)
        self.processor_metrics = f"127.0.0.1:{free_port()}"
        try:
            for i in range(tracers):
                self.namespaces.append(NetNamespace.create(77, i + 1))
                self.workloads.append(harness.make_test_cgroup("snoop-fan"))
            self.procs.start("reporter", [*SNOOP, "reporter"], {
                **server, "SNOOP_UPDATES_ENDPOINT": f"ipc://{tmp_path}/updates.sock",
                "SNOOP_CHECKPOINT_ENDPOINT": f"tcp://0.0.0.0:{checkpoint_port}",
                "SNOOP_REPORT_DIR": str(self.reports), "SNOOP_REPORT_INTERVAL": "0.5s"},
                f"127.0.0.1:{free_port()}")
            self.procs.start("processor", [*SNOOP, "processor"], {
                **server, "SNOOP_EVENTS_ENDPOINT": f"tcp://0.0.0.0:{self.events_port}",
                "SNOOP_UPDATES_ENDPOINT": f"ipc://{tmp_path}/updates.sock",
                "SNOOP_REPORT_INTERVAL": "0.5s"}, self.processor_metrics)
            for i, (ns, cgroup) in enumerate(zip(self.namespaces, self.workloads,
                                                 strict=True)):
                self.procs.start(f"tracer{i}", ns.command([*SNOOP, "tracer"]), {
                    "SNOOP_TARGET_MODE": "cgroup", "SNOOP_TARGET_CGROUP": cgroup.rel,
                    "SNOOP_RUN_DIR": str(tmp_path / f"run{i}"),
                    "SNOOP_EVENTS_ENDPOINT": f"tcp://{ns.host_address}:{self.events_port}",
                    "SNOOP_CHECKPOINT_ENDPOINT": f"tcp://{ns.host_address}:{checkpoint_port}",
                    "SNOOP_CURVE_SECRET_KEY": str(self.key_dir / f"node{i}.key_secret"),
                    "SNOOP_CURVE_SERVER_KEY": str(self.key_dir / "server.key")},
                    f"{ns.address}:{free_port()}")
            self.procs.wait_ready()
        except BaseException:
            self.close()
            raise

    def reports_by_key(self) -> dict[str, dict]:
        return {data["workload_key"]: data for data in
                (json.loads(p.read_text()) for p in self.reports.glob("[!.]*.json"))}

    def wait_for(self, wanted: list[set[str]], timeout: float = 60.0) -> None:
        """Until each workload's report holds its `wanted` files (or the time is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            by_key = self.reports_by_key()
            if all(files <= set(by_key.get(cgroup.rel, {}).get("files", ()))
                   for files, cgroup in zip(wanted, self.workloads, strict=True)):
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Tracers first, then processor and reporter: each must stop cleanly."""
        for i in range(len(self.namespaces)):
            assert self.procs.stop(f"tracer{i}") == 0, self.procs.log(f"tracer{i}")
        assert self.procs.stop("processor") == 0, self.procs.log("processor")
        assert self.procs.stop("reporter") == 0, self.procs.log("reporter")

    def close(self) -> None:
        self.procs.stop_all()
        for cgroup in self.workloads:
            cgroup.remove()
        for ns in self.namespaces:
            ns.remove()


LOSS_COUNTERS = ("kernel_dropped", "message_gaps", "invalid_messages", "pending_dropped")


def test_three_tracers_on_three_hosts_fan_into_one_reporter(tmp_path):
    fleet = Fleet(tmp_path, TRACERS)
    try:
        # Each workload reads files of its own.
        own: list[set[str]] = []
        for i, cgroup in enumerate(fleet.workloads):
            files = {str(tmp_path / f"w{i}-{n}.txt") for n in range(5)}
            for name in files:
                Path(name).write_text(name)
            assert cgroup.run(["cat", *sorted(files)], stdout=subprocess.DEVNULL).returncode == 0
            own.append(files)

        # A client whose key is not allowed: nothing it sends is recorded.
        context = new_context()
        stranger = Sender(context, f"tcp://{fleet.namespaces[0].host_address}:"
                                   f"{fleet.events_port}",
                          security=Security(
                              secret_key_file=str(fleet.key_dir / "intruder.key_secret"),
                              server_key_file=str(fleet.key_dir / "server.key")))
        forged = "/forged/by/a/stranger"
        batch = EventBatch(Header("tracer/stranger/1/1", 1), (
            Event(1, 1, 1, AccessKind.READ, forged.encode()),), {1: Workload("/stranger")},
            sent_at=time.time())
        deadline = time.monotonic() + 10
        while not metric(fleet.processor_metrics, "snoop_curve_clients_rejected_total"):
            assert time.monotonic() < deadline, "the stranger's handshake was never refused"
            stranger.send(batch)  # queued at most: the handshake fails
            time.sleep(0.2)
        stranger.close(linger=0)
        context.term()

        fleet.wait_for(own)
        fleet.stop()
        by_key = fleet.reports_by_key()
        for i, cgroup in enumerate(fleet.workloads):
            report = by_key.get(cgroup.rel)
            assert report is not None, sorted(by_key)
            files = set(report["files"])
            assert own[i] <= files, sorted(own[i] - files)
            others = set().union(*(own[j] for j in range(TRACERS) if j != i))
            assert not files & others, sorted(files & others)
            assert not any(report["coverage"][name] for name in LOSS_COUNTERS)
        assert "/stranger" not in by_key
        assert not any(forged in data["files"] for data in by_key.values())
    finally:
        fleet.close()


CUT_SECONDS = 30.0


def test_a_tracer_cut_off_for_30_s_loses_nothing_its_workload_did_meanwhile(tmp_path):
    fleet = Fleet(tmp_path, 1)
    touched = tmp_path / "touched"
    touched.mkdir()
    workload: subprocess.Popen | None = None
    try:
        # A new file every 0.1 s, before, during and after the cut.
        workload = fleet.workloads[0].popen(
            ["sh", "-c", f"i=0; while [ $i -lt 450 ]; do : > {touched}/f$i; i=$((i+1)); "
                         "sleep 0.1; done"])
        time.sleep(5)
        host_if = fleet.namespaces[0].host_if
        subprocess.run(["ip", "link", "set", host_if, "down"], check=True, timeout=30)
        try:
            time.sleep(CUT_SECONDS)
            # The cut is real: files made in the middle of it have not arrived.
            during = set(fleet.reports_by_key().get(fleet.workloads[0].rel, {})
                         .get("files", ()))
            assert not {str(touched / f"f{i}") for i in range(150, 250)} & during
        finally:
            subprocess.run(["ip", "link", "set", host_if, "up"], check=True, timeout=30)
        assert workload.wait(timeout=120) == 0
        wanted = {str(touched / f"f{i}") for i in range(450)}
        fleet.wait_for([wanted], timeout=90)
        fleet.stop()
        report = fleet.reports_by_key()[fleet.workloads[0].rel]
        missing = wanted - set(report["files"])
        lost = sum(report["coverage"][name] for name in LOSS_COUNTERS)
        # All of them, or exactly as many missing as the counters say were given up.
        assert len(missing) == lost == 0 or (missing and len(missing) <= lost), \
            (sorted(missing)[:5], report["coverage"])
    finally:
        if workload is not None and workload.poll() is None:
            workload.kill()
            workload.wait()
        fleet.close()


FUZZED = 10_000


def hostile_messages(count: int, seed: int = 11) -> list[bytes]:
    """Messages an allowed client may send that are no valid Snoop message: random bytes,
    msgpack of the wrong shape, and real batches with one value out of its range or
    over a size bound."""
    rng = random.Random(seed)
    good = msgpack.unpackb(encode(EventBatch(
        Header("tracer/fuzzer/1/1", 1), (Event(7, 1, 1, AccessKind.READ, b"/fuzz/x"),),
        {7: Workload("/fuzzer")}, sent_at=time.time())), raw=False, strict_map_key=False)
    mutations = [
        lambda m: m["body"]["events"][0].__setitem__(6, 5000),  # errno over MAX_ERRNO
        lambda m: m["body"]["events"][0].__setitem__(7, b"x" * 40),  # comm too long
        lambda m: m["body"]["events"][0].__setitem__(4, b"/a\0b"),  # NUL in a path
        lambda m: m["body"]["events"][0].__setitem__(4, b"/" * 40_000),  # path too long
        lambda m: m["body"]["events"][0].__setitem__(3, 99),  # no such access kind
        lambda m: m["body"]["events"][0].__setitem__(1, -1),  # pid below 0
        lambda m: m["body"].__setitem__("sent_at", 1e12),  # the year 33658
        lambda m: m.__setitem__("seq", -5),
        lambda m: m["body"].__setitem__("workloads", {}),  # events of no workload
        lambda m: m["body"].__setitem__("events", m["body"]["events"] * 5000),  # too many
        lambda m: m.__setitem__("type", "shutdown"),
    ]
    out = []
    for i in range(count):
        choice = i % 3
        if choice == 0:
            out.append(rng.randbytes(rng.randrange(0, 200)))
        elif choice == 1:
            out.append(msgpack.packb([rng.randrange(-9, 9) for _ in range(rng.randrange(5))]))
        else:
            message = copy.deepcopy(good)
            mutations[rng.randrange(len(mutations))](message)
            out.append(msgpack.packb(message, use_bin_type=True))
    return out


def test_an_allowed_client_flooding_hostile_messages_costs_nothing_else(tmp_path):
    fleet = Fleet(tmp_path, 1, extra_clients=("fuzzer",))
    context = new_context()
    fuzzer = Sender(context, f"tcp://{fleet.namespaces[0].host_address}:{fleet.events_port}",
                    security=Security(secret_key_file=str(fleet.key_dir / "fuzzer.key_secret"),
                                      server_key_file=str(fleet.key_dir / "server.key")))
    try:
        cgroup = fleet.workloads[0]
        before, after = tmp_path / "before.txt", tmp_path / "after.txt"
        for path in (before, after):
            path.write_text("x")
        assert cgroup.run(["cat", str(before)], stdout=subprocess.DEVNULL).returncode == 0
        # The fuzzer's own valid batches, sent between the hostile ones.
        good = [EventBatch(Header("tracer/fuzzer/1/1", seq), (
            Event(7, 1, 1, AccessKind.READ, f"/fuzzer/good-{seq}".encode()),),
            {7: Workload("/fuzzer")}, sent_at=time.time()) for seq in range(1, 11)]
        hostile = hostile_messages(FUZZED)
        for i, data in enumerate(hostile):
            if i % 1000 == 0:
                message = encode(good[i // 1000])
                while not fuzzer.send_encoded(message):
                    time.sleep(0.01)
            while not fuzzer.send_encoded(data):  # HWM reached: the processor is busy
                time.sleep(0.01)
        assert cgroup.run(["cat", str(after)], stdout=subprocess.DEVNULL).returncode == 0

        deadline = time.monotonic() + 120
        while metric(fleet.processor_metrics, "snoop_messages_invalid_total") < FUZZED:
            assert time.monotonic() < deadline, "not every hostile message was counted"
            time.sleep(0.5)
        goods = {f"/fuzzer/good-{seq}" for seq in range(1, 11)}
        fleet.wait_for([{str(before), str(after)}])
        deadline = time.monotonic() + 30
        while not goods <= set(fleet.reports_by_key().get("/fuzzer", {}).get("files", ())):
            assert time.monotonic() < deadline, "the fuzzer's valid batches were lost"
            time.sleep(0.5)
        assert metric(fleet.processor_metrics, "snoop_messages_invalid_total") == FUZZED
        fleet.stop()
        by_key = fleet.reports_by_key()
        report = by_key[cgroup.rel]
        assert {str(before), str(after)} <= set(report["files"])
        assert not [f for data in by_key.values() for f in data["files"]
                    if f.startswith("/fuzz/") or f.startswith("//")]
        assert set(by_key["/fuzzer"]["files"]) == goods
    finally:
        fuzzer.close(linger=0)
        context.term()
        fleet.close()

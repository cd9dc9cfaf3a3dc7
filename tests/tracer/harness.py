"""Run a real `snoop tracer` and stand in for the processor and reporter.

The harness binds the events link (as the processor does), collects every event and
stats message, and can publish checkpoints (as the reporter does). Workloads run in
test cgroups that are removed afterwards, even on failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from snoop.common.protocol import (
    Checkpoint,
    Event,
    EventBatch,
    Header,
    MessageType,
    TracerStats,
)
from snoop.common.transport import Receiver, Sender, new_context
from snoop.tracer import cgroups
from snoop.tracer.kernel import pin_dir_of, remove_pins
from tests.support.net import free_port, is_ready

READY_TIMEOUT = 90.0


@dataclass
class TestCgroup:
    path: str  # absolute directory
    rel: str  # relative to the v2 root

    @property
    def id(self) -> int:
        return cgroups.cgroup_id(self.path)

    def child(self, name: str) -> TestCgroup:
        path = os.path.join(self.path, name)
        os.makedirs(path, exist_ok=True)
        return TestCgroup(path, f"{self.rel}/{name}")

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run argv inside this cgroup from its first instruction."""
        procs = os.path.join(self.path, "cgroup.procs")

        def enter() -> None:
            with open(procs, "w") as handle:
                handle.write("0")
            os.chdir(os.getcwd())  # traced: the tracer learns the cwd, as from runc's init

        kwargs.setdefault("timeout", 120)
        return subprocess.run(argv, preexec_fn=enter, check=False, **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        procs = os.path.join(self.path, "cgroup.procs")

        def enter() -> None:
            with open(procs, "w") as handle:
                handle.write("0")
            os.chdir(os.getcwd())  # traced: the tracer learns the cwd, as from runc's init

        return subprocess.Popen(argv, preexec_fn=enter, **kwargs)

    def remove(self) -> None:
        kill = os.path.join(self.path, "cgroup.kill")
        if os.path.exists(kill):
            for dirpath, _, _ in os.walk(self.path, topdown=False):
                try:
                    with open(os.path.join(dirpath, "cgroup.kill"), "w") as handle:
                        handle.write("1")
                except OSError:
                    pass
        cgroups.remove_cgroup(self.path, timeout=5.0)


def make_test_cgroup(prefix: str = "snoop-test") -> TestCgroup:
    root = cgroups.discover_cgroup2_root()
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    path = os.path.join(root, name)
    os.makedirs(path)
    return TestCgroup(path, f"/{name}")


@dataclass
class Collected:
    events: list[Event] = field(default_factory=list)
    batches: list[EventBatch] = field(default_factory=list)
    stats: list[TracerStats] = field(default_factory=list)

    def paths(self, cgroup_id: int | None = None) -> set[bytes]:
        return {e.path for e in self.events if cgroup_id is None or e.cgroup_id == cgroup_id}

    def for_cgroup(self, cgroup_id: int) -> list[Event]:
        return [e for e in self.events if e.cgroup_id == cgroup_id]


class TracerHarness:
    """A `snoop tracer` subprocess plus a stand-in processor and reporter."""

    def __init__(self, extra_env: dict[str, str]) -> None:
        self.run_dir = tempfile.mkdtemp(prefix="snoop-harness-")
        self.port = free_port()
        self.context = new_context()
        self.events_endpoint = f"ipc://{self.run_dir}/events.sock"
        self.checkpoint_endpoint = f"ipc://{self.run_dir}/checkpoint.sock"
        self.receiver = Receiver(self.context, self.events_endpoint,
                                 {MessageType.EVENT_BATCH, MessageType.TRACER_STATS})
        self.publisher = Sender(self.context, self.checkpoint_endpoint, bind=True, publish=True)
        self.collected = Collected()
        self.seen_seqs: dict[str, set[int]] = defaultdict(set)
        env = {
            **os.environ,
            "SNOOP_RUN_DIR": self.run_dir,
            "SNOOP_METRICS_ADDR": f"127.0.0.1:{self.port}",
            "SNOOP_LOG_LEVEL": "info",
            **extra_env,
        }
        self.log_path = os.path.join(self.run_dir, "tracer.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (lives as long as the tracer)
        self.proc = subprocess.Popen([sys.executable, "-m", "snoop.cli", "tracer"], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tracer exited {self.proc.returncode}: {self.log()}")
            if is_ready(self.port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"tracer not ready after {READY_TIMEOUT}s: {self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as handle:
            return handle.read().decode(errors="replace")[-4000:]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def pump(self, seconds: float) -> None:
        """Receive for `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            message = self.receiver.recv(timeout=min(remaining, 0.1))
            if message is not None:
                self._take(message)

    def _take(self, message) -> None:
        self.seen_seqs[message.header.sender].add(message.header.seq)
        if isinstance(message, EventBatch):
            self.collected.batches.append(message)
            self.collected.events.extend(message.events)
        elif isinstance(message, TracerStats):
            self.collected.stats.append(message)

    def wait_for(self, predicate, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.collected):
                return True
            self.pump(0.1)
        return predicate(self.collected)

    def settle(self, quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Receive until nothing arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = len(self.collected.events)
            self.pump(quiet)
            if len(self.collected.events) == before:
                return

    def confirm_all(self) -> None:
        persisted = {s: tuple((q, q) for q in sorted(seqs)) for s, seqs in self.seen_seqs.items()}
        self.publisher.send(Checkpoint(Header("harness-reporter", 1), persisted))

    def latest_stats(self) -> TracerStats | None:
        return self.collected.stats[-1] if self.collected.stats else None

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took), receiving meanwhile."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None and time.monotonic() - started < timeout:
            self.pump(0.05)
        elapsed = time.monotonic() - started
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.pump(0.3)
        return self.proc.returncode, elapsed

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        remove_pins(pin_dir_of(self.run_dir))  # a killed tracer leaves its kernel side
        self.receiver.close(linger=0)
        self.publisher.close(linger=0)
        self.context.term()
        self._log.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)

"""What the benches share: the machine's description, process CPU and memory from /proc,
the C helpers compiled at bench time, and a `snoop tracer` with a stand-in processor.

The tracer harness is the one the tracer tests use (tests/tracer/harness.py); here it
counts what it receives instead of keeping it, and confirms batches as a reporter would,
so the tracer's re-send buffer stays as small as in a real deployment.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from snoop.common.protocol import EventBatch, TracerStats  # noqa: E402
from snoop.tracer import records  # noqa: E402
from tests.tracer.harness import TestCgroup, TracerHarness, make_test_cgroup  # noqa: E402

__all__ = ["SnoopTracer", "TestCgroup", "make_test_cgroup"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's: the one bcc's Python module is built for


# ---------------------------------------------------------------- /proc

def process_cpu_seconds(pid: int) -> float:
    """CPU time of process `pid` so far: the sum over its live threads of the scheduler's
    run time (/proc/PID/task/TID/schedstat, in ns). utime+stime in /proc/PID/stat say the
    same in clock ticks (10 ms here), too coarse for runs of a tenth of a second."""
    total_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                total_ns += int(handle.read().split()[0])
        except FileNotFoundError:
            continue  # the thread exited just now
        except OSError:
            return _stat_cpu_seconds(pid)  # a kernel without schedstat
    return total_ns / 1e9


def _stat_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rpartition(")")[2].split()
    # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon of process `pid`, in bytes."""
    wanted = {"VmRSS", "VmHWM", "RssAnon", "RssFile"}
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in wanted:
                values[key] = int(rest.split()[0]) * 1024
    return values


def bpf_program_holders(exclude: Iterable[int] = ()) -> dict[int, tuple[str, int]]:
    """Processes holding BPF programs: pid -> (command, number of programs).

    Other tracers on the machine run their hooks on every syscall of every workload,
    ours included, so a bench reports them beside its figures."""
    skip = set(exclude) | {os.getpid()}
    holders = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        programs = set()
        try:
            for fd in os.listdir(f"/proc/{entry}/fdinfo"):
                with open(f"/proc/{entry}/fdinfo/{fd}") as handle:
                    for line in handle:
                        if line.startswith("prog_id:"):
                            programs.add(line.split()[1])
            if programs:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    command = handle.read().replace(b"\0", b" ").decode(errors="replace")
                holders[int(entry)] = (command.strip()[:100], len(programs))
        except OSError:
            continue
    return holders


def machine() -> dict[str, object]:
    """Kernel, CPU, memory and the date: what a reader needs to compare figures."""
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "loadavg_1m": os.getloadavg()[0],
    }


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- C helpers

class BuildError(RuntimeError):
    """A C helper could not be compiled; the message says what to install."""


def compile_helpers(out_dir: str) -> dict[str, str]:
    """gcc -O2 each bench/workloads/*.c into out_dir; name -> executable path."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildError("gcc not found: the benches compile small C helpers "
                         "(apt-get install gcc)")
    built = {}
    for source in sorted((BENCH_DIR / "workloads").glob("*.c")):
        target = os.path.join(out_dir, source.stem)
        result = subprocess.run([gcc, "-O2", "-Wall", "-o", target, str(source)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"gcc failed on {source}:\n{result.stderr}")
        built[source.stem] = target
    return built


# ---------------------------------------------------------------- snoop tracer

_METRIC = re.compile(r"^(snoop_[a-z_]+)(?:\{[^}]*\})? ([0-9.e+]+)$", re.MULTILINE)


class SnoopTracer(TracerHarness):
    """`snoop tracer` for one cgroup, with a counting stand-in processor and reporter."""

    def __init__(self, cgroup_rel: str, extra_env: dict[str, str] | None = None) -> None:
        self.events_received = 0
        self.stats: TracerStats | None = None
        self._counters_map: int | None = None
        super().__init__({
            "SNOOP_TARGET_MODE": "cgroup",
            "SNOOP_TARGET_CGROUP": cgroup_rel,
            "SNOOP_LOG_LEVEL": "warning",
            **(extra_env or {}),
        })

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _take(self, message) -> None:
        self.seen_seqs[message.header.sender].add(message.header.seq)
        if isinstance(message, EventBatch):
            self.events_received += len(message.events)
        elif isinstance(message, TracerStats):
            self.stats = message

    def drain(self) -> None:
        """Receive whatever is queued now, without waiting."""
        while (message := self.receiver.recv(timeout=0)) is not None:
            self._take(message)

    def fresh_stats(self, timeout: float = 5.0) -> TracerStats:
        """The next stats message (sent about once a second); everything queued before
        it is received first, so its counters cover every event received so far."""
        self.drain()
        previous = self.stats
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.05)
            if self.stats is not previous:
                return self.stats
        raise RuntimeError(f"the tracer sent no stats in {timeout:.0f}s: {self.log()}")

    def kernel_counters(self) -> dict[str, int]:
        """The BPF program's per-CPU counters, summed, read from the kernel now.

        The tracer reports them only once a second; reading its `counters` map directly
        (bpftool, by the map id the tracer's fds hold) gives exact figures per run."""
        if self._counters_map is None:
            self._counters_map = self._find_map("counters")
        dump = subprocess.run(["bpftool", "map", "dump", "id", str(self._counters_map), "-j"],
                              capture_output=True, text=True, check=True)
        totals: dict[int, int] = {}
        for entry in json.loads(dump.stdout):
            key = int(entry["formatted"]["key"]) if "formatted" in entry else int.from_bytes(
                bytes(int(b, 16) for b in entry["key"]), sys.byteorder)
            values = entry["formatted"]["values"] if "formatted" in entry else entry["values"]
            totals[key] = sum(_leaf_int(v["value"]) for v in values)
        return {
            "submitted": totals.get(records.STAT_SUBMITTED, 0),
            "dropped": totals.get(records.STAT_RINGBUF_FULL, 0),
            "read_failures": totals.get(records.STAT_READ_FAILED, 0),
            "dedup_hits": totals.get(records.STAT_DEDUP_HITS, 0),
            "stash_full": totals.get(records.STAT_STASH_FULL, 0),
        }

    def _find_map(self, name: str) -> int:
        ids = set()
        fdinfo = f"/proc/{self.pid}/fdinfo"
        for fd in os.listdir(fdinfo):
            try:
                with open(os.path.join(fdinfo, fd)) as handle:
                    ids.update(line.split()[1] for line in handle if line.startswith("map_id:"))
            except OSError:
                continue
        for map_id in ids:
            shown = subprocess.run(["bpftool", "map", "show", "id", map_id, "-j"],
                                   capture_output=True, text=True)
            if shown.returncode == 0 and json.loads(shown.stdout).get("name") == name:
                return int(map_id)
        raise RuntimeError(f"the tracer (pid {self.pid}) holds no BPF map named {name!r}")

    def metric_values(self) -> dict[str, float]:
        """Unlabelled snoop_* metrics; labelled ones are summed over their labels."""
        values: dict[str, float] = {}
        for name, value in _METRIC.findall(self.metrics()):
            values[name] = values.get(name, 0.0) + float(value)
        return values


def _leaf_int(value: object) -> int:
    """A map value from bpftool's JSON: a number, or a list of hex byte strings."""
    if isinstance(value, int):
        return value
    return int.from_bytes(bytes(int(b, 16) for b in value), sys.byteorder)

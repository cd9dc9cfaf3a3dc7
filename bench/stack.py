"""The whole `snoop run` stack: its memory (PSS) with 100K unique files, and how many
unique paths per second it carries from the kernel to a persisted report.

Two real `snoop run` stacks (supervisord, tracer, processor, reporter), each tracing a
test cgroup and writing its report every second. In that cgroup a C helper stats unique
nonexistent paths as fast as it can:

- PSS, with the default settings: N unique paths (default 100,000); once the report on
  disk holds them, the proportional set size of every process of the stack
  (smaps_rollup), summed. PSS splits shared pages (the Python interpreter, libraries)
  between the processes that map them.
- throughput, with a 128 MiB ring buffer: M unique paths (default 400,000), timed from
  the helper's start to the report write that holds the last of them (the reporter's
  snoop_report_last_write_timestamp_seconds), zero loss checked in the report. The
  helper makes paths faster than any tracer drains them; the kernel must hold the
  backlog for the figure to be the pipeline's own rate (with the default 8 MiB the same
  flood loses what does not fit, and the report counts it).

    .venv/bin/python bench/stack.py [--paths N] [--flood M] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import benchlib

from tests.e2e.test_pipeline import SnoopRun
from tests.tracer.harness import TestCgroup, make_test_cgroup

MIB = 2**20
PROGRAMS = ("tracer", "processor", "reporter")
SETTLE_TIMEOUT = 300.0
_METRIC = re.compile(r"^(snoop_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", re.MULTILINE)


def pss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stack_pids(run: SnoopRun) -> dict[str, int]:
    """The `snoop run` wrapper, supervisord (its only child) and the three programs."""
    pids = {"snoop run": run.proc.pid}
    children = Path(f"/proc/{run.proc.pid}/task/{run.proc.pid}/children").read_text().split()
    if children:
        pids["supervisord"] = int(children[0])
    for program in PROGRAMS:
        pids[program] = run.pid_of(program)
    return pids


def reporter_metrics(run: SnoopRun) -> dict[str, float]:
    """Sums of the reporter's snoop_* samples, by name (labels summed over)."""
    port = run.port + 2
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for name, _, value in _METRIC.findall(text):
        values[name] = values.get(name, 0.0) + float(value)
    return values


def wait_persisted(run: SnoopRun, unique_files: int, allow_dropped: bool = False) -> float:
    """The time of the first report write after the reporter held `unique_files` paths
    (less those the report counts as dropped, with allow_dropped)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        values = reporter_metrics(run)
        lost = values.get("snoop_events_dropped_total", 0) if allow_dropped else 0
        if values.get("snoop_unique_files", 0) + lost >= unique_files and \
                values.get("snoop_reports_pending", 1) == 0:
            return values["snoop_report_last_write_timestamp_seconds"]
        time.sleep(0.05)
    raise RuntimeError(f"the report did not reach {unique_files:,} files in "
                       f"{SETTLE_TIMEOUT:.0f}s: reporter metrics {values}; {run.log()}")


def flood(cgroup, filebench: str, n: int) -> tuple[str, float]:
    prefix = f"/nonexistent-{uuid.uuid4().hex}"
    started = time.time()
    result = cgroup.run([filebench, "stat-unique", prefix, str(n)])
    if result.returncode != 0:
        raise RuntimeError(f"filebench exited {result.returncode}")
    return prefix, started


@contextlib.contextmanager
def snoop_run(directory: str, env: dict[str, str]) -> Iterator[tuple[SnoopRun, TestCgroup]]:
    """`snoop run` tracing a fresh test cgroup, reports written every second."""
    os.makedirs(directory)
    cgroup = make_test_cgroup("snoop-bench-stack")
    run = None
    try:
        run = SnoopRun(Path(directory), cgroup.rel, {
            "SNOOP_REPORT_INTERVAL": "1s", "SNOOP_LOG_LEVEL": "warning", **env})
        time.sleep(2)
        yield run, cgroup
    finally:
        if run is not None:
            if run.proc.poll() is None:
                run.stop(timeout=120)
            run.close()
        cgroup.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=100_000,
                        help="unique paths before the PSS figure (default 100,000)")
    parser.add_argument("--flood", type=int, default=400_000,
                        help="unique paths of the throughput run (default 400,000)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("stack.py needs root (BPF and cgroups)", file=sys.stderr)
        return 2
    scratch = tempfile.mkdtemp(prefix="snoop-bench-stack-")
    helpers = benchlib.compile_helpers(scratch)

    # Memory: the stack as deployed (default ring buffer), N unique files persisted.
    with snoop_run(os.path.join(scratch, "pss"), {}) as (run, cgroup):
        pids = stack_pids(run)
        idle = {name: pss_bytes(pid) for name, pid in pids.items()}
        base_files = reporter_metrics(run).get("snoop_unique_files", 0)
        flood(cgroup, helpers["filebench"], args.paths)
        wait_persisted(run, base_files + args.paths, allow_dropped=True)
        loaded = {name: pss_bytes(pid) for name, pid in pids.items()}
        pss_dropped = run.report_data().get("dropped_events", 0)

    # Throughput: a ring buffer that holds the whole flood, so the rate is the pipeline's.
    with snoop_run(os.path.join(scratch, "rate"), {"SNOOP_RINGBUF_BYTES": str(128 * MIB)}
                   ) as (run, cgroup):
        base_files = reporter_metrics(run).get("snoop_unique_files", 0)
        programs = {name: run.pid_of(name) for name in PROGRAMS}
        cpu_before = {name: cpu_seconds(pid) for name, pid in programs.items()}
        prefix, started = flood(cgroup, helpers["filebench"], args.flood)
        written = wait_persisted(run, base_files + args.flood)
        seconds = written - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in programs.items()}
        data = run.report_data()
        reported = sum(1 for path in data["files"] if path.startswith(prefix))
        dropped = data.get("dropped_events", 0)

    print(f"snoop run stack, report written every 1 s; machine: {benchlib.machine()}")
    print(f"memory: default settings, {args.paths:,} unique files ({pss_dropped:,} of them "
          "dropped in the kernel, counted in the report)")
    loaded_title = f"PSS with {args.paths:,} files MiB"
    print(f"\n{'process':<12} {'PSS idle MiB':>13} {loaded_title:>26}")
    for name in pids:
        print(f"{name:<12} {idle[name] / MIB:>13.1f} {loaded[name] / MIB:>26.1f}")
    core = [n for n in pids if n != "snoop run"]
    total_core = sum(loaded[n] for n in core)
    total = sum(loaded.values())
    print(f"{'supervisord + 3':<12} {sum(idle[n] for n in core) / MIB:>13.1f} "
          f"{total_core / MIB:>26.1f}")
    print(f"{'all, wrapper too':<12} {sum(idle.values()) / MIB:>13.1f} {total / MIB:>26.1f}")
    rate = args.flood / seconds if seconds > 0 else 0.0
    print("CPU per path while it ran: " + ", ".join(
        f"{name} {cpu[name] / args.flood * 1e6:.1f} µs" for name in PROGRAMS))
    print(f"\nthroughput (128 MiB ring buffer): {args.flood:,} unique paths, kernel to "
          "persisted report, in "
          f"{seconds:.2f} s = {rate:,.0f} paths/s; {reported:,} in the report, "
          f"{dropped:,} dropped")
    print("\ntargets (docs/benchmarks.md):")
    print(f"  whole stack (supervisord + 3 processes) PSS with {args.paths:,} unique files: "
          f"{total_core / MIB:.0f} MiB (target <= 150 MB)")
    print(f"  unique paths per second, kernel to persisted report: {rate:,.0f}"
          f"{' with zero loss' if dropped == 0 and reported == args.flood else ', WITH LOSS'}"
          " (target >= 250K)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"pss_idle": idle, "pss_loaded": loaded, "paths": args.paths,
                       "flood": args.flood, "seconds": seconds, "reported": reported,
                       "dropped": dropped, "machine": benchlib.machine()}, handle, indent=2)
    return 0 if reported == args.flood and dropped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

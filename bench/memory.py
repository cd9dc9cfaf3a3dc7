"""How much memory the tracer holds: after start, and while 100K unique paths go through.

Starts a real `snoop tracer` for a test cgroup (events drained by a stand-in processor),
then, in that cgroup, stats N unique nonexistent paths (default 100,000) as fast as C can,
sampling the tracer's RSS every 20 ms until it has caught up. Figures:

- after start: RSS once the tracer is ready (bcc compiled in a child process that has
  exited; VmHWM is reported beside it);
- while tracing: the largest RSS seen during the flood, and RSS once the tracer caught up.
  Until a reporter confirms them, the tracer keeps every batch it sent so it can re-send
  it: the N events are all held at that point;
- after confirmation: RSS once the stand-in reporter confirmed every batch and the tracer
  let them go (CPython keeps freed memory for reuse, so RSS need not fall).

    .venv/bin/python bench/memory.py [N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid

import benchlib

MIB = 2**20


class RssSampler:
    """The largest VmRSS of a process, sampled from a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, benchlib.process_memory(self.pid)["VmRSS"])
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def wait_caught_up(tracer: benchlib.SnoopTracer, timeout: float = 60.0) -> None:
    """Receive until the tracer has used under 10% of a CPU over 0.1 s."""
    deadline = time.monotonic() + timeout
    before = benchlib.process_cpu_seconds(tracer.pid)
    while time.monotonic() < deadline:
        tracer.pump(0.1)
        now = benchlib.process_cpu_seconds(tracer.pid)
        if now - before < 0.01:
            return
        before = now


def measure(n: int) -> dict[str, object]:
    scratch = tempfile.mkdtemp(prefix="snoop-bench-mem-")
    cgroup = benchlib.make_test_cgroup("snoop-bench-mem")
    try:
        helpers = benchlib.compile_helpers(scratch)
        tracer = benchlib.SnoopTracer(cgroup.rel)
        try:
            wait_caught_up(tracer)
            started = benchlib.process_memory(tracer.pid)
            before = tracer.fresh_stats()
            received_before = tracer.events_received
            prefix = f"/nonexistent-{uuid.uuid4().hex}"
            with RssSampler(tracer.pid) as sampler:
                flood_started = time.monotonic()
                result = cgroup.run([helpers["filebench"], "stat-unique", prefix, str(n)])
                flood_seconds = time.monotonic() - flood_started
                if result.returncode != 0:
                    raise RuntimeError(f"stat flood exited {result.returncode}")
                wait_caught_up(tracer)
            caught_up = benchlib.process_memory(tracer.pid)
            after = tracer.fresh_stats()
            time.sleep(0.05)  # the metrics are set just after the stats are sent
            pending_caught_up = int(tracer.metric_values().get("snoop_pending_events", -1))
            received = tracer.events_received - received_before
            tracer.confirm_all()
            time.sleep(2.5)  # checkpoints are read once a second
            tracer.pump(0.1)
            confirmed = benchlib.process_memory(tracer.pid)
            stats = tracer.fresh_stats()
            time.sleep(0.05)
            metrics = tracer.metric_values()
            tracer.stop()
        finally:
            tracer.close()
    finally:
        cgroup.remove()
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "paths": n,
        "flood_seconds": flood_seconds,
        "rss_after_start": started["VmRSS"],
        "rss_anon_after_start": started["RssAnon"],
        "rss_file_after_start": started["RssFile"],
        "hwm_after_start": started["VmHWM"],
        "rss_peak_while_tracing": max(sampler.peak, caught_up["VmRSS"]),
        "rss_caught_up": caught_up["VmRSS"],
        "rss_after_confirmation": confirmed["VmRSS"],
        "pending_events_caught_up": pending_caught_up,
        "pending_events_after_confirmation": int(metrics.get("snoop_pending_events", -1)),
        "events_received": received,
        "kernel_dropped": after.kernel_dropped - before.kernel_dropped,
        "pending_dropped": stats.pending_dropped,
    }


def report(figures: dict[str, object]) -> None:
    n = figures["paths"]
    growth = figures["rss_peak_while_tracing"] - figures["rss_after_start"]
    print(f"tracer RSS after start: {figures['rss_after_start'] / MIB:.1f} MiB = "
          f"{figures['rss_anon_after_start'] / MIB:.1f} MiB anonymous + "
          f"{figures['rss_file_after_start'] / MIB:.1f} MiB file-backed (Python and its "
          f"libraries, the ring buffer's mapping; no LLVM: it compiled in a child that "
          f"exited); peak so far (VmHWM): "
          f"{figures['hwm_after_start'] / MIB:.1f} MiB")
    print(f"tracer RSS while tracing {n:,} unique paths (stat flood, "
          f"{figures['flood_seconds']:.2f}s): peak {figures['rss_peak_while_tracing'] / MIB:.1f}"
          f" MiB (+{growth / MIB:.1f} MiB, {growth / n:.0f} bytes per path held for re-send)")
    print(f"tracer RSS once caught up: {figures['rss_caught_up'] / MIB:.1f} MiB "
          f"({figures['pending_events_caught_up']:,} events pending confirmation); "
          f"after the reporter confirmed: {figures['rss_after_confirmation'] / MIB:.1f} MiB "
          f"({figures['pending_events_after_confirmation']:,} events still pending)")
    print(f"events received: {figures['events_received']:,} ({n:,} paths and the flood "
          f"program's own start-up); dropped in the kernel: "
          f"{figures['kernel_dropped']:,}; dropped from the re-send buffer: "
          f"{figures['pending_dropped']:,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="?", type=int, default=100_000,
                        help="unique paths to stat (default 100,000)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("memory: must run as root (BPF, cgroups)", file=sys.stderr)
        return 2
    figures = measure(args.paths)
    report(figures)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": benchlib.machine(), "tracer_memory": figures}, handle,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the tracer loses is counted; it stops cleanly; it never traces itself."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from snoop.tracer.features import FALLBACKS_ENV
from tests.tracer.harness import TracerHarness

pytestmark = pytest.mark.bpf

PYTHON = "/usr/bin/python3"
FLOOD = 20_000
AGAIN = 1_000

# Waits for a line on stdin, then stats FLOOD unique paths as fast as it can, then waits
# again: every path event in between comes from the flood alone.
FLOOD_SCRIPT = f"""
import os, sys, time
prefix = sys.argv[1]
sys.stdin.readline()
for i in range({FLOOD}):
    try:
        os.stat(f"{{prefix}}/{{i}}")
    except FileNotFoundError:
        pass
print("done", flush=True)
sys.stdin.readline()
for i in range({AGAIN}):  # slowly, so the small ring buffer has room for every one
    try:
        os.stat(f"{{prefix}}/{{i}}")
    except FileNotFoundError:
        pass
    time.sleep(0.001)
print("again", flush=True)
sys.stdin.readline()
"""


def attached_program_ids(pid: int) -> set[int]:
    """Ids of the BPF programs whose fds process `pid` holds."""
    ids = set()
    fdinfo = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fdinfo):
        try:
            with open(os.path.join(fdinfo, fd)) as handle:
                for line in handle:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            continue
    # Before 5.15 programs hang on perf events, whose fdinfo does not name them.
    listed = subprocess.run(["bpftool", "perf", "list", "-j"], capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        ids.update(entry["prog_id"] for entry in json.loads(listed.stdout)
                   if entry.get("pid") == pid)
    return ids


def program_exists(prog_id: int) -> bool:
    out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True)
    return out.returncode == 0


@pytest.mark.parametrize("kernel_side", ["native", "forced_fallbacks"])
def test_tiny_ring_buffer_flood_received_plus_dropped_equals_sent(cgroup, kernel_side):
    tracer = TracerHarness({
        "SNOOP_TARGET_MODE": "cgroup",
        "SNOOP_TARGET_CGROUP": cgroup.rel,
        "SNOOP_RINGBUF_BYTES": "4096",  # with perf buffers: a page per CPU
        FALLBACKS_ENV: "1" if kernel_side == "forced_fallbacks" else "0",
    })
    prefix = f"/nonexistent-{uuid.uuid4().hex}"
    worker = None
    try:
        worker = cgroup.popen([PYTHON, "-c", FLOOD_SCRIPT, prefix], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
        tracer.settle(quiet=1.5)  # python's own start-up, drained
        before = _stats_after(tracer, time.time())
        worker.stdin.write("go\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "done"
        tracer.settle(quiet=1.0)
        after = _stats_after(tracer, time.time())
        dropped = after.kernel_dropped - before.kernel_dropped  # final: the flood is over

        def flood_paths(collected) -> set[bytes]:
            return {e.path for e in collected.events if e.path.startswith(prefix.encode())}

        # A slow turn of the tracer's loop (under TCG: seconds) looks like quiet, and its
        # stats can come before it has drained the last records: what the kernel did not
        # count as dropped must still arrive.
        tracer.wait_for(lambda c: len(flood_paths(c)) + dropped >= FLOOD, timeout=20)
        received = flood_paths(tracer.collected)
        assert dropped > 0, "the flood should overflow a one-page ring buffer"
        if len(received) + dropped != FLOOD:  # shown in full with the failure
            print("received", len(received), "dropped", dropped, "before", before,
                  "after", after)
            print("\n".join(line for line in tracer.metrics().splitlines()
                            if line.startswith(("snoop_events", "snoop_perf",
                                                "snoop_bookkeeping", "snoop_kernel"))))
            print(tracer.log())
        assert len(received) + dropped == FLOOD, (len(received), dropped)
        # A record the ring buffer had no room for left no dedup entry: the next access
        # to its path is sent, not suppressed for SNOOP_DEDUP_TTL.
        lost = {f"{prefix}/{i}".encode() for i in range(AGAIN)} - received
        assert lost, "some of the first paths should have been dropped"
        worker.stdin.write("go\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "again"
        tracer.settle(quiet=1.0)
        later = _stats_after(tracer, time.time())
        dropped_again = later.kernel_dropped - after.kernel_dropped
        tracer.wait_for(lambda c: len(lost & flood_paths(c)) + dropped_again >= len(lost),
                        timeout=20)
        arrived = lost & flood_paths(tracer.collected)
        # Paced, nearly all fit; any that did not are counted again, never suppressed.
        assert len(arrived) + dropped_again == len(lost), (len(arrived), dropped_again)
        assert len(arrived) >= 0.9 * len(lost), (len(arrived), len(lost))
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        tracer.close()


def _stats_after(tracer: TracerHarness, moment: float):
    """The first stats message the tracer sent after `moment` (its counters are live)."""
    deadline = time.monotonic() + 10
    seen = len(tracer.collected.stats)
    while time.monotonic() < deadline:
        tracer.pump(0.1)
        fresh = tracer.collected.stats[seen:]
        # Stats go out once a second: the second fresh one surely postdates `moment`.
        if len(fresh) >= 2:
            return fresh[1]
    raise AssertionError("the tracer sent no stats")


def test_all_but_self_traces_others_never_itself_and_stops_cleanly(cgroup, tmp_path):
    tracer = TracerHarness({"SNOOP_TARGET_MODE": "all-but-self"})
    try:
        marker = tmp_path / f"marker-{uuid.uuid4().hex}"
        marker.write_text("x")
        cgroup.run(["cat", str(marker)], stdout=subprocess.DEVNULL)
        assert tracer.wait_for(lambda c: str(marker).encode() in c.paths(cgroup.id))
        tracer.settle(quiet=0.5)
        assert not [e for e in tracer.collected.events if e.tgid == tracer.proc.pid]
        with open(f"/proc/{tracer.proc.pid}/cgroup") as handle:
            own = handle.read()
        assert "0::/snoop-tracer-" in own, own
        programs = attached_program_ids(tracer.proc.pid)
        assert programs, "the tracer should hold BPF programs while it runs"

        code, seconds = tracer.stop()
        assert code == 0, tracer.log()
        assert seconds < 5.0
        # Detaching takes the kernel ~40 ms per tracepoint: it goes on after the stop.
        deadline = time.monotonic() + 30
        while (still := {p for p in programs if program_exists(p)}) and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        assert not still, f"BPF programs left attached: {sorted(still)}"
    finally:
        tracer.close()

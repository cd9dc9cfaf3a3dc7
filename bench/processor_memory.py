"""The processor's memory per unique path, its throughput on one core, and a flood.

Default: feeds N unique, realistic-looking paths (default 100,000) for one workload, in
batches of the tracer's default size, through the real pipeline (normalize, exclude,
dedup, outbox), flushing to a sink that accepts everything, and prints
- the RSS growth (the target is at most 30 MB for 100K paths);
- throughput in events/s on one core (the process is pinned to one CPU): the pipeline
  alone, and the whole of a processor's work per event (decode the EventBatch, handle,
  flush, encode the FileUpdates). Batches are encoded before the clock starts: building
  them is the tracer's cost.

    .venv/bin/python bench/processor_memory.py [N]

`--flood`: starts `snoop processor` as its own process and floods it as the issue's
trial did: N unique paths (default 1,000,000) as fast as a stand-in tracer can send
them, which holds a refused batch and retries it (a real tracer holds its ring buffer),
into a stand-in reporter that takes one message per `--reporter-delay` seconds. Prints
what reached the reporter, how long it took, the processor's peak RSS (VmHWM) and its
flow-control metrics. `--hwm H` sets both high-water marks of every socket (the
processor's and the stand-ins') to H, to try values transport.py does not ship yet.

    .venv/bin/python bench/processor_memory.py --flood [N] [--reporter-delay 0.005] [--hwm 16]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from snoop.common.config import Config
from snoop.common.protocol import (
    AccessKind,
    Event,
    EventBatch,
    Header,
    MessageType,
    Workload,
    decode,
    encode,
)
from snoop.processor.pipeline import Pipeline

BATCH = Config().batch_max_events  # the tracer's default batch size
WORKLOAD = Workload(key="0" * 64, cgroup_path="/docker/" + "0" * 64, container_id="0" * 64)


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize()


COMMS = (b"python3", b"gunicorn", b"sh")


def path(i: int) -> bytes:
    # Shaped like a real image: a few hundred directories, file names of varied length.
    top = (b"usr/lib/python3.11/site-packages", b"usr/share/locale", b"etc", b"opt/app/src",
           b"usr/lib/x86_64-linux-gnu")[i % 5]
    return b"/%s/pkg%03d/module_%06d_%s.py" % (top, i % 397, i, b"x" * (i % 17))


def batch(seq: int, start: int, stop: int, sender: str = "tracer-1") -> EventBatch:
    # As from a real tracer: a process name on each, and one in four a failed probe.
    events = tuple(Event(1, 10, 10, AccessKind.READ, path(i), True, 2 if i % 4 == 0 else 0,
                         COMMS[i % len(COMMS)]) for i in range(start, stop))
    return EventBatch(Header(sender, seq), events, {1: WORKLOAD}, sent_at=time.time())


def batches(n: int):
    """Built one at a time, as they come off the wire: only what dedup keeps survives."""
    for seq, start in enumerate(range(0, n, BATCH), 1):
        yield batch(seq, start, min(n, start + BATCH))


def one_core() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def memory_and_throughput(n: int) -> None:
    cpu = one_core()
    avg_len = sum(len(path(i)) for i in range(n)) / n
    pipeline = Pipeline(Config(max_unique_files=10 * n), "bench")
    sent = [0]

    def sink(message) -> bool:
        sent[0] += sum(len(u.files) for u in message.updates)
        return True

    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    for item in batches(n):
        pipeline.handle(item)
        pipeline.flush(sink)
    building = time.perf_counter() - started
    gc.collect()
    growth = rss_bytes() - before
    print(f"unique paths: {len(pipeline.dedup)} (average {avg_len:.0f} bytes), "
          f"forwarded: {sent[0]}")
    print(f"RSS growth: {growth / 2**20:.1f} MiB ({growth / n:.0f} bytes per path)")
    print(f"throughput, batch building included: {n / building:,.0f} events/s")

    # Same paths again, as a second tracer's first sightings would be for new workloads:
    # fresh pipelines, batches prepared beforehand, best of three.
    built = list(batches(n))
    wire = [encode(item) for item in built]
    del built
    best_pipeline = best_wire = 0.0
    for _ in range(3):
        decoded = [decode(data) for data in wire]
        fresh = Pipeline(Config(max_unique_files=10 * n), "bench")
        gc.collect()
        started = time.perf_counter()
        for item in decoded:
            fresh.handle(item)
            fresh.flush(sink)
        best_pipeline = max(best_pipeline, n / (time.perf_counter() - started))
        del decoded, fresh
        fresh = Pipeline(Config(max_unique_files=10 * n), "bench")
        gc.collect()
        started = time.perf_counter()
        for data in wire:
            fresh.handle(decode(data))
            fresh.flush(lambda message: bool(encode(message)))
        best_wire = max(best_wire, n / (time.perf_counter() - started))
        del fresh
    print(f"throughput on CPU {cpu}, batches of {BATCH}: pipeline {best_pipeline:,.0f} "
          f"events/s; decode + pipeline + encode {best_wire:,.0f} events/s")


# ---------------------------------------------------------------- flood


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            values[name] = float(value)
    return values


def _vm(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def flood(n: int, reporter_delay: float, hwm: int | None) -> None:
    from snoop.common import transport

    if hwm is not None:
        transport.SEND_HWM = transport.RECV_HWM = hwm
    run_dir = tempfile.mkdtemp(prefix="snoop-flood-")
    port = _free_port()
    config = Config(run_dir=run_dir)
    start_processor = (
        "import sys; from snoop.common import transport; "
        + (f"transport.SEND_HWM = transport.RECV_HWM = {hwm}; " if hwm is not None else "")
        + "from snoop.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    processor = subprocess.Popen(
        [sys.executable, "-c", start_processor, "processor", "--run-dir", run_dir,
         "--metrics-addr", f"127.0.0.1:{port}", "--log-level", "error"])
    context = transport.new_context()
    reporter = transport.Receiver(context, config.endpoint("updates"),
                                  (MessageType.FILE_UPDATES,), bind=True)
    tracer = transport.Sender(context, config.endpoint("events"))
    got: set[bytes] = set()
    covered: set[int] = set()
    messages = [0]
    last_message = [time.monotonic()]
    stop = threading.Event()

    def slow_reporter() -> None:
        while not stop.is_set():
            message = reporter.recv(0.05)
            if message is None:
                continue
            messages[0] += 1
            last_message[0] = time.monotonic()
            got.update(f.path for u in message.updates for f in u.files)
            for lo, hi in message.covers.get("tracer-1", ()):
                covered.update(range(lo, hi + 1))
            if reporter_delay:
                time.sleep(reporter_delay)

    thread = threading.Thread(target=slow_reporter, daemon=True)
    try:
        deadline = time.monotonic() + 10
        while True:  # ready once it serves metrics
            try:
                _metrics(port)
                break
            except OSError:
                assert processor.poll() is None and time.monotonic() < deadline, \
                    "processor did not start"
                time.sleep(0.05)
        thread.start()
        refusals = 0
        held = 0.0
        started = time.monotonic()
        total = 0
        for item in batches(n):
            total = item.header.seq
            refused_at = None
            while not tracer.send(item):  # a refused batch is held and retried
                refusals += 1
                refused_at = refused_at or time.monotonic()
                time.sleep(0.0005)
            if refused_at is not None:
                held += time.monotonic() - refused_at
        sent_in = time.monotonic() - started
        # Everything covered, or nothing new for 10 s (content was dropped on the way).
        while len(covered) < total and time.monotonic() - last_message[0] < 10:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        metrics = _metrics(port)
        memory = _vm(processor.pid)
    finally:
        stop.set()
        processor.terminate()
        processor.wait(10)
        thread.join(2)
        reporter.close(linger=0)
        tracer.close(linger=0)
        context.term()
    print(f"flood: {n:,} unique paths in {total} batches of {BATCH}, reporter "
          f"{reporter_delay * 1000:g} ms per message, HWM {hwm or transport.RECV_HWM}")
    print(f"tracer: sent all in {sent_in:.2f}s; {refusals:,} refused sends, "
          f"{held:.2f}s holding refused batches")
    print(f"reporter: {len(got):,} of {n:,} paths ({n - len(got):,} lost), "
          f"{len(covered)} of {total} batches covered, {messages[0]:,} messages, "
          f"{elapsed:.2f}s ({n / elapsed:,.0f} events/s end to end)")
    print(f"processor: peak RSS (VmHWM) {memory['VmHWM'] / 2**20:.0f} MiB, "
          f"RSS at the end {memory['VmRSS'] / 2**20:.0f} MiB")
    shown = ("snoop_batches_received_total", "snoop_update_sends_blocked_total",
             "snoop_updates_dropped_files_total", "snoop_intake_pauses_total",
             "snoop_pending_files_peak", "snoop_pending_units_peak")
    print("processor metrics: " + ", ".join(
        f"{name.removeprefix('snoop_')} {metrics[name]:,.0f}" for name in shown
        if name in metrics))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, help="unique paths")
    parser.add_argument("--flood", action="store_true", help="flood a `snoop processor`")
    parser.add_argument("--reporter-delay", type=float, default=0.005,
                        help="seconds the stand-in reporter spends per message (--flood)")
    parser.add_argument("--hwm", type=int, help="high-water mark of every socket (--flood)")
    args = parser.parse_args()
    if args.flood:
        flood(args.n or 1_000_000, args.reporter_delay, args.hwm)
    else:
        memory_and_throughput(args.n or 100_000)


if __name__ == "__main__":
    main()

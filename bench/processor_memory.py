"""How much memory the processor's dedup state costs per unique path.

Feeds N unique, realistic-looking paths (default 100,000) for one workload through the
real pipeline (normalize, exclude, dedup, outbox), flushing to a sink that accepts
everything, and prints the RSS growth. The target is at most 30 MB for 100K paths.

    .venv/bin/python bench/processor_memory.py [N]
"""

from __future__ import annotations

import gc
import resource
import sys
import time

from snoop.common.config import Config
from snoop.common.protocol import AccessKind, Event, EventBatch, Header, Workload
from snoop.processor.pipeline import Pipeline


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize()


def path(i: int) -> bytes:
    # Shaped like a real image: a few hundred directories, file names of varied length.
    top = (b"usr/lib/python3.11/site-packages", b"usr/share/locale", b"etc", b"opt/app/src",
           b"usr/lib/x86_64-linux-gnu")[i % 5]
    return b"/%s/pkg%03d/module_%06d_%s.py" % (top, i % 397, i, b"x" * (i % 17))


def batches(n: int, workload: Workload):
    """Built one at a time, as they come off the wire: only what dedup keeps survives."""
    for seq, start in enumerate(range(0, n, 256), 1):
        events = tuple(Event(1, 10, 10, AccessKind.READ, path(i))
                       for i in range(start, min(n, start + 256)))
        yield EventBatch(Header("tracer-1", seq), events, {1: workload}, sent_at=time.time())


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    workload = Workload(key="0" * 64, cgroup_path="/docker/" + "0" * 64, container_id="0" * 64)
    avg_len = sum(len(path(i)) for i in range(n)) / n
    pipeline = Pipeline(Config(max_unique_files=10 * n), "bench")
    sent = [0]

    def sink(message) -> bool:
        sent[0] += sum(len(u.files) for u in message.updates)
        return True

    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    for batch in batches(n, workload):
        pipeline.handle(batch)
        pipeline.flush(sink)
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    growth = after - before
    print(f"unique paths: {len(pipeline.dedup)} (average {avg_len:.0f} bytes), "
          f"forwarded: {sent[0]}")
    print(f"RSS growth: {growth / 2**20:.1f} MiB ({growth / n:.0f} bytes per path)")
    print(f"throughput: {n / elapsed:,.0f} events/s (batch building included)")


if __name__ == "__main__":
    main()

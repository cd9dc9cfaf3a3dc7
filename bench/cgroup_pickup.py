"""How fast a new child cgroup is listed where the kernel cannot find a target's
descendants itself (5.10 and older): from mkdir() returning to the tracer's inotify wake-up
and the child's id and verdict known, ready for the BPF map.

    .venv/bin/python bench/cgroup_pickup.py [COUNT]     (root: it makes cgroups)

The tracer's run loop adds one BPF map update (microseconds) and, when it is busy
draining, the rest of that turn. Prints p50, p99 and max over COUNT children.
"""

from __future__ import annotations

import os
import select
import statistics
import sys
import time
import uuid

from snoop.tracer import cgroups
from snoop.tracer.descendants import DescendantTracker


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 200
    root = cgroups.discover_cgroup2_root()
    parent_rel = f"/snoop-pickup-{uuid.uuid4().hex[:8]}"
    parent = cgroups.abspath(root, parent_rel)
    os.mkdir(parent)
    made: list[str] = []
    tracker = DescendantTracker(root)
    try:
        tracker.expand({parent_rel: True})
        poller = select.poll()
        poller.register(tracker.fd, select.POLLIN)
        delays = []
        for i in range(count):
            path = os.path.join(parent, f"c{i}")
            os.mkdir(path)
            made.append(path)
            started = time.perf_counter()
            wanted = cgroups.cgroup_id(path)
            found = False
            while not found and time.perf_counter() - started < 5:
                poller.poll(1000)
                found = wanted in tracker.poll().added
            if not found:
                print(f"cgroup_pickup: c{i} not picked up within 5 s", file=sys.stderr)
                return 1
            delays.append((time.perf_counter() - started) * 1e6)
        delays.sort()
        print(f"cgroup pickup on {os.uname().release}, {count} children: "
              f"p50 {statistics.median(delays):.0f} us, "
              f"p99 {delays[int(0.99 * (count - 1))]:.0f} us, max {delays[-1]:.0f} us")
        return 0
    finally:
        tracker.close()
        for path in reversed(made):
            os.rmdir(path)
        os.rmdir(parent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

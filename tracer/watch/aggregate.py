"""Repeated reads and writes, one line per (process, fd, op) per interval; everything
else passes straight through, in order: a line for an fd's reads or writes comes out
before that fd's close or reopen."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from snoop.tracer.watch.events import WatchEvent

AGGREGATED = ("read", "write")


class Aggregator:
    def __init__(self) -> None:
        self._open: dict[tuple[int, int, str], WatchEvent] = {}

    def add(self, event: WatchEvent) -> list[WatchEvent]:
        """What can be shown now, given `event`."""
        if event.op in AGGREGATED and event.fd is not None:
            key = (event.pid, event.fd, event.op)
            held = self._open.get(key)
            if held is None:
                self._open[key] = event
            else:
                held.calls += event.calls
                held.failed += event.failed
                held.bytes = (held.bytes or 0) + (event.bytes or 0)
                if event.path is not None:
                    held.path = event.path
            return []
        out = []
        if event.fd is not None and event.op in ("close", "open"):
            for op in AGGREGATED:
                held = self._open.pop((event.pid, event.fd, op), None)
                if held is not None:
                    out.append(held)
        out.append(event)
        return out

    def flush(self) -> list[WatchEvent]:
        """Every held line (an interval ended, or the watch did)."""
        held = sorted(self._open.values(), key=lambda e: e.time)
        self._open.clear()
        return held


@dataclass
class Summary:
    """What `snoop watch` prints when it ends."""

    calls_by_op: Counter = field(default_factory=Counter)
    written: Counter = field(default_factory=Counter)  # path -> bytes
    read: Counter = field(default_factory=Counter)
    unresolved_fds: int = 0  # read, write or close of an fd whose path was not found
    filtered: int = 0  # events the directory or op filter left out in user space

    def count(self, event: WatchEvent) -> None:
        self.calls_by_op[event.op] += event.calls
        if event.path is None and event.fd is not None and event.op != "open":
            self.unresolved_fds += event.calls
        if event.bytes and event.path is not None:
            if event.op == "write":
                self.written[event.path] += event.bytes
            elif event.op == "read":
                self.read[event.path] += event.bytes

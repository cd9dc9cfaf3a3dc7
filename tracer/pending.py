"""Batches sent but not yet confirmed persisted, kept to be re-sent.

The kernel deduplicates, so a path lost downstream may never be seen again: every batch
stays here until a reporter checkpoint covers its sequence number. Memory is bounded by
`max_events`; past it the oldest batches are given up and counted, never silently.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from snoop.common.protocol import CaptureCounts, Event, Workload


@dataclass
class PendingBatch:
    seq: int
    events: tuple[Event, ...]
    workloads: dict[int, Workload]
    created_at: float
    last_sent: float  # 0 when it was never handed to the transport, or is due again
    times_sent: int = 0
    coverage: dict[int, CaptureCounts] = field(default_factory=dict)


class PendingBatches:
    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._batches: OrderedDict[int, PendingBatch] = OrderedDict()
        self.events = 0
        self.dropped_events = 0  # given up because of the memory bound

    def __len__(self) -> int:
        return len(self._batches)

    def add(self, batch: PendingBatch) -> None:
        self._batches[batch.seq] = batch
        self.events += len(batch.events)
        while self.events > self.max_events and len(self._batches) > 1:
            _, oldest = self._batches.popitem(last=False)
            self.events -= len(oldest.events)
            self.dropped_events += len(oldest.events)

    def confirm(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Forget every batch inside the persisted ranges; returns how many."""
        confirmed = 0
        for first, last in ranges:
            for seq in [s for s in self._batches if first <= s <= last]:
                self.events -= len(self._batches.pop(seq).events)
                confirmed += 1
        return confirmed

    def holes(self, below: int, sent_before: float) -> list[PendingBatch]:
        """Unconfirmed batches older than a confirmed one: lost on the way (a downstream
        process died with them), unless sent too recently to tell."""
        return [b for b in self._batches.values()
                if b.seq < below and 0.0 < b.last_sent < sent_before]

    def due(self, now: float, resend_after: float) -> Iterator[PendingBatch]:
        """Batches never sent, or sent longer than resend_after ago, oldest first."""
        for batch in self._batches.values():
            if batch.last_sent == 0.0 or now - batch.last_sent >= resend_after:
                yield batch

    def oldest_age(self, now: float) -> float:
        if not self._batches:
            return 0.0
        return now - next(iter(self._batches.values())).created_at

"""Batches sent but not yet confirmed persisted, kept to be re-sent.

The kernel deduplicates, so a path lost downstream may never be seen again: every batch
stays here until a reporter checkpoint covers its sequence number. Batches are keyed by
(sender, seq): a restarted tracer re-sends what an earlier incarnation left unconfirmed
(tracer/spool.py), under that incarnation's identity. Nothing is ever given up here:
when `full`, the tracer stops draining the ring buffer, so loss happens in one place,
the kernel's, and is counted there.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass
class PendingBatch:
    """A batch as bytes: the EventBatch as first sent, encoded (about the size of its
    paths; a Python object per event would cost ten times that)."""

    seq: int
    sender: str
    count: int  # events it holds
    encoded: bytes
    created_at: float
    last_sent: float  # 0 when it was never handed to the transport, or is due again
    times_sent: int = 0


class PendingBatches:
    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._batches: OrderedDict[tuple[str, int], PendingBatch] = OrderedDict()
        self.events = 0

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def full(self) -> bool:
        return self.events >= self.max_events

    def add(self, batch: PendingBatch) -> None:
        self._batches[(batch.sender, batch.seq)] = batch
        self.events += batch.count

    def senders(self) -> set[str]:
        return {sender for sender, _ in self._batches}

    def confirm(self, sender: str, ranges: Iterable[tuple[int, int]]) -> list[PendingBatch]:
        """Forget every batch of `sender` inside the persisted ranges; returns them."""
        confirmed = []
        for first, last in ranges:
            for key in [k for k in self._batches if k[0] == sender and first <= k[1] <= last]:
                batch = self._batches.pop(key)
                self.events -= batch.count
                confirmed.append(batch)
        return confirmed

    def holes(self, sender: str, below: int, sent_before: float) -> list[PendingBatch]:
        """Unconfirmed batches of `sender` older than a confirmed one: lost on the way (a
        downstream process died with them), unless sent too recently to tell."""
        return [b for (s, seq), b in self._batches.items()
                if s == sender and seq < below and 0.0 < b.last_sent < sent_before]

    def due(self, now: float, resend_after: float) -> Iterator[PendingBatch]:
        """Batches never sent, or sent longer than resend_after ago, oldest first."""
        for batch in self._batches.values():
            if batch.last_sent == 0.0 or now - batch.last_sent >= resend_after:
                yield batch

"""Which tracer messages are durably persisted: seq range sets and the checkpoint state.

A tracer keeps every batch until a `Checkpoint` names its seq. The reporter learns what
each FileUpdates carries from its `covers` (tracer sender -> seq ranges), holds those
ranges as *received* until their content is durable (the journal fsynced, or the reports
written), and only then moves them to *persisted*. Ranges, not a high-water mark: a hole
stays visible, so the tracer re-sends exactly what is missing. We never claim a seq we
did not persist; when a sender has too many ranges we forget its oldest ones (the tracer
confirmed and dropped those long ago), never merge across a hole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from snoop.common.ranges import Ranges, RangeSet

MAX_RANGES_PER_SENDER = 256
MAX_SENDERS = 1024
FORGET_SENDER_AFTER = 24 * 3600.0  # a tracer incarnation silent this long is gone


class Checkpoints:
    """Received-but-not-yet-durable and persisted seq ranges, per tracer sender."""

    def __init__(self, *, max_ranges: int = MAX_RANGES_PER_SENDER, max_senders: int = MAX_SENDERS,
                 forget_after: float = FORGET_SENDER_AFTER,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_ranges = max_ranges
        self.max_senders = max_senders
        self.forget_after = forget_after
        self._clock = clock
        self.persisted: dict[str, RangeSet] = {}
        self.received: dict[str, RangeSet] = {}
        self.last_seen: dict[str, float] = {}
        self.forgotten_ranges = 0

    def receive(self, covers: Mapping[str, Iterable[tuple[int, int]]]) -> None:
        """Note the covers of one FileUpdates now applied in memory."""
        now = self._clock()
        for sender, ranges in covers.items():
            self.received.setdefault(sender, RangeSet()).update(ranges)
            self.last_seen[sender] = now

    def take_received(self) -> dict[str, RangeSet]:
        """Hand the received ranges to a write round; `commit` or `restore` them after."""
        taken, self.received = self.received, {}
        return taken

    def restore(self, taken: Mapping[str, RangeSet]) -> None:
        for sender, ranges in taken.items():
            self.received.setdefault(sender, RangeSet()).update(ranges)

    def preview(self, taken: Mapping[str, RangeSet], bound: bool = True) -> dict[str, RangeSet]:
        """The persisted ranges as they will be once `taken` is committed (for the state file)."""
        merged = {s: RangeSet(r.ranges()) for s, r in self.persisted.items()}
        for sender, ranges in taken.items():
            merged.setdefault(sender, RangeSet()).update(ranges)
        if bound:
            self._bound(merged)
        return merged

    def commit(self, taken: Mapping[str, RangeSet]) -> None:
        """The content behind `taken` is on disk: its ranges are persisted."""
        self.forgotten_ranges += sum(
            max(0, len(r) - self.max_ranges) for r in self.preview(taken, bound=False).values()
        )
        self.persisted = self.preview(taken)
        for sender in list(self.last_seen):
            if sender not in self.persisted and sender not in self.received:
                del self.last_seen[sender]

    def _bound(self, persisted: dict[str, RangeSet]) -> None:
        now = self._clock()
        for sender in list(persisted):
            if now - self.last_seen.get(sender, now) > self.forget_after:
                del persisted[sender]
            else:
                persisted[sender].trim(self.max_ranges)
        if len(persisted) > self.max_senders:
            by_age = sorted(persisted, key=lambda s: self.last_seen.get(s, 0.0))
            for sender in by_age[: len(persisted) - self.max_senders]:
                del persisted[sender]

    def persisted_ranges(self) -> dict[str, Ranges]:
        return {sender: ranges.ranges() for sender, ranges in self.persisted.items() if ranges}

    # ------------------------------------------------------------ state file

    @staticmethod
    def to_json(persisted: Mapping[str, RangeSet], last_seen: Mapping[str, float]) -> dict:
        return {
            sender: {"ranges": [list(r) for r in ranges.ranges()],
                     "last_seen": last_seen.get(sender, 0.0)}
            for sender, ranges in persisted.items()
        }

    def load_json(self, data: Any) -> None:
        """Restore persisted ranges from the state file; raises ValueError if malformed."""
        if not isinstance(data, dict):
            raise ValueError("persisted: expected an object")
        persisted: dict[str, RangeSet] = {}
        last_seen: dict[str, float] = {}
        for sender, entry in data.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("ranges"), list):
                raise ValueError(f"persisted[{sender!r}]: expected an object with 'ranges'")
            ranges = RangeSet()
            for pair in entry["ranges"]:
                lo, hi = pair
                if not (isinstance(lo, int) and isinstance(hi, int)) or lo < 0:
                    raise ValueError(f"persisted[{sender!r}]: bad range {pair!r}")
                ranges.add(lo, hi)
            persisted[str(sender)] = ranges
            last_seen[str(sender)] = float(entry.get("last_seen", 0.0))
        self.persisted = persisted
        self.last_seen = last_seen

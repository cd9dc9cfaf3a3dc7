"""Sets of sequence numbers as sorted, disjoint ranges: what a FileUpdates covers (the
processor) and what is persisted (the reporter), where a hole must stay visible."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

Ranges = tuple[tuple[int, int], ...]


class RangeSet:
    """A set of non-negative integers kept as sorted, disjoint, non-adjacent [lo, hi]."""

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._ranges: list[tuple[int, int]] = []
        for lo, hi in ranges:
            self.add(lo, hi)

    def add(self, lo: int, hi: int | None = None) -> None:
        hi = lo if hi is None else hi
        if lo > hi:
            raise ValueError(f"range start {lo} is after its end {hi}")
        ranges = self._ranges
        # Disjoint sorted ranges have sorted ends too: find the first that touches lo.
        i = bisect_left(ranges, lo - 1, key=lambda r: r[1])
        j = i
        while j < len(ranges) and ranges[j][0] <= hi + 1:
            lo = min(lo, ranges[j][0])
            hi = max(hi, ranges[j][1])
            j += 1
        ranges[i:j] = [(lo, hi)]

    def update(self, other: RangeSet | Iterable[tuple[int, int]]) -> None:
        for lo, hi in other.ranges() if isinstance(other, RangeSet) else other:
            self.add(lo, hi)

    def __contains__(self, seq: int) -> bool:
        i = bisect_left(self._ranges, seq, key=lambda r: r[1])
        return i < len(self._ranges) and self._ranges[i][0] <= seq

    def covers_all(self, lo: int, hi: int) -> bool:
        i = bisect_left(self._ranges, hi, key=lambda r: r[1])
        return i < len(self._ranges) and self._ranges[i][0] <= lo

    def ranges(self) -> Ranges:
        return tuple(self._ranges)

    def trim(self, max_ranges: int) -> int:
        """Forget the lowest ranges beyond `max_ranges`; returns how many were forgotten."""
        extra = len(self._ranges) - max_ranges
        if extra <= 0:
            return 0
        del self._ranges[:extra]
        return extra

    def __len__(self) -> int:
        return len(self._ranges)

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self._ranges == other._ranges

    def __repr__(self) -> str:
        return f"RangeSet({self._ranges!r})"

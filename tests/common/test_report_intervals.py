"""merge_intervals past MAX_INTERVALS: the same result as joining the closest neighbours
one pair at a time, in O(n log n)."""

from __future__ import annotations

import random
import time

from snoop.common.report import MAX_INTERVALS, merge_intervals


def _one_pair_at_a_time(intervals: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """The definition: join overlaps, then the closest neighbours (lowest first on a tie)
    until MAX_INTERVALS are left."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    while len(merged) > MAX_INTERVALS:
        _, at = min((merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1))
        merged[at][1] = merged.pop(at + 1)[1]
    return tuple((a, b) for a, b in merged)


def test_past_the_cap_the_closest_neighbours_are_joined():
    rng = random.Random(3)
    for count in (MAX_INTERVALS - 1, MAX_INTERVALS, MAX_INTERVALS + 1, 1300):
        # Whole-number times give many equal gaps: ties must go the same way too.
        intervals = [(float(t), float(t + rng.randint(0, 3)))
                     for t in rng.sample(range(count * 6), count)]
        assert merge_intervals(intervals) == _one_pair_at_a_time(intervals)
    spread = [(rng.uniform(0, 1e6), 0.0) for _ in range(1500)]
    spread = [(a, a + rng.uniform(0, 50)) for a, _ in spread]
    half = len(spread) // 2
    assert merge_intervals(spread[:half], spread[half:]) == _one_pair_at_a_time(spread)


def test_every_interval_stays_covered():
    intervals = [(i * 10.0, i * 10.0 + 1) for i in range(5000)]
    merged = merge_intervals(intervals)
    assert len(merged) == MAX_INTERVALS
    assert all(any(a <= start and end <= b for a, b in merged) for start, end in intervals[::97])


def test_twenty_thousand_intervals_take_well_under_a_second():
    intervals = [(i * 10.0, i * 10.0 + 1 + (i * 7919 % 8)) for i in range(20_000)]
    start = time.monotonic()
    merged = merge_intervals(intervals)
    elapsed = time.monotonic() - start
    assert len(merged) == MAX_INTERVALS
    assert elapsed < 1.0, f"{elapsed:.2f} s"  # joining one pair at a time: about 10 s

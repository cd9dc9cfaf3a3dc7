"""The merges are joins: any order, any grouping, any repeat gives the same state."""

from __future__ import annotations

from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from snoop.common.report import Coverage, Report
from snoop.receiver.merge import FileRow, merge_files, merge_heads

times = st.sampled_from([0.0, 10.0, 20.0, 30.0])
file_rows = st.builds(
    lambda kinds, outcomes, comms, first, last: FileRow(kinds, outcomes, comms, first, last),
    st.integers(0, 255), st.integers(0, (1 << 64) - 1),
    st.lists(st.sampled_from([f"p{i}" for i in range(12)]), max_size=8, unique=True)
    .map(lambda names: tuple(sorted(names))),
    times, times)
heads = st.builds(
    lambda updated, started, name, pod, total, dropped, labels, gap: Report(
        workload=name, pod_name=pod, last_updated_at=updated, started_at=started,
        total_events=total, labels=labels,
        coverage=Coverage(kernel_dropped=dropped, unobserved=gap)),
    times, times, st.sampled_from(["", "a", "b"]), st.sampled_from(["", "x", "y"]),
    st.integers(0, 5), st.integers(0, 5),
    st.dictionaries(st.sampled_from(["k", "l"]), st.sampled_from(["1", "2"])),
    st.sampled_from([(), ((1.0, 2.0),), ((1.5, 4.0),)]))


def _fold_files(rows):
    return reduce(lambda a, b: merge_files(a, b), rows, None)


def _fold_heads(items):
    return reduce(merge_heads, items, Report())


@settings(max_examples=200, deadline=None)
@given(st.lists(file_rows, min_size=1, max_size=6), st.randoms())
def test_files_merge_in_any_order_and_twice(rows, rng):
    shuffled = list(rows) + rows[: len(rows) // 2]
    rng.shuffle(shuffled)
    assert _fold_files(shuffled) == _fold_files(rows)
    merged = _fold_files(rows)
    assert merge_files(merged, merged) == merged
    assert len(merged.comms) <= 8


@settings(max_examples=200, deadline=None)
@given(st.lists(heads, min_size=1, max_size=6), st.randoms())
def test_heads_merge_in_any_order_and_twice(items, rng):
    shuffled = list(items) + items[: len(items) // 2]
    rng.shuffle(shuffled)
    assert _fold_heads(shuffled) == _fold_heads(items)
    merged = _fold_heads(items)
    assert merge_heads(merged, merged) == merged
    newest = max(h.last_updated_at for h in items)
    assert merged.last_updated_at == newest
    known = [h.started_at for h in items if h.started_at]
    assert merged.started_at == (min(known) if known else 0.0)


def test_the_newest_head_wins_and_ties_take_the_largest():
    old = Report(workload="old", last_updated_at=10.0, total_events=99,
                 coverage=Coverage(kernel_dropped=9))
    new = Report(workload="new", last_updated_at=20.0, total_events=1)
    assert merge_heads(old, new).workload == "new"
    assert merge_heads(old, new).total_events == 1
    assert merge_heads(new, old).coverage.kernel_dropped == 0
    tie = Report(workload="abc", last_updated_at=20.0, total_events=5,
                 coverage=Coverage(kernel_dropped=3))
    merged = merge_heads(new, tie)
    assert (merged.workload, merged.total_events, merged.coverage.kernel_dropped) == (
        "new", 5, 3)

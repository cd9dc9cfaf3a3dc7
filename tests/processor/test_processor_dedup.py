from snoop.common.protocol import AccessKind, kinds_mask
from snoop.processor.dedup import Dedup

READ = kinds_mask(AccessKind.READ)
EXEC = kinds_mask(AccessKind.EXEC)
STAT = kinds_mask(AccessKind.STAT)


def test_new_then_seen() -> None:
    d = Dedup(max_unique_files=10, refresh_interval=30)
    assert d.observe("w", b"/a", READ, 1000.0) == READ
    assert d.observe("w", b"/a", READ, 1001.0) == 0
    assert d.counts.new == 1 and d.counts.suppressed == 1


def test_workloads_are_separate() -> None:
    d = Dedup(max_unique_files=10, refresh_interval=30)
    assert d.observe("w1", b"/a", READ, 1000.0) == READ
    assert d.observe("w2", b"/a", READ, 1000.0) == READ
    assert d.unique_files() == {"w1": 1, "w2": 1}


def test_new_kind_forwards_the_merged_mask() -> None:
    d = Dedup(max_unique_files=10, refresh_interval=30)
    d.observe("w", b"/bin/sh", STAT, 1000.0)
    assert d.observe("w", b"/bin/sh", EXEC, 1000.5) == STAT | EXEC
    assert d.observe("w", b"/bin/sh", STAT, 1000.6) == 0
    assert d.counts.widened == 1


def test_last_seen_is_refreshed_at_most_once_per_interval() -> None:
    d = Dedup(max_unique_files=10, refresh_interval=30)
    d.observe("w", b"/a", READ, 1000.0)
    assert d.observe("w", b"/a", READ, 1029.0) == 0
    assert d.observe("w", b"/a", READ, 1030.0) == READ
    assert d.observe("w", b"/a", READ, 1059.0) == 0  # interval restarts at the refresh
    assert d.observe("w", b"/a", READ, 1060.5) == READ
    assert d.counts.refreshed == 2


def test_clock_going_backwards_does_not_refresh() -> None:
    d = Dedup(max_unique_files=10, refresh_interval=30)
    d.observe("w", b"/a", READ, 5000.0)
    assert d.observe("w", b"/a", READ, 100.0) == 0


def test_force_bypasses_dedup() -> None:
    d = Dedup(max_unique_files=10, refresh_interval=30)
    d.observe("w", b"/a", READ | EXEC, 1000.0)
    assert d.observe("w", b"/a", READ, 1000.0, force=True) == READ | EXEC
    assert d.counts.forced == 1


def test_cap_forwards_but_does_not_remember_and_counts() -> None:
    d = Dedup(max_unique_files=2, refresh_interval=30)
    assert d.observe("w", b"/a", READ, 1.0) == READ
    assert d.observe("w", b"/b", READ, 1.0) == READ
    assert d.observe("w", b"/c", READ, 1.0) == READ  # over the cap: still forwarded
    assert d.observe("w", b"/c", READ, 1.0) == READ  # ... every time, never remembered
    assert d.counts.cap_hits == 2
    assert d.unique_files() == {"w": 2}
    assert d.capped == {"w"}
    # Known paths keep deduplicating at the cap.
    assert d.observe("w", b"/a", READ, 2.0) == 0
    # Another workload has its own budget.
    assert d.observe("v", b"/c", READ, 1.0) == READ
    assert d.counts.cap_hits == 2


def test_sub_second_interval_still_deduplicates() -> None:
    d = Dedup(max_unique_files=10, refresh_interval=0.2)
    d.observe("w", b"/a", READ, 1000.0)
    assert d.observe("w", b"/a", READ, 1000.9) == 0
    assert d.observe("w", b"/a", READ, 1001.0) == READ

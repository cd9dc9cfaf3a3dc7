import pytest
from hypothesis import given
from hypothesis import strategies as st

from snoop.common.ranges import RangeSet
from snoop.reporter.checkpoints import Checkpoints


def test_ranges_coalesce_adjacent_and_overlapping() -> None:
    r = RangeSet()
    for seq in (5, 3, 4, 10, 12, 11, 1):
        r.add(seq)
    assert r.ranges() == ((1, 1), (3, 5), (10, 12))
    r.add(2)
    assert r.ranges() == ((1, 5), (10, 12))
    r.add(6, 9)
    assert r.ranges() == ((1, 12),)


def test_ranges_merge_a_span_over_several() -> None:
    r = RangeSet([(1, 2), (5, 6), (9, 9), (20, 30)])
    r.add(3, 19)
    assert r.ranges() == ((1, 30),)


def test_membership() -> None:
    r = RangeSet([(1, 3), (7, 9)])
    assert [s for s in range(11) if s in r] == [1, 2, 3, 7, 8, 9]
    assert r.covers_all(7, 9) and not r.covers_all(3, 7)


def test_bad_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="after its end"):
        RangeSet().add(5, 4)


def test_trim_forgets_lowest_ranges_never_bridges_a_hole() -> None:
    r = RangeSet((s, s) for s in range(1, 20, 2))
    assert r.trim(3) == 7
    assert r.ranges() == ((15, 15), (17, 17), (19, 19))
    assert 16 not in r


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_received_ranges_become_persisted_only_on_commit() -> None:
    c = Checkpoints(clock=Clock())
    c.receive({"t1": ((1, 3),), "t2": ((1, 1),)})
    taken = c.take_received()
    assert c.persisted_ranges() == {}
    c.receive({"t1": ((4, 4),)})  # arrives while the round writes: not in this round
    c.commit(taken)
    assert c.persisted_ranges() == {"t1": ((1, 3),), "t2": ((1, 1),)}
    c.commit(c.take_received())
    assert c.persisted_ranges() == {"t1": ((1, 4),), "t2": ((1, 1),)}


def test_failed_round_restores_received() -> None:
    c = Checkpoints(clock=Clock())
    c.receive({"t1": ((1, 2),)})
    taken = c.take_received()
    c.receive({"t1": ((3, 3),)})
    c.restore(taken)
    assert c.persisted_ranges() == {}
    c.commit(c.take_received())
    assert c.persisted_ranges() == {"t1": ((1, 3),)}


def test_ranges_per_sender_are_bounded() -> None:
    c = Checkpoints(max_ranges=4, clock=Clock())
    c.receive({"t1": tuple((s, s) for s in range(1, 21, 2))})
    c.commit(c.take_received())
    assert c.persisted_ranges()["t1"] == ((13, 13), (15, 15), (17, 17), (19, 19))


def test_silent_senders_are_forgotten_and_senders_are_bounded() -> None:
    clock = Clock()
    c = Checkpoints(max_senders=2, forget_after=100.0, clock=clock)
    c.receive({"old": ((1, 1),)})
    c.commit(c.take_received())
    clock.now += 101
    c.receive({"a": ((1, 1),)})
    c.commit(c.take_received())
    assert set(c.persisted_ranges()) == {"a"}
    clock.now += 1
    c.receive({"b": ((1, 1),)})
    clock.now += 1
    c.receive({"c": ((1, 1),)})
    c.commit(c.take_received())
    assert set(c.persisted_ranges()) == {"b", "c"}


def test_state_round_trip() -> None:
    c = Checkpoints(clock=Clock())
    c.receive({"t1": ((1, 3), (6, 9))})
    c.commit(c.take_received())
    data = Checkpoints.to_json(c.persisted, c.last_seen)
    d = Checkpoints(clock=Clock())
    d.load_json(data)
    assert d.persisted_ranges() == {"t1": ((1, 3), (6, 9))}
    with pytest.raises(ValueError):
        d.load_json({"t1": {"ranges": [[5, "x"]]}})


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 20)), max_size=60))
def test_rangeset_matches_a_plain_set(spans: list[tuple[int, int]]) -> None:
    r, plain = RangeSet(), set()
    for lo, length in spans:
        r.add(lo, lo + length)
        plain.update(range(lo, lo + length + 1))
    assert {s for s in range(0, 230) if s in r} == plain
    ranges = r.ranges()
    assert all(lo <= hi for lo, hi in ranges)
    assert all(a[1] + 1 < b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # coalesced

"""Per-sender gap accounting and the stats table (processor/tracers.py)."""

from snoop.common.protocol import COUNT_MAX, I64_MAX, MAX_SEQ_GAP, Header, TracerStats
from snoop.processor.tracers import (
    MAX_HOLES,
    REORDER_WINDOW,
    GapCounter,
    TracerTable,
    supersedes,
)

T0 = 1_700_000_000.0


def feed(counter: GapCounter, sender: str, *seqs: int) -> int:
    return sum(counter.observe(sender, seq) for seq in seqs)


def test_first_message_is_the_baseline() -> None:
    g = GapCounter()
    assert feed(g, "t", 1000, 1001, 1002) == 0
    assert g.total == 0 and g.open_seqs() == 0


def test_a_hole_counts_once_the_sender_moved_past_the_reorder_window() -> None:
    g = GapCounter()
    feed(g, "t", 1, 2, 5)  # 3 and 4 missing
    assert g.total == 0 and g.open_seqs() == 2
    assert feed(g, "t", *range(6, 5 + REORDER_WINDOW)) == 0  # 4 is still within reach
    assert g.observe("t", 5 + REORDER_WINDOW) == 2
    assert g.total == 2 and g.open_seqs() == 0 and g.gaps_of("t") == 2


def test_late_messages_fill_their_hole_and_never_count() -> None:
    g = GapCounter()
    feed(g, "t", 1, 4, 3, 2)  # a tracer retrying refused sends after newer ones
    feed(g, "t", *range(5, 5 + 2 * REORDER_WINDOW))
    assert g.total == 0 and g.late == 2
    assert feed(g, "t", 3, 4, 2) == 0  # repeats count nothing either


def test_senders_are_counted_apart() -> None:
    g = GapCounter()
    feed(g, "a", 1, 3)
    feed(g, "b", 10, 11)
    feed(g, "a", *range(4, 4 + REORDER_WINDOW + 1))
    feed(g, "b", 12)
    assert (g.gaps_of("a"), g.gaps_of("b"), g.total) == (1, 0, 1)


def test_too_many_holes_close_the_oldest() -> None:
    g = GapCounter()
    g.observe("t", 0)
    for i in range(1, MAX_HOLES + 3):
        g.observe("t", 2 * i)  # every odd seq missing
    assert g.total == 2 and g.open_seqs() == MAX_HOLES


def test_a_jump_over_max_gap_is_a_restart_not_a_loss() -> None:
    g = GapCounter()
    feed(g, "t", 1, 2)
    assert g.observe("t", 2 + MAX_SEQ_GAP + 2) == 0
    assert g.restarts == 1 and g.open_seqs() == 0
    # Numbering goes on from there.
    assert feed(g, "t", 2 + MAX_SEQ_GAP + 3, 2 + MAX_SEQ_GAP + 5) == 0
    assert g.open_seqs() == 1
    # The largest plausible jump still counts, once final.
    g2 = GapCounter()
    feed(g2, "t", 1, 2 + MAX_SEQ_GAP)
    assert g2.open_seqs() == MAX_SEQ_GAP and g2.restarts == 0


def test_one_absurd_seq_adds_no_gaps_and_numbering_recovers() -> None:
    g = GapCounter()
    feed(g, "t", 1, 2, 3)
    assert g.observe("t", I64_MAX) == 0  # corrupt, or a sender gone mad
    assert feed(g, "t", 4, 5, 7) == 0  # back to its real numbering: a restart again
    assert g.restarts == 2 and g.open_seqs() == 1  # only 6 is missing
    feed(g, "t", *range(8, 8 + REORDER_WINDOW))
    assert g.total == 1


def test_a_sender_restarting_its_seq_adds_no_gaps() -> None:
    g = GapCounter()
    feed(g, "t", *range(10**8, 10**8 + 5))
    assert feed(g, "t", 1, 2, 3) == 0
    assert g.restarts == 1 and g.total == 0
    # A small step back is an old message, not a restart.
    assert feed(g, "t", 1, 4) == 0 and g.restarts == 1


def test_two_senders_jumping_to_the_top_of_int64_count_nothing() -> None:
    g = GapCounter()
    for sender in ("a", "b", "c"):
        feed(g, sender, 1, I64_MAX)
    assert g.total == 0 and g.open_seqs() == 0


def test_the_total_saturates() -> None:
    g = GapCounter()
    g.total = COUNT_MAX - 1
    feed(g, "t", 1, 5, *range(6, 6 + REORDER_WINDOW + 1))
    assert g.total == COUNT_MAX


def test_forgetting_a_sender_counts_its_open_holes() -> None:
    g = GapCounter(max_senders=2)
    feed(g, "a", 1, 3)
    feed(g, "b", 1)
    assert g.observe("c", 1) == 1  # "a" was the least recently heard
    assert len(g) == 2 and g.total == 1


def stats(seq: int, dropped: int) -> TracerStats:
    return TracerStats(Header("t", seq), T0, dropped, 0, 0, {"openat": dropped})


def test_stats_table_keeps_the_newest_and_follows_a_restarted_numbering() -> None:
    table = TracerTable()
    table.update(stats(10, 5))
    table.update(stats(9, 4))  # older: says less
    assert table.dropped()["kernel"] == 5
    table.update(stats(I64_MAX, 99))
    table.update(stats(11, 6))  # far below the absurd one: numbering restarted
    assert table.dropped()["kernel"] == 6
    assert supersedes(11, I64_MAX) and not supersedes(9, 10) and supersedes(10, 10)

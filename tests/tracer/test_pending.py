"""The tracer's re-send buffer: kept until confirmed, bounded, holes found."""

from snoop.common.protocol import AccessKind, Event, Workload
from snoop.tracer.pending import PendingBatch, PendingBatches


def batch(seq: int, events: int = 1, sent: float = 0.0) -> PendingBatch:
    evs = tuple(Event(1, 2, 2, AccessKind.READ, f"/f{seq}-{i}".encode()) for i in range(events))
    return PendingBatch(seq, evs, {1: Workload("w")}, created_at=sent, last_sent=sent,
                        times_sent=1 if sent else 0)


def test_confirmed_ranges_forget_batches_and_others_stay():
    pending = PendingBatches(max_events=100)
    for seq in range(1, 6):
        pending.add(batch(seq, sent=1.0))
    assert pending.confirm([(1, 2), (4, 4)]) == 3
    assert len(pending) == 2 and pending.events == 2
    assert [b.seq for b in pending.due(now=100.0, resend_after=10.0)] == [3, 5]


def test_memory_bound_gives_up_oldest_and_counts_them():
    pending = PendingBatches(max_events=10)
    for seq in range(1, 5):
        pending.add(batch(seq, events=4, sent=1.0))
    assert pending.events <= 10
    assert pending.dropped_events == 8
    assert [b.seq for b in pending.due(now=100.0, resend_after=0.0)] == [3, 4]


def test_never_sent_batches_are_due_at_once_sent_ones_after_the_timeout():
    pending = PendingBatches(max_events=100)
    pending.add(batch(1, sent=0.0))
    pending.add(batch(2, sent=50.0))
    assert [b.seq for b in pending.due(now=55.0, resend_after=10.0)] == [1]
    assert [b.seq for b in pending.due(now=61.0, resend_after=10.0)] == [1, 2]


def test_holes_are_older_unconfirmed_batches_sent_long_enough_ago():
    pending = PendingBatches(max_events=100)
    pending.add(batch(1, sent=10.0))
    pending.add(batch(2, sent=19.5))
    pending.add(batch(3, sent=10.0))
    pending.confirm([(3, 3)])
    assert [b.seq for b in pending.holes(below=3, sent_before=18.0)] == [1]

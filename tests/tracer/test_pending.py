"""The tracer's re-send buffer: kept until confirmed, per sender, never given up, holes
found; and its copy on disk (the spool)."""

from snoop.common import protocol
from snoop.common.protocol import AccessKind, Event, EventBatch, Header, Workload
from snoop.tracer.pending import PendingBatch, PendingBatches
from snoop.tracer.spool import Spool

SENDER = "tracer/a"


def batch(seq: int, events: int = 1, sent: float = 0.0, sender: str = SENDER) -> PendingBatch:
    evs = tuple(Event(1, 2, 2, AccessKind.READ, f"/f{seq}-{i}".encode()) for i in range(events))
    encoded = protocol.encode(EventBatch(Header(sender, seq), evs, {1: Workload("w")},
                                         sent_at=1_700_000_000.0))
    return PendingBatch(seq, sender, events, encoded, created_at=sent, last_sent=sent,
                        times_sent=1 if sent else 0)


def test_confirmed_ranges_forget_batches_and_others_stay():
    pending = PendingBatches(max_events=100)
    for seq in range(1, 6):
        pending.add(batch(seq, sent=1.0))
    pending.add(batch(1, sent=1.0, sender="tracer/earlier"))
    assert [b.seq for b in pending.confirm(SENDER, [(1, 2), (4, 4)])] == [1, 2, 4]
    assert len(pending) == 3 and pending.events == 3
    assert [b.seq for b in pending.due(now=100.0, resend_after=10.0)] == [3, 5, 1]
    assert pending.senders() == {SENDER, "tracer/earlier"}


def test_nothing_is_given_up_when_full_the_tracer_holds():
    pending = PendingBatches(max_events=10)
    for seq in range(1, 5):
        pending.add(batch(seq, events=4, sent=1.0))
    assert pending.full
    assert pending.events == 16
    assert [b.seq for b in pending.due(now=100.0, resend_after=0.0)] == [1, 2, 3, 4]
    pending.confirm(SENDER, [(1, 3)])
    assert not pending.full


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
    pending.confirm(SENDER, [(3, 3)])
    assert [b.seq for b in pending.holes(SENDER, below=3, sent_before=18.0)] == [1]
    assert pending.holes("tracer/other", below=3, sent_before=18.0) == []


def test_spool_keeps_batches_until_removed_and_skips_torn_files(tmp_path):
    spool = Spool(str(tmp_path / "spool"))
    for seq in (1, 2, 3):
        spool.put(SENDER, seq, protocol.encode(EventBatch(
            Header(SENDER, seq), (Event(1, 2, 2, AccessKind.READ, b"/x%d" % seq),),
            {1: Workload("w")}, sent_at=1_700_000_000.0 + seq)))
    spool.remove(SENDER, 2)
    (tmp_path / "spool" / "torn.batch.tmp").write_bytes(b"\x85\xa1")
    (tmp_path / "spool" / "0-bad.batch").write_bytes(b"not msgpack")
    again = Spool(str(tmp_path / "spool"))
    loaded = again.load()
    assert [(b.header.sender, b.header.seq) for b, _ in loaded] == [(SENDER, 1), (SENDER, 3)]
    assert protocol.decode(loaded[0][1]).events[0].path == b"/x1"
    assert len(list((tmp_path / "spool").iterdir())) == 2


def test_bases_log_replays_what_was_appended_and_stays_bounded_when_rewritten(tmp_path):
    from snoop.tracer.state import BasesLog

    log = BasesLog(str(tmp_path / "bases.log"))
    for serial in range(1, 101):
        log.append(serial, b"/dir/%d" % serial)
    log.flush()
    assert len(BasesLog(str(tmp_path / "bases.log")).replay()) == 100
    log.rewrite([(100, b"/dir/100")])
    log.append(101, b"/dir/101")
    log.flush()
    with open(tmp_path / "bases.log", "ab") as handle:
        handle.write(b"\x01\x02")  # a torn last entry
    assert BasesLog(str(tmp_path / "bases.log")).replay() == [(100, b"/dir/100"),
                                                             (101, b"/dir/101")]
    log.close()

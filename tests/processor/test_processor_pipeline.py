from snoop.common.config import Config
from snoop.common.protocol import (
    I64_MAX,
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    MAX_PATH_BYTES,
    AccessKind,
    CaptureCounts,
    Event,
    EventBatch,
    FileUpdates,
    Header,
    TracerStats,
    Workload,
    decode,
    encode,
    kinds_mask,
)
from snoop.processor.outbox import MAX_FILES_PER_MESSAGE, Outbox
from snoop.processor.pipeline import Pipeline
from snoop.processor.tracers import REORDER_WINDOW

W1 = Workload(key="c1", cgroup_path="/docker/c1", container_id="c1")
W2 = Workload(key="c2", cgroup_path="/docker/c2", container_id="c2")
READ = kinds_mask(AccessKind.READ)
EXEC = kinds_mask(AccessKind.EXEC)
T0 = 1_700_000_000.0  # message timestamps must look like Unix time to decode


def batch(seq: int, *paths: bytes, sender: str = "t1", resend: bool = False, cgroup: int = 1,
          kind: AccessKind = AccessKind.READ, sent_at: float = T0,
          resolved: bool = True, capture: CaptureCounts | None = None) -> EventBatch:
    workloads = {1: W1, 2: W2}
    events = tuple(Event(cgroup, 7, 7, kind, p, resolved) for p in paths)
    coverage = {} if capture is None else {cgroup: capture}
    return EventBatch(Header(sender, seq), events, {cgroup: workloads[cgroup]}, sent_at, resend,
                      coverage)


def stats(seq: int, sender: str = "t1", dropped: int = 0) -> TracerStats:
    return TracerStats(Header(sender, seq), started_at=T0, kernel_dropped=dropped,
                       read_failures=0, unresolved=0, events_by_syscall={"openat": seq})


def drain(pipeline: Pipeline) -> list[FileUpdates]:
    sent: list[FileUpdates] = []

    def send(message: FileUpdates) -> bool:
        # Through the real codec: what we build must be a valid message.
        sent.append(decode(encode(message)))
        return True

    assert pipeline.flush(send)
    return sent


def files_of(messages: list[FileUpdates]) -> dict[tuple[str, bytes], int]:
    out: dict[tuple[str, bytes], int] = {}
    for message in messages:
        for update in message.updates:
            for f in update.files:
                out[(update.workload.key, f.path)] = out.get((update.workload.key, f.path), 0) \
                    | f.kinds
    return out


def new_pipeline(**overrides) -> Pipeline:
    return Pipeline(Config(**overrides), "proc-1")


def test_batch_is_normalized_excluded_and_deduplicated() -> None:
    p = new_pipeline()
    p.handle(batch(1, b"/etc//passwd", b"/dev/null", b"/proc/1/maps", b"/etc/passwd",
                   b"/usr/lib/../bin/sh/", b"rel/./x", resolved=True))
    [message] = drain(p)
    assert files_of([message]) == {("c1", b"/etc/passwd"): READ, ("c1", b"/usr/bin/sh"): READ,
                                   ("c1", b"rel/x"): READ}
    [update] = message.updates
    assert update.total_events == 6  # every event counts, excluded ones too
    assert message.covers == {"t1": ((1, 1),)}
    assert message.header == Header("proc-1", 1)
    assert p.counts.excluded == 2


def test_seen_paths_are_not_forwarded_again_but_their_batch_is_covered() -> None:
    p = new_pipeline()
    p.handle(batch(1, b"/a"))
    drain(p)
    p.handle(batch(2, b"/a"))
    [message] = drain(p)
    assert files_of([message]) == {}
    assert message.covers == {"t1": ((2, 2),)}
    assert message.updates[0].total_events == 1
    assert message.header.seq == 2


def test_new_kind_is_forwarded_with_merged_mask() -> None:
    p = new_pipeline()
    p.handle(batch(1, b"/bin/sh"))
    p.handle(batch(2, b"/bin/sh", kind=AccessKind.EXEC))
    assert files_of(drain(p)) == {("c1", b"/bin/sh"): READ | EXEC}


def test_first_and_last_seen_come_from_sent_at_and_merge() -> None:
    p = new_pipeline()
    p.handle(batch(1, b"/a", sent_at=T0 + 2000))
    p.handle(batch(2, b"/a", kind=AccessKind.STAT, sent_at=T0 + 2005))
    [message] = drain(p)
    [f] = message.updates[0].files
    assert (f.first_seen, f.last_seen) == (T0 + 2000, T0 + 2005)


def test_resend_bypasses_dedup_and_is_not_counted_twice() -> None:
    p = new_pipeline()
    p.handle(batch(1, b"/a", b"/b", b"/dev/x"))
    drain(p)
    p.handle(batch(1, b"/a", b"/b", b"/dev/x", resend=True))
    [message] = drain(p)
    assert files_of([message]) == {("c1", b"/a"): READ, ("c1", b"/b"): READ}
    assert message.covers == {"t1": ((1, 1),)}
    assert all(u.total_events == 0 for u in message.updates)
    assert p.counts.resent_batches == 1


def test_gaps_are_counted_per_sender_once_final_and_resends_do_not_count() -> None:
    p = new_pipeline()
    p.handle(batch(5, b"/a"))  # first sight sets the baseline: no gap
    p.handle(batch(6, b"/b"))
    p.handle(batch(9, b"/c"))  # 7 and 8 missing
    p.handle(batch(3, b"/d", resend=True))  # re-sends neither count nor fill
    p.handle(stats(12))  # stats share the numbering: 10 and 11 missing
    p.handle(batch(7, b"/e"))  # late, not lost: a refused send retried
    p.handle(batch(1, b"/f", sender="t2"))
    p.handle(batch(2, b"/g", sender="t2"))
    messages = drain(p)
    assert sum(m.gaps for m in messages) == 0  # 8, 10 and 11 may still come
    assert p.gaps.open_seqs() == 3
    covers = messages[-1].covers
    assert covers["t1"] == ((3, 3), (5, 7), (9, 9), (12, 12))
    assert covers["t2"] == ((1, 2),)
    for seq in range(13, 13 + REORDER_WINDOW + 1):  # far enough: the holes are final
        p.handle(batch(seq, b"/h"))
    assert sum(m.gaps for m in drain(p)) == 3
    assert (p.gaps.total, p.gaps.gaps_of("t1"), p.gaps.gaps_of("t2")) == (3, 3, 0)
    assert p.gaps.late == 1 and p.gaps.open_seqs() == 0


def test_unresolved_paths_are_counted_not_listed() -> None:
    p = new_pipeline()
    p.handle(batch(1, b"./x/../y", b"rel", resolved=False))
    p.handle(batch(2, b"/abs"))
    [message] = drain(p)
    assert files_of([message]) == {("c1", b"/abs"): READ}
    [update] = message.updates
    assert (update.unresolved, update.total_events) == (2, 3)
    assert p.counts.unresolved == 2 and p.counts.excluded == 0
    p.handle(batch(1, b"./x/../y", b"rel", resolved=False, resend=True))
    [again] = drain(p)
    assert files_of([again]) == {} and all(u.unresolved == 0 for u in again.updates)


def test_capture_counts_add_up_per_workload_and_resends_do_not_count() -> None:
    p = new_pipeline()
    p.handle(batch(1, b"/a", capture=CaptureCounts(paths_too_long=1, io_uring_ops=2)))
    p.handle(batch(2, capture=CaptureCounts(uncertain_paths=3, io_uring_ops=1)))
    p.handle(batch(3, b"/b", cgroup=2, capture=CaptureCounts(io_uring_ops=5)))
    p.handle(batch(1, b"/a", resend=True, capture=CaptureCounts(paths_too_long=1,
                                                                io_uring_ops=2)))
    [message] = drain(p)
    capture = {u.workload.key: u.capture for u in message.updates}
    assert capture == {"c1": CaptureCounts(paths_too_long=1, uncertain_paths=3, io_uring_ops=3),
                       "c2": CaptureCounts(io_uring_ops=5)}
    assert message.covers == {"t1": ((1, 3),)}
    p.handle(batch(4, b"/c"))
    [later] = drain(p)
    assert [u.capture for u in later.updates] == [CaptureCounts()]


def test_a_full_message_of_the_longest_paths_fits_the_wire_limit() -> None:
    assert MAX_FILES_PER_MESSAGE <= MAX_BATCH_EVENTS
    outbox = Outbox()
    outbox.reserve(MAX_FILES_PER_MESSAGE, 1)
    for i in range(MAX_FILES_PER_MESSAGE):
        path = b"/%d/" % i
        outbox.add_file(W1, path + b"a" * (MAX_PATH_BYTES - len(path)), READ, T0)
    outbox.cover("t1", 1)
    outbox.reserve(1, 1)  # the unit is full: this goes into the next one
    outbox.add_file(W1, b"/one-more", READ, T0)
    outbox.cover("t1", 2)
    message = outbox.peek(Header("proc-1", 1))
    assert message is not None
    assert sum(len(u.files) for u in message.updates) == MAX_FILES_PER_MESSAGE
    assert len(encode(message)) <= MAX_MESSAGE_BYTES


def test_latest_stats_per_tracer_are_forwarded_and_covered() -> None:
    p = new_pipeline()
    p.handle(stats(1, dropped=3))
    p.handle(stats(2, dropped=5))
    p.handle(stats(1, sender="t2", dropped=1))
    [message] = drain(p)
    assert sorted((s.header.sender, s.kernel_dropped) for s in message.tracer_stats) == \
        [("t1", 5), ("t2", 1)]
    assert message.covers == {"t1": ((1, 2),), "t2": ((1, 1),)}
    assert p.tracers.dropped()["kernel"] == 6
    assert p.tracers.events_by_syscall() == {"openat": 3}
    assert drain(p) == []  # nothing left: stats went out once


def test_invalid_count_is_forwarded_as_a_delta() -> None:
    p = new_pipeline()
    p.note_invalid(2)
    assert drain(p)[0].invalid_messages == 2
    p.note_invalid(2)
    assert drain(p) == []
    p.note_invalid(5)
    assert drain(p)[0].invalid_messages == 3


def test_refused_send_keeps_everything_and_retries() -> None:
    p = new_pipeline()
    p.handle(batch(1, b"/a"))
    assert not p.flush(lambda m: False)
    assert not p.flush(lambda m: False)
    p.handle(batch(2, b"/b"))
    messages = drain(p)
    assert files_of(messages) == {("c1", b"/a"): READ, ("c1", b"/b"): READ}
    assert messages[-1].covers == {"t1": ((1, 2),)}
    assert [m.header.seq for m in messages] == list(range(1, len(messages) + 1))
    assert p.counts.sends_blocked == 2


def test_big_content_is_split_and_each_message_covers_only_its_own_batches() -> None:
    p = Pipeline(Config(), "proc-1", outbox=Outbox(max_files_per_message=10))
    for seq in range(1, 5):
        p.handle(batch(seq, *[b"/f/%d/%d" % (seq, i) for i in range(6)]))
    messages = drain(p)
    assert len(messages) == 4
    for seq, message in enumerate(messages, 1):
        assert message.covers == {"t1": ((seq, seq),)}
        assert {f.path for u in message.updates for f in u.files} == \
            {b"/f/%d/%d" % (seq, i) for i in range(6)}


def test_a_full_outbox_stops_intake_and_keeps_everything() -> None:
    p = Pipeline(Config(), "proc-1",
                 outbox=Outbox(max_files_per_message=10, max_pending_files=15))
    taken = 0
    for seq in range(1, 5):
        if not p.has_room():
            break
        p.handle(batch(seq, *[b"/f/%d/%d" % (seq, i) for i in range(6)]))
        taken = seq
        assert not p.flush(lambda m: False)
    # 18 files in 3 units: over the bound after batch 3, so batch 4 stays with its tracer.
    assert taken == 3 and not p.has_room() and p.counts.intake_pauses == 1
    assert p.outbox.pending_files == 18 and p.outbox.peak_files == 18
    messages = drain(p)
    assert [m.covers["t1"] for m in messages] == [((1, 1),), ((2, 2),), ((3, 3),)]
    assert files_of(messages) == {("c1", b"/f/%d/%d" % (seq, i)): READ
                                  for seq in range(1, 4) for i in range(6)}
    assert p.has_room() and p.outbox.pending_files == 0


def test_dedup_suppression_is_safe_when_the_first_update_is_lost() -> None:
    """Batch 2 repeats batch 1's path; the message carrying it is lost. Batch 2 may be
    confirmed, batch 1 must not be: re-sending batch 1 brings the path back."""
    p = new_pipeline()
    p.handle(batch(1, b"/a"))
    lost = drain(p)
    p.handle(batch(2, b"/a"))
    delivered = drain(p)
    assert lost[0].covers == {"t1": ((1, 1),)} and files_of(lost) == {("c1", b"/a"): READ}
    assert delivered[0].covers == {"t1": ((2, 2),)} and files_of(delivered) == {}
    p.handle(batch(1, b"/a", resend=True))
    assert files_of(drain(p)) == {("c1", b"/a"): READ}


def test_workloads_in_one_batch_are_kept_apart() -> None:
    p = new_pipeline()
    events = (Event(1, 1, 1, AccessKind.READ, b"/x"), Event(2, 2, 2, AccessKind.READ, b"/x"),
              Event(2, 2, 2, AccessKind.READ, b"/y"))
    p.handle(EventBatch(Header("t1", 1), events, {1: W1, 2: W2}, T0))
    [message] = drain(p)
    assert files_of([message]) == {("c1", b"/x"): READ, ("c2", b"/x"): READ,
                                   ("c2", b"/y"): READ}
    totals = {u.workload.key: u.total_events for u in message.updates}
    assert totals == {"c1": 1, "c2": 2}


def test_seqs_at_the_top_of_int64_cannot_overflow_what_the_processor_packs() -> None:
    """Senders that jump from seq 1 to the largest seq once crashed msgpack.packb."""
    p = new_pipeline()
    for sender in ("t1", "t2", "t3"):
        p.handle(stats(1, sender=sender))
        p.handle(batch(I64_MAX, b"/top", sender=sender))
    messages = drain(p)
    assert sum(m.gaps for m in messages) == 0 and p.gaps.restarts == 3
    assert files_of(messages) == {("c1", b"/top"): READ}


def test_counts_saturate_at_int64() -> None:
    outbox = Outbox()
    for _ in range(2):
        outbox.add_gaps(I64_MAX)
        outbox.add_invalid(I64_MAX)
        outbox.add_counts(W1, I64_MAX, I64_MAX)
    outbox.cover("t1", 1)
    message = outbox.peek(Header("proc-1", 1))
    assert message is not None
    assert (message.gaps, message.invalid_messages) == (I64_MAX, I64_MAX)
    assert (message.updates[0].total_events, message.updates[0].unresolved) == (I64_MAX, I64_MAX)
    assert decode(encode(message)) == message


def test_peek_is_rebuilt_only_when_something_changed() -> None:
    outbox = Outbox()
    outbox.reserve(1, 1)
    outbox.add_file(W1, b"/a", READ, T0)
    outbox.cover("t1", 1)
    first = outbox.peek(Header("proc-1", 1))
    assert outbox.peek(Header("proc-1", 1)) is first  # a refused send retried: no rebuild
    outbox.add_gaps(1)
    again = outbox.peek(Header("proc-1", 1))
    assert again is not first and again is not None and again.gaps == 1

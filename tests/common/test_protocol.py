"""The wire protocol: every message type round-trips; anything malformed raises
ProtocolError and nothing else."""

from __future__ import annotations

import contextlib
import re
import time

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snoop.common import protocol as p
from snoop.common.outcomes import MAYBE_FOUND, OUTCOME_LEGACY

NOW = 1_800_000_000.0  # the receiver's clock in these tests (2027-01-15)
T = NOW - 60.0  # a time a minute before it


def decode(data, allowed=None) -> p.Message:
    return p.decode(data, allowed, now=NOW)


def sample_messages() -> list[p.Message]:
    header = p.Header(sender="tracer/host/1/2", seq=7)
    events = (
        p.Event(cgroup_id=2**63 + 5, pid=10, tgid=9, kind=p.AccessKind.READ, path=b"/etc/passwd",
                comm=b"cat"),
        p.Event(cgroup_id=3, pid=11, tgid=11, kind=p.AccessKind.EXEC, path=b"rel/x",
                resolved=False, errno=-1, comm=b"\xffodd name 15b"),
        p.Event(cgroup_id=3, pid=11, tgid=11, kind=p.AccessKind.STAT, path=b"/nope",
                errno=2, comm=b"sh"),
    )
    meta = p.WorkloadMeta("shop:1.2", "sha256:" + "a" * 64, "web-1", "prod", "app",
                          (("tier", "web"),))
    workloads = {2**63 + 5: p.Workload("abc", "/docker/abc", "abc", "prod/web-1/app", meta),
                 3: p.Workload("/")}
    stats = p.TracerStats(header=p.Header("tracer/host/1/2", 8), started_at=T - 3600,
                          kernel_dropped=3, read_failures=1, unresolved=2,
                          events_by_syscall={"openat": 10}, attached=("openat", "execve"),
                          pending_dropped=4)
    return [
        p.EventBatch(header, events, workloads, sent_at=T + 0.25, resend=True,
                     coverage={3: p.CaptureCounts(paths_too_long=1, uncertain_paths=2,
                                                  io_uring_ops=p.I64_MAX)}),
        stats,
        p.FileUpdates(
            header=p.Header("processor/host", 1),
            updates=(p.WorkloadUpdate(p.Workload("abc", "/docker/abc", "abc"),
                                      (p.FileSeen(b"/bin/\xff", 0b110, T, T + 1,
                                                  1 | 1 << 2 | 1 << 63,
                                                  (b"sh", b"python3")),),
                                      total_events=5, unresolved=1,
                                      capture=p.CaptureCounts(io_uring_ops=4)),),
            covers={"tracer/host/1/2": ((1, 7), (9, 9))},
            tracer_stats=(stats,), gaps=2, invalid_messages=1),
        p.Checkpoint(p.Header("reporter/host", 3), {"tracer/host/1/2": ((1, 7),)}),
    ]


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(message):
    assert decode(p.encode(message)) == message


def test_non_utf8_path_survives_unchanged():
    path = b"/srv/caf\xe9/\x80\xfe\xff.bin"
    batch = p.EventBatch(p.Header("t", 1), (p.Event(1, 1, 1, p.AccessKind.READ, path),),
                         {1: p.Workload("w")}, sent_at=T)
    assert decode(p.encode(batch)).events[0].path == path


def test_a_resolved_path_longer_than_path_max_is_accepted_up_to_max_path_bytes():
    path = b"/" + b"a" * (p.MAX_PATH_BYTES - 1)
    batch = p.EventBatch(p.Header("t", 1), (p.Event(1, 1, 1, p.AccessKind.STAT, path),),
                         {1: p.Workload("w")}, sent_at=T)
    assert decode(p.encode(batch)).events[0].path == path


def test_a_path_over_max_path_bytes_names_the_field_and_the_bound():
    path = b"/" + b"a" * p.MAX_PATH_BYTES
    batch = p.EventBatch(p.Header("t", 1), (p.Event(1, 1, 1, p.AccessKind.STAT, path),),
                         {1: p.Workload("w")}, sent_at=T)
    with pytest.raises(p.ProtocolError, match=r"events\[0\]\.path: 32769 bytes, more than "
                                              r"MAX_PATH_BYTES \(32768\)"):
        decode(p.encode(batch))
    update = p.FileUpdates(p.Header("proc", 1), (p.WorkloadUpdate(
        p.Workload("w"), (p.FileSeen(path, 2, T, T),)),), covers={})
    with pytest.raises(p.ProtocolError, match=r"updates\[0\]\.files\[0\]\.path: .*"
                                              r"MAX_PATH_BYTES"):
        decode(p.encode(update))


def test_the_largest_valid_batch_fits_the_wire_limit():
    path = b"/" + b"a" * (p.MAX_PATH_BYTES - 1)
    events = tuple(p.Event(2**64 - 1, p.U32_MAX, p.U32_MAX, p.AccessKind.MKNOD, path, False)
                   for _ in range(p.MAX_BATCH_EVENTS))
    batch = p.EventBatch(p.Header("t" * p.MAX_SENDER_LEN, p.SEQ_MAX), events,
                         {2**64 - 1: p.Workload("w")}, sent_at=NOW + p.TIME_MAX_AHEAD)
    data = p.encode(batch)
    assert len(data) <= p.MAX_MESSAGE_BYTES
    assert len(decode(data).events) == p.MAX_BATCH_EVENTS


def test_messages_from_senders_without_capture_counts_still_decode():
    batch, _, updates, _ = sample_messages()
    raw_batch = msgpack.unpackb(p.encode(batch), raw=False, strict_map_key=False)
    del raw_batch["body"]["coverage"]
    assert decode(msgpack.packb(raw_batch, use_bin_type=True)).coverage == {}
    raw_updates = msgpack.unpackb(p.encode(updates), raw=False, strict_map_key=False)
    del raw_updates["body"]["updates"][0]["capture"]
    decoded = decode(msgpack.packb(raw_updates, use_bin_type=True))
    assert decoded.updates[0].capture == p.CaptureCounts()


def test_capture_counters_a_receiver_does_not_know_are_ignored_missing_ones_are_zero():
    raw = body_with(coverage={3: {"io_uring_ops": 2, "from_the_future": 9}})
    decoded = decode(msgpack.packb(raw, use_bin_type=True))
    assert decoded.coverage == {3: p.CaptureCounts(io_uring_ops=2)}


def test_capture_counts_add_up_saturating_at_int64():
    a = p.CaptureCounts(paths_too_long=1, uncertain_paths=2, io_uring_ops=p.I64_MAX)
    assert a + a == p.CaptureCounts(2, 4, p.I64_MAX)
    assert a.any() and not p.CaptureCounts().any()


def envelope(**overrides) -> dict:
    base = msgpack.unpackb(p.encode(sample_messages()[0]), raw=False, strict_map_key=False)
    base.update(overrides)
    return base


def body_with(**overrides) -> dict:
    body = envelope()["body"]
    body.update(overrides)
    return envelope(body=body)


MALFORMED = {
    "wrong version": envelope(v=2),
    "unknown type": envelope(type="shutdown_everything"),
    "empty sender": envelope(sender=""),
    "negative seq": envelope(seq=-1),
    "seq is a string": envelope(seq="7"),
    "body is a list": envelope(body=[1, 2]),
    "event path is str": body_with(events=[[1, 1, 1, 1, "/etc/passwd", True]]),
    "event has 5 fields": body_with(events=[[1, 1, 1, 1, b"/x"]]),
    "unknown access kind": body_with(events=[[1, 1, 1, 99, b"/x", True]]),
    "pid over u32": body_with(events=[[1, 2**40, 1, 1, b"/x", True]]),
    "oversize path": body_with(events=[[1, 1, 1, 1, b"/" + b"a" * p.MAX_PATH_BYTES, True]]),
    "empty path": body_with(events=[[1, 1, 1, 1, b"", True]]),
    "NUL in path": body_with(events=[[1, 1, 1, 1, b"/a\0b", True]]),
    "oversize batch": body_with(events=[[1, 1, 1, 1, b"/x", True]] * (p.MAX_BATCH_EVENTS + 1)),
    "event without workload": body_with(workloads={}),
    "resend not bool": body_with(resend=1),
    "sent_at is nan": body_with(sent_at=float("nan")),
    "missing field": {k: v for k, v in envelope().items() if k != "body"},
    "coverage for a cgroup without workload": body_with(coverage={99: {"io_uring_ops": 1}}),
    "coverage is a list": body_with(coverage=[[3, 1, 2, 3]]),
    "coverage key is a string": body_with(coverage={"3": {}}),
    "negative capture count": body_with(coverage={3: {"paths_too_long": -1}}),
    "capture count over int64": body_with(coverage={3: {"uncertain_paths": 2**63}}),
    "capture count is a bool": body_with(coverage={3: {"io_uring_ops": True}}),
    "capture count is a float": body_with(coverage={3: {"io_uring_ops": 1.0}}),
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_raise_protocol_error(raw):
    with pytest.raises(p.ProtocolError):
        decode(msgpack.packb(raw, use_bin_type=True))


def test_truncated_bytes_raise_protocol_error():
    data = p.encode(sample_messages()[0])
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(p.ProtocolError):
            decode(data[:cut])


def test_oversize_message_is_refused_before_parsing():
    with pytest.raises(p.ProtocolError, match="more than"):
        decode(b"\x00" * (p.MAX_MESSAGE_BYTES + 1))


def test_type_not_accepted_here_is_refused():
    data = p.encode(sample_messages()[3])
    with pytest.raises(p.ProtocolError, match="not accepted"):
        decode(data, frozenset({p.MessageType.EVENT_BATCH}))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_protocol_error(data):
    with contextlib.suppress(p.ProtocolError):
        decode(data)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=8) | st.integers(0, 10), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(msgpack_values)
def test_random_capture_fields_raise_only_protocol_error(value):
    updates = msgpack.unpackb(p.encode(sample_messages()[2]), raw=False, strict_map_key=False)
    updates["body"]["updates"][0]["capture"] = value
    for raw in (body_with(coverage=value), body_with(coverage={3: value}), updates):
        with contextlib.suppress(p.ProtocolError):
            decode(msgpack.packb(raw, use_bin_type=True))


@settings(max_examples=400, deadline=None)
@given(msgpack_values, st.sampled_from(list(p.MessageType)))
def test_random_msgpack_values_raise_only_protocol_error(value, message_type):
    for raw in (value, {"v": 1, "type": message_type.value, "sender": "s", "seq": 1,
                        "body": value}):
        with contextlib.suppress(p.ProtocolError):
            decode(msgpack.packb(raw, use_bin_type=True))


counts = st.integers(0, p.I64_MAX)
capture_counts = st.builds(p.CaptureCounts, counts, counts, counts)
paths = st.binary(min_size=1, max_size=64).filter(lambda b: b"\0" not in b)
comms = st.binary(max_size=15).filter(lambda b: b"\0" not in b)
workloads = st.builds(p.Workload, st.text(min_size=1, max_size=8), st.text(max_size=8),
                      st.text(max_size=8))


@st.composite
def event_batches(draw) -> p.EventBatch:
    cgroups = draw(st.dictionaries(st.integers(0, p.U64_MAX), workloads, min_size=1,
                                   max_size=4))
    ids = sorted(cgroups)
    events = draw(st.lists(st.builds(
        p.Event, st.sampled_from(ids), st.integers(0, p.U32_MAX), st.integers(0, p.U32_MAX),
        st.sampled_from(list(p.AccessKind)), paths, st.booleans(), st.integers(-1, 4095),
        comms), max_size=8))
    coverage = draw(st.dictionaries(st.sampled_from(ids), capture_counts, max_size=len(ids)))
    return p.EventBatch(p.Header("t", draw(st.integers(0, p.SEQ_MAX))), tuple(events),
                        cgroups, sent_at=draw(st.floats(p.TIME_MIN, NOW + p.TIME_MAX_AHEAD)),
                        resend=draw(st.booleans()), coverage=coverage)


file_updates = st.builds(
    p.FileUpdates,
    header=st.just(p.Header("proc", 1)),
    updates=st.lists(st.builds(
        p.WorkloadUpdate, workloads,
        st.lists(st.builds(p.FileSeen, paths, st.integers(0, p.U32_MAX), st.just(T),
                           st.just(T + 1), st.integers(0, 2**64 - 1),
                           st.lists(comms, max_size=p.MAX_COMMS).map(tuple)),
                 max_size=4).map(tuple),
        total_events=counts, unresolved=counts,
        capture=capture_counts), max_size=4).map(tuple),
    covers=st.just({}),
)


@settings(max_examples=200, deadline=None)
@given(event_batches() | file_updates)
def test_generated_messages_with_capture_counts_round_trip(message):
    assert decode(p.encode(message)) == message


# ---------------------------------------------------------------- ranges, not only types
# Values that pass a type check but crash or poison a receiver (issue 9, item 4).


def raw_of(message: p.Message) -> dict:
    return msgpack.unpackb(p.encode(message), raw=False, strict_map_key=False)


def packed(raw: dict) -> bytes:
    return msgpack.packb(raw, use_bin_type=True)


def stats_body(**overrides) -> dict:
    raw = raw_of(sample_messages()[1])
    raw["body"].update(overrides)
    return raw


def updates_with(**overrides) -> dict:
    raw = raw_of(sample_messages()[2])
    raw["body"].update(overrides)
    return raw


def forwarded_stats(**overrides) -> dict:
    raw = raw_of(sample_messages()[2])
    raw["body"]["tracer_stats"][0].update(overrides)
    return raw


def file_with(first, last) -> dict:
    raw = raw_of(sample_messages()[2])
    raw["body"]["updates"][0]["files"][0][2:4] = [first, last]
    return raw


def event_with(index: int, value) -> dict:
    raw = raw_of(sample_messages()[0])
    raw["body"]["events"][0][index] = value
    return raw


def seen_with(index: int, value) -> dict:
    raw = raw_of(sample_messages()[2])
    raw["body"]["updates"][0]["files"][0][index] = value
    return raw


OUT_OF_RANGE = {
    "errno below -1": (event_with(6, -2), "events[0].errno"),
    "errno over MAX_ERRNO": (event_with(6, 4096), "events[0].errno"),
    "comm of 16 bytes": (event_with(7, b"x" * 16), "events[0].comm"),
    "comm with a NUL": (event_with(7, b"a\0b"), "events[0].comm"),
    "comm as text": (event_with(7, "sh"), "events[0].comm"),
    "outcomes negative": (seen_with(4, -1), "files[0].outcomes"),
    "too many comms": (seen_with(5, [b"a"] * (p.MAX_COMMS + 1)), "files[0].comms"),
    # 1e17 overflowed the reporter's iso_time; 3e11 wrote the year 11476.
    "sent_at 1e17": (body_with(sent_at=1e17), "sent_at: timestamp"),
    "sent_at 3e11": (body_with(sent_at=3e11), "sent_at: timestamp"),
    "sent_at before 2000": (body_with(sent_at=p.TIME_MIN - 1), "sent_at: timestamp"),
    "sent_at 1970": (body_with(sent_at=0.0), "sent_at: timestamp"),
    "sent_at over a day ahead": (body_with(sent_at=NOW + p.TIME_MAX_AHEAD + 1),
                                 "sent_at: timestamp"),
    "started_at 3e11": (stats_body(started_at=3e11), "tracer_stats.started_at"),
    "started_at negative": (stats_body(started_at=-1.0), "tracer_stats.started_at"),
    "first_seen 1e17": (file_with(1e17, 1e17), "files[0].first_seen"),
    "last_seen 3e11": (file_with(T, 3e11), "files[0].last_seen"),
    "first_seen after last_seen": (file_with(T + 5, T), "is after last_seen"),
    "seq 2**64-1": (envelope(seq=p.U64_MAX), "seq: "),
    "seq 2**63": (envelope(seq=2**63), "seq: "),
    "forwarded stats seq 2**64-1": (forwarded_stats(seq=p.U64_MAX), "tracer_stats[0].seq"),
    "forwarded started_at 1e17": (forwarded_stats(started_at=1e17),
                                  "tracer_stats[0].started_at"),
    "covers range end over int64": (updates_with(covers={"t": [[1, 2**63]]}), "covers[t][0][1]"),
    "kernel_dropped over int64": (stats_body(kernel_dropped=2**63), "kernel_dropped"),
    "syscall count over int64": (stats_body(events_by_syscall={"openat": 2**64 - 1}),
                                 "events_by_syscall"),
    "gaps over int64": (updates_with(gaps=2**64 - 1), "gaps: "),
    "invalid_messages over int64": (updates_with(invalid_messages=2**63), "invalid_messages"),
}


@pytest.mark.parametrize("raw, field", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_values_out_of_range_are_refused_naming_the_field(raw, field):
    with pytest.raises(p.ProtocolError, match=re.escape(field)):
        decode(packed(raw))


def meta_with(**meta) -> dict:
    raw = raw_of(sample_messages()[0])
    workload = next(iter(raw["body"]["workloads"].values()))
    workload[4] = meta
    return raw


@pytest.mark.parametrize("meta, field", [
    ({"image_ref": "x" * (p.MAX_META_VALUE + 1)}, "meta.image_ref"),
    ({"pod_name": 5}, "meta.pod_name"),
    ({f"field{i}": "x" for i in range(30)}, "meta: 30 entries"),
    ({"labels": {f"k{i}": "v" for i in range(p.MAX_META_LABELS + 1)}}, "meta.labels"),
    ({"labels": {"k": "v" * (p.MAX_LABEL_VALUE + 1)}}, "meta.labels['k']"),
    ({"labels": ["k", "v"]}, "meta.labels"),
])
def test_hostile_workload_metadata_is_refused_naming_the_field(meta, field):
    with pytest.raises(p.ProtocolError, match=re.escape(field)):
        decode(packed(meta_with(**meta)))


def test_metadata_fields_of_a_newer_sender_are_left_unread():
    batch = decode(packed(meta_with(image_ref="shop:1", owner="team-a")))
    meta = next(w.meta for w in batch.workloads.values() if w.meta is not None)
    assert meta.image_ref == "shop:1"


def test_workloads_of_an_older_sender_have_no_metadata():
    raw = raw_of(sample_messages()[0])
    for workload in raw["body"]["workloads"].values():
        del workload[4:]
    batch = decode(packed(raw))
    assert all(w.meta is None for w in batch.workloads.values())


def test_events_and_files_of_an_older_sender_are_read_without_outcomes():
    # Six-field events and four-field files: what a sender before outcomes wrote.
    raw = raw_of(sample_messages()[0])
    raw["body"]["events"] = [event[:6] for event in raw["body"]["events"]]
    events = decode(packed(raw)).events
    assert [(e.errno, e.comm) for e in events] == [(OUTCOME_LEGACY, b"")] * 3
    raw = raw_of(sample_messages()[2])
    raw["body"]["updates"][0]["files"] = [f[:4] for f in raw["body"]["updates"][0]["files"]]
    [seen] = decode(packed(raw)).updates[0].files
    assert (seen.outcomes, seen.comms) == (MAYBE_FOUND, ())  # may have been found


def test_the_bounds_themselves_are_accepted():
    assert decode(packed(envelope(seq=p.SEQ_MAX))).header.seq == p.SEQ_MAX
    for when in (p.TIME_MIN, NOW + p.TIME_MAX_AHEAD):
        assert decode(packed(body_with(sent_at=when))).sent_at == when
    counts = decode(packed(stats_body(kernel_dropped=p.COUNT_MAX, pending_dropped=p.COUNT_MAX)))
    assert counts.kernel_dropped == counts.pending_dropped == p.COUNT_MAX
    assert decode(packed(updates_with(gaps=p.COUNT_MAX, covers={"t": [[0, p.SEQ_MAX]]}))).gaps \
        == p.COUNT_MAX
    assert decode(packed(file_with(T, T))).updates[0].files[0].first_seen == T


def test_the_time_window_follows_the_receivers_clock():
    data = p.encode(sample_messages()[0])
    with pytest.raises(p.ProtocolError, match="sent_at"):
        p.decode(data, now=T - p.TIME_MAX_AHEAD - 1)  # the batch is too far in its future
    assert p.decode(data, now=T - p.TIME_MAX_AHEAD + 1).sent_at == T + 0.25
    fresh = p.EventBatch(p.Header("t", 1), (), {}, sent_at=time.time())
    assert p.decode(p.encode(fresh)) == fresh  # now defaults to time.time()


def test_unencodable_integers_raise_protocol_error_not_overflow_error():
    # Two tracers each jumping from seq 1 to 2**64-1 once summed to gaps msgpack cannot hold.
    updates = p.FileUpdates(p.Header("proc", 1), (), covers={}, gaps=2 * (p.U64_MAX - 2))
    with pytest.raises(p.ProtocolError, match=r"file_updates: .*within \[0, "):
        p.encode(updates)


def test_seq_gap_counts_lost_messages_and_refuses_impossible_jumps():
    assert p.seq_gap(5, 6) == 0
    assert p.seq_gap(5, 5) == 0 and p.seq_gap(5, 2) == 0  # repeats and late arrivals
    assert p.seq_gap(5, 9) == 3
    assert p.seq_gap(0, p.MAX_SEQ_GAP + 1) == p.MAX_SEQ_GAP
    assert p.seq_gap(0, p.MAX_SEQ_GAP + 2) is None
    assert p.seq_gap(1, p.SEQ_MAX) is None  # one absurd message is no 9.2e18 lost ones
    assert p.seq_gap(p.SEQ_MAX, 2) is None  # and the next sane one starts afresh
    assert p.seq_gap(p.MAX_SEQ_GAP + 5, 5) == 0


@pytest.mark.parametrize("message, reason", [
    ("events[12].path: empty path", "events[].path"),
    ("covers[tracer:1]: range start 5 is after its end 4", "covers[]"),
    ("not valid msgpack: ExtraData: unpack(b) received extra data.", "not valid msgpack"),
    ("message of 123456 bytes, more than 99", "message of N bytes, more than N"),
    ("unknown message type 'x'", "unknown message type []"),
])
def test_protocol_error_reason_leaves_out_the_values(message, reason):
    assert p.ProtocolError(message).reason == reason

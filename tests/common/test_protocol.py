"""The wire protocol: every message type round-trips; anything malformed raises
ProtocolError and nothing else."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snoop.common import protocol as p


def sample_messages() -> list[p.Message]:
    header = p.Header(sender="tracer/host/1/2", seq=7)
    events = (
        p.Event(cgroup_id=2**63 + 5, pid=10, tgid=9, kind=p.AccessKind.READ, path=b"/etc/passwd"),
        p.Event(cgroup_id=3, pid=11, tgid=11, kind=p.AccessKind.EXEC, path=b"rel/x",
                resolved=False),
    )
    workloads = {2**63 + 5: p.Workload("abc", "/docker/abc", "abc"), 3: p.Workload("/")}
    stats = p.TracerStats(header=p.Header("tracer/host/1/2", 8), started_at=1.5,
                          kernel_dropped=3, read_failures=1, unresolved=2,
                          events_by_syscall={"openat": 10}, attached=("openat", "execve"),
                          pending_dropped=4)
    return [
        p.EventBatch(header, events, workloads, sent_at=12.25, resend=True,
                     coverage={3: p.CaptureCounts(paths_too_long=1, uncertain_paths=2,
                                                  io_uring_ops=p.I64_MAX)}),
        stats,
        p.FileUpdates(
            header=p.Header("processor/host", 1),
            updates=(p.WorkloadUpdate(p.Workload("abc", "/docker/abc", "abc"),
                                      (p.FileSeen(b"/bin/\xff", 0b110, 1.0, 2.0),),
                                      total_events=5, unresolved=1,
                                      capture=p.CaptureCounts(io_uring_ops=4)),),
            covers={"tracer/host/1/2": ((1, 7), (9, 9))},
            tracer_stats=(stats,), gaps=2, invalid_messages=1),
        p.Checkpoint(p.Header("reporter/host", 3), {"tracer/host/1/2": ((1, 7),)}),
    ]


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(message):
    assert p.decode(p.encode(message)) == message


def test_non_utf8_path_survives_unchanged():
    path = b"/srv/caf\xe9/\x80\xfe\xff.bin"
    batch = p.EventBatch(p.Header("t", 1), (p.Event(1, 1, 1, p.AccessKind.READ, path),),
                         {1: p.Workload("w")}, sent_at=0.0)
    assert p.decode(p.encode(batch)).events[0].path == path


def test_a_resolved_path_longer_than_path_max_is_accepted_up_to_max_path_bytes():
    path = b"/" + b"a" * (p.MAX_PATH_BYTES - 1)
    batch = p.EventBatch(p.Header("t", 1), (p.Event(1, 1, 1, p.AccessKind.STAT, path),),
                         {1: p.Workload("w")}, sent_at=0.0)
    assert p.decode(p.encode(batch)).events[0].path == path


def test_a_path_over_max_path_bytes_names_the_field_and_the_bound():
    path = b"/" + b"a" * p.MAX_PATH_BYTES
    batch = p.EventBatch(p.Header("t", 1), (p.Event(1, 1, 1, p.AccessKind.STAT, path),),
                         {1: p.Workload("w")}, sent_at=0.0)
    with pytest.raises(p.ProtocolError, match=r"events\[0\]\.path: 32769 bytes, more than "
                                              r"MAX_PATH_BYTES \(32768\)"):
        p.decode(p.encode(batch))
    update = p.FileUpdates(p.Header("proc", 1), (p.WorkloadUpdate(
        p.Workload("w"), (p.FileSeen(path, 2, 1.0, 1.0),)),), covers={})
    with pytest.raises(p.ProtocolError, match=r"updates\[0\]\.files\[0\]\.path: .*"
                                              r"MAX_PATH_BYTES"):
        p.decode(p.encode(update))


def test_the_largest_valid_batch_fits_the_wire_limit():
    path = b"/" + b"a" * (p.MAX_PATH_BYTES - 1)
    events = tuple(p.Event(2**64 - 1, p.U32_MAX, p.U32_MAX, p.AccessKind.MKNOD, path, False)
                   for _ in range(p.MAX_BATCH_EVENTS))
    batch = p.EventBatch(p.Header("t" * p.MAX_SENDER_LEN, p.U64_MAX), events,
                         {2**64 - 1: p.Workload("w")}, sent_at=1e300)
    data = p.encode(batch)
    assert len(data) <= p.MAX_MESSAGE_BYTES
    assert len(p.decode(data).events) == p.MAX_BATCH_EVENTS


def test_messages_from_senders_without_capture_counts_still_decode():
    batch, _, updates, _ = sample_messages()
    raw_batch = msgpack.unpackb(p.encode(batch), raw=False, strict_map_key=False)
    del raw_batch["body"]["coverage"]
    assert p.decode(msgpack.packb(raw_batch, use_bin_type=True)).coverage == {}
    raw_updates = msgpack.unpackb(p.encode(updates), raw=False, strict_map_key=False)
    del raw_updates["body"]["updates"][0]["capture"]
    decoded = p.decode(msgpack.packb(raw_updates, use_bin_type=True))
    assert decoded.updates[0].capture == p.CaptureCounts()


def test_capture_counters_a_receiver_does_not_know_are_ignored_missing_ones_are_zero():
    raw = body_with(coverage={3: {"io_uring_ops": 2, "from_the_future": 9}})
    decoded = p.decode(msgpack.packb(raw, use_bin_type=True))
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
        p.decode(msgpack.packb(raw, use_bin_type=True))


def test_truncated_bytes_raise_protocol_error():
    data = p.encode(sample_messages()[0])
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(p.ProtocolError):
            p.decode(data[:cut])


def test_oversize_message_is_refused_before_parsing():
    with pytest.raises(p.ProtocolError, match="more than"):
        p.decode(b"\x00" * (p.MAX_MESSAGE_BYTES + 1))


def test_type_not_accepted_here_is_refused():
    data = p.encode(sample_messages()[3])
    with pytest.raises(p.ProtocolError, match="not accepted"):
        p.decode(data, frozenset({p.MessageType.EVENT_BATCH}))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_protocol_error(data):
    with contextlib.suppress(p.ProtocolError):
        p.decode(data)


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
            p.decode(msgpack.packb(raw, use_bin_type=True))


@settings(max_examples=400, deadline=None)
@given(msgpack_values, st.sampled_from(list(p.MessageType)))
def test_random_msgpack_values_raise_only_protocol_error(value, message_type):
    for raw in (value, {"v": 1, "type": message_type.value, "sender": "s", "seq": 1,
                        "body": value}):
        with contextlib.suppress(p.ProtocolError):
            p.decode(msgpack.packb(raw, use_bin_type=True))


counts = st.integers(0, p.I64_MAX)
capture_counts = st.builds(p.CaptureCounts, counts, counts, counts)
paths = st.binary(min_size=1, max_size=64).filter(lambda b: b"\0" not in b)
workloads = st.builds(p.Workload, st.text(min_size=1, max_size=8), st.text(max_size=8),
                      st.text(max_size=8))


@st.composite
def event_batches(draw) -> p.EventBatch:
    cgroups = draw(st.dictionaries(st.integers(0, p.U64_MAX), workloads, min_size=1,
                                   max_size=4))
    ids = sorted(cgroups)
    events = draw(st.lists(st.builds(
        p.Event, st.sampled_from(ids), st.integers(0, p.U32_MAX), st.integers(0, p.U32_MAX),
        st.sampled_from(list(p.AccessKind)), paths, st.booleans()), max_size=8))
    coverage = draw(st.dictionaries(st.sampled_from(ids), capture_counts, max_size=len(ids)))
    return p.EventBatch(p.Header("t", draw(st.integers(0, p.U64_MAX))), tuple(events),
                        cgroups, sent_at=draw(st.floats(allow_nan=False, allow_infinity=False)),
                        resend=draw(st.booleans()), coverage=coverage)


file_updates = st.builds(
    p.FileUpdates,
    header=st.just(p.Header("proc", 1)),
    updates=st.lists(st.builds(
        p.WorkloadUpdate, workloads,
        st.lists(st.builds(p.FileSeen, paths, st.integers(0, p.U32_MAX), st.just(1.0),
                           st.just(2.0)), max_size=4).map(tuple),
        total_events=st.integers(0, p.U64_MAX), unresolved=st.integers(0, p.U64_MAX),
        capture=capture_counts), max_size=4).map(tuple),
    covers=st.just({}),
)


@settings(max_examples=200, deadline=None)
@given(event_batches() | file_updates)
def test_generated_messages_with_capture_counts_round_trip(message):
    assert p.decode(p.encode(message)) == message

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
        p.EventBatch(header, events, workloads, sent_at=12.25, resend=True),
        stats,
        p.FileUpdates(
            header=p.Header("processor/host", 1),
            updates=(p.WorkloadUpdate(p.Workload("abc", "/docker/abc", "abc"),
                                      (p.FileSeen(b"/bin/\xff", 0b110, 1.0, 2.0),),
                                      total_events=5, unresolved=1),),
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


def test_a_path_of_path_max_bytes_is_accepted():
    path = b"/" + b"a" * (p.PATH_MAX - 1)
    batch = p.EventBatch(p.Header("t", 1), (p.Event(1, 1, 1, p.AccessKind.STAT, path),),
                         {1: p.Workload("w")}, sent_at=0.0)
    assert p.decode(p.encode(batch)).events[0].path == path


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
    "oversize path": body_with(events=[[1, 1, 1, 1, b"/" + b"a" * p.PATH_MAX, True]]),
    "empty path": body_with(events=[[1, 1, 1, 1, b"", True]]),
    "NUL in path": body_with(events=[[1, 1, 1, 1, b"/a\0b", True]]),
    "oversize batch": body_with(events=[[1, 1, 1, 1, b"/x", True]] * (p.MAX_BATCH_EVENTS + 1)),
    "event without workload": body_with(workloads={}),
    "resend not bool": body_with(resend=1),
    "sent_at is nan": body_with(sent_at=float("nan")),
    "missing field": {k: v for k, v in envelope().items() if k != "body"},
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
@given(msgpack_values, st.sampled_from(list(p.MessageType)))
def test_random_msgpack_values_raise_only_protocol_error(value, message_type):
    for raw in (value, {"v": 1, "type": message_type.value, "sender": "s", "seq": 1,
                        "body": value}):
        with contextlib.suppress(p.ProtocolError):
            p.decode(msgpack.packb(raw, use_bin_type=True))

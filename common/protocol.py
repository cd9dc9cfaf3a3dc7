"""The wire protocol: every message Snoop's processes exchange, encoded with msgpack.

This is the only module that touches msgpack. Every message is a msgpack map with a
schema version, a type from `MessageType`, the sender's identity and a per-sender
sequence number. `decode()` validates every field and size before anything else sees
it, and raises `ProtocolError` (and nothing else) for any malformed input.

Paths travel as msgpack bin (Python `bytes`) end to end: Linux paths need not be UTF-8.

Values are checked for range, not only type, so nothing that decodes can crash or
poison a receiver: sequence numbers, ranges of them and counters fit int64
(0..SEQ_MAX, 0..COUNT_MAX); timestamps lie in [TIME_MIN, now + TIME_MAX_AHEAD] by the
receiver's clock (`decode(..., now=)`); first_seen <= last_seen. A jump in one sender's
seq numbering of more than MAX_SEQ_GAP is no loss a receiver may count (`seq_gap()`).

Flow:
  tracer    --EVENT_BATCH, TRACER_STATS-->  processor
  processor --FILE_UPDATES-->               reporter
  reporter  --CHECKPOINT-->                 tracers (which of each tracer's batches are
                                            durably persisted; tracers re-send the rest)
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import msgpack

from snoop.common.outcomes import (
    MAX_ERRNO,
    MAYBE_FOUND,
    OUTCOME_LEGACY,
    OUTCOME_UNKNOWN,
    OUTCOMES_MAX,
)

SCHEMA_VERSION = 1
PATH_MAX = 4096  # the kernel's limit on one name a syscall takes
# A resolved path is a cwd or dirfd path joined with a name, so it may exceed PATH_MAX.
MAX_PATH_BYTES = 32768
MAX_BATCH_EVENTS = 4096
MAX_FILES_PER_UPDATE = 65536
# The largest EventBatch holds MAX_BATCH_EVENTS paths of MAX_PATH_BYTES: 128 MiB of paths
# plus under 64 bytes of framing per event. Senders of FileUpdates keep to the same
# path budget (processor/outbox.py).
MAX_MESSAGE_BYTES = 160 * 1024 * 1024
MAX_SENDER_LEN = 256
MAX_NAME_LEN = 4096
MAX_MAP_ENTRIES = 4096
MAX_RANGES = 4096
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
I64_MAX = 2**63 - 1
MAX_CAPTURE_FIELDS = 64
COMM_BYTES = 16  # the kernel's TASK_COMM_LEN, NUL included
MAX_COMMS = 8  # process names kept per file: enough to say who, bounded for 100K files
MAX_WORKLOAD_NAME = 256  # characters of a workload's readable name
MAX_META_VALUE = 512  # characters of an image ref, digest, pod or container name
MAX_META_LABELS = 64  # container labels carried per workload
MAX_LABEL_KEY = 253
MAX_LABEL_VALUE = 1024
_META_FIELDS = ("image_ref", "image_digest", "pod_name", "namespace", "container_name")
# Every seq, seq range bound and counter on the wire fits a signed 64-bit integer, so
# sums a receiver makes of them stay encodable (msgpack ints stop at 2**64 - 1).
SEQ_MAX = I64_MAX
COUNT_MAX = I64_MAX
# Timestamps (sent_at, started_at, first_seen, last_seen), in Unix seconds: not before
# 2000-01-01T00:00:00Z, and at most a day ahead of the receiver's clock (clock skew
# between hosts is seconds; a day is room for a badly set one, not for year 11476).
TIME_MIN = 946684800.0
TIME_MAX_AHEAD = 86400.0
# One sender's seq jumping further than this (either way) is no count of lost messages:
# a tracer sends a few hundred messages a second at most, so 2**24 in a row is most of a
# day lost while the receiver kept hearing that sender. It restarted its numbering or
# sent a corrupt seq: a receiver counts nothing and starts again from it (`seq_gap()`).
MAX_SEQ_GAP = 2**24


class ProtocolError(ValueError):
    """A message that is not a valid Snoop message; it names what is wrong."""

    @property
    def reason(self) -> str:
        """What is wrong without the values: `events[].path`, `sent_at`, `not valid msgpack`.

        Few distinct reasons exist, so logs can be rate-limited per reason.
        """
        text = str(self).split(": ", 1)[0]
        return re.sub(r"\d+", "N", re.sub(r"\[[^\]]*\]|'[^']*'", "[]", text))[:80]


class MessageType(enum.StrEnum):
    EVENT_BATCH = "event_batch"
    TRACER_STATS = "tracer_stats"
    FILE_UPDATES = "file_updates"
    CHECKPOINT = "checkpoint"


class AccessKind(enum.IntEnum):
    """What a workload did with a path. Values are shared with the BPF program."""

    READ = 1  # open for reading
    WRITE = 2  # open for writing, creating or truncating
    EXEC = 3  # execve/execveat, and the binary that really ran (sched_process_exec)
    STAT = 4
    ACCESS = 5  # access/faccessat permission checks
    READLINK = 6
    CHDIR = 7
    TRUNCATE = 8
    STATFS = 9
    XATTR = 10
    MKDIR = 11
    UNLINK = 12
    RENAME = 13
    LINK = 14
    CHMOD = 15
    CHOWN = 16
    UTIME = 17
    MKNOD = 18


ACCESS_KIND_NAMES = {kind: kind.name.lower() for kind in AccessKind}
_KIND_OF = {int(kind): kind for kind in AccessKind}
_new_event = tuple.__new__  # Event(...) without its __new__, once per decoded event


@dataclass(frozen=True)
class Header:
    sender: str
    seq: int


@dataclass(frozen=True)
class Workload:
    """Who an event belongs to, as the tracer's host sees it."""

    key: str  # stable report key: container id, or the cgroup path
    cgroup_path: str = ""
    container_id: str = ""
    # What people call it, from the container runtime: `namespace/pod/container`, the
    # compose `project/service`, or the container name; "" when none is known.
    name: str = ""
    # What the container runtime says of it (node mode: one tracer, many pods), "" and
    # () when nothing is known: the report's identity fields come from these.
    meta: WorkloadMeta | None = None


@dataclass(frozen=True)
class WorkloadMeta:
    image_ref: str = ""
    image_digest: str = ""
    pod_name: str = ""
    namespace: str = ""
    container_name: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key, MAX_META_LABELS at most


class Event(NamedTuple):
    """One file access. A NamedTuple (immutable, cheap to create: one per event)."""

    cgroup_id: int
    pid: int
    tgid: int
    kind: AccessKind
    path: bytes
    # False when a relative path could not be resolved to an absolute one. The processor
    # counts it (`unresolved`) instead of listing it: a relative name is no file to keep.
    resolved: bool = True
    # 0 when the access succeeded, the errno when it failed, outcomes.OUTCOME_UNKNOWN
    # when its result is not known (an exec's name: its result is another event).
    errno: int = 0
    comm: bytes = b""  # the process name of the thread that made the access


@dataclass(frozen=True)
class CaptureCounts:
    """Accesses of one workload the tracer saw but could not report as files."""

    # Resolved paths over MAX_PATH_BYTES, dropped one by one.
    paths_too_long: int = 0
    # Paths it could not resolve with certainty (a shared fs or fd table it cannot
    # model, say), so not reported as files.
    uncertain_paths: int = 0
    # io_uring OPENAT, OPENAT2 and STATX requests: their paths are invisible to it.
    io_uring_ops: int = 0

    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def __add__(self, other: CaptureCounts) -> CaptureCounts:
        # Saturating, so a sum of valid counts is still a valid count on the wire.
        return CaptureCounts(**{
            f.name: min(getattr(self, f.name) + getattr(other, f.name), I64_MAX)
            for f in fields(self)
        })


@dataclass(frozen=True)
class EventBatch:
    header: Header
    events: tuple[Event, ...]
    workloads: Mapping[int, Workload]  # cgroup id -> workload, for every id used below
    sent_at: float
    resend: bool = False  # true when re-sending batches not yet checkpointed
    # cgroup id -> what the tracer could not capture while it gathered this batch. Only
    # a first sending counts (resend=False): a re-send was counted when it first came.
    coverage: Mapping[int, CaptureCounts] = field(default_factory=dict)


@dataclass(frozen=True)
class TracerStats:
    """Cumulative counters of one tracer incarnation (its sender identity)."""

    header: Header
    started_at: float
    kernel_dropped: int  # events the kernel could not put in the ring buffer
    read_failures: int  # paths unreadable at both syscall entry and exit
    unresolved: int  # relative paths that could not be made absolute
    events_by_syscall: Mapping[str, int] = field(default_factory=dict)
    attached: tuple[str, ...] = ()
    pending_dropped: int = 0  # unconfirmed events evicted from the re-send buffer
    # (from, to) wall times in which no tracer was attached, found at this one's start:
    # nothing of the targets was seen then.
    unobserved: tuple[tuple[float, float], ...] = ()


class FileSeen(NamedTuple):
    """One file of a workload update. A NamedTuple: the reporter decodes one per file."""

    path: bytes
    kinds: int  # bit mask: 1 << AccessKind
    first_seen: float
    last_seen: float
    outcomes: int = 0  # bit mask of common/outcomes.py: found, and each errno seen
    comms: tuple[bytes, ...] = ()  # process names that made the accesses (MAX_COMMS)


@dataclass(frozen=True)
class WorkloadUpdate:
    workload: Workload
    files: tuple[FileSeen, ...]
    total_events: int = 0  # events counted for this workload since the last update
    unresolved: int = 0
    capture: CaptureCounts = field(default_factory=CaptureCounts)  # since the last update


@dataclass(frozen=True)
class FileUpdates:
    header: Header
    updates: tuple[WorkloadUpdate, ...]
    # Tracer batches whose content this message (together with earlier ones) carries:
    # tracer sender -> list of inclusive [first, last] seq ranges.
    covers: Mapping[str, tuple[tuple[int, int], ...]]
    tracer_stats: tuple[TracerStats, ...] = ()
    gaps: int = 0  # seq gaps the processor saw from tracers since its last update
    invalid_messages: int = 0


@dataclass(frozen=True)
class Checkpoint:
    header: Header
    # tracer sender -> inclusive [first, last] seq ranges whose content is durably
    # persisted. Ranges, not a high-water mark: a hole (a batch lost on the way) stays
    # visible, so the tracer re-sends exactly what is missing.
    persisted: Mapping[str, tuple[tuple[int, int], ...]]


Message = EventBatch | TracerStats | FileUpdates | Checkpoint

_TYPE_OF = {
    EventBatch: MessageType.EVENT_BATCH,
    TracerStats: MessageType.TRACER_STATS,
    FileUpdates: MessageType.FILE_UPDATES,
    Checkpoint: MessageType.CHECKPOINT,
}


# ---------------------------------------------------------------- encoding


def kinds_mask(*kinds: AccessKind) -> int:
    mask = 0
    for kind in kinds:
        mask |= 1 << int(kind)
    return mask


def kinds_from_mask(mask: int) -> list[AccessKind]:
    return [kind for kind in AccessKind if mask & (1 << int(kind))]


def seq_gap(last: int, seq: int) -> int | None:
    """Messages missing between one sender's `last` seq and the `seq` just received.

    0 for the next one, a repeat or a late one. None for a jump of more than MAX_SEQ_GAP
    either way, which no loss explains: the sender restarted its numbering or sent a
    corrupt seq. Count nothing for it and take `seq` as the new baseline.
    """
    gap = seq - last - 1
    if gap > MAX_SEQ_GAP or last - seq > MAX_SEQ_GAP:
        return None
    return max(gap, 0)


def _workload_out(w: Workload) -> list:
    if w.meta is None:
        return [w.key, w.cgroup_path, w.container_id, w.name]
    meta = {name: getattr(w.meta, name) for name in _META_FIELDS if getattr(w.meta, name)}
    if w.meta.labels:
        meta["labels"] = dict(w.meta.labels)
    return [w.key, w.cgroup_path, w.container_id, w.name, meta]


def _capture_out(counts: CaptureCounts) -> dict:
    # A map by name, not a list: a sender with fewer or more counters stays decodable.
    return {f.name: getattr(counts, f.name) for f in fields(counts)}


def _stats_out(s: TracerStats) -> dict:
    return {
        "sender": s.header.sender,
        "seq": s.header.seq,
        "started_at": s.started_at,
        "kernel_dropped": s.kernel_dropped,
        "read_failures": s.read_failures,
        "unresolved": s.unresolved,
        "events_by_syscall": dict(s.events_by_syscall),
        "attached": list(s.attached),
        "pending_dropped": s.pending_dropped,
        "unobserved": [list(interval) for interval in s.unobserved],
    }


def _body(message: Message) -> dict:
    if isinstance(message, EventBatch):
        return {
            # An Event is a tuple in wire order (kind an IntEnum): msgpack writes it as
            # the array [cgroup_id, pid, tgid, kind, path, resolved, errno, comm] without
            # a copy.
            "events": message.events,
            "workloads": {cid: _workload_out(w) for cid, w in message.workloads.items()},
            "sent_at": message.sent_at,
            "resend": message.resend,
            "coverage": {cid: _capture_out(c) for cid, c in message.coverage.items()},
        }
    if isinstance(message, TracerStats):
        body = _stats_out(message)
        del body["sender"], body["seq"]
        return body
    if isinstance(message, FileUpdates):
        return {
            "updates": [
                {
                    "workload": _workload_out(u.workload),
                    "files": [[f.path, f.kinds, f.first_seen, f.last_seen, f.outcomes,
                               list(f.comms)] for f in u.files],
                    "total_events": u.total_events,
                    "unresolved": u.unresolved,
                    "capture": _capture_out(u.capture),
                }
                for u in message.updates
            ],
            "covers": {s: [list(r) for r in rs] for s, rs in message.covers.items()},
            "tracer_stats": [_stats_out(s) for s in message.tracer_stats],
            "gaps": message.gaps,
            "invalid_messages": message.invalid_messages,
        }
    if isinstance(message, Checkpoint):
        return {"persisted": {s: [list(r) for r in rs] for s, rs in message.persisted.items()}}
    raise TypeError(f"not a Snoop message: {type(message).__name__}")


def encode(message: Message) -> bytes:
    envelope = {
        "v": SCHEMA_VERSION,
        "type": _TYPE_OF[type(message)].value,
        "sender": message.header.sender,
        "seq": message.header.seq,
        "body": _body(message),
    }
    try:
        return msgpack.packb(envelope, use_bin_type=True)
    except OverflowError:
        raise ProtocolError(f"{envelope['type']}: an integer does not fit msgpack; seqs and "
                            f"counters must stay within [0, {COUNT_MAX}]") from None


# ---------------------------------------------------------------- decoding
# Each _want_* helper checks one value and raises ProtocolError naming the field.


def _want_int(value: Any, name: str, lo: int = 0, hi: int = U64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{name}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ProtocolError(f"{name}: {value} is outside [{lo}, {hi}]")
    return value


def _want_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ProtocolError(f"{name}: expected a finite number")
    return value


def _want_count(value: Any, name: str) -> int:
    return _want_int(value, name, 0, COUNT_MAX)


def _want_seq(value: Any, name: str) -> int:
    return _want_int(value, name, 0, SEQ_MAX)


def _want_time(value: Any, name: str, latest: float) -> float:
    """A timestamp in [TIME_MIN, latest]; `latest` is the receiver's now + TIME_MAX_AHEAD."""
    when = _want_float(value, name)
    if not TIME_MIN <= when <= latest:
        raise ProtocolError(f"{name}: timestamp {when!r} is outside [{TIME_MIN:.0f}, "
                            f"{latest:.0f}] (2000-01-01 to a day after this receiver's now)")
    return when


def _want_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{name}: expected a boolean, got {type(value).__name__}")
    return value


def _want_str(value: Any, name: str, max_len: int = MAX_NAME_LEN) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ProtocolError(f"{name}: {len(value)} characters, more than {max_len}")
    return value


def _want_path(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise ProtocolError(f"{name}: expected bytes, got {type(value).__name__}")
    if not value:
        raise ProtocolError(f"{name}: empty path")
    if len(value) > MAX_PATH_BYTES:
        raise ProtocolError(
            f"{name}: {len(value)} bytes, more than MAX_PATH_BYTES ({MAX_PATH_BYTES})")
    if b"\0" in value:
        raise ProtocolError(f"{name}: path contains a NUL byte")
    return value


def _want_comm(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise ProtocolError(f"{name}: expected bytes, got {type(value).__name__}")
    if len(value) >= COMM_BYTES or b"\0" in value:
        raise ProtocolError(f"{name}: not a process name ({len(value)} bytes, at most "
                            f"{COMM_BYTES - 1}, no NUL)")
    return value


def _want_list(value: Any, name: str, max_len: int, exact: int | None = None) -> list:
    if not isinstance(value, list):
        raise ProtocolError(f"{name}: expected a list, got {type(value).__name__}")
    if len(value) > max_len:
        raise ProtocolError(f"{name}: {len(value)} entries, more than {max_len}")
    if exact is not None and len(value) != exact:
        raise ProtocolError(f"{name}: expected {exact} entries, got {len(value)}")
    return value


def _want_map(value: Any, name: str, max_len: int = MAX_MAP_ENTRIES) -> dict:
    if not isinstance(value, dict):
        raise ProtocolError(f"{name}: expected a map, got {type(value).__name__}")
    if len(value) > max_len:
        raise ProtocolError(f"{name}: {len(value)} entries, more than {max_len}")
    return value


def _field(body: dict, key: str, where: str) -> Any:
    if key not in body:
        raise ProtocolError(f"{where}: missing field {key!r}")
    return body[key]


def _want_workload(value: Any, name: str) -> Workload:
    parts = _want_list(value, name, 5)
    if len(parts) == 3:  # a sender older than workload names
        parts = [*parts, ""]
    elif len(parts) < 3:
        raise ProtocolError(f"{name}: expected 4 or 5 entries, got {len(parts)}")
    key, cgroup_path, container_id, display = parts[:4]
    key = _want_str(key, f"{name}.key")
    if not key:
        raise ProtocolError(f"{name}.key: empty workload key")
    return Workload(
        key=key,
        cgroup_path=_want_str(cgroup_path, f"{name}.cgroup_path"),
        container_id=_want_str(container_id, f"{name}.container_id"),
        name=_want_str(display, f"{name}.name", MAX_WORKLOAD_NAME),
        meta=_want_meta(parts[4], f"{name}.meta") if len(parts) == 5 else None,
    )


def _want_meta(value: Any, name: str) -> WorkloadMeta:
    # Fields a newer tracer may add are left unread (a rolling upgrade updates the
    # tracers first), within a bound on how many there are.
    body = _want_map(value, name, 4 * (len(_META_FIELDS) + 1))
    fields_ = {field_: _want_str(body.get(field_, ""), f"{name}.{field_}", MAX_META_VALUE)
               for field_ in _META_FIELDS}
    labels = _want_map(body.get("labels", {}), f"{name}.labels", MAX_META_LABELS)
    pairs = tuple(sorted(
        (_want_str(k, f"{name}.labels key", MAX_LABEL_KEY),
         _want_str(v, f"{name}.labels[{str(k)[:40]!r}]", MAX_LABEL_VALUE))
        for k, v in labels.items()))
    return WorkloadMeta(**fields_, labels=pairs)


def _want_kind(value: Any, name: str) -> AccessKind:
    number = _want_int(value, name, 0, 255)
    try:
        return AccessKind(number)
    except ValueError:
        raise ProtocolError(f"{name}: unknown access kind {number}") from None


def _want_capture(value: Any, name: str) -> CaptureCounts:
    """Counters this receiver does not know are ignored; missing ones are 0."""
    raw = _want_map(value, name, MAX_CAPTURE_FIELDS)
    return CaptureCounts(**{
        f.name: _want_count(raw.get(f.name, 0), f"{name}.{f.name}")
        for f in fields(CaptureCounts)
    })


def _decode_event(raw: Any, name: str) -> Event:
    fields_ = _want_list(raw, name, 8)
    legacy = len(fields_) == 6  # a sender older than outcomes and process names
    if legacy:
        fields_ = [*fields_, 0, b""]
    elif len(fields_) != 8:
        raise ProtocolError(f"{name}: expected 8 entries, got {len(fields_)}")
    cgroup_id, pid, tgid, kind, path, resolved, errno, comm = fields_
    return Event(
        cgroup_id=_want_int(cgroup_id, f"{name}.cgroup_id"),
        pid=_want_int(pid, f"{name}.pid", 0, U32_MAX),
        tgid=_want_int(tgid, f"{name}.tgid", 0, U32_MAX),
        kind=_want_kind(kind, f"{name}.kind"),
        path=_want_path(path, f"{name}.path"),
        resolved=_want_bool(resolved, f"{name}.resolved"),
        errno=OUTCOME_LEGACY if legacy else _want_int(errno, f"{name}.errno",
                                                      OUTCOME_UNKNOWN, MAX_ERRNO),
        comm=_want_comm(comm, f"{name}.comm"),
    )


def _decode_event_batch(header: Header, body: dict, latest: float) -> EventBatch:
    raw_events = _want_list(_field(body, "events", "event_batch"), "events", MAX_BATCH_EVENTS)
    events = []
    append = events.append
    for i, raw in enumerate(raw_events):
        # The common case checked in one expression; anything else (an error to name, a
        # six-field event of an older sender) takes the field-by-field path.
        if type(raw) is list and len(raw) == 8:
            cgroup_id, pid, tgid, kind, path, resolved, errno, comm = raw
            if (type(cgroup_id) is int and 0 <= cgroup_id <= U64_MAX
                    and type(pid) is int and 0 <= pid <= U32_MAX
                    and type(tgid) is int and 0 <= tgid <= U32_MAX
                    and type(kind) is int and kind in _KIND_OF
                    and type(path) is bytes and 0 < len(path) <= MAX_PATH_BYTES
                    and b"\0" not in path and type(resolved) is bool
                    and type(errno) is int and OUTCOME_UNKNOWN <= errno <= MAX_ERRNO
                    and type(comm) is bytes and len(comm) < COMM_BYTES and b"\0" not in comm):
                append(_new_event(Event, (cgroup_id, pid, tgid, _KIND_OF[kind], path, resolved,
                                          errno, comm)))
                continue
        append(_decode_event(raw, f"events[{i}]"))
    raw_workloads = _want_map(_field(body, "workloads", "event_batch"), "workloads")
    workloads = {
        _want_int(cid, "workloads key"): _want_workload(w, f"workloads[{cid}]")
        for cid, w in raw_workloads.items()
    }
    missing = {e.cgroup_id for e in events} - workloads.keys()
    if missing:
        raise ProtocolError(f"workloads: no workload for cgroup id {min(missing)}")
    # Optional: batches from senders older than the field carry none.
    raw_coverage = _want_map(body.get("coverage", {}), "coverage")
    coverage = {
        _want_int(cid, "coverage key"): _want_capture(c, f"coverage[{cid}]")
        for cid, c in raw_coverage.items()
    }
    strays = coverage.keys() - workloads.keys()
    if strays:
        raise ProtocolError(f"coverage: cgroup id {min(strays)} is not in workloads")
    return EventBatch(
        header=header,
        events=tuple(events),
        workloads=workloads,
        sent_at=_want_time(_field(body, "sent_at", "event_batch"), "sent_at", latest),
        resend=_want_bool(_field(body, "resend", "event_batch"), "resend"),
        coverage=coverage,
    )


def _decode_stats(value: Any, name: str, latest: float) -> TracerStats:
    body = _want_map(value, name)
    raw_counts = _want_map(_field(body, "events_by_syscall", name), f"{name}.events_by_syscall")
    counts = {
        _want_str(k, f"{name}.events_by_syscall key", 64): _want_count(
            v, f"{name}.events_by_syscall[{k}]"
        )
        for k, v in raw_counts.items()
    }
    attached = _want_list(_field(body, "attached", name), f"{name}.attached", MAX_MAP_ENTRIES)
    sender = _want_str(_field(body, "sender", name), f"{name}.sender", MAX_SENDER_LEN)
    return TracerStats(
        header=Header(sender=sender, seq=_want_seq(_field(body, "seq", name), f"{name}.seq")),
        started_at=_want_time(_field(body, "started_at", name), f"{name}.started_at", latest),
        kernel_dropped=_want_count(_field(body, "kernel_dropped", name),
                                   f"{name}.kernel_dropped"),
        read_failures=_want_count(_field(body, "read_failures", name), f"{name}.read_failures"),
        unresolved=_want_count(_field(body, "unresolved", name), f"{name}.unresolved"),
        events_by_syscall=counts,
        attached=tuple(_want_str(a, f"{name}.attached[]", 64) for a in attached),
        pending_dropped=_want_count(
            _field(body, "pending_dropped", name), f"{name}.pending_dropped"
        ),
        unobserved=_want_intervals(body.get("unobserved", []), f"{name}.unobserved", latest),
    )


MAX_INTERVALS = 64


def _want_intervals(value: Any, name: str, latest: float) -> tuple[tuple[float, float], ...]:
    intervals = []
    for i, raw in enumerate(_want_list(value, name, MAX_INTERVALS)):
        pair = _want_list(raw, f"{name}[{i}]", 2, exact=2)
        start = _want_time(pair[0], f"{name}[{i}][0]", latest)
        end = _want_time(pair[1], f"{name}[{i}][1]", latest)
        if end < start:
            raise ProtocolError(f"{name}[{i}]: ends before it starts")
        intervals.append((start, end))
    return tuple(intervals)


def _decode_tracer_stats(header: Header, body: dict, latest: float) -> TracerStats:
    return _decode_stats({**body, "sender": header.sender, "seq": header.seq}, "tracer_stats",
                         latest)


def _decode_ranges(value: Any, name: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for i, raw in enumerate(_want_list(value, name, MAX_RANGES)):
        lo, hi = _want_list(raw, f"{name}[{i}]", 2, exact=2)
        lo = _want_seq(lo, f"{name}[{i}][0]")
        hi = _want_seq(hi, f"{name}[{i}][1]")
        if lo > hi:
            raise ProtocolError(f"{name}[{i}]: range start {lo} is after its end {hi}")
        ranges.append((lo, hi))
    return tuple(ranges)


def _plain_comms(comms: list) -> bool:
    """A valid list of process names (the fast path's check; _want_comm names errors)."""
    if len(comms) > MAX_COMMS:
        return False
    for comm in comms:
        if type(comm) is not bytes or len(comm) >= COMM_BYTES or b"\0" in comm:
            return False
    return True


def _decode_file_seen(value: Any, name: str, latest: float) -> FileSeen:
    fields_ = _want_list(value, name, 6)
    if len(fields_) == 4:  # a sender older than outcomes: it may have found the file
        fields_ = [*fields_, MAYBE_FOUND, []]
    elif len(fields_) != 6:
        raise ProtocolError(f"{name}: expected 6 entries, got {len(fields_)}")
    path, kinds, first, last, outcomes, comms = fields_
    first_seen = _want_time(first, f"{name}.first_seen", latest)
    last_seen = _want_time(last, f"{name}.last_seen", latest)
    if first_seen > last_seen:
        raise ProtocolError(f"{name}.first_seen: {first_seen!r} is after last_seen "
                            f"{last_seen!r}")
    return FileSeen(
        path=_want_path(path, f"{name}.path"),
        kinds=_want_int(kinds, f"{name}.kinds", 0, U32_MAX),
        first_seen=first_seen,
        last_seen=last_seen,
        outcomes=_want_int(outcomes, f"{name}.outcomes", 0, OUTCOMES_MAX),
        comms=tuple(_want_comm(comm, f"{name}.comms[{i}]")
                    for i, comm in enumerate(_want_list(comms, f"{name}.comms", MAX_COMMS))),
    )


def _decode_file_updates(header: Header, body: dict, latest: float) -> FileUpdates:
    raw_updates = _want_list(_field(body, "updates", "file_updates"), "updates", MAX_MAP_ENTRIES)
    updates = []
    total_files = 0
    for i, raw in enumerate(raw_updates):
        name = f"updates[{i}]"
        item = _want_map(raw, name)
        raw_files = _want_list(_field(item, "files", name), f"{name}.files", MAX_FILES_PER_UPDATE)
        total_files += len(raw_files)
        if total_files > MAX_FILES_PER_UPDATE:
            raise ProtocolError(f"updates: more than {MAX_FILES_PER_UPDATE} files in one message")
        files = []
        append = files.append
        for j, raw_file in enumerate(raw_files):
            # The common case checked in one expression, as for events.
            if type(raw_file) is list and len(raw_file) == 6:
                path, kinds, first, last, outcomes, comms = raw_file
                if (type(path) is bytes and 0 < len(path) <= MAX_PATH_BYTES
                        and b"\0" not in path and type(kinds) is int and 0 <= kinds <= U32_MAX
                        and type(first) is float and type(last) is float
                        and TIME_MIN <= first <= last <= latest
                        and type(outcomes) is int and 0 <= outcomes <= OUTCOMES_MAX
                        and type(comms) is list and _plain_comms(comms)):
                    append(FileSeen(path, kinds, first, last, outcomes, tuple(comms)))
                    continue
            append(_decode_file_seen(raw_file, f"{name}.files[{j}]", latest))
        updates.append(
            WorkloadUpdate(
                workload=_want_workload(_field(item, "workload", name), f"{name}.workload"),
                files=tuple(files),
                total_events=_want_count(_field(item, "total_events", name),
                                         f"{name}.total_events"),
                unresolved=_want_count(_field(item, "unresolved", name), f"{name}.unresolved"),
                capture=_want_capture(item.get("capture", {}), f"{name}.capture"),
            )
        )
    raw_covers = _want_map(_field(body, "covers", "file_updates"), "covers")
    covers = {
        _want_str(s, "covers key", MAX_SENDER_LEN): _decode_ranges(r, f"covers[{s}]")
        for s, r in raw_covers.items()
    }
    raw_stats = _want_list(
        _field(body, "tracer_stats", "file_updates"), "tracer_stats", MAX_MAP_ENTRIES
    )
    return FileUpdates(
        header=header,
        updates=tuple(updates),
        covers=covers,
        tracer_stats=tuple(_decode_stats(s, f"tracer_stats[{i}]", latest)
                           for i, s in enumerate(raw_stats)),
        gaps=_want_count(_field(body, "gaps", "file_updates"), "gaps"),
        invalid_messages=_want_count(
            _field(body, "invalid_messages", "file_updates"), "invalid_messages"
        ),
    )


def _decode_checkpoint(header: Header, body: dict, latest: float) -> Checkpoint:
    raw = _want_map(_field(body, "persisted", "checkpoint"), "persisted")
    return Checkpoint(
        header=header,
        persisted={
            _want_str(s, "persisted key", MAX_SENDER_LEN): _decode_ranges(r, f"persisted[{s}]")
            for s, r in raw.items()
        },
    )


_DECODERS: dict[MessageType, Callable[[Header, dict, float], Message]] = {
    MessageType.EVENT_BATCH: _decode_event_batch,
    MessageType.TRACER_STATS: _decode_tracer_stats,
    MessageType.FILE_UPDATES: _decode_file_updates,
    MessageType.CHECKPOINT: _decode_checkpoint,
}


def decode(data: bytes, allowed: frozenset[MessageType] | None = None, *,
           now: float | None = None) -> Message:
    """Decode and validate one message; `allowed` limits the types this receiver takes.

    `now` is the receiver's clock (Unix seconds; time.time() when None): timestamps more
    than TIME_MAX_AHEAD after it are refused.
    """
    latest = (time.time() if now is None else now) + TIME_MAX_AHEAD
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        envelope = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_str_len=MAX_MESSAGE_BYTES,
            max_array_len=MAX_FILES_PER_UPDATE,
            max_map_len=MAX_FILES_PER_UPDATE,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types for garbage; all mean one thing
        raise ProtocolError(f"not valid msgpack: {exc.__class__.__name__}: {exc}") from None
    envelope = _want_map(envelope, "message", 16)
    version = _field(envelope, "v", "message")
    if version != SCHEMA_VERSION:
        raise ProtocolError(f"schema version {version!r}, expected {SCHEMA_VERSION}")
    raw_type = _want_str(_field(envelope, "type", "message"), "type", 64)
    try:
        message_type = MessageType(raw_type)
    except ValueError:
        raise ProtocolError(f"unknown message type {raw_type!r}") from None
    if allowed is not None and message_type not in allowed:
        raise ProtocolError(f"message type {raw_type!r} is not accepted here")
    sender = _want_str(_field(envelope, "sender", "message"), "sender", MAX_SENDER_LEN)
    if not sender:
        raise ProtocolError("sender: empty sender identity")
    header = Header(sender=sender, seq=_want_seq(_field(envelope, "seq", "message"), "seq"))
    body = _want_map(_field(envelope, "body", "message"), "body", 64)
    try:
        return _DECODERS[message_type](header, body, latest)
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ProtocolError(f"{raw_type}: malformed body: {exc}") from None

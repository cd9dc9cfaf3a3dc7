"""The push spool: deltas on disk until the API endpoint has them, across outages and
restarts.

A write round appends its deltas as one segment file, `<seq>-<count>.seg` (a msgpack
stream of `[workload_id, idempotency key, gzip body, full]`), written to a temp file,
fsynced and renamed, so a segment is whole or absent. The pusher sends records oldest first;
a segment is deleted once each of its records is delivered or given up. After a
restart, the records of a segment already sent are sent again: their idempotency key
makes the receiver drop them.

`known` holds the workloads whose every file some spooled delta carries (a full
snapshot, or the first delta of a new report): deltas of the rest would leave files out.
It is kept in `state.json`, written after the segment that made it true, with the
`origin` the deltas name this reporter by and the `endpoint` they go to: a spool opened
for another endpoint knows nothing, so every report is sent there in full.

Bound: when the undelivered deltas take more than `max_bytes`, the oldest segments are
dropped whole. A workload with an undelivered delta in them leaves `known` (unless a
newer segment holds a snapshot of it), so it gets one full snapshot (its report, which
holds every file) once there is room again (`snapshot_budget`). Nothing is lost that
way, only sent later; the newest segment is never dropped, so the spool may go one
round's worth beyond the bound. If `state.json` cannot be written, the dropped segments
stay on disk: the next start sends them again rather than trust a stale `known`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack

from snoop.common.delta import delta_key
from snoop.common.report import write_atomically

log = logging.getLogger("snoop.reporter")

STATE_NAME = "state.json"
_SEGMENT = re.compile(r"^(\d{12})-(\d+)\.seg$")
GZIP_LEVEL = 6


@dataclass(frozen=True)
class SpoolRecord:
    segment: int
    index: int
    workload_id: str
    key: str  # the idempotency key: delta_key() of the uncompressed body
    body: bytes  # gzip
    full: bool = False  # a snapshot: every file of its workload


@dataclass(frozen=True)
class Prepared:
    """A delta compressed and keyed, ready to append."""

    workload_id: str
    key: str
    body: bytes  # gzip
    full: bool

    @classmethod
    def of(cls, workload_id: str, body: bytes, full: bool = False) -> Prepared:
        return cls(workload_id, delta_key(body), gzip.compress(body, GZIP_LEVEL, mtime=0),
                   full)


@dataclass
class SpoolCounts:
    appended: int = 0  # deltas written to the spool
    dropped: int = 0  # deltas dropped over the bound (their workloads resync in full)
    write_errors: int = 0


@dataclass
class _Segment:
    seq: int
    count: int
    size: int
    done: set[int] = field(default_factory=set)
    done_bytes: int = 0  # of `size`, what delivered records took
    snapshots: set[str] = field(default_factory=set)  # workloads with a full record here

    @property
    def pending_bytes(self) -> int:
        return self.size - self.done_bytes


class Spool:
    def __init__(self, directory: str, max_bytes: int, *, origin: str = "",
                 endpoint: str = "") -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.origin = origin  # as configured; "" takes the one state.json has
        self.endpoint = endpoint
        self.known: set[str] = set()
        self.counts = SpoolCounts()
        self._segments: dict[int, _Segment] = {}  # by seq, oldest first
        self._head: tuple[int, list[SpoolRecord]] | None = None  # records of the oldest
        self._next_seq = 1
        self._lock = threading.Lock()

    # ------------------------------------------------------------ start

    def open(self) -> Spool:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        found = []
        for name in os.listdir(self.directory):
            match = _SEGMENT.match(name)
            if match:
                path = os.path.join(self.directory, name)
                found.append(_Segment(int(match.group(1)), int(match.group(2)),
                                      os.path.getsize(path)))
            elif name.endswith(".tmp"):  # a segment a killed reporter never finished
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))
        for segment in sorted(found, key=lambda s: s.seq):
            self._segments[segment.seq] = segment
            with contextlib.suppress(OSError, ValueError, TypeError):
                segment.snapshots = {r.workload_id for r in self._read(segment) if r.full}
        if found:
            self._next_seq = max(s.seq for s in found) + 1
        self._load_state()
        return self

    def _load_state(self) -> None:
        path = os.path.join(self.directory, STATE_NAME)
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read())
            known = data["known"]
            if not isinstance(known, list) or not all(isinstance(k, str) for k in known):
                raise ValueError("known: expected a list of workload ids")
            origin, endpoint = data.get("origin", ""), data.get("endpoint", "")
            if not isinstance(origin, str) or not isinstance(endpoint, str):
                raise ValueError("origin, endpoint: expected strings")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Lossless either way: every workload is sent in full once more.
            log.warning("push spool state unreadable; every report is pushed in full again",
                        extra={"path": path, "error": str(exc)})
            return
        if not self.origin:
            self.origin = origin  # stable across host renames (a pod's name)
        if origin and origin != self.origin or endpoint and endpoint != self.endpoint:
            log.warning("push spool was for another origin or endpoint; every report is "
                        "pushed in full", extra={"was_origin": origin, "origin": self.origin,
                                                 "was_endpoint": endpoint,
                                                 "endpoint": self.endpoint})
            return
        self.known = set(known)

    # ------------------------------------------------------------ sizes

    def bytes(self) -> int:
        """Disk the undelivered deltas take (a delivered one's share is freed with its
        segment)."""
        with self._lock:
            return self._used()

    def _used(self) -> int:
        return sum(s.pending_bytes for s in self._segments.values())

    def records(self) -> int:
        """Deltas not yet delivered."""
        with self._lock:
            return sum(s.count - len(s.done) for s in self._segments.values())

    def snapshot_budget(self) -> int:
        """Bytes of snapshots a round may add: what keeps the spool under half its
        bound. When the spool is empty, a round takes one snapshot whatever its size (a
        report larger than that), and then more while under it."""
        with self._lock:
            return max(0, self.max_bytes // 2 - self._used())

    def empty(self) -> bool:
        with self._lock:
            return not self._segments

    # ------------------------------------------------------------ writing

    def append(self, records: Iterable[Prepared], known: Iterable[str] = ()) -> None:
        """Spool `records` as one segment; `known` workloads now have all their files in
        the spool. Raises OSError with nothing changed."""
        records = list(records)
        known = set(known)
        if not records:
            return
        with self._lock:
            seq = self._next_seq
            name = f"{seq:012d}-{len(records)}.seg"
            packer = msgpack.Packer(use_bin_type=True)
            data = b"".join(packer.pack([r.workload_id, r.key, r.body, r.full])
                            for r in records)
            try:
                self._write_segment(name, data)
            except OSError:
                self.counts.write_errors += 1
                raise
            self._next_seq += 1
            self._segments[seq] = _Segment(seq, len(records), len(data),
                                           snapshots={r.workload_id for r in records if r.full})
            self.counts.appended += len(records)
            before = set(self.known)
            self.known |= known
            dropped = self._over_bound(seq)
            written = self._write_state() if self.known != before or dropped else True
            for segment in dropped if written else ():
                with contextlib.suppress(OSError):
                    os.unlink(self._path(segment))

    def forget(self, workload_id: str) -> None:
        """`workload_id` lost a delta for good: send it in full again."""
        with self._lock:
            if workload_id in self.known:
                self.known.discard(workload_id)
                self._write_state()

    def replace(self, record: SpoolRecord, parts: Iterable[Prepared]) -> None:
        """Spool `parts` in place of `record` (a delta split in two)."""
        self.append(parts)
        self.done(record)

    def _over_bound(self, newest: int) -> list[_Segment]:
        """Drop the oldest segments while over the bound; their workloads leave `known`."""
        dropped = []
        used = self._used()
        for seq in list(self._segments):
            if used <= self.max_bytes or seq == newest:
                break
            segment = self._segments[seq]
            waiting = self._workloads_of(segment)
            del self._segments[seq]
            used -= segment.pending_bytes
            if self._head is not None and self._head[0] == seq:
                self._head = None
            self.counts.dropped += segment.count - len(segment.done)
            newer = set().union(*(s.snapshots for s in self._segments.values()))
            self.known -= waiting - newer
            dropped.append(segment)
        if dropped:
            log.warning("push spool over its bound: oldest deltas dropped; their workloads "
                        "are sent as full snapshots when the endpoint takes them again",
                        extra={"segments": len(dropped), "max_bytes": self.max_bytes,
                               "path": self.directory})
        return dropped

    def _workloads_of(self, segment: _Segment) -> set[str]:
        """Workloads with a delta not yet delivered in `segment`."""
        try:
            return {r.workload_id for r in self._read(segment) if r.index not in segment.done}
        except (OSError, ValueError):
            # Unreadable: nothing in it can be known to be delivered; resync everything.
            return set(self.known)

    def _write_segment(self, name: str, data: bytes) -> None:
        write_atomically(os.path.join(self.directory, name), data, 0o600)

    def _write_state(self) -> bool:
        text = json.dumps({"known": sorted(self.known), "origin": self.origin,
                           "endpoint": self.endpoint}, indent=1) + "\n"
        try:
            write_atomically(os.path.join(self.directory, STATE_NAME), text)
        except OSError as exc:
            self.counts.write_errors += 1
            log.error("push spool state not written", extra={"error": str(exc)})
            return False
        return True

    # ------------------------------------------------------------ reading

    def _path(self, segment: _Segment) -> str:
        return os.path.join(self.directory, f"{segment.seq:012d}-{segment.count}.seg")

    def _read(self, segment: _Segment) -> list[SpoolRecord]:
        with open(self._path(segment), "rb") as handle:
            unpacker = msgpack.Unpacker(handle, raw=False, max_buffer_size=1 << 31)
            records = []
            for index, item in enumerate(unpacker):
                wid, key, body, *rest = item
                records.append(SpoolRecord(segment.seq, index, str(wid), str(key), bytes(body),
                                           bool(rest and rest[0])))
        return records

    def peek(self) -> SpoolRecord | None:
        """The oldest delta not yet delivered."""
        with self._lock:
            while self._segments:
                segment = next(iter(self._segments.values()))
                if self._head is None or self._head[0] != segment.seq:
                    try:
                        self._head = (segment.seq, self._read(segment))
                    except (OSError, ValueError, TypeError) as exc:
                        log.error("push spool segment unreadable; dropped, every workload "
                                  "is sent in full again", extra={
                                      "path": self._path(segment), "error": str(exc)})
                        self._drop_unreadable(segment)
                        continue
                for record in self._head[1]:
                    if record.index not in segment.done:
                        return record
                self._finish(segment)
            return None

    def _drop_unreadable(self, segment: _Segment) -> None:
        del self._segments[segment.seq]
        self._head = None
        self.counts.dropped += segment.count - len(segment.done)
        self.known.clear()
        self._write_state()
        with contextlib.suppress(OSError):
            os.unlink(self._path(segment))

    def done(self, record: SpoolRecord) -> None:
        """`record` is delivered (or given up); its segment goes once all of it is."""
        with self._lock:
            segment = self._segments.get(record.segment)
            if segment is None:
                return  # dropped over the bound meanwhile
            if record.index not in segment.done:
                segment.done.add(record.index)
                segment.done_bytes += len(record.body)
            if len(segment.done) >= segment.count:
                self._finish(segment)

    def _finish(self, segment: _Segment) -> None:
        self._segments.pop(segment.seq, None)
        if self._head is not None and self._head[0] == segment.seq:
            self._head = None
        with contextlib.suppress(OSError):
            os.unlink(self._path(segment))

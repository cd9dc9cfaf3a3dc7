"""The push spool: deltas on disk until the API endpoint has them, across outages and
restarts.

A write round appends its deltas as one segment file, `<seq>-<count>.seg` (a msgpack
stream of `[workload_id, idempotency key, gzip body]`), written to a temp file, fsynced
and renamed, so a segment is whole or absent. The pusher sends records oldest first;
a segment is deleted once each of its records is delivered or given up. After a
restart, the records of a segment already sent are sent again: their idempotency key
makes the receiver drop them.

`known` holds the workloads whose every file some spooled delta carries (a full
snapshot, or the first delta of a new report): deltas of the rest would leave files out.
It is kept in `state.json`, written after the segment that made it true.

Bound: when the spool holds more than `max_bytes`, the oldest segments are dropped
whole, and their workloads leave `known`, so each gets one full snapshot (its report,
which holds every file) once there is room again (`room_for_snapshot`). Nothing is lost
that way, only sent later; the newest segment is never dropped, so the spool may go one
round's worth beyond the bound.
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


class Spool:
    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
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
        if found:
            self._next_seq = max(s.seq for s in found) + 1
        self.known = self._load_known()
        return self

    def _load_known(self) -> set[str]:
        path = os.path.join(self.directory, STATE_NAME)
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read())
            known = data["known"]
            if not isinstance(known, list) or not all(isinstance(k, str) for k in known):
                raise ValueError("known: expected a list of workload ids")
            return set(known)
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Lossless either way: every workload is sent in full once more.
            log.warning("push spool state unreadable; every report is pushed in full again",
                        extra={"path": path, "error": str(exc)})
            return set()

    # ------------------------------------------------------------ sizes

    def bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments.values())

    def records(self) -> int:
        """Deltas not yet delivered."""
        with self._lock:
            return sum(s.count - len(s.done) for s in self._segments.values())

    def room_for_snapshot(self) -> bool:
        with self._lock:
            used = sum(s.size for s in self._segments.values())
            return not self._segments or used < self.max_bytes // 2

    # ------------------------------------------------------------ writing

    def append(self, deltas: Iterable[tuple[str, bytes]], known: Iterable[str] = ()) -> None:
        """Spool (workload id, encoded delta) pairs as one segment; `known` workloads now
        have all their files in the spool. Raises OSError with nothing changed."""
        records = [[wid, delta_key(body), gzip.compress(body, GZIP_LEVEL, mtime=0)]
                   for wid, body in deltas]
        known = set(known)
        if not records:
            return
        with self._lock:
            seq = self._next_seq
            name = f"{seq:012d}-{len(records)}.seg"
            packer = msgpack.Packer(use_bin_type=True)
            data = b"".join(packer.pack(r) for r in records)
            try:
                self._write_segment(name, data)
            except OSError:
                self.counts.write_errors += 1
                raise
            self._next_seq += 1
            self._segments[seq] = _Segment(seq, len(records), len(data))
            self.counts.appended += len(records)
            before = set(self.known)
            self.known |= known
            dropped = self._over_bound(seq)
            if self.known != before or dropped:
                self._write_state()
            for segment in dropped:
                with contextlib.suppress(OSError):
                    os.unlink(self._path(segment))

    def replace(self, record: SpoolRecord, parts: Iterable[tuple[str, bytes]]) -> None:
        """Spool `parts` in place of `record` (a delta split in two)."""
        self.append(parts)
        self.done(record)

    def _over_bound(self, newest: int) -> list[_Segment]:
        """Drop the oldest segments while over the bound; their workloads leave `known`."""
        dropped = []
        used = sum(s.size for s in self._segments.values())
        for seq in list(self._segments):
            if used <= self.max_bytes or seq == newest:
                break
            segment = self._segments.pop(seq)
            used -= segment.size
            if self._head is not None and self._head[0] == seq:
                self._head = None
            lost = segment.count - len(segment.done)
            self.counts.dropped += lost
            for wid in self._workloads_of(segment):
                self.known.discard(wid)
            dropped.append(segment)
        if dropped:
            log.warning("push spool over its bound: oldest deltas dropped; their workloads "
                        "are sent as full snapshots when the endpoint takes them again",
                        extra={"segments": len(dropped), "max_bytes": self.max_bytes,
                               "path": self.directory})
        return dropped

    def _workloads_of(self, segment: _Segment) -> set[str]:
        try:
            return {r.workload_id for r in self._read(segment)}
        except (OSError, ValueError):
            # Unreadable: nothing in it can be known to be delivered; resync everything.
            return set(self.known)

    def _write_segment(self, name: str, data: bytes) -> None:
        path = os.path.join(self.directory, name)
        tmp = f"{path}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _write_state(self) -> None:
        text = json.dumps({"known": sorted(self.known)}, indent=1) + "\n"
        try:
            write_atomically(os.path.join(self.directory, STATE_NAME), text)
        except OSError as exc:
            # Only costs full snapshots after a restart, never a file.
            self.counts.write_errors += 1
            log.error("push spool state not written", extra={"error": str(exc)})

    # ------------------------------------------------------------ reading

    def _path(self, segment: _Segment) -> str:
        return os.path.join(self.directory, f"{segment.seq:012d}-{segment.count}.seg")

    def _read(self, segment: _Segment) -> list[SpoolRecord]:
        with open(self._path(segment), "rb") as handle:
            unpacker = msgpack.Unpacker(handle, raw=False, max_buffer_size=1 << 31)
            records = []
            for index, item in enumerate(unpacker):
                wid, key, body = item
                records.append(SpoolRecord(segment.seq, index, str(wid), str(key), bytes(body)))
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
            segment.done.add(record.index)
            if len(segment.done) >= segment.count:
                self._finish(segment)

    def _finish(self, segment: _Segment) -> None:
        self._segments.pop(segment.seq, None)
        if self._head is not None and self._head[0] == segment.seq:
            self._head = None
        with contextlib.suppress(OSError):
            os.unlink(self._path(segment))

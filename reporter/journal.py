"""The reporter's journal: every FileUpdates appended to a file as it arrives, fsynced in
groups, replayed at start, emptied once a write round has the content in the reports.

A record is a 20-byte header, then the message as the wire encodes it
(`snoop.common.protocol.encode`):

    magic "SNJ1" | payload length (u32) | CRC-32 of seq and payload (u32) | seq (u64)

all big-endian. `seq` numbers records across the reporter's life (it continues after a
reset), so the state file can say "the reports hold every record up to N" and a replay
skips those. Reading stops at the first record that is cut short or fails its CRC: a
crash mid-append leaves at most one torn record, at the end, and it is dropped. Bytes
that are not a torn tail (damage in the middle) are copied aside before the file is cut
back to its valid prefix, never silently discarded. A record whose frame is intact but
whose message no longer decodes is skipped and counted; the records after it still load.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from snoop.common.protocol import (
    MAX_MESSAGE_BYTES,
    FileUpdates,
    MessageType,
    ProtocolError,
    decode,
    encode,
)

log = logging.getLogger("snoop.reporter")

MAGIC = b"SNJ1"
HEADER = struct.Struct(">4sIIQ")
# Past this size the journal takes no more records until a write round empties it; the
# batches it did not take are confirmed by that write round instead (as without a journal).
MAX_BYTES = 256 * 1024 * 1024
_ACCEPTS = frozenset({MessageType.FILE_UPDATES})


class JournalSuspended(Exception):
    """The journal takes no records until the next `reset`: it is full, or a write failed."""


@dataclass
class JournalCounts:
    appended: int = 0  # records written
    syncs: int = 0  # fsyncs that made appended records durable
    errors: int = 0  # appends, syncs or resets that failed
    replayed: int = 0  # records read back at start
    undecodable: int = 0  # intact records skipped at start because they did not decode
    torn: int = 0  # torn tails dropped at start
    corrupt: int = 0  # damaged stretches copied aside at start


@dataclass(frozen=True)
class Entry:
    seq: int
    updates: FileUpdates


def _frame(seq: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "big")))
    return HEADER.pack(MAGIC, len(payload), crc, seq) + payload


def _read(data: bytes) -> tuple[list[tuple[int, bytes]], int, bool]:
    """The intact records, where they end, and whether what follows is only a torn tail."""
    records: list[tuple[int, bytes]] = []
    offset = 0
    last_seq = -1
    while offset < len(data):
        rest = len(data) - offset
        if rest < HEADER.size:
            return records, offset, MAGIC.startswith(data[offset:offset + 4]) or _zeros(
                data, offset)
        magic, length, crc, seq = HEADER.unpack_from(data, offset)
        if magic != MAGIC or length > MAX_MESSAGE_BYTES or seq <= last_seq:
            return records, offset, _zeros(data, offset)
        end = offset + HEADER.size + length
        if end > len(data):
            return records, offset, True  # the last append was cut short
        payload = data[offset + HEADER.size:end]
        if zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "big"))) != crc:
            # A full-length record with a bad CRC at the very end is a torn write whose
            # size reached the disk before its data; anywhere else it is damage.
            return records, offset, end == len(data)
        records.append((seq, payload))
        last_seq = seq
        offset = end
    return records, offset, True


def _zeros(data: bytes, offset: int) -> bool:
    # A crash can leave a file longer than what was written, padded with zeros.
    return data.count(0, offset) == len(data) - offset


class Journal:
    def __init__(self, path: str, *, max_bytes: int = MAX_BYTES,
                 aside_path: Callable[[str], str] = lambda path: path + ".corrupt",
                 fsync: Callable[[int], None] = os.fsync) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._aside_path = aside_path
        self._fsync = fsync
        self.counts = JournalCounts()
        self.size = 0
        self.last_seq = 0
        self.unsynced = 0  # records appended since the last sync
        # Why the journal takes no records until the next reset; None while it does. Once
        # one record is missing, later ones must not follow it: a replay would then apply
        # them without it, and the tracer re-sends only what was never confirmed.
        self.suspended: str | None = None
        self._fd: int | None = None

    def open(self) -> list[Entry]:
        """Open for appending (creating it if needed); the records it already holds."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            data = _read_all(fd)
            records, good, torn = _read(data)
            if good < len(data):
                self._drop_tail(fd, data, good, torn, len(records))
            # What a crashed process wrote may still be only in the page cache.
            self._fsync(fd)
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.size = good
        entries = []
        for seq, payload in records:
            self.last_seq = seq
            try:
                message = decode(payload, _ACCEPTS)
            except ProtocolError as exc:
                self.counts.undecodable += 1
                log.error("journal record does not decode; skipped", extra={
                    "path": self.path, "record": seq, "error": str(exc)})
                continue
            assert isinstance(message, FileUpdates)
            entries.append(Entry(seq, message))
        self.counts.replayed = len(entries)
        return entries

    def _drop_tail(self, fd: int, data: bytes, good: int, torn: bool, intact: int) -> None:
        dropped = len(data) - good
        if torn:
            self.counts.torn += 1
            log.warning("journal: torn last record dropped (a crash cut its append short)",
                        extra={"path": self.path, "bytes": dropped, "records_kept": intact})
        else:
            aside = self._aside_path(self.path)
            with open(aside, "wb") as handle:
                handle.write(data[good:])
                handle.flush()
                os.fsync(handle.fileno())
            self.counts.corrupt += 1
            log.error("journal damaged: records after the damage are lost; the damaged "
                      "bytes are kept aside", extra={"path": self.path, "bytes": dropped,
                                                     "records_kept": intact,
                                                     "moved_to": aside})
        os.ftruncate(fd, good)

    def append(self, updates: FileUpdates, encoded: bytes | None = None) -> int:
        """Write one record (durable only after `sync`); its seq. `encoded`: the bytes
        `updates` was decoded from, written as they are (encoding again costs as much).

        Raises JournalSuspended when the journal takes no records, and suspends it when
        this record does not fit its bound or cannot be written.
        """
        if self._fd is None:
            raise ValueError("journal is not open")
        if self.suspended is not None:
            raise JournalSuspended(self.suspended)
        seq = self.last_seq + 1
        record = _frame(seq, encoded if encoded is not None else encode(updates))
        if self.size + len(record) > self.max_bytes:
            self._suspend(f"full: {self.size} bytes, and a record of {len(record)} would "
                          f"pass its bound of {self.max_bytes}")
            raise JournalSuspended(self.suspended)
        view = memoryview(record)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            self.counts.errors += 1
            self._suspend(f"append failed: {exc}")
            try:  # cut the partial record off, so a replay never reads past a hole
                os.ftruncate(self._fd, self.size)
            except OSError:
                self.size += len(record) - len(view)
            raise JournalSuspended(self.suspended) from exc
        self.size += len(record)
        self.last_seq = seq
        self.unsynced += 1
        self.counts.appended += 1
        return seq

    def sync(self) -> None:
        """Make every appended record durable; suspends the journal when that fails."""
        if self._fd is None or not self.unsynced or self.suspended is not None:
            return
        try:
            self._fsync(self._fd)
        except OSError as exc:
            self.counts.errors += 1
            # After a failed fsync nobody knows which pages reached the disk.
            self._suspend(f"fsync failed: {exc}")
            raise JournalSuspended(self.suspended) from exc
        self.unsynced = 0
        self.counts.syncs += 1

    def reset(self) -> None:
        """Empty the journal, and take records again: the reports now hold everything it
        held. `last_seq` carries on. Raises OSError (and stays suspended) on failure."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            self._fsync(self._fd)
        except OSError as exc:
            self.counts.errors += 1
            self._suspend(f"reset failed: {exc}")
            raise
        self.size = 0
        self.unsynced = 0
        if self.suspended is not None:
            log.info("journal takes records again", extra={"path": self.path})
            self.suspended = None

    def _suspend(self, reason: str) -> None:
        if self.suspended is None:
            log.error("journal suspended until the next report write: batches are "
                      "confirmed only by report writes meanwhile",
                      extra={"path": self.path, "reason": reason})
        self.suspended = reason

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The BPF ring buffer, read in bulk through its own mapping: no bcc, no callback.

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (ours to write);
page 1 the producer position; the data pages follow. The kernel offers them mapped twice
in a row, so that a record that wraps around the end reads as one piece; they are mapped
once here, and the rare wrapped record is joined from two pieces, because every mapped
page counts in the tracer's RSS. Each record starts with an 8-byte header (never split:
records are 8-byte aligned): a u32 length with a busy bit (the producer has not committed
it yet) and a discard bit (committed empty), then the data, padded to 8 bytes.

The consumer position is only moved by `commit()`: the tracer commits once the records
read are safe elsewhere (sent and spooled), so a tracer killed in between leaves them
in the ring for the next one.
"""

from __future__ import annotations

import mmap
import select
import struct

from snoop.tracer.build import PAGE_SIZE

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = 8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingReader:
    def __init__(self, fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring buffer size {size} is not a power of two")
        self.size = size
        self._mask = size - 1
        self._consumer = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(fd, PAGE_SIZE + size, mmap.MAP_SHARED,
                                   mmap.PROT_READ, offset=PAGE_SIZE)
        self._data = memoryview(self._producer)[PAGE_SIZE:]
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self.position = self.committed  # how far read, beyond what is committed

    @property
    def committed(self) -> int:
        return _U64.unpack_from(self._consumer, 0)[0]

    @property
    def produced(self) -> int:
        return _U64.unpack_from(self._producer, 0)[0]

    def wake_on(self, fd: int) -> None:
        """`wait()` also returns when `fd` is readable."""
        self._poll.register(fd, select.POLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Until the producer wakes us, or timeout_ms."""
        if self.produced == self.position:
            self._poll.poll(timeout_ms)

    def read(self, max_records: int = 1 << 30) -> list[bytes]:
        """Committed records after `position`, up to max_records; discarded ones skipped."""
        records = []
        data, mask, size, position = self._data, self._mask, self.size, self.position
        produced = self.produced
        unpack = _U32.unpack_from
        while position < produced and len(records) < max_records:
            offset = position & mask
            header = unpack(data, offset)[0]
            if header & BUSY:
                break  # not committed yet; later ones wait behind it
            length = header & ~(BUSY | DISCARD)
            if not header & DISCARD:
                start = offset + HEADER  # <= size: the header never wraps
                end = start + length
                if end <= size:
                    records.append(bytes(data[start:end]))
                else:  # the data wraps around the end
                    records.append(bytes(data[start:size]) + bytes(data[:end - size]))
            position += (length + HEADER + 7) & ~7
        self.position = position
        return records

    def commit(self, position: int | None = None) -> None:
        """Give the space up to `position` (default: all read) back to the producer."""
        _U64.pack_into(self._consumer, 0, self.position if position is None else position)

    def close(self) -> None:
        self._data.release()
        self._producer.close()
        self._consumer.close()

"""Per-CPU perf buffers, read in bulk the way `RingReader` reads the ring buffer: the
event path of kernels without the BPF ring buffer (before 5.8).

The tracer opens one PERF_COUNT_SW_BPF_OUTPUT event per CPU, maps its buffer, and puts
its fd in the program's BPF_PERF_OUTPUT map at that CPU's index. Each buffer: a header
page (data_head, written by the kernel; data_tail, ours), then 2^n data pages. Records
are a perf_event_header {u32 type; u16 misc; u16 size} and, for samples, the time and
the raw bytes the program sent; a record may wrap around the end of the data pages.

One ring keeps the kernel's order; per-CPU buffers do not, and the translator needs
that order (a chdir before the open relative to it, on another CPU after a migration).
So every sample carries CLOCK_MONOTONIC time, and `read()` merges the buffers by it.
A record is written microseconds after its time is taken, so one stamped later than
`HOLD_NS` before the read began may still have an older one pending on another CPU:
it waits for a later read, but never longer than it takes to have been visible for
HOLD_NS (so a clock that jumps on one CPU, as under emulation, cannot hold a buffer up).
`final=True` (paused: nothing is pending) takes all.

As with the ring buffer, the space is only given back by `commit()`.
"""

from __future__ import annotations

import ctypes
import heapq
import mmap
import os
import select
import struct
import time

from snoop.tracer.bpfsys import PERF_FLAG_FD_CLOEXEC, PERF_SAMPLE_RAW, Bpf, BpfError

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_TIME = 1 << 2
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
PERF_EVENT_IOC_ENABLE = 0x2400
ATTR_FLAG_USE_CLOCKID = 1 << 25  # perf_event_attr bit: sample time from `clockid`
CLOCK_MONOTONIC = 1
HOLD_NS = 2_000_000  # a sample is written within microseconds of its time; room to spare
DATA_HEAD = 1024  # offsets in the header page (struct perf_event_mmap_page)
DATA_TAIL = 1032
_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<IHH")  # type, misc, size
_SAMPLE = struct.Struct("<QI")  # time, raw size


class _PerfAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("config", ctypes.c_uint64), ("sample_period", ctypes.c_uint64),
                ("sample_type", ctypes.c_uint64), ("read_format", ctypes.c_uint64),
                ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64),
                ("config2", ctypes.c_uint64), ("branch_sample_type", ctypes.c_uint64),
                ("sample_regs_user", ctypes.c_uint64), ("sample_stack_user", ctypes.c_uint32),
                ("clockid", ctypes.c_int32), ("rest", ctypes.c_uint64 * 8)]


class _CpuBuffer:
    def __init__(self, fd: int, data_pages: int) -> None:
        self.fd = fd
        self.size = data_pages * PAGE_SIZE
        self.map = mmap.mmap(fd, PAGE_SIZE + self.size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.data = memoryview(self.map)[PAGE_SIZE:]
        self.position = self.tail
        # The head as it was at least HOLD_NS ago: what lies before it has been visible
        # long enough that nothing older can still be on its way on another CPU.
        self.settled_head = self.position
        self.snapshot_head, self.snapshot_at = self.position, 0

    @property
    def head(self) -> int:
        return _U64.unpack_from(self.map, DATA_HEAD)[0]

    @property
    def tail(self) -> int:
        return _U64.unpack_from(self.map, DATA_TAIL)[0]

    def take(self, start: int, length: int) -> bytes:
        offset = start % self.size
        end = offset + length
        if end <= self.size:
            return bytes(self.data[offset:end])
        return bytes(self.data[offset:]) + bytes(self.data[:end - self.size])

    def close(self) -> None:
        self.data.release()
        self.map.close()
        os.close(self.fd)


class PerfReader:
    """The interface of `RingReader`; positions are tuples, one per CPU."""

    def __init__(self, map_fd: int, size: int, bpf: Bpf | None = None,
                 wakeup_events: int = 64) -> None:
        pages = max(1, size // PAGE_SIZE)
        if pages & (pages - 1):
            raise ValueError(f"perf buffer of {pages} pages is not a power of two")
        self.size = pages * PAGE_SIZE
        self.lost = 0  # PERF_RECORD_LOST counts: the kernel's own, for cross-checking
        bpf = bpf or Bpf()
        libc = ctypes.CDLL(None, use_errno=True)
        self._cpus: list[_CpuBuffer] = []
        self._poll = select.poll()
        try:
            for cpu in _online_cpus():
                fd = _open_output_event(libc, bpf, cpu, wakeup_events)
                try:
                    buffer = _CpuBuffer(fd, pages)
                except OSError:
                    os.close(fd)
                    raise
                self._cpus.append(buffer)
                bpf.update(map_fd, struct.pack("<I", cpu), struct.pack("<I", fd))
                if libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(PERF_EVENT_IOC_ENABLE), 0) < 0:
                    err = ctypes.get_errno()
                    raise BpfError(err, f"enable perf buffer of CPU {cpu}: {os.strerror(err)}")
                self._poll.register(fd, select.POLLIN)
        except BaseException:
            self.close()
            raise

    @property
    def position(self) -> tuple[int, ...]:
        return tuple(c.position for c in self._cpus)

    @property
    def committed(self) -> tuple[int, ...]:
        return tuple(c.tail for c in self._cpus)

    @property
    def produced(self) -> tuple[int, ...]:
        return tuple(c.head for c in self._cpus)

    def wake_on(self, fd: int) -> None:
        """`wait()` also returns when `fd` is readable."""
        self._poll.register(fd, select.POLLIN)

    def wait(self, timeout_ms: int) -> None:
        if self.produced == self.position:
            self._poll.poll(timeout_ms)

    def read(self, max_records: int = 1 << 30, final: bool = False) -> list[bytes]:
        """Samples after `position`, oldest first across CPUs, up to max_records."""
        return [data for _, data in self.read_timed(max_records, final)]

    def read_timed(self, max_records: int = 1 << 30,
                   final: bool = False) -> list[tuple[int, bytes]]:
        """`read()`, each sample with its CLOCK_MONOTONIC time in ns."""
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        cutoff = None if final else now - HOLD_NS
        for cpu in self._cpus:
            if now - cpu.snapshot_at >= HOLD_NS:
                cpu.settled_head = cpu.snapshot_head
                cpu.snapshot_head, cpu.snapshot_at = cpu.head, now
        streams = [self._samples(index, cutoff) for index in range(len(self._cpus))]
        records: list[tuple[int, bytes]] = []
        for stamp, index, end, data in heapq.merge(*streams):
            if len(records) >= max_records:
                break
            records.append((stamp, data))
            self._cpus[index].position = end
        return records

    def _samples(self, index: int, cutoff: int | None):
        """(time, cpu index, end position, raw bytes) of one CPU's records, in order;
        lost-records notes are counted and passed over."""
        cpu = self._cpus[index]
        position, head = cpu.position, cpu.head
        out = []
        while position + _HEADER.size <= head:
            kind, _, size = _HEADER.unpack(cpu.take(position, _HEADER.size))
            if size < _HEADER.size:
                break  # cannot happen; never loop on it
            body = cpu.take(position + _HEADER.size, size - _HEADER.size)
            if kind == PERF_RECORD_SAMPLE and len(body) >= _SAMPLE.size:
                stamp, raw_size = _SAMPLE.unpack_from(body)
                # Too new to be sure of the order, unless it has been visible a while:
                # a time stamp is only trusted to hold a record back for HOLD_NS.
                if cutoff is not None and stamp > cutoff and position + size > cpu.settled_head:
                    break
                out.append((stamp, index, position + size,
                            body[_SAMPLE.size:_SAMPLE.size + raw_size]))
            else:
                if out:  # passed over once the samples before it are taken
                    break
                if kind == PERF_RECORD_LOST and len(body) >= 16:
                    self.lost += _U64.unpack_from(body, 8)[0]
                cpu.position = position + size
            position += size
        return out

    def commit(self, position: tuple[int, ...] | None = None) -> None:
        positions = self.position if position is None else position
        for cpu, value in zip(self._cpus, positions, strict=True):
            _U64.pack_into(cpu.map, DATA_TAIL, value)

    def close(self) -> None:
        for cpu in self._cpus:
            cpu.close()
        self._cpus = []


def _open_output_event(libc, bpf: Bpf, cpu: int, wakeup_events: int) -> int:
    attr = _PerfAttr(type=PERF_TYPE_SOFTWARE, size=ctypes.sizeof(_PerfAttr),
                     config=PERF_COUNT_SW_BPF_OUTPUT, sample_period=1,
                     sample_type=PERF_SAMPLE_RAW | PERF_SAMPLE_TIME,
                     flags=ATTR_FLAG_USE_CLOCKID, wakeup_events=wakeup_events,
                     clockid=CLOCK_MONOTONIC)
    fd = libc.syscall(bpf.syscall_number("perf_event_open"), ctypes.byref(attr), ctypes.c_int(-1),
                      ctypes.c_int(cpu), ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"perf buffer for CPU {cpu}: {os.strerror(err)}")
    return fd


def _online_cpus() -> list[int]:
    with open("/sys/devices/system/cpu/online") as handle:
        text = handle.read().strip()
    cpus = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus

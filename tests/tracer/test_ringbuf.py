"""The bulk ring buffer reader against a real BPF ring buffer: records a program
submitted come back exactly, in order, across wrap-arounds, without the discarded ones."""

from __future__ import annotations

import os

import pytest

from snoop.tracer.build import PAGE_SIZE
from snoop.tracer.ringbuf import RingReader

pytestmark = pytest.mark.bpf

# Each getppid() of the test process submits a record of a size that varies, numbered;
# every third one is reserved and then discarded.
PROGRAM = """
struct rec { u64 seq; u64 pad[SLOTS]; };
BPF_RINGBUF_OUTPUT(ring, 1);
BPF_ARRAY(counter, u64, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if ((bpf_get_current_pid_tgid() >> 32) != OWNER)
        return 0;
    u32 zero = 0;
    u64 *n = counter.lookup(&zero);
    if (!n)
        return 0;
    u64 seq = ++*n;
    struct rec *r = ring.ringbuf_reserve(sizeof(struct rec));
    if (!r)
        return 0;
    r->seq = seq;
#pragma unroll
    for (int i = 0; i < SLOTS; i++)
        r->pad[i] = seq * 1000 + i;  // so a record joined wrongly at the wrap shows
    if (seq % 3 == 0)
        ring.ringbuf_discard(r, 0);
    else
        ring.ringbuf_submit(r, 0);
    return 0;
}
"""
SLOTS = 44  # 8 + 44 * 8 = 360 bytes, 368 with the header: 11 fit in one page


def test_bulk_reader_returns_exactly_the_submitted_records_across_wraps():
    from bcc import BPF

    bpf = BPF(text=PROGRAM.encode(), cflags=[f"-DOWNER={os.getpid()}", f"-DSLOTS={SLOTS}"])
    try:
        reader = RingReader(bpf[b"ring"].map_fd, PAGE_SIZE)
        seen: list[int] = []
        produced = 0
        for _ in range(40):  # 40 rounds of 7 records: the 4 KiB ring wraps many times
            for _ in range(7):
                os.getppid()
                produced += 1
            records = reader.read()
            seen.extend(int.from_bytes(r[:8], "little") for r in records)
            assert all(len(r) == 8 + SLOTS * 8 for r in records)
            for r in records:
                seq = int.from_bytes(r[:8], "little")
                assert r[8:] == b"".join((seq * 1000 + i).to_bytes(8, "little")
                                         for i in range(SLOTS)), seq
            reader.commit()
        assert reader.committed == reader.position == reader.produced
        assert seen == [n for n in range(1, produced + 1) if n % 3 != 0]
        reader.close()
    finally:
        bpf.cleanup()


def test_uncommitted_records_are_read_again_by_a_new_reader():
    """What a killed tracer read but had not spooled is still there for the next one."""
    from bcc import BPF

    bpf = BPF(text=PROGRAM.encode(), cflags=[f"-DOWNER={os.getpid()}", f"-DSLOTS={SLOTS}"])
    try:
        first = RingReader(bpf[b"ring"].map_fd, PAGE_SIZE)
        for _ in range(4):
            os.getppid()
        assert len(first.read()) == 3  # 1, 2, 4: the third was discarded
        first.close()  # never committed
        second = RingReader(bpf[b"ring"].map_fd, PAGE_SIZE)
        assert [int.from_bytes(r[:8], "little") for r in second.read()] == [1, 2, 4]
        second.close()
    finally:
        bpf.cleanup()

"""The perf-buffer event path (kernels before 5.8), on a small program of its own: every
sample arrives once, stamped with CLOCK_MONOTONIC (the order across CPUs depends on
it), and space comes back only when committed."""

from __future__ import annotations

import os
import time

import pytest

from snoop.tracer.perfbuf import PerfReader

PROGRAM = b"""
BPF_PERF_OUTPUT(out);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != TGID)
        return 0;
    u64 value[4] = {tgid, 1, 2, 3};
    out.perf_submit(args, &value, sizeof(value));
    return 0;
}
"""


@pytest.fixture
def program():
    bcc = pytest.importorskip("bcc")
    loaded = bcc.BPF(text=PROGRAM, cflags=[f"-DTGID={os.getpid()}", "-w"])
    try:
        yield loaded
    finally:
        loaded.cleanup()


@pytest.mark.bpf
def test_samples_arrive_in_order_with_their_monotonic_time(program):
    reader = PerfReader(program[b"out"].map_fd, 4096)
    try:
        times = []
        for _ in range(50):
            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            os.getppid()
            times.append((before, time.clock_gettime_ns(time.CLOCK_MONOTONIC)))
        got = reader.read_timed(final=True)
        assert len(got) == 50
        for (stamp, data), (before, after) in zip(got, times, strict=True):
            assert before <= stamp <= after
            assert data[:8] == os.getpid().to_bytes(8, "little")
        assert reader.position != reader.committed
        reader.commit()
        assert reader.position == reader.committed
        assert reader.read(final=True) == []
    finally:
        reader.close()


@pytest.mark.bpf
def test_a_full_buffer_refuses_what_it_cannot_hold_and_says_so(program):
    reader = PerfReader(program[b"out"].map_fd, 4096)
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one CPU's buffer, and its loss note
    try:
        for _ in range(2000):  # far more than a page of 56-byte records holds
            os.getppid()
        first = reader.read(final=True)
        assert 0 < len(first) < 2000
        reader.commit()
        os.getppid()  # the kernel notes the loss before the next sample that fits
        second = reader.read(final=True)
        assert len(second) == 1
        assert len(first) + reader.lost == 2000
    finally:
        os.sched_setaffinity(0, cpus)
        reader.close()

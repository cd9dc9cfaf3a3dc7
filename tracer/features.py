"""What this kernel's BPF offers, asked of the kernel itself (no bcc, no bpftool).

Each probe creates a map or loads a four-instruction program and closes it at once:
the answer is whether the kernel accepted it.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from snoop.tracer.bpfsys import Bpf, BpfError

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_MAP_TYPE_RINGBUF = 27
BPF_PROG_TYPE_TRACEPOINT = 5
HELPER_GET_CURRENT_ANCESTOR_CGROUP_ID = 123


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32)]


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32)]


@dataclass(frozen=True)
class Features:
    ringbuf: bool
    ancestor_cgroup_helper: bool

    @property
    def defines(self) -> list[str]:
        flags = []
        if self.ringbuf:
            flags.append("-DHAVE_RINGBUF")
        if self.ancestor_cgroup_helper:
            flags.append("-DHAVE_ANCESTOR_CGROUP_HELPER")
        return flags

    @property
    def event_path(self) -> str:
        return "ring buffer" if self.ringbuf else "perf buffer"


def _accepted(bpf: Bpf, cmd: int, attr: ctypes.Structure, what: str) -> bool:
    try:
        fd = bpf.call(cmd, attr, what)
    except BpfError:
        return False
    os.close(fd)
    return True


def has_ringbuf(bpf: Bpf) -> bool:
    attr = _MapCreateAttr(BPF_MAP_TYPE_RINGBUF, 0, 0, PAGE_SIZE, 0)
    return _accepted(bpf, BPF_MAP_CREATE, attr, "probe ring buffer")


def tracing_has_helper(bpf: Bpf, helper: int) -> bool:
    """A tracepoint program calling `helper` with r1 = 0 loads."""
    def insn(code: int, regs: int = 0, imm: int = 0) -> bytes:
        return bytes([code, regs]) + (0).to_bytes(2, "little") + imm.to_bytes(4, "little",
                                                                               signed=True)
    program = (insn(0xB7, 0x01)          # r1 = 0
               + insn(0x85, 0, helper)   # call helper
               + insn(0xB7, 0x00)        # r0 = 0
               + insn(0x95))             # exit
    insns = ctypes.create_string_buffer(program, len(program))
    license_text = ctypes.create_string_buffer(b"GPL")
    attr = _ProgLoadAttr(BPF_PROG_TYPE_TRACEPOINT, len(program) // 8,
                         ctypes.addressof(insns), ctypes.addressof(license_text))
    return _accepted(bpf, BPF_PROG_LOAD, attr, f"probe helper {helper}")


# Set (to anything but "" or "0"): build the older kernels' kernel side here too, perf
# buffers and the cgroup walk, as if the probes had failed; "perf-buffer" or
# "cgroup-walk": only that one. For tests and comparisons.
FALLBACKS_ENV = "SNOOP_BPF_FALLBACKS"


def probe(bpf: Bpf | None = None, environ: dict[str, str] | None = None) -> Features:
    forced = (environ if environ is not None else os.environ).get(FALLBACKS_ENV, "0")
    bpf = bpf or Bpf()
    return Features(
        ringbuf=forced in ("", "0", "cgroup-walk") and has_ringbuf(bpf),
        ancestor_cgroup_helper=forced in ("", "0", "perf-buffer") and tracing_has_helper(
            bpf, HELPER_GET_CURRENT_ANCESTOR_CGROUP_ID))

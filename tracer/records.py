"""The binary record the BPF program writes to the ring buffer, decoded.

Mirrors `struct event_hdr` in tracer/bpf/snoop.bpf.c (tests compare the two layouts);
the header is followed by `path_len` bytes of path, without a NUL.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER = struct.Struct("<QQQqIIiHHHBBBBH16s")
HEADER_FIELDS = ("cgroup_id", "serial", "base", "ret", "pid", "tgid", "dirfd", "path_len",
                 "syscall", "skip", "kind", "flags", "resolve", "pad1", "pad2", "comm")

AT_FDCWD = -100
PATH_MAX = 4096

KIND_FORK = 100
KIND_EXIT = 101
KIND_PRIME_CWD = 103
KIND_PRIME_FD = 104

FLAG_READ_FAILED = 1
FLAG_TRUNCATED = 2
FLAG_FROM_EXEC = 4
FLAG_MAGIC = 8
FLAG_BASE = 16
FLAG_UNCERTAIN = 32
FLAG_OLD_ROOT = 64

RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
FD_ROOT = -2

# Per-CPU counter slots of the `counters` map.
STAT_SUBMITTED = 0
STAT_RINGBUF_FULL = 1
STAT_READ_FAILED = 2
STAT_DEDUP_HITS = 3
STAT_STASH_FULL = 4
STAT_PRIMED = 5
STAT_NOTES_DROPPED = 6


class RecordError(ValueError):
    """A ring buffer record shorter than its header says."""


class Record(NamedTuple):
    """One decoded record: the header's fields in its order, then the path. A NamedTuple
    made straight from the unpacked header: the tracer builds one per event, and a tuple
    is several times cheaper to create than a frozen dataclass."""

    cgroup_id: int
    serial: int = 0  # unique per record
    base: int = 0  # serial of the cwd or fd a relative or magic path is relative to
    ret: int = 0
    pid: int = 0
    tgid: int = 0
    dirfd: int = AT_FDCWD
    path_len: int = 0
    syscall: int = 0
    skip: int = 0  # FLAG_MAGIC: bytes of the path's /proc/self/fd/N/ prefix
    kind: int = 0
    flags: int = 0
    resolve: int = 0  # openat2's RESOLVE_BENEATH / RESOLVE_IN_ROOT bits
    comm: bytes = b""  # the thread's process name, NUL-padded to 16 bytes
    path: bytes = b""


# HEADER without its padding: the values of Record's fields before `path`.
_FIELDS = struct.Struct("<QQQqIIiHHHBBB3x16s")
_unpack_fields = _FIELDS.unpack_from
_make = Record._make
HEADER_SIZE = _FIELDS.size


def decode(data: bytes) -> Record:
    size = len(data)
    if size < HEADER_SIZE:
        raise RecordError(f"record of {size} bytes, shorter than its header")
    fields = _unpack_fields(data)
    end = HEADER_SIZE + fields[7]
    if size < end:
        raise RecordError(f"record says {fields[7]} path bytes, has {size - HEADER_SIZE}")
    return _make((*fields, data[HEADER_SIZE:end]))

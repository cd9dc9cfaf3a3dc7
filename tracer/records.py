"""The binary record the BPF program writes to the ring buffer, decoded.

Mirrors `struct event_hdr` in tracer/bpf/snoop.bpf.c (tests compare the two layouts);
the header is followed by `path_len` bytes of path, without a NUL.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER = struct.Struct("<QQQqIIiHHHBBBBH")
HEADER_FIELDS = ("cgroup_id", "serial", "base", "ret", "pid", "tgid", "dirfd", "path_len",
                 "syscall", "skip", "kind", "flags", "resolve", "pad1", "pad2")

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
    """One decoded record. A NamedTuple: the tracer builds one per event, and a tuple
    is several times cheaper to create than a frozen dataclass."""

    cgroup_id: int
    pid: int
    tgid: int
    ret: int
    dirfd: int
    kind: int
    flags: int
    syscall: int
    path: bytes
    serial: int = 0  # unique per record
    base: int = 0  # serial of the cwd or fd a relative or magic path is relative to
    skip: int = 0  # FLAG_MAGIC: bytes of the path's /proc/self/fd/N/ prefix
    resolve: int = 0  # openat2's RESOLVE_BENEATH / RESOLVE_IN_ROOT bits


def decode(data: bytes | memoryview) -> Record:
    if len(data) < HEADER.size:
        raise RecordError(f"record of {len(data)} bytes, shorter than its header")
    (cgroup_id, serial, base, ret, pid, tgid, dirfd, path_len, syscall, skip, kind, flags,
     resolve, _, _) = HEADER.unpack_from(data)
    end = HEADER.size + path_len
    if len(data) < end:
        raise RecordError(f"record says {path_len} path bytes, has {len(data) - HEADER.size}")
    return Record(cgroup_id, pid, tgid, ret, dirfd, kind, flags, syscall,
                  bytes(data[HEADER.size:end]), serial, base, skip, resolve)

"""The layout of every BPF map the tracer reads or writes, mirrored from snoop.bpf.c
(tests/tracer/test_records.py checks the two agree)."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class MapLayout:
    key: struct.Struct
    value: struct.Struct


U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
U8 = struct.Struct("<B")

# name -> layout. Per-CPU maps hold one 8-byte-aligned value per possible CPU.
LAYOUTS: dict[str, MapLayout] = {
    "targets": MapLayout(U64, U8),
    "verdicts": MapLayout(U64, U64),  # cgroup id -> (generation << 8) | verdict
    "generation": MapLayout(U32, U64),
    "excluded_tgids": MapLayout(U32, U8),
    "control": MapLayout(U32, U32),
    "counters": MapLayout(U32, U64),
    "procs": MapLayout(U32, struct.Struct("<QQQII")),  # fs, files, root_stamp, uncertain
    "cwds": MapLayout(U64, struct.Struct("<QQ")),  # base, stamp
    # (files, fd) -> now and before: base, sock, stamp, cloexec, set
    "fds": MapLayout(struct.Struct("<QiI"), struct.Struct("<QQQIIQQQII")),
    "uring_path_ops": MapLayout(U64, U64),
    "watch_comms": MapLayout(struct.Struct("16s"), U8),  # snoop watch --comm
    # (cgroup, hash, base, len, kind, flags, resolve, failed) -> sent_at, serial; read only
    # to count entries
    "dedup": MapLayout(struct.Struct("<QQQHBBBBH"), struct.Struct("<QQ")),
    # tid -> struct stash
    "inflight": MapLayout(U32, struct.Struct("<QQQiiHBBBBBB")),
}

# The fd model's capacity (BPF_TABLE("lru_hash", ..., fds, 131072) in snoop.bpf.c): a
# full one forgets its oldest entries, which are then asked of /proc again.
FD_ENTRIES = 131072

# Held open (or pinned) but never read: the ring buffer is mapped, and a program array
# loses its programs when no user space reference to it is left.
HELD = ("events", "stage_progs")
ALL = tuple(LAYOUTS) + HELD

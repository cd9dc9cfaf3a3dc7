"""The record layout and syscall table are declared once on each side; they must agree."""

from __future__ import annotations

import re

import pytest

from snoop.tracer import maps, records
from snoop.tracer.build import BPF_SOURCE, KernelSettings, plan
from snoop.tracer.compiler import compiled_layouts
from snoop.tracer.syscalls import IO_URING_SUBMIT, SCHED_EVENTS, SYSCALLS, WATCH_SYSCALLS

C_SOURCE = BPF_SOURCE.read_text()


@pytest.fixture(scope="module")
def compiled():
    return compiled_layouts(plan(KernelSettings()))


@pytest.mark.bpf
def test_python_header_matches_the_struct_bcc_compiled(compiled):
    python_side = []
    offset = 0
    codes = re.findall(r"\d*[QqIiHBs]", records.HEADER.format[1:])
    for name, code in zip(records.HEADER_FIELDS, codes, strict=True):
        size = int(code[:-1]) if code.endswith("s") else {"Q": 8, "q": 8, "I": 4, "i": 4,
                                                           "H": 2, "B": 1}[code]
        python_side.append((name, offset, size))
        offset += size
    assert compiled["header"] == python_side
    assert records.HEADER.size == offset
    assert records.HEADER.size == records.HEADER_SIZE  # the unpacker that skips the padding


@pytest.mark.bpf
def test_map_layouts_match_the_structs_bcc_compiled(compiled):
    for name, layout in maps.LAYOUTS.items():
        assert compiled[name] == (layout.key.size, layout.value.size), name


def test_every_syscall_in_the_table_has_a_probe_and_back():
    in_c = set(re.findall(r"#ifdef HAVE_(\w+)", C_SOURCE))
    features = {"GROUP_DEAD", "RINGBUF", "ANCESTOR_CGROUP_HELPER", *IO_URING_SUBMIT}
    assert in_c - features == set(SYSCALLS)
    for name in SCHED_EVENTS:
        assert f"TRACEPOINT_PROBE(sched, {name})" in C_SOURCE
    # `snoop watch`'s own hooks, compiled only when it asks for them.
    assert set(re.findall(r"^WATCH_IO_PROBE\((\w+)\)", C_SOURCE, re.M)) == set(WATCH_SYSCALLS)


def test_constants_agree_with_the_c_source():
    def c_define(name: str) -> int:
        return int(re.search(rf"#define {name} (\d+)", C_SOURCE).group(1))

    for name in ("KIND_FORK", "KIND_EXIT", "KIND_PRIME_CWD", "KIND_PRIME_FD",
                 "FLAG_READ_FAILED", "FLAG_TRUNCATED", "FLAG_FROM_EXEC", "FLAG_MAGIC",
                 "FLAG_BASE", "FLAG_UNCERTAIN", "FLAG_OLD_ROOT", "STAT_SUBMITTED",
                 "STAT_RINGBUF_FULL",
                 "STAT_READ_FAILED", "STAT_DEDUP_HITS", "STAT_STASH_FULL", "STAT_PRIMED",
                 "STAT_NOTES_DROPPED"):
        assert c_define(name) == getattr(records, name), name
    assert int(re.search(r"#define FD_ROOT (-\d+)", C_SOURCE).group(1)) == records.FD_ROOT
    assert c_define("SNOOP_PATH_MAX") == records.PATH_MAX


def test_access_kinds_agree_with_the_protocol():
    from snoop.common.protocol import AccessKind

    for kind in AccessKind:
        assert int(re.search(rf"#define KIND_{kind.name} (\d+)", C_SOURCE).group(1)) == kind


def test_a_truncated_record_is_refused():
    header = records.HEADER.pack(1, 2, 3, 0, 4, 5, -100, 10, 0, 0, 1, 0, 0, 0, 0, b"cat")
    with pytest.raises(records.RecordError):
        records.decode(header + b"/etc")
    record = records.decode(header + b"/etc/hosts")
    assert (record.path, record.comm) == (b"/etc/hosts", b"cat" + bytes(13))


def test_the_fd_map_capacity_watch_reports_is_the_compiled_one():
    found = re.search(r'BPF_TABLE\("lru_hash", struct fd_key, struct fd_entry, fds, (\d+)\)',
                      C_SOURCE)
    assert found and int(found.group(1)) == maps.FD_ENTRIES


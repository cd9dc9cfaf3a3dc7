"""RecordTranslator: records in kernel order become Events, or counted coverage."""

from __future__ import annotations

from snoop.common.protocol import AccessKind
from snoop.tracer import records
from snoop.tracer.events import RecordTranslator
from snoop.tracer.resolve import PathResolver
from snoop.tracer.syscalls import ALL_NAMES

CHROOT = ALL_NAMES.index("chroot")


def rec(path: bytes, *, kind: int = int(AccessKind.STAT), base: int = 0, flags: int = 0,
        serial: int = 1, ret: int = 0, dirfd: int = -100, syscall: int = 0,
        cgroup: int = 7, tgid: int = 10) -> records.Record:
    return records.Record(cgroup_id=cgroup, pid=tgid, tgid=tgid, ret=ret, dirfd=dirfd,
                          kind=kind, flags=flags, syscall=syscall, path=path, serial=serial,
                          base=base)


def translator(max_path_bytes: int = 64) -> RecordTranslator:
    return RecordTranslator(PathResolver(None), max_path_bytes=max_path_bytes)


def test_a_base_record_names_later_relative_records() -> None:
    t = translator()
    opened = t.translate(rec(b"/usr/share/doc", kind=int(AccessKind.READ), serial=5, ret=3,
                             flags=records.FLAG_BASE))
    assert opened.path == b"/usr/share/doc"
    event = t.translate(rec(b"bash/copyright", base=5, dirfd=3))
    assert (event.path, event.resolved) == (b"/usr/share/doc/bash/copyright", True)


def test_a_resolved_path_over_the_bound_is_dropped_alone_and_counted() -> None:
    t = translator(max_path_bytes=64)
    deep = b"/" + b"d" * 60
    t.translate(rec(deep, kind=int(AccessKind.CHDIR), serial=5, flags=records.FLAG_BASE))
    assert t.translate(rec(b"name-past-the-bound", base=5)) is None
    # The deep cwd still serves as a base, and a short path in the same batch is kept.
    assert t.translate(rec(b"/etc/hostname")).path == b"/etc/hostname"
    assert t.take_uncounted()[7].paths_too_long == 1
    assert t.take_uncounted() == {}


def test_unknown_base_is_an_unresolved_event_and_uncertain_is_counted() -> None:
    t = translator()
    event = t.translate(rec(b"x", base=99))
    assert (event.path, event.resolved) == (b"x", False)
    assert t.unresolved == 1
    assert t.translate(rec(b"y", base=99, flags=records.FLAG_UNCERTAIN)) is None
    assert t.take_uncounted()[7].uncertain_paths == 1


def test_bookkeeping_records_are_no_events() -> None:
    t = translator()
    for kind in (records.KIND_FORK, records.KIND_EXIT, records.KIND_PRIME_CWD,
                 records.KIND_PRIME_FD):
        assert t.translate(rec(b"", kind=kind)) is None
    assert t.translate(rec(b"", flags=records.FLAG_READ_FAILED)) is None


def test_a_base_from_before_a_chroot_is_named_in_the_new_root() -> None:
    t = translator()
    t.translate(rec(b"/srv/jail/data", kind=int(AccessKind.READ), serial=5, ret=3,
                    flags=records.FLAG_BASE))
    t.translate(rec(b"/srv/jail", syscall=CHROOT, serial=6))
    event = t.translate(rec(b"z", base=5, dirfd=3, flags=records.FLAG_OLD_ROOT))
    assert (event.path, event.resolved) == (b"/data/z", True)
    # Its children inherit the root; a base outside the new root is uncertain.
    t.translate(rec(b"", kind=records.KIND_FORK, ret=11))
    t.translate(rec(b"/elsewhere", kind=int(AccessKind.READ), serial=8, ret=4,
                    flags=records.FLAG_BASE))
    assert t.translate(rec(b"z", base=5, dirfd=3, flags=records.FLAG_OLD_ROOT,
                           tgid=11)).path == b"/data/z"
    assert t.translate(rec(b"z", base=8, dirfd=4, flags=records.FLAG_OLD_ROOT)) is None
    assert t.take_uncounted()[7].uncertain_paths == 1

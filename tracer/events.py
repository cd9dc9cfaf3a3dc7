"""Ring buffer records -> protocol Events, keeping the cwd/fd model current on the way.

Records arrive in the order the kernel produced them, so fork, chdir and open results
update the resolver before the events that depend on them are resolved.
"""

from __future__ import annotations

from collections.abc import Callable

from snoop.common.protocol import AccessKind, Event, Workload
from snoop.tracer import records
from snoop.tracer.resolve import PathResolver

_FILE_KINDS = frozenset(int(k) for k in AccessKind)
_OPEN_KINDS = frozenset({int(AccessKind.READ), int(AccessKind.WRITE)})


def changes_cwd(record: records.Record) -> bool:
    """A successful chdir, fchdir or chroot: the process's view of relative paths moved."""
    return record.kind == AccessKind.CHDIR and record.ret == 0 or (
        record.ret == 0 and record.syscall_name == "chroot")


def last_cwd_change(batch: list[records.Record]) -> dict[int, int]:
    """tgid -> index of its last cwd or root change in `batch`."""
    last = {}
    for index, record in enumerate(batch):
        if changes_cwd(record):
            last[record.tgid] = index
    return last


class RecordTranslator:
    def __init__(self, resolver: PathResolver, workload_of: Callable[[int], Workload]) -> None:
        self.resolver = resolver
        self.workload_of = workload_of
        self.unresolved = 0
        self.unknown_kinds = 0

    def translate(self, record: records.Record, proc_is_current: bool = True) -> Event | None:
        """The Event for a file record; None for life-cycle records and lost paths.

        `proc_is_current=False` says the process changed its cwd or root after this
        record (a later record shows it), so /proc cannot stand in for the model.
        """
        kind = record.kind
        if proc_is_current and kind != records.KIND_EXIT and not self.resolver.knows(record.tgid):
            self.resolver.prime(record.pid, record.tgid)
        if kind == records.KIND_FORK:
            self.resolver.on_fork(record.tgid, record.ret)
            return None
        if kind == records.KIND_EXIT:
            self.resolver.on_exit(record.tgid)
            return None
        if kind == records.KIND_DUP:
            self.resolver.on_dup(record.tgid, record.dirfd, record.ret)
            return None
        if kind not in _FILE_KINDS:
            self.unknown_kinds += 1
            return None
        if record.read_failed:
            return None  # counted by the kernel (STAT_READ_FAILED), reported as coverage
        if kind == AccessKind.CHDIR and not record.path:
            if record.ret == 0:
                self.resolver.on_fchdir(record.tgid, record.dirfd)
            return None
        path, resolved = self.resolver.resolve(record.pid, record.tgid, record.dirfd,
                                               record.path, proc_fallback=proc_is_current)
        if not resolved:
            self.unresolved += 1
        elif kind == AccessKind.CHDIR and record.ret == 0 and record.syscall_name == "chdir":
            self.resolver.on_chdir(record.tgid, path)
        elif kind in _OPEN_KINDS and record.ret >= 0:
            self.resolver.on_fd(record.tgid, record.ret, path)
        if record.ret == 0 and record.syscall_name == "chroot":
            self.resolver.on_chroot(record.tgid)
        if record.flags & records.FLAG_FROM_EXEC:
            self.resolver.on_exec(record.tgid)
        return Event(cgroup_id=record.cgroup_id, pid=record.pid, tgid=record.tgid,
                     kind=AccessKind(kind), path=path, resolved=resolved)

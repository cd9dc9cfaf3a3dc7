"""Ring buffer records -> protocol Events, keeping the cwd/fd model current on the way.

Records arrive in the order the kernel produced them, so fork, chdir and open results
update the resolver before the events that depend on them are resolved.
"""

from __future__ import annotations

from snoop.common.protocol import AccessKind, Event
from snoop.tracer import records
from snoop.tracer.resolve import PathResolver
from snoop.tracer.syscalls import ALL_NAMES

_KIND_OF = {int(k): k for k in AccessKind}  # faster than AccessKind(n), once per event
_OPEN_KINDS = frozenset({int(AccessKind.READ), int(AccessKind.WRITE)})
_CHDIR = int(AccessKind.CHDIR)
_SYS_CHDIR = ALL_NAMES.index("chdir")
_SYS_CHROOT = ALL_NAMES.index("chroot")


def changes_cwd(record: records.Record) -> bool:
    """A successful chdir, fchdir or chroot: the process's view of relative paths moved."""
    return record.ret == 0 and (record.kind == _CHDIR or record.syscall == _SYS_CHROOT)


def last_cwd_change(batch: list[records.Record]) -> dict[int, int]:
    """tgid -> index of its last cwd or root change in `batch`."""
    last = {}
    for index, record in enumerate(batch):
        if changes_cwd(record):
            last[record.tgid] = index
    return last


class RecordTranslator:
    def __init__(self, resolver: PathResolver) -> None:
        self.resolver = resolver
        self.unresolved = 0
        self._primed: set[int] = set()  # processes whose cwd /proc was asked for once

    def translate(self, record: records.Record, proc_is_current: bool = True) -> Event | None:
        """The Event for a file record; None for life-cycle records and lost paths.

        `proc_is_current=False` says the process changed its cwd or root after this
        record (a later record shows it), so /proc cannot stand in for the model.
        """
        kind = record.kind
        if kind == records.KIND_FORK:
            # A child that lives a millisecond is gone before /proc could be asked about
            # it, but it inherits what its parent's model holds: learn the parent's cwd
            # now if the model lacks it (its parent may not be traced).
            if proc_is_current and not self.resolver.knows(record.tgid) \
                    and record.tgid not in self._primed:
                if len(self._primed) > 65536:
                    self._primed.clear()
                self._primed.add(record.tgid)
                self.resolver.prime(record.pid, record.tgid)
            self.resolver.on_fork(record.tgid, record.ret)
            return None
        if kind == records.KIND_EXIT:
            self.resolver.on_exit(record.tgid)
            self._primed.discard(record.tgid)
            return None
        if kind == records.KIND_DUP:
            self.resolver.on_dup(record.tgid, record.dirfd, record.ret)
            return None
        access = _KIND_OF.get(kind)
        if access is None:
            return None
        if record.flags & records.FLAG_READ_FAILED:
            return None  # counted by the kernel (STAT_READ_FAILED), reported as coverage
        if kind == _CHDIR and not record.path:
            if record.ret == 0:
                self.resolver.on_fchdir(record.tgid, record.dirfd)
            return None
        if record.path.startswith(b"/"):
            path, resolved = record.path, True
        else:
            path, resolved = self.resolver.resolve(record.pid, record.tgid, record.dirfd,
                                                   record.path, proc_fallback=proc_is_current)
        if not resolved:
            self.unresolved += 1
        elif kind in _OPEN_KINDS:
            if record.ret >= 0:
                self.resolver.on_fd(record.tgid, record.ret, path)
        elif kind == _CHDIR and record.ret == 0 and record.syscall == _SYS_CHDIR:
            self.resolver.on_chdir(record.tgid, path)
        if record.ret == 0 and record.syscall == _SYS_CHROOT:
            self.resolver.on_chroot(record.tgid)
        if record.flags & records.FLAG_FROM_EXEC:
            self.resolver.on_exec(record.tgid)
        return Event(record.cgroup_id, record.pid, record.tgid, access, path, resolved)

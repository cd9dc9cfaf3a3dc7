"""Ring buffer records -> protocol Events, with the coverage of what could not be one.

Records arrive in the order the kernel produced them, so a base record (an open, a
chdir) and a PRIME are known before the relative records that name them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from snoop.common.outcomes import MAX_ERRNO, OUTCOME_UNKNOWN
from snoop.common.protocol import MAX_PATH_BYTES, AccessKind, Event
from snoop.tracer import records
from snoop.tracer.resolve import Outcome, PathResolver
from snoop.tracer.syscalls import ALL_NAMES

_KIND_OF = {int(k): k for k in AccessKind}  # faster than AccessKind(n), once per event
_new_event = tuple.__new__  # Event(...) without its __new__: half the cost, once per event
_PRIMES = frozenset({records.KIND_PRIME_CWD, records.KIND_PRIME_FD})
_SYS_CHROOT = ALL_NAMES.index("chroot")
# An exec syscall's record with ret 0 was sent at entry, before the exec ran or failed.
_EXEC_SYSCALLS = frozenset(ALL_NAMES.index(name) for name in ("execve", "execveat"))
MAX_COMMS_CACHED = 4096
# Flags that make a record more than its absolute path.
_NEEDS_RESOLVING = records.FLAG_READ_FAILED | records.FLAG_MAGIC | records.FLAG_UNCERTAIN | \
    records.FLAG_OLD_ROOT


@dataclass
class Uncounted:
    """Per cgroup: accesses seen that are not reported as files."""

    paths_too_long: int = 0
    uncertain_paths: int = 0


class RecordTranslator:
    def __init__(self, resolver: PathResolver, max_path_bytes: int = MAX_PATH_BYTES) -> None:
        self.resolver = resolver
        self.max_path_bytes = max_path_bytes
        self.unresolved = 0
        # cgroup id -> counts since the last take_uncounted()
        self._uncounted: defaultdict[int, Uncounted] = defaultdict(Uncounted)
        self._comms: dict[bytes, bytes] = {}  # comm field as read -> the name in it

    def translate(self, record: records.Record) -> Event | None:
        """The Event for a file record; None for bookkeeping records and lost paths."""
        (cgroup_id, serial, _, ret, pid, tgid, _, _, syscall, _, kind, flags, resolve,
         comm, path) = record
        access = _KIND_OF.get(kind)
        if access is None:
            if kind in _PRIMES:
                self.resolver.prime(record)
            elif kind == records.KIND_FORK:
                self.resolver.on_fork(tgid, ret)
            elif kind == records.KIND_EXIT:
                self.resolver.on_exit(tgid)
            return None
        if not flags & _NEEDS_RESOLVING and not resolve and path[:1] == b"/" and \
                b"/.." not in path and len(path) <= self.max_path_bytes:
            # Absolute, as most are: nothing to resolve (a "/.." could cross a symlink).
            if flags & records.FLAG_BASE:
                self.resolver.learn(serial, path)
            elif syscall == _SYS_CHROOT and ret == 0:
                self.resolver.on_chroot(tgid, path)
            name = self._comms.get(comm)
            if name is None:
                name = self._comm_name(comm)
            if ret >= 0:
                errno = OUTCOME_UNKNOWN if ret == 0 and syscall in _EXEC_SYSCALLS else 0
            else:
                errno = -ret if ret >= -MAX_ERRNO else MAX_ERRNO
            return _new_event(Event, (cgroup_id, pid, tgid, access, path, True, errno, name))
        if flags & records.FLAG_READ_FAILED:
            return None  # counted by the kernel (STAT_READ_FAILED), reported as coverage
        path, outcome = self.resolver.resolve(record)
        if outcome is Outcome.RESOLVED:
            if record.flags & records.FLAG_BASE:
                self.resolver.learn(record.serial, path)
            elif record.syscall == _SYS_CHROOT and record.ret == 0:
                self.resolver.on_chroot(record.tgid, path)
            if len(path) > self.max_path_bytes:
                self._uncounted[record.cgroup_id].paths_too_long += 1
                return None
            return Event(record.cgroup_id, record.pid, record.tgid, access, path, True,
                         _errno(ret, syscall), self._comm_name(comm))
        if outcome is Outcome.UNRESOLVED:
            self.unresolved += 1
            return Event(record.cgroup_id, record.pid, record.tgid, access, path, False,
                         _errno(ret, syscall), self._comm_name(comm))
        if outcome is Outcome.UNCERTAIN:
            self._uncounted[record.cgroup_id].uncertain_paths += 1
        return None

    def _comm_name(self, comm: bytes) -> bytes:
        """The name in a record's NUL-padded comm field, one bytes object per name."""
        name = self._comms.get(comm)
        if name is None:
            if len(self._comms) >= MAX_COMMS_CACHED:
                self._comms.clear()
            name = self._comms[comm] = comm.split(b"\0", 1)[0]
        return name

    def take_uncounted(self) -> dict[int, Uncounted]:
        taken, self._uncounted = dict(self._uncounted), defaultdict(Uncounted)
        return taken


def _errno(ret: int, syscall: int) -> int:
    """The Event's outcome of a record: 0 (it succeeded), its errno, or not known."""
    if ret < 0:
        return -ret if ret >= -MAX_ERRNO else MAX_ERRNO
    if ret == 0 and syscall in _EXEC_SYSCALLS:
        return OUTCOME_UNKNOWN
    return 0

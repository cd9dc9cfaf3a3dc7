"""Relative paths made absolute, as the process itself saw them.

The kernel side keeps the cwd and fd model (see tracer/bpf/snoop.bpf.c): every record
carries a serial, and a relative one (dirfd-relative, cwd-relative, `/proc/self/fd/N/…`,
RESOLVE_IN_ROOT) carries the serial of its base, the record whose path its cwd or fd
stands for. This side only remembers serial -> resolved path for those base records,
and joins. It holds no per-process state, so nothing here goes stale: a base it was
never told about is a path it cannot resolve, and says so.

Bases the kernel did not see being made (a cwd or fd from before tracing, an fd that
came by SCM_RIGHTS) arrive as PRIME records with a serial the kernel minted. The
resolver reads `/proc/<pid>/cwd` or `/proc/<pid>/fd/<n>`, translated against
`/proc/<pid>/root` into the process's view, then asks the kernel whether the process
still has that serial there. If it does, nothing changed between the prime and the
/proc read, and the answer is certain; if not, the base stays unknown.

A base named before the process's last chroot (a dirfd opened outside, the cwd it had)
is in the old view; the kernel flags it, and the resolver translates it against the new
root, which it learns from the chroot records. Nested chroots are not modelled: such a
base is uncertain.

Paths are joined lexically: `..` removes the previous component, as named. Where that
component is a symlink to a directory the kernel goes to the link target's parent
instead, and the lexical path may name a file never touched. So a name with `..` is
checked: each component a `..` removes is looked at (lstat through
`/proc/<pid>/root`, or the tracer's own view once the process is gone). A path that
crosses a symlink that way is uncertain, counted and not reported, unless its lexical
form reaches the same file (or, for a name that does not exist, the same directory) as
the kernel's walk: `/lib/../lib/crt1.o` with `/lib -> usr/lib` is kept.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from snoop.tracer import records

_DELETED = b" (deleted)"
_EBADF = -errno.EBADF
_EXDEV = -errno.EXDEV
_U64 = (1 << 64) - 1


class KernelModel(Protocol):
    """What the kernel holds now, to check a /proc answer against."""

    def contexts(self, tgid: int) -> tuple[int, int] | None:
        """(fs context, fd table) of a process, None when the kernel has no state."""

    def cwd_base(self, fs_context: int) -> int: ...

    def fd_base(self, files_context: int, fd: int) -> int: ...


class BaseJournal(Protocol):
    def append(self, serial: int, path: bytes) -> None: ...


class Outcome(enum.IntEnum):
    RESOLVED = 0
    UNRESOLVED = 1  # relative, and its base is unknown: the name is kept as given
    UNCERTAIN = 2  # relative, in a process whose threads do not share one cwd/fd table
    UNTOUCHED = 3  # the call failed before any lookup (a bad fd, RESOLVE_BENEATH escape)


def join(base: bytes, rel: bytes) -> bytes:
    """`rel` joined to the absolute directory `base`, normalized lexically.

    `.` and empty components are dropped and `..` removes the previous component (never
    going above `/`). An absolute `rel` ignores `base`. No trailing slash is kept.
    """
    parts: list[bytes] = []
    for part in (rel if rel.startswith(b"/") else base + b"/" + rel).split(b"/"):
        if part == b"..":
            if parts:
                parts.pop()
        elif part and part != b".":
            parts.append(part)
    return b"/" + b"/".join(parts)


def join_in_root(base: bytes, rel: bytes) -> bytes:
    """openat2 RESOLVE_IN_ROOT: `rel` inside `base`, which acts as `/` (for absolute
    names and for `..`, which never leaves it)."""
    return join(base, join(b"/", rel)[1:])


@dataclass
class ResolverStats:
    from_model: int = 0  # relative paths joined to a base the kernel named
    primed: int = 0  # bases learned from /proc and confirmed by the kernel
    primes_refused: int = 0  # /proc answers the kernel no longer confirmed, or none
    unresolved: int = 0
    evicted: int = 0  # bases forgotten to stay within the memory bound


class PathResolver:
    """serial -> path of base records, bounded; see the module docstring.

    `max_bases` should cover what the kernel can still refer to: its dedup map (a
    deduplicated open points at the record that was sent) and its fd and cwd tables.
    A base forgotten for the bound is an unresolved path later, counted, never a guess.
    """

    def __init__(self, kernel: KernelModel | None, proc: str | bytes = "/proc", *,
                 max_bases: int = 262144, journal: BaseJournal | None = None) -> None:
        self._kernel = kernel
        self._journal = journal
        self._proc = os.fsencode(proc).rstrip(b"/")
        self._max_bases = max_bases
        self._bases: OrderedDict[int, bytes] = OrderedDict()
        # tgid -> (its root in the view it had before its last chroot, chroots so far);
        # only for processes that chrooted, or whose ancestors did.
        self._roots: dict[int, tuple[bytes, int]] = {}
        # (cgroup id, path) -> is a symlink, for the components `..` removes; bounded
        self._symlinks: OrderedDict[tuple[int, bytes], bool] = OrderedDict()
        self.stats = ResolverStats()

    def __len__(self) -> int:
        return len(self._bases)

    def learn(self, serial: int, path: bytes, *, replayed: bool = False) -> None:
        """A base record resolved to `path`: its fd or the cwd it made."""
        self._bases[serial] = path
        if self._journal is not None and not replayed:
            self._journal.append(serial, path)
        if len(self._bases) > self._max_bases:
            self._bases.popitem(last=False)
            self.stats.evicted += 1

    def on_chroot(self, tgid: int, new_root: bytes) -> None:
        """A successful chroot to `new_root`, resolved in the process's view before it."""
        _, depth = self._roots.get(tgid, (b"/", 0))
        self._roots[tgid] = (new_root, depth + 1)

    def on_fork(self, parent: int, child: int) -> None:
        root = self._roots.get(parent)
        if root is not None:
            self._roots[child] = root
        else:
            self._roots.pop(child, None)

    def on_exit(self, tgid: int) -> None:
        self._roots.pop(tgid, None)

    def bases(self) -> list[tuple[int, bytes]]:
        return list(self._bases.items())

    def base(self, serial: int) -> bytes | None:
        path = self._bases.get(serial)
        if path is not None:
            self._bases.move_to_end(serial)
        return path

    # ------------------------------------------------------------ resolving

    def resolve(self, record: records.Record) -> tuple[bytes, Outcome]:
        """(absolute path, RESOLVED), or (the name as given, another Outcome)."""
        path, outcome = self._resolve(record)
        if outcome is Outcome.RESOLVED and b".." in record.path and \
                self._dotdot_crosses_symlink(record, path):
            return record.path, Outcome.UNCERTAIN
        return path, outcome

    def _resolve(self, record: records.Record) -> tuple[bytes, Outcome]:
        name = record.path
        flags = record.flags
        if flags & records.FLAG_MAGIC:
            rest = name[record.skip:]
            if record.dirfd == records.FD_ROOT:
                return join(b"/", rest), Outcome.RESOLVED
            return self._relative(record, rest, in_root=False)
        if record.resolve & records.RESOLVE_BENEATH and record.ret == _EXDEV:
            return name, Outcome.UNTOUCHED  # it would have left the dirfd: refused first
        in_root = bool(record.resolve & records.RESOLVE_IN_ROOT)
        if name.startswith(b"/") and not in_root:
            return name, Outcome.RESOLVED
        return self._relative(record, name, in_root)

    def _relative(self, record: records.Record, rel: bytes,
                  in_root: bool) -> tuple[bytes, Outcome]:
        if record.dirfd >= 0 and record.ret == _EBADF:
            return record.path, Outcome.UNTOUCHED
        if record.flags & records.FLAG_UNCERTAIN:
            return record.path, Outcome.UNCERTAIN
        base = self.base(record.base) if record.base else None
        if base is None:
            self.stats.unresolved += 1
            return record.path, Outcome.UNRESOLVED
        if record.flags & records.FLAG_OLD_ROOT:
            root, depth = self._roots.get(record.tgid, (b"", 0))
            base = translate(base, root) if depth == 1 else None
            if base is None:  # outside the new root, or nested chroots
                return record.path, Outcome.UNCERTAIN
        self.stats.from_model += 1
        if in_root:
            return join_in_root(base, rel), Outcome.RESOLVED
        return (join(base, rel) if rel else base), Outcome.RESOLVED

    # ------------------------------------------------------------ `..` and symlinks

    def _dotdot_crosses_symlink(self, record: records.Record, resolved: bytes) -> bool:
        """Does a `..` of the record's name remove a component that is a symlink?"""
        name = record.path[record.skip:] if record.flags & records.FLAG_MAGIC else record.path
        if not any(part == b".." for part in name.split(b"/")):
            return False
        if name.startswith(b"/") and not record.resolve & records.RESOLVE_IN_ROOT:
            base = b""
        else:
            base = self.base(record.base) or b"/"
        parts = [p for p in base.split(b"/") if p]
        for part in name.split(b"/"):
            if part == b"..":
                if parts and self._is_symlink(record, b"/" + b"/".join(parts)):
                    # The kernel went to the link target's parent. The lexical path is
                    # still right when it names what the kernel reached: `/lib/../lib/x`
                    # with /lib -> usr/lib is /usr/lib/x either way.
                    raw = name if not base else base.rstrip(b"/") + b"/" + name
                    return not self._same_place(record, raw, join(b"/", resolved))
                if parts:
                    parts.pop()
            elif part and part != b".":
                parts.append(part)
        return False

    def _same_place(self, record: records.Record, raw: bytes, lexical: bytes) -> bool:
        """Do `raw` (resolved by the kernel, `..` and all) and `lexical` lead to the same
        file, or, for a name that does not exist, to the same directory?"""
        root = b"%s/%d/root" % (self._proc, record.tgid)
        if not os.path.exists(root):
            root = b""  # the process is gone: the tracer's own view is the best there is
        for a, b in ((raw, lexical), (os.path.dirname(raw), os.path.dirname(lexical))):
            try:
                first, second = os.stat(root + a), os.stat(root + b)
            except OSError:
                continue
            return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)
        return False

    def _is_symlink(self, record: records.Record, path: bytes) -> bool:
        key = (record.cgroup_id, path)
        known = self._symlinks.get(key)
        if known is not None:
            return known
        root = b"%s/%d/root" % (self._proc, record.tgid)
        try:
            mode = os.lstat(root + path).st_mode
        except FileNotFoundError:
            mode = None if os.path.exists(root) else self._own_view_mode(path)
        except OSError:
            mode = None
        answer = mode is not None and stat.S_ISLNK(mode)
        self._symlinks[key] = answer
        if len(self._symlinks) > 65536:
            self._symlinks.popitem(last=False)
        return answer

    @staticmethod
    def _own_view_mode(path: bytes) -> int | None:
        try:
            return os.lstat(path).st_mode
        except OSError:
            return None

    # ------------------------------------------------------------ priming from /proc

    def prime(self, record: records.Record) -> bool:
        """A PRIME record: learn its serial from /proc if the kernel still confirms it."""
        context = record.ret & _U64
        link = b"cwd" if record.kind == records.KIND_PRIME_CWD else b"fd/%d" % record.dirfd
        path = self._from_proc(record.pid, record.tgid, link)
        if path is None or not self._confirmed(record, context):
            self.stats.primes_refused += 1
            return False
        self.learn(record.serial, path)
        self.stats.primed += 1
        return True

    def _confirmed(self, record: records.Record, context: int) -> bool:
        """The process still has the primed serial where it was minted: its cwd or fd
        did not change between the prime and the /proc read."""
        if self._kernel is None:
            return False
        contexts = self._kernel.contexts(record.tgid)
        if contexts is None:
            return False
        fs, files = contexts
        if record.kind == records.KIND_PRIME_CWD:
            return fs == context and self._kernel.cwd_base(fs) == record.serial
        return files == context and \
            self._kernel.fd_base(files, record.dirfd) == record.serial

    def _readlink(self, pid: int, tgid: int, name: bytes) -> bytes | None:
        candidates = [b"%s/%d/%s" % (self._proc, tgid, name)]
        if pid != tgid:  # a group leader that exited leaves its threads' view only
            candidates.append(b"%s/%d/task/%d/%s" % (self._proc, tgid, pid, name))
        for link in candidates:
            try:
                return os.readlink(link)
            except OSError:
                continue
        return None

    def _from_proc(self, pid: int, tgid: int, name: bytes) -> bytes | None:
        """/proc/<tgid>/<name>, translated into the process's view; None if impossible.

        From outside a chroot the links show the host's path (`/srv/jail/app`), so they
        are translated against `/proc/<pid>/root` (`/srv/jail`) into the process's view
        (`/app`). For a process in another mount namespace (a container) the kernel
        already prints paths relative to that namespace's root, and its root reads `/`.
        """
        target = self._readlink(pid, tgid, name)
        if target is None:
            return None
        root = self._readlink(pid, tgid, b"root")
        if root is None:
            return None
        return translate(target, _strip_deleted(root))


def _strip_deleted(path: bytes) -> bytes:
    return path[: -len(_DELETED)] if path.endswith(_DELETED) else path


def translate(target: bytes, root: bytes) -> bytes | None:
    """A /proc link target read from outside (`target`), in the view of a process whose
    root reads `root`: `/srv/jail/app` with root `/srv/jail` is `/app`. None when the
    target is no path (`socket:[…]`, `pipe:[…]`, `anon_inode:…`) or lies outside the root.

    A ` (deleted)` suffix is dropped: the path named a file that was removed since, and
    it is still a path the process used.
    """
    if not target.startswith(b"/"):
        return None
    target = _strip_deleted(target)
    if root == b"/":
        return target
    root = root.rstrip(b"/")
    if target == root:
        return b"/"
    if target.startswith(root + b"/"):
        return target[len(root):]
    return None

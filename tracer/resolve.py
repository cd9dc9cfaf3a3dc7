"""Relative paths made absolute, as the process itself saw them.

A syscall's relative path is relative to the process's working directory (dirfd
AT_FDCWD) or to the directory an fd refers to. `PathResolver` keeps a model of both per
process (tgid), fed by the tracer with events in the order they happened: forks copy
the parent's state, chdir/fchdir move the working directory, successful opens record
what each fd refers to. The model holds paths as the process named them, so a
containerized or chrooted process's `/app/main.py` is reported as `/app/main.py`, and
symlinks are never followed.

When the model does not know a process (it started before the tracer, or its state was
evicted), `/proc/<pid>/cwd` and `/proc/<pid>/fd/<n>` are read instead. From outside a
chroot they show the host's path (`/srv/jail/app`), so they are translated against
`/proc/<pid>/root` (`/srv/jail`) into the process's view (`/app`); a target outside the
process's root is unresolvable. For a process in another mount namespace (a container),
the kernel already prints paths relative to that namespace's root, and its root reads
`/`. The tracer must therefore see the host's /proc (host PID namespace): event pids are
host pids.

Nothing here raises on bad input or drops an event: what cannot be resolved comes back
as given, flagged unresolved.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

AT_FDCWD = -100
_DELETED = b" (deleted)"


def join(base: bytes, rel: bytes) -> bytes:
    """`rel` joined to the absolute directory `base`, normalized lexically.

    `.` and empty components are dropped and `..` removes the previous component (never
    going above `/`), without looking at the file system: symlinks are not resolved. Where
    a component before a `..` is a symlink the kernel would go to the link target's
    parent instead; a process's working directory itself is never such a case when it
    comes from /proc (the kernel reports the real path). An absolute `rel` ignores
    `base`. No trailing slash is kept.
    """
    parts: list[bytes] = []
    for part in (rel if rel.startswith(b"/") else base + b"/" + rel).split(b"/"):
        if part == b"..":
            if parts:
                parts.pop()
        elif part and part != b".":
            parts.append(part)
    return b"/" + b"/".join(parts)


@dataclass
class ResolverStats:
    from_model: int = 0  # resolved with the event-fed model
    from_proc: int = 0  # resolved by reading /proc
    unresolved: int = 0  # returned as given


class _Process:
    __slots__ = ("cwd", "fds", "root")

    def __init__(self, cwd: bytes | None = None, fds: dict[int, bytes] | None = None,
                 root: bytes | None = None) -> None:
        self.cwd = cwd  # absolute, in the process's view; None = unknown
        self.fds = fds if fds is not None else {}  # fd -> absolute path, oldest first
        self.root = root  # /proc/<pid>/root as read from outside; None = not read yet


class PathResolver:
    """Resolves relative syscall paths per process; see the module docstring.

    Memory is bounded: at most `max_processes` processes (least recently used evicted),
    `max_fds_per_process` fds each (oldest dropped) and `max_fds` fds in all (least
    recently used processes evicted). An evicted process falls back to /proc.

    Not thread-safe: one loop feeds it and resolves. Feed only events of traced
    processes. `on_fork` may be called for new threads too (the state made for a thread
    id is never used and ages out).
    """

    def __init__(
        self, proc: str | bytes = "/proc", *, max_processes: int = 32768,
        max_fds_per_process: int = 4096, max_fds: int = 262144,
    ) -> None:
        self._proc = os.fsencode(proc).rstrip(b"/")
        self._max_processes = max_processes
        self._max_fds_per_process = max_fds_per_process
        self._max_fds = max_fds
        self._processes: OrderedDict[int, _Process] = OrderedDict()
        self._fd_count = 0
        self.stats = ResolverStats()

    def __len__(self) -> int:
        return len(self._processes)

    @property
    def fd_count(self) -> int:
        return self._fd_count

    # ------------------------------------------------------------ events

    def on_fork(self, parent_tgid: int, child_tgid: int) -> None:
        """A new process: it starts with a copy of its parent's cwd and fd table."""
        self._drop(child_tgid)
        parent = self._processes.get(parent_tgid)
        if parent is None:
            return  # the child falls back to /proc, like its parent
        child = self._get(child_tgid, create=True)
        child.cwd, child.root = parent.cwd, parent.root
        child.fds = dict(parent.fds)
        self._fd_count += len(child.fds)
        self._enforce_fd_budget(child_tgid)

    def prime(self, pid: int, tgid: int) -> None:
        """Learn an unknown process's cwd from /proc now, while it is surely alive.

        Called on the first record of a process the model has not seen (its parent was
        not traced, or it predates the tracer), and for a parent about to fork: a child
        that lives a millisecond is gone before /proc could be asked about it, but it
        inherits what its parent's model holds.
        """
        process = self._processes.get(tgid)
        if process is None or process.cwd is None:
            self._cwd(pid, tgid)

    def knows(self, tgid: int) -> bool:
        process = self._processes.get(tgid)
        return process is not None and process.cwd is not None

    def on_exit(self, tgid: int) -> None:
        self._drop(tgid)

    def on_exec(self, tgid: int) -> None:
        """exec keeps the cwd; close-on-exec fds go, but the table is only a hint (a
        reused fd number is overwritten by its open). The root is read again, in case
        the process entered another mount namespace (`docker exec`, nsenter) first."""
        process = self._processes.get(tgid)
        if process is not None:
            process.root = None

    def on_chdir(self, tgid: int, path: bytes) -> None:
        """A successful chdir. `path` should be absolute (resolved); a relative one is
        joined to the known cwd, or makes the cwd unknown (read from /proc later)."""
        process = self._get(tgid, create=True)
        if path.startswith(b"/"):
            process.cwd = path
        elif process.cwd is not None:
            process.cwd = join(process.cwd, path)

    def on_fchdir(self, tgid: int, fd: int) -> None:
        """A successful fchdir: the cwd becomes what `fd` refers to, if known."""
        process = self._processes.get(tgid)
        if process is not None:
            process.cwd = process.fds.get(fd)

    def on_chroot(self, tgid: int) -> None:
        """A successful chroot: every path known for the process is in the old view."""
        process = self._processes.get(tgid)
        if process is not None:
            self._fd_count -= len(process.fds)
            process.cwd, process.fds, process.root = None, {}, None

    def on_fd(self, tgid: int, fd: int, path: bytes) -> None:
        """A successful open/openat/creat returned `fd` for `path` (absolute, as resolved
        by `resolve`; an unresolved relative path just forgets the fd)."""
        if fd < 0:
            return
        if not path.startswith(b"/"):
            self.on_close(tgid, fd)
            return
        self._set_fd(tgid, self._get(tgid, create=True), fd, path)

    def on_close(self, tgid: int, fd: int) -> None:
        process = self._processes.get(tgid)
        if process is not None and process.fds.pop(fd, None) is not None:
            self._fd_count -= 1

    def on_dup(self, tgid: int, old_fd: int, new_fd: int) -> None:
        """dup/dup2/dup3/fcntl(F_DUPFD): `new_fd` refers to what `old_fd` does."""
        process = self._processes.get(tgid)
        if process is None:
            return
        path = process.fds.get(old_fd)
        if path is None:
            self.on_close(tgid, new_fd)
        else:
            self._set_fd(tgid, process, new_fd, path)

    # ------------------------------------------------------------ resolving

    def resolve(self, pid: int, tgid: int, dirfd: int, path: bytes,
                proc_fallback: bool = True) -> tuple[bytes, bool]:
        """(absolute path, True), or (`path` as given, False) when it cannot be resolved.

        `pid` is the thread, `tgid` the process. An empty path with a dirfd (AT_EMPTY_PATH)
        is the fd's own path (the cwd's for AT_FDCWD). Absolute paths pass through.
        `proc_fallback=False` when /proc shows a later state than the event's (the
        process is known to have changed its cwd or root since): then only the model
        answers.
        """
        if path.startswith(b"/"):
            return path, True
        if dirfd == AT_FDCWD:
            base = self._cwd(pid, tgid, proc_fallback)
        elif dirfd >= 0:
            base = self._fd(pid, tgid, dirfd, proc_fallback)
        else:
            base = None
        if base is None:
            self.stats.unresolved += 1
            return path, False
        return (join(base, path) if path else base), True

    def _cwd(self, pid: int, tgid: int, proc_fallback: bool = True) -> bytes | None:
        process = self._get(tgid)
        if process is not None and process.cwd is not None:
            self.stats.from_model += 1
            return process.cwd
        if not proc_fallback:
            return None
        cwd = self._from_proc(pid, tgid, b"cwd")
        if cwd is not None:
            self._get(tgid, create=True).cwd = cwd
        return cwd

    def _fd(self, pid: int, tgid: int, fd: int, proc_fallback: bool = True) -> bytes | None:
        process = self._get(tgid)
        if process is not None:
            path = process.fds.get(fd)
            if path is not None:
                self.stats.from_model += 1
                return path
        if not proc_fallback:
            return None
        path = self._from_proc(pid, tgid, b"fd/%d" % fd)
        if path is not None:
            self._set_fd(tgid, self._get(tgid, create=True), fd, path)
        return path

    # ------------------------------------------------------------ /proc fallback

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
        """/proc/<tgid>/<name>, translated into the process's view; None if impossible."""
        target = self._readlink(pid, tgid, name)
        if target is None:
            return None
        process = self._get(tgid, create=True)
        root = process.root
        if root is None:
            root = self._readlink(pid, tgid, b"root")
            if root is None:
                return None
            root = process.root = _strip_deleted(root)
        translated = translate(target, root)
        if translated is not None:
            self.stats.from_proc += 1
        return translated

    # ------------------------------------------------------------ bounded state

    def _get(self, tgid: int, create: bool = False) -> _Process | None:
        process = self._processes.get(tgid)
        if process is not None:
            self._processes.move_to_end(tgid)
        elif create:
            process = self._processes[tgid] = _Process()
            while len(self._processes) > self._max_processes:
                self._evict_oldest()
        return process

    def _drop(self, tgid: int) -> None:
        process = self._processes.pop(tgid, None)
        if process is not None:
            self._fd_count -= len(process.fds)

    def _evict_oldest(self) -> None:
        _, process = self._processes.popitem(last=False)
        self._fd_count -= len(process.fds)

    def _set_fd(self, tgid: int, process: _Process, fd: int, path: bytes) -> None:
        if process.fds.pop(fd, None) is None:
            self._fd_count += 1
        process.fds[fd] = path
        while len(process.fds) > self._max_fds_per_process:
            del process.fds[next(iter(process.fds))]
            self._fd_count -= 1
        self._enforce_fd_budget(tgid)

    def _enforce_fd_budget(self, keep_tgid: int) -> None:
        while self._fd_count > self._max_fds and len(self._processes) > 1:
            oldest = next(iter(self._processes))
            if oldest == keep_tgid:
                self._processes.move_to_end(oldest)
                continue
            self._evict_oldest()


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

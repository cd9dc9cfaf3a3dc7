"""Every descendant of the target cgroups, for kernels whose tracing programs lack
`bpf_get_current_ancestor_cgroup_id` (5.10 and older): there the kernel side only looks up
a process's own cgroup id, so the tracer lists each cgroup below a target with the
target's verdict, and adds new ones as they appear.

New cgroups are seen through inotify (every cgroup is made by a mkdir, which notifies
the parent directory's watchers), read in the tracer's run loop, which the inotify fd
wakes. A child is untraced only between its mkdir and that wake-up; a process that ran
in it meanwhile is seen in the kernel's verdict cache, and the tracer says so.
A lost inotify event (queue overflow) or a directory that could not be watched (the
inotify watch limit) makes the next targets refresh walk the subtrees again.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from snoop.tracer.cgroups import abspath, cgroup_id, iter_cgroups, normalize

IN_CREATE = 0x100
IN_DELETE = 0x200
IN_MOVED_TO = 0x80
IN_MOVED_FROM = 0x40
IN_IGNORED = 0x8000
IN_ISDIR = 0x40000000
IN_Q_OVERFLOW = 0x4000
IN_ONLYDIR = 0x1000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ONLYDIR
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Changes:
    added: Mapping[int, bool]  # cgroup id -> traced (True) or excluded (False)
    removed: frozenset[int]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class _Inotify:
    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")

    def add(self, path: str) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch: {os.strerror(err)}", path)
        return wd

    def read(self) -> list[tuple[int, int, str]]:
        """(wd, mask, name) of every queued event; [] when none (non-blocking)."""
        events = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return events
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size:offset + _EVENT.size + length]
                events.append((wd, mask, os.fsdecode(raw.rstrip(b"\0"))))
                offset += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


class DescendantTracker:
    """cgroup id -> verdict of every cgroup in the targets' subtrees, kept current."""

    def __init__(self, root: str, *, id_of_dir: Callable[[str], int] = cgroup_id,
                 max_cgroups: int = 60_000) -> None:
        self.root = root
        self._id_of_dir = id_of_dir
        self._max_cgroups = max_cgroups
        self._inotify = _Inotify()
        self._listed: dict[str, bool] = {}
        self._known: dict[str, tuple[int, bool]] = {}  # rel path -> (id, verdict)
        self._watches: dict[int, str] = {}  # wd -> rel path
        self.needs_walk = False  # an event was lost or a directory is not watched
        self.picked_up = 0  # cgroups added after a walk, by inotify

    @property
    def fd(self) -> int:
        """Readable when a cgroup was made or removed below a watched one."""
        return self._inotify.fd

    def expand(self, listed: Mapping[str, bool]) -> dict[int, bool]:
        """Walk the subtrees of the `listed` cgroups (relative path -> verdict), watch
        them, and return every id in them with its nearest listed ancestor's verdict."""
        self._listed = {normalize(rel): mark for rel, mark in listed.items()}
        self._known = {}
        self.needs_walk = False
        for rel in self._listed:
            if not any(_is_below(rel, other) for other in self._listed if other != rel):
                self._walk(rel, self._listed[rel])
        return self.expanded()

    def expanded(self) -> dict[int, bool]:
        return dict(self._known.values())

    def poll(self) -> Changes:
        """What changed since the last poll, from the queued inotify events."""
        added: dict[int, bool] = {}
        removed: set[int] = set()
        for wd, mask, name in self._inotify.read():
            if mask & IN_Q_OVERFLOW:
                self.needs_walk = True
                continue
            if mask & IN_IGNORED:
                self._watches.pop(wd, None)
                continue
            parent = self._watches.get(wd)
            if parent is None or not mask & IN_ISDIR or parent not in self._known:
                continue
            rel = normalize(f"{parent}/{name}")
            if mask & (IN_CREATE | IN_MOVED_TO):
                before = set(self._known)
                self._walk(rel, self._listed.get(rel, self._known[parent][1]))
                for path in set(self._known) - before:
                    cid, mark = self._known[path]
                    added[cid] = mark
                    removed.discard(cid)
                    self.picked_up += 1
            else:
                for path in [p for p in self._known if p == rel or _is_below(p, rel)]:
                    cid, _ = self._known.pop(path)
                    added.pop(cid, None)
                    removed.add(cid)
        return Changes(added, frozenset(removed))

    def _walk(self, top: str, mark: bool) -> None:
        marks = {top: mark}
        for sub in iter_cgroups(abspath(self.root, top), self._max_cgroups):
            rel = normalize(top if sub == "/" else f"{top.rstrip('/')}{sub}")
            if rel != top:
                parent = rel.rsplit("/", 1)[0] or "/"
                marks[rel] = self._listed.get(rel, marks.get(parent, mark))
            if len(self._known) >= self._max_cgroups:
                log.error("too many cgroups below the targets: the rest go untraced",
                          extra={"limit": self._max_cgroups})
                return
            path = abspath(self.root, rel)
            try:
                cid = self._id_of_dir(path)
                self._watch(path, rel)
            except FileNotFoundError:  # removed meanwhile
                continue
            self._known[rel] = (cid, marks[rel])

    def _watch(self, path: str, rel: str) -> None:
        try:
            self._watches[self._inotify.add(path)] = rel
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise FileNotFoundError(exc.errno, exc.strerror, path) from None
            if not self.needs_walk:
                log.warning("cannot watch a cgroup for new children: they are found on "
                            "the next walk, about a second later",
                            extra={"cgroup": rel, "error": exc.strerror})
            self.needs_walk = True

    def close(self) -> None:
        self._inotify.close()


def _is_below(path: str, ancestor: str) -> bool:
    return ancestor == "/" and path != "/" or path.startswith(ancestor.rstrip("/") + "/")

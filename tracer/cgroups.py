"""cgroup v2 discovery: where the hierarchy is, what a cgroup's BPF id is, who lives where.

Every path this module returns is *relative to the cgroup v2 root* and starts with `/`
(the root itself is `/`), as in `/proc/<pid>/cgroup` (`0::/docker/<id>`). Absolute
file-system paths are built by `abspath(root, rel)` only where a file is opened.

A cgroup's id is what BPF's `bpf_get_current_cgroup_id()` returns: the kernfs node id,
which `name_to_handle_at()` hands out as the directory's 8-byte file handle. The inode
number equals it only from 5.5 on, so it is never used.

Assumption: Snoop sees the host's cgroup hierarchy (no private cgroup namespace), so the
paths in `/proc/self/cgroup` and the ones under the mounted root agree.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace

from snoop.common.config import TargetMode
from snoop.common.protocol import Workload

AT_FDCWD = -100
DEFAULT_MAX_CGROUPS = 100_000


class CgroupError(RuntimeError):
    """A cgroup operation that cannot work here; the message names path and cause."""


class NoCgroup2Error(CgroupError):
    """No cgroup v2 hierarchy is mounted (a cgroup v1-only host)."""


class AmbiguousContainerIdError(ValueError):
    """A container id prefix that matches more than one container."""


# ---------------------------------------------------------------- where the hierarchy is


def _unescape_mount_field(text: str) -> str:
    # /proc/mounts and mountinfo escape space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def find_cgroup2_root(mounts_text: str) -> str:
    """The cgroup2 mount point, from the text of /proc/mounts or /proc/self/mountinfo.

    With several cgroup2 mounts, a mountinfo line whose mount root is `/` (the whole
    hierarchy, not a bind mount of a sub-tree) wins; otherwise the first one.
    Raises `NoCgroup2Error` when there is none (a cgroup v1-only host).
    """
    candidates: list[tuple[bool, str]] = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if " - " in line:  # mountinfo: id parent major:minor root mount-point ... - type ...
            left, _, right = line.partition(" - ")
            left_fields, right_fields = left.split(), right.split()
            if len(left_fields) >= 5 and right_fields and right_fields[0] == "cgroup2":
                whole = left_fields[3] == "/"
                candidates.append((whole, _unescape_mount_field(left_fields[4])))
        elif len(fields) >= 3 and fields[2] == "cgroup2":  # mounts: device point type ...
            candidates.append((True, _unescape_mount_field(fields[1])))
    if not candidates:
        raise NoCgroup2Error(
            "no cgroup2 file system is mounted (cgroup v1 only?): Snoop needs the unified "
            "hierarchy, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`"
        )
    for whole, point in candidates:
        if whole:
            return point
    return candidates[0][1]


def discover_cgroup2_root(proc: str = "/proc") -> str:
    """`find_cgroup2_root` of this process's /proc/self/mountinfo."""
    with open(f"{proc}/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return find_cgroup2_root(f.read())


def self_cgroup(proc_self_cgroup_text: str) -> str:
    """The v2 path (`0::/path` line) of the text of /proc/<pid>/cgroup."""
    for line in proc_self_cgroup_text.splitlines():
        if line.startswith("0::"):
            path = line[3:].strip()
            return normalize(path) if path else "/"
    raise NoCgroup2Error(
        "no '0::' line in /proc/self/cgroup: this process is not in a cgroup v2 hierarchy"
    )


def read_self_cgroup(proc: str = "/proc", pid: int | str = "self") -> str:
    """`self_cgroup` of /proc/<pid>/cgroup."""
    with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as f:
        return self_cgroup(f.read())


def normalize(rel_path: str) -> str:
    """`/a/b` form of a cgroup path: one leading slash, no empty parts or trailing slash."""
    parts = [part for part in rel_path.split("/") if part and part != "."]
    if ".." in parts:
        raise ValueError(f"cgroup path {rel_path!r}: '..' is not allowed")
    return "/" + "/".join(parts)


def relative_to_root(root: str, path: str) -> str:
    """A configured cgroup path as a path relative to `root`.

    `path` may be absolute under the mount point (`/sys/fs/cgroup/unified/docker/x`) or
    already relative to it (`/docker/x`); both give `/docker/x`.
    """
    root_n = "/" + root.strip("/")
    path_n = "/" + path.strip("/")
    if root_n != "/" and (path_n == root_n or path_n.startswith(root_n + "/")):
        path_n = path_n[len(root_n):] or "/"
    return normalize(path_n)


def abspath(root: str, rel_path: str) -> str:
    """The directory of cgroup `rel_path` under mount point `root`."""
    rel = normalize(rel_path)
    return root.rstrip("/") + rel if rel != "/" else root


# ---------------------------------------------------------------- ids


class _FileHandle(ctypes.Structure):
    _fields_ = [
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * 8),
    ]


def _name_to_handle_at() -> Callable[..., int]:
    libc = ctypes.CDLL(None, use_errno=True)
    func = libc.name_to_handle_at
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_FileHandle),
                     ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    func.restype = ctypes.c_int
    return func


def _open_by_handle_at() -> Callable[..., int]:
    libc = ctypes.CDLL(None, use_errno=True)
    func = libc.open_by_handle_at
    func.argtypes = [ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int]
    func.restype = ctypes.c_int
    return func


_NAME_TO_HANDLE_AT = _name_to_handle_at()
_OPEN_BY_HANDLE_AT = _open_by_handle_at()


def cgroup_id(path: str | bytes | os.PathLike) -> int:
    """The id `bpf_get_current_cgroup_id()` reports for processes in cgroup dir `path`.

    The kernfs file handle of the directory is exactly that u64, in the host's byte order
    (little-endian on x86 and arm64). Raises FileNotFoundError when the cgroup is gone,
    another OSError for anything else.
    """
    raw = os.fsencode(path)
    handle = _FileHandle(handle_bytes=8)
    mount_id = ctypes.c_int()
    if _NAME_TO_HANDLE_AT(AT_FDCWD, raw, ctypes.byref(handle), ctypes.byref(mount_id), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"name_to_handle_at: {os.strerror(err)}", os.fsdecode(raw))
    if handle.handle_bytes != 8:
        raise CgroupError(
            f"{os.fsdecode(raw)}: file handle of {handle.handle_bytes} bytes, expected 8 "
            "(is it a directory of a cgroup2 file system?)"
        )
    return int.from_bytes(bytes(handle.f_handle), sys.byteorder)


class _OpenByHandle:
    """cgroup id -> path with `open_by_handle_at()`: the id is the directory's file handle,
    so the kernel finds the cgroup without a walk. Needs CAP_DAC_READ_SEARCH; without it
    (or on a kernel that refuses), it answers None and the caller walks instead."""

    def __init__(self, root: str) -> None:
        self._root = root.rstrip("/") or "/"
        self._handle_type: int | None = None
        self._broken = False

    def __call__(self, cid: int) -> str | None:
        if self._broken:
            return None
        try:
            # A real open: the kernel refuses an O_PATH mount fd here (EBADF).
            mount_fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if self._handle_type is None:
                # The handle type of this file system (kernfs; ino32+gen before 5.5).
                root_handle = _FileHandle(handle_bytes=8)
                mount_id = ctypes.c_int()
                if _NAME_TO_HANDLE_AT(AT_FDCWD, os.fsencode(self._root),
                                      ctypes.byref(root_handle), ctypes.byref(mount_id), 0):
                    self._broken = True
                    return None
                self._handle_type = root_handle.handle_type
            handle = _FileHandle(handle_bytes=8, handle_type=self._handle_type)
            handle.f_handle[:] = list(cid.to_bytes(8, sys.byteorder))
            fd = _OPEN_BY_HANDLE_AT(mount_fd, ctypes.byref(handle), os.O_PATH | os.O_CLOEXEC)
            if fd < 0:
                if ctypes.get_errno() in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
                    self._broken = True
                return None  # ESTALE: no such cgroup (any more)
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
        except OSError:
            return None
        finally:
            os.close(mount_fd)
        if self._root == "/":
            return normalize(path)
        if path == self._root:
            return "/"
        if path.startswith(self._root + "/"):
            return normalize(path[len(self._root):])
        return None


def iter_cgroups(root: str, max_cgroups: int = DEFAULT_MAX_CGROUPS) -> Iterator[str]:
    """Relative paths of `root` and every cgroup below it, parents first, at most
    `max_cgroups`. Directories that vanish during the walk are skipped."""
    stack = ["/"]
    count = 0
    while stack and count < max_cgroups:
        rel = stack.pop()
        count += 1
        yield rel
        try:
            with os.scandir(abspath(root, rel)) as entries:
                children = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        prefix = rel if rel != "/" else ""
        stack.extend(f"{prefix}/{name}" for name in sorted(children, reverse=True))


class CgroupIndex:
    """Cgroup id <-> path (relative to `root`), kept fresh by walks of the hierarchy.

    `lookup()` of an unknown id first asks the kernel for its path directly (`by_handle`:
    `open_by_handle_at`, one system call; off for fake trees in tests), and only then
    walks, at most once per `rescan_interval`. A walk costs one directory listing and one
    `name_to_handle_at` per cgroup. The ids of cgroups that disappeared are remembered
    (the last `keep_removed`), because events of a container that just exited may still
    be in flight.
    """

    def __init__(
        self,
        root: str,
        *,
        id_of_dir: Callable[[str], int] = cgroup_id,
        by_handle: bool = True,
        clock: Callable[[], float] = time.monotonic,
        rescan_interval: float = 1.0,
        max_cgroups: int = DEFAULT_MAX_CGROUPS,
        keep_removed: int = 4096,
    ) -> None:
        self.root = root
        self._id_of_dir = id_of_dir
        self._path_of_id = _OpenByHandle(root) if by_handle else None
        self._clock = clock
        self._rescan_interval = rescan_interval
        self._max_cgroups = max_cgroups
        self._keep_removed = keep_removed
        self._path_by_id: dict[int, str] = {}
        self._id_by_path: dict[str, int] = {}
        self._removed: OrderedDict[int, str] = OrderedDict()
        self._walked_at = float("-inf")
        self.walks = 0
        self.truncated = False  # the last walk stopped at max_cgroups

    def __len__(self) -> int:
        return len(self._path_by_id)

    def refresh(self, max_age: float = 0.0) -> bool:
        """Walk the hierarchy unless the last walk is younger than `max_age` seconds.
        Returns whether it walked."""
        now = self._clock()
        if now - self._walked_at < max_age:
            return False
        path_by_id: dict[int, str] = {}
        id_by_path: dict[str, int] = {}
        count = 0
        for rel in iter_cgroups(self.root, self._max_cgroups):
            count += 1
            try:
                cid = self._id_of_dir(abspath(self.root, rel))
            except OSError:  # removed during the walk
                continue
            path_by_id[cid] = rel
            id_by_path[rel] = cid
        for cid, rel in self._path_by_id.items():
            if cid not in path_by_id:
                self._forget(cid, rel)
        self._path_by_id, self._id_by_path = path_by_id, id_by_path
        self._walked_at = now
        self.walks += 1
        self.truncated = count >= self._max_cgroups
        return True

    def _forget(self, cid: int, rel: str) -> None:
        self._removed[cid] = rel
        self._removed.move_to_end(cid)
        while len(self._removed) > self._keep_removed:
            self._removed.popitem(last=False)

    def lookup(self, cid: int) -> str | None:
        """The relative path of cgroup id `cid`, or None when it is unknown even after a
        (rate-limited) rescan."""
        rel = self._path_by_id.get(cid)
        if rel is not None:
            return rel
        rel = self._removed.get(cid)  # ids are never reused: gone is gone
        if rel is not None:
            return rel
        if self._path_of_id is not None:
            rel = self._path_of_id(cid)
            if rel is not None:
                self._learn(rel, cid)
                return rel
        if self.refresh(max_age=self._rescan_interval):
            return self._path_by_id.get(cid) or self._removed.get(cid)
        return None

    def _learn(self, rel: str, cid: int) -> None:
        old = self._id_by_path.get(rel)
        if old == cid:
            return
        if old is not None:
            self._forget(old, self._path_by_id.pop(old, rel))
        self._id_by_path[rel] = cid
        self._path_by_id[cid] = rel

    def id_of(self, rel_path: str) -> int | None:
        """The id the cgroup at `rel_path` has *now* (one system call, no walk), or None
        when there is no such cgroup. A re-created cgroup (a restarted container) has a
        new id; the index learns it here."""
        rel = normalize(rel_path)
        try:
            cid = self._id_of_dir(abspath(self.root, rel))
        except (FileNotFoundError, NotADirectoryError):
            old = self._id_by_path.pop(rel, None)
            if old is not None:
                self._forget(old, self._path_by_id.pop(old, rel))
            return None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise CgroupError(f"cgroup {rel!r} under {self.root}: {exc.strerror}") from exc
        self._learn(rel, cid)
        return cid

    def paths(self) -> Mapping[str, int]:
        """Relative path -> id of every cgroup the index knows (a copy)."""
        return dict(self._id_by_path)


# ---------------------------------------------------------------- containers and pods

# Names a container runtime gives a container's cgroup directory, for cgroupfs and
# systemd cgroup drivers:
#   docker, containerd (incl. kubepods), nerdctl (cgroupfs): <64 hex>
#   docker (systemd): docker-<id>.scope; containerd CRI: cri-containerd-<id>.scope;
#   CRI-O: crio-<id>.scope (crio-<id> with cgroupfs); podman: libpod-<id>.scope
#   (libpod_parent/libpod-<id> with cgroupfs); nerdctl (systemd): nerdctl-<id>.scope.
# The runtimes' monitor processes (crio-conmon-<id>.scope, libpod-conmon-<id>.scope)
# are not the container and do not match.
_CONTAINER_DIR = re.compile(
    r"^(?:([0-9a-f]{64})|(?:docker|cri-containerd|crio|libpod|nerdctl)-([0-9a-f]{12,64})"
    r"(?:\.scope)?)$"
)
# A pod's cgroup: kubelet cgroupfs `pod<uid>`; systemd `kubepods[-<qos>]-pod<uid>.slice`
# (the uid's dashes become underscores).
_POD_DIR = re.compile(r"^(?:pod[0-9a-f-]{8,}|kubepods(?:-[a-z]+)*-pod[0-9a-f_]{8,}\.slice)$")
# Parents a runtime puts every container under by default: such a parent groups
# unrelated containers, so it is no pod.
_SHARED_PARENT = re.compile(
    r"^(?:docker|libpod_parent|kubepods|besteffort|burstable|guaranteed|default|k8s\.io|moby"
    r"|system\.slice|machine\.slice|user\.slice|app\.slice|user-\d+\.slice|user@\d+\.service"
    r"|kubepods(?:-[a-z]+)?\.slice)$"
)
_ID_PREFIX = re.compile(r"^[0-9a-f]{12,64}$")


def _container_id_of_dir(name: str) -> str | None:
    match = _CONTAINER_DIR.match(name)
    return (match.group(1) or match.group(2)) if match else None


def container_id_from_path(rel_path: str) -> str | None:
    """The id of the innermost container whose cgroup contains `rel_path`, or None.

    `/docker/<id>/sub` -> `<id>`; `/docker/<outer>/docker/<inner>` -> `<inner>`.
    """
    for name in reversed(rel_path.split("/")):
        cid = _container_id_of_dir(name)
        if cid:
            return cid
    return None


def find_container_cgroups(
    root: str, container_id: str, *, paths: Iterable[str] | None = None,
) -> list[str]:
    """The cgroups (relative paths) of the container whose id is or starts with
    `container_id` (12 to 64 lowercase hex digits): the container's top cgroup, not its
    sub-cgroups, since descendants are traced with it. [] when there is none.

    `paths` are the cgroups to search (e.g. `CgroupIndex.paths()`); by default a walk of
    `root`. Raises `AmbiguousContainerIdError` when the prefix matches several containers,
    ValueError when it is not an id.
    """
    if not _ID_PREFIX.match(container_id):
        raise ValueError(f"container id {container_id!r}: expected 12 to 64 lowercase hex digits")
    found: dict[str, list[str]] = {}
    for rel in iter_cgroups(root) if paths is None else paths:
        name = rel.rsplit("/", 1)[-1]
        cid = _container_id_of_dir(name)
        if cid and cid.startswith(container_id):
            found.setdefault(cid, []).append(rel)
    if len(found) > 1:
        raise AmbiguousContainerIdError(
            f"container id {container_id!r} matches {len(found)} containers: "
            + ", ".join(sorted(found)) + "; give more digits"
        )
    rels = next(iter(found.values()), [])
    # Keep the outermost cgroup of each nest (`/libpod-<id>.scope`, not its `container`).
    return sorted(
        rel for rel in rels
        if not any(other != rel and rel.startswith(other + "/") for other in rels)
    )


def pod_cgroup_of(self_rel_path: str) -> str | None:
    """The cgroup of the pod the calling container (the sidecar) belongs to, or None.

    Kubernetes: the `pod<uid>` / `kubepods-...-pod<uid>.slice` ancestor.
    Docker, compose, podman: a "pod" is the container's parent cgroup when the runtime
    did not pick it for every container, i.e. when it was set with `--cgroup-parent`
    (compose: `cgroup_parent:`), so the sidecar and its application share it. Under the
    runtime's default parent (`/docker`, `system.slice`, `machine.slice`, ...) or the root
    there is no pod: None. A `podman pod` has its own parent cgroup and so is a pod.
    """
    parts = [part for part in self_rel_path.split("/") if part]
    for depth in range(len(parts) - 1, 0, -1):  # ancestors only, deepest first
        if _POD_DIR.match(parts[depth - 1]):
            return "/" + "/".join(parts[:depth])
    # Our own cgroup may be a sub-cgroup of the container's (e.g. `/libpod-<id>.scope/x`).
    for depth in range(len(parts), 0, -1):
        if _container_id_of_dir(parts[depth - 1]):
            parent = parts[:depth - 1]
            if parent and not _SHARED_PARENT.match(parent[-1]):
                return "/" + "/".join(parent)
            return None
    return None


POD_SEARCH_DEPTH = 3  # /kubepods.slice/kubepods-burstable.slice/kubepods-...-pod<uid>.slice


def pod_cgroup_by_uid(root: str, uid: str) -> str | None:
    """The cgroup of the pod with this uid (the downward API's `metadata.uid`), found in
    the host's hierarchy mounted at `root`: for a sidecar in a private cgroup namespace,
    whose own cgroup path reads `/`. The kubelet names it `pod<uid>` (cgroupfs driver)
    or `kubepods-<qos>-pod<uid with _>.slice` (systemd), under a `kubepods` top."""
    wanted = {f"pod{uid}", f"pod{uid.replace('-', '_')}"}

    def is_pod(name: str) -> bool:
        return name in wanted or any(name.endswith(f"-{w}.slice") for w in wanted)

    level = [(os.path.join(root, name), f"/{name}") for name in _subdirs(root)
             if name.startswith("kubepods")]
    for _ in range(POD_SEARCH_DEPTH):
        deeper = []
        for path, rel in level:
            for name in _subdirs(path):
                if is_pod(name):
                    return f"{rel}/{name}"
                deeper.append((os.path.join(path, name), f"{rel}/{name}"))
        level = deeper
    return None


def own_cgroup_under(root: str, rel: str, pid: int, depth: int = 2) -> str | None:
    """The cgroup below `rel` whose members include `pid` (a host pid: the sidecar
    shares the host's pid namespace), or None."""
    path = os.path.join(root, rel.lstrip("/"))
    for name in _subdirs(path):
        child = f"{rel}/{name}"
        try:
            with open(os.path.join(path, name, "cgroup.procs")) as handle:
                if str(pid) in handle.read().split():
                    return child
        except OSError:
            continue
        if depth > 1:
            found = own_cgroup_under(root, child, pid, depth - 1)
            if found:
                return found
    return None


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def workload_for(
    rel_path: str, mode: TargetMode, targets: Sequence[str] = (), root: str = "/",
) -> Workload:
    """Who events of cgroup `rel_path` belong to.

    The key is the innermost container id when the path has one; else, in `cgroup` mode,
    the deepest configured target that contains it (targets as configured: relative to
    the mount point `root`, or absolute under it); else the cgroup path itself (the root
    is `/`).
    """
    rel = normalize(rel_path) if rel_path else "/"
    container = container_id_from_path(rel) or ""
    key = container
    if not key and mode is TargetMode.CGROUP:
        containing = [
            t for t in (relative_to_root(root, t) for t in targets)
            if t == "/" or rel == t or rel.startswith(t + "/")
        ]
        key = max(containing, key=len, default="")
    return Workload(key=key or rel, cgroup_path=rel, container_id=container)


def on_node(workload: Workload, node: str) -> Workload:
    """The workload as one of several nodes sees it: a key that is no container id (a
    host service's cgroup path, the same on every node) gets `node:` before it, so
    tracers fanning into one reporter keep their hosts' services apart. A container id
    is unique already, and stays as it is."""
    if not node or workload.container_id:
        return workload
    return replace(workload, key=f"{node}:{workload.key}")


# ---------------------------------------------------------------- moving processes


def move_process(cgroup_dir: str, pid: int) -> None:
    """Move process `pid` (all its threads) into cgroup directory `cgroup_dir`."""
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
            f.write(f"{pid}\n")
    except OSError as exc:
        raise CgroupError(f"cannot move pid {pid} into {cgroup_dir}: {exc.strerror}") from exc


# Set by `snoop run` and `snoop record` for their children: the cgroup they made, which
# they remove at the end and so must leave empty.
MADE_CGROUP_ENV = "SNOOP_MADE_CGROUP"


def isolate_self(root: str, name: str, pid: int | None = None) -> str:
    """Make cgroup `<root>/<name>` (e.g. `snoop-<pid>`) and move this process (or `pid`)
    into it; returns its relative path (`/<name>`).

    For Snoop sitting in the root cgroup on a plain host: its own cgroup can then be
    excluded without excluding everything. Children forked afterwards start in it too.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"cgroup name {name!r}: expected one path component")
    path = os.path.join(root, name)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {path}: {exc.strerror}") from exc
    move_process(path, os.getpid() if pid is None else pid)
    return "/" + name


def remove_cgroup(
    path: str, timeout: float = 2.0, *, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Remove cgroup directory `path` (and its sub-cgroups), waiting up to `timeout`
    seconds for their processes to leave (exit, or be moved: a process cannot remove its
    own cgroup). True when it is gone, False when it still held processes."""
    deadline = clock() + timeout
    while True:
        try:
            for dirpath, _, _ in os.walk(path, topdown=False):
                os.rmdir(dirpath)
            if not os.path.exists(path):
                return True
        except FileNotFoundError:
            if not os.path.exists(path):
                return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror}") from exc
        if clock() >= deadline:
            return False
        sleep(0.02)

"""strace as the oracle: every path a command passes to a file syscall, made absolute.

One `strace -f` log holds every process's calls in the order strace saw them, so a
chdir in one thread is seen before the relative open another thread does after it; a
call that another process interrupts is split into "<unfinished ...>" and
"<... resumed>" halves, joined here. `-xx` prints every string and fd decoding in hex,
so names with any byte in them parse unambiguously.

State comes from strace's own decodings where it gives them (`-y`: `3</dir>`,
`AT_FDCWD</cwd>`), which are the kernel's truth at that call even after fd passing,
dup2 or a reused fd number. A model fills the gaps: paths longer than PATH_MAX (strace
cannot decode them), and the cwd for calls without a dirfd (chdir, mkdir, rename...).
The model follows forks (CLONE_FS and CLONE_FILES share cwd and fd table, otherwise the
child copies them), chdir/fchdir/chroot, opened, duplicated and closed fds, and a
thread's execve taking over its process's pid.

Conventions, as the tracer reports paths:
- failed calls count (a probe for a missing file touched that path), except an openat2
  refused with EXDEV by RESOLVE_BENEATH: that name was never looked up below the dirfd;
- `/proc/self/fd/N/...`, `/dev/fd/N/...` and `/proc/self/cwd/...` name the file under
  that fd or cwd and are resolved to it;
- after chroot(X) paths are those of the process's own view: decodings (host paths
  under X) are translated back by stripping X;
- only syscalls the tracer hooks are read (mount and friends are not file accesses);
  a symlink's target text is not a path, its new name is; an empty name (AT_EMPTY_PATH)
  adds nothing, the fd's path was recorded when it was opened.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field

_TRACED = "trace=%file,%process,fchdir,close,dup,dup2,dup3,fcntl"

CWD = None  # the dirfd "position" of a name relative to the cwd
# syscall -> (dirfd argument index or CWD, name argument index) for each path it takes
_PATH_ARGS: dict[bytes, tuple[tuple[int | None, int], ...]] = {
    **{name: ((CWD, 0),) for name in (
        b"open", b"creat", b"execve", b"stat", b"lstat", b"access", b"readlink",
        b"chdir", b"chroot", b"truncate", b"statfs", b"getxattr", b"lgetxattr",
        b"listxattr", b"llistxattr", b"setxattr", b"lsetxattr", b"removexattr",
        b"lremovexattr", b"mkdir", b"rmdir", b"unlink", b"chmod", b"chown", b"lchown",
        b"utime", b"utimes", b"mknod")},
    **{name: ((0, 1),) for name in (
        b"openat", b"openat2", b"execveat", b"newfstatat", b"statx", b"faccessat",
        b"faccessat2", b"readlinkat", b"mkdirat", b"unlinkat", b"fchmodat", b"fchmodat2",
        b"fchownat", b"utimensat", b"futimesat", b"mknodat", b"name_to_handle_at",
        b"open_tree", b"getxattrat", b"listxattrat", b"file_getattr")},
    **{name: ((0, 1), (2, 3)) for name in (b"renameat", b"renameat2", b"linkat")},
    b"rename": ((CWD, 0), (CWD, 1)),
    b"link": ((CWD, 0), (CWD, 1)),
    b"pivot_root": ((CWD, 0), (CWD, 1)),
    b"symlink": ((CWD, 1),),
    b"symlinkat": ((1, 2),),
    b"inotify_add_watch": ((CWD, 1),),
}
_OPENS = {b"open", b"creat", b"openat", b"openat2", b"open_tree"}
_DUPS = {b"dup", b"dup2", b"dup3", b"fcntl"}
_FORKS = {b"clone", b"clone3", b"fork", b"vfork"}

_LINE = re.compile(rb"^(\d+)\s+(.*)$")
_UNFINISHED = re.compile(rb"^(.*?) <(?:unfinished \.\.\.|pid changed to (\d+) \.\.\.)>$")
_RESUMED = re.compile(rb"^<\.\.\. \w+ resumed>(.*)$")
_CALL = re.compile(rb"^(\w+)\((.*)\)\s+= (.*)$")
_RESULT = re.compile(rb"^(-?\d+|\?)(?:<([^<>]*)>)?(?: (E[A-Z0-9]+))?")
_EXIT = re.compile(rb"^\+\+\+ (?:exited|killed) ")
_SUPERSEDED = re.compile(rb"^\+\+\+ superseded by execve in pid (\d+) \+\+\+$")
_FD_ARG = re.compile(rb"^(AT_FDCWD|-?\d+)(?:<([^<>]*)>)?$")
_FD_TOKEN = re.compile(rb"(?<![\w\\])(\d+)<([^<>]*)>")
_STRING = re.compile(rb'^"((?:[^"\\]|\\.)*)"$')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)")
_C_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"v": b"\v", b"f": b"\f"}
_MAGIC_FD = re.compile(rb"^/+(?:proc/+(self|thread-self|\d+)/+|dev/+)fd/+(\d+)(/.*)?$")
_MAGIC_DIR = re.compile(rb"^/+proc/+(self|thread-self|\d+)/+(cwd|root)(/.*)?$")
_DELETED = b" (deleted)"


def strace_paths(argv: list[str], cwd: str, check: bool = False) -> set[bytes]:
    """Every path `argv`, started in `cwd`, passed to a file syscall, absolute.

    With `check`, a command that exits non-zero raises CalledProcessError.
    """
    with tempfile.TemporaryDirectory() as out:
        log = os.path.join(out, "trace")
        subprocess.run(
            ["strace", "-f", "-q", "-s", "65536", "-xx", "-y", "-e", _TRACED,
             "-o", log, *argv],
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
            check=check)
        with open(log, "rb") as handle:
            return paths_from_log(handle.read(), os.fsencode(os.path.abspath(cwd)))


def paths_from_log(log: bytes, cwd: bytes) -> set[bytes]:
    """The paths an `strace -f -q -xx -y` log shows, the first process starting in cwd."""
    model = _Model(cwd)
    unfinished: dict[int, bytes] = {}
    for line in log.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        pid, body = int(match.group(1)), match.group(2)
        split = _UNFINISHED.match(body)
        if split:
            unfinished[int(split.group(2) or pid)] = split.group(1)
            continue
        resumed = _RESUMED.match(body)
        if resumed:
            body = unfinished.pop(pid, b"") + resumed.group(1)
        model.feed(pid, body)
    model.finish()
    return model.paths


@dataclass
class _Fs:
    """What CLONE_FS shares: host paths of the cwd and the root."""

    cwd: bytes
    root: bytes = b"/"


@dataclass
class _Proc:
    tgid: int
    fs: _Fs
    fds: dict[int, bytes] = field(default_factory=dict)  # fd -> host path


@dataclass
class _Call:
    name: bytes
    args: list[bytes]
    text: bytes
    ret: int | None
    ret_path: bytes | None
    errno: bytes | None


class _Model:
    def __init__(self, cwd: bytes) -> None:
        self.first_cwd = cwd
        self.procs: dict[int, _Proc] = {}
        # Lines of a child that ran before strace showed its parent's fork return.
        self.waiting: dict[int, list[bytes]] = defaultdict(list)
        self.started = False
        self.paths: set[bytes] = set()

    def feed(self, pid: int, body: bytes) -> None:
        superseded = _SUPERSEDED.match(body)
        if superseded:  # a thread's execve: it goes on under the process's pid
            thread = self.procs.pop(int(superseded.group(1)), None) or self.procs.get(pid)
            if thread:
                self.procs[pid] = _Proc(pid, thread.fs, thread.fds)
            return
        if pid not in self.procs:
            if self.started:
                self.waiting[pid].append(body)
                return
            self.started = True
            self.procs[pid] = _Proc(pid, _Fs(self.first_cwd))
        if _EXIT.match(body):
            del self.procs[pid]
            return
        call = _parse(body)
        if call:
            self._call(pid, self.procs[pid], call)

    def finish(self) -> None:
        """Processes whose fork strace never showed start where the first one did."""
        for pid in list(self.waiting):
            self.procs[pid] = _Proc(pid, _Fs(self.first_cwd))
            for body in self.waiting.pop(pid):
                self.feed(pid, body)

    def _call(self, pid: int, proc: _Proc, call: _Call) -> None:
        for number, decoded in _FD_TOKEN.findall(b", ".join(call.args)):
            target = _decoded(decoded)
            if target:
                proc.fds[int(number)] = target
        targets = []
        for dirfd, index in _PATH_ARGS.get(call.name, ()):
            name = _string(call.args, index)
            if not name:
                continue
            host = self._resolve(pid, proc, call, None if dirfd is None else call.args[dirfd],
                                 name)
            targets.append(host)
            if not _refused_beneath(call):
                self.paths.add(_view(proc.fs.root, host))
        self._apply(proc, call, targets)

    def _apply(self, proc: _Proc, call: _Call, targets: list[bytes]) -> None:
        ok = call.ret is not None and call.ret >= 0
        if not ok:
            return
        if call.name in _FORKS and call.ret > 0:
            self._fork(proc, call)
        elif call.name == b"chdir" and targets:
            proc.fs.cwd = targets[0]
        elif call.name == b"chroot" and targets:
            proc.fs.root = targets[0]
        elif call.name == b"fchdir":
            proc.fs.cwd = self._dirfd(proc, call.args[0]) or proc.fs.cwd
        elif call.name in _OPENS and targets:
            proc.fds[call.ret] = _decoded(call.ret_path) or targets[0]
        elif call.name in _DUPS and call.args:
            source = _decoded(call.ret_path) or self._dirfd(proc, call.args[0])
            if source and (call.name != b"fcntl" or b"F_DUPFD" in call.text):
                proc.fds[call.ret] = source
        elif call.name == b"close":
            fd = _FD_ARG.match(call.args[0]) if call.args else None
            if fd:
                proc.fds.pop(int(fd.group(1)), None)

    def _fork(self, parent: _Proc, call: _Call) -> None:
        child = call.ret
        thread = b"CLONE_THREAD" in call.text
        fs = parent.fs if b"CLONE_FS" in call.text else _Fs(parent.fs.cwd, parent.fs.root)
        fds = parent.fds if b"CLONE_FILES" in call.text else dict(parent.fds)
        self.procs[child] = _Proc(parent.tgid if thread else child, fs, fds)
        for body in self.waiting.pop(child, []):
            self.feed(child, body)

    def _dirfd(self, proc: _Proc, arg: bytes) -> bytes | None:
        """Host path of a dirfd argument: strace's decoding, else the model's."""
        match = _FD_ARG.match(arg)
        if not match:
            return None
        decoded = _decoded(match.group(2))
        if match.group(1) == b"AT_FDCWD":
            if decoded:
                proc.fs.cwd = decoded
            return proc.fs.cwd
        return decoded or proc.fds.get(int(match.group(1)))

    def _resolve(self, pid: int, proc: _Proc, call: _Call, dirfd: bytes | None,
                 name: bytes) -> bytes:
        """Host path of `name` as the call resolves it; relative if its dirfd is unknown."""
        base = proc.fs.cwd if dirfd is None else self._dirfd(proc, dirfd)
        if base and b"RESOLVE_IN_ROOT" in call.text:
            return _within(base, name)
        magic = self._magic(pid, proc, name)
        if magic:
            return magic
        if name.startswith(b"/"):
            return _within(proc.fs.root, name)
        if not base:
            return name
        inside = _view(proc.fs.root, base)
        if inside != base:  # chrooted, and base is inside the root: '..' stops at it
            return _within(proc.fs.root, inside + b"/" + name)
        return _normal(base + b"/" + name)

    def _magic(self, pid: int, proc: _Proc, name: bytes) -> bytes | None:
        """What /proc/self/fd/N, /dev/fd/N, /proc/self/cwd or root at the start stand for."""
        if proc.fs.root != b"/":
            return None  # no /proc of the host in there
        own = (b"self", b"thread-self", str(proc.tgid).encode(), str(pid).encode())
        match = _MAGIC_FD.match(name)
        if match and match.group(1) in (None, *own):
            target = proc.fds.get(int(match.group(2)))
        else:
            match = _MAGIC_DIR.match(name)
            if not match or match.group(1) not in own:
                return None
            target = proc.fs.cwd if match.group(2) == b"cwd" else proc.fs.root
        if not target or not target.startswith(b"/"):
            return None
        return _normal(target + (match.group(3) or b""))


def _parse(body: bytes) -> _Call | None:
    match = _CALL.match(body)
    if not match:
        return None
    result = _RESULT.match(match.group(3))
    ret = ret_path = errno = None
    if result and result.group(1) != b"?":
        ret, ret_path, errno = int(result.group(1)), result.group(2), result.group(3)
    return _Call(match.group(1), _split_args(match.group(2)), body, ret, ret_path, errno)


def _split_args(text: bytes) -> list[bytes]:
    """Top-level arguments: commas inside quotes, (), [] and {} do not split."""
    args, depth, start, quoted, escaped = [], 0, 0, False, False
    for i, byte in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                quoted = False
        elif byte == 0x22:
            quoted = True
        elif byte in b"([{":
            depth += 1
        elif byte in b")]}":
            depth -= 1
        elif byte == 0x2C and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return args


def _string(args: list[bytes], index: int) -> bytes | None:
    match = _STRING.match(args[index]) if index < len(args) else None
    return _unescape(match.group(1)) if match else None


def _unescape(text: bytes) -> bytes:
    def one(match: re.Match) -> bytes:
        code = match.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        if code[:1].isdigit():
            return bytes([int(code, 8)])
        return _C_ESCAPES.get(code, code)

    return _ESCAPE.sub(one, text)


def _decoded(text: bytes | None) -> bytes | None:
    """A -y decoding as a host path, or None if it names no path (pipe:[..], socket:[..])."""
    if not text:
        return None
    path = _unescape(text)
    if path.endswith(_DELETED):
        path = path[:-len(_DELETED)]
    return path if path.startswith(b"/") else None


def _refused_beneath(call: _Call) -> bool:
    return call.errno == b"EXDEV" and b"RESOLVE_BENEATH" in call.text


def _normal(path: bytes) -> bytes:
    path = os.path.normpath(path)
    return path[1:] if path.startswith(b"//") else path


def _within(root: bytes, name: bytes) -> bytes:
    """Host path of `name` resolved with `root` as "/" ('..' stops there)."""
    inside = _normal(b"/" + name)
    return inside if root == b"/" else _normal(root + inside)


def _view(root: bytes, host: bytes) -> bytes:
    """`host` as a process whose root is `root` names it (unchanged if outside)."""
    if root == b"/":
        return host
    if host == root:
        return b"/"
    return host[len(root):] if host.startswith(root + b"/") else host

"""strace as the oracle: every path a command passes to a file syscall, made absolute.

`strace -ff` writes one file per process, so no call is split across lines. Each
process starts in its parent's cwd at the fork; chdir and fchdir move it; dirfd-relative
paths use strace's own fd decoding (-y). getcwd is not an access and is skipped.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import tempfile

_LINE = re.compile(rb"^(\w+)\((.*)$")
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_FD = re.compile(rb"(-?\d+)<((?:[^>\\]|\\.)*)>")
_RESULT = re.compile(rb"\)\s+= (-?\d+)")
_NOT_PATHS = {b"getcwd"}
_FORKS = {b"clone", b"clone3", b"fork", b"vfork"}


def _unescape(text: bytes) -> bytes:
    return text.decode("unicode_escape").encode("latin-1")


def strace_paths(argv: list[str], cwd: str) -> set[bytes]:
    with tempfile.TemporaryDirectory() as out:
        prefix = os.path.join(out, "trace")
        subprocess.run(
            ["strace", "-ff", "-qq", "-s", "4096", "-xx", "-y", "-e",
             "trace=%file,%process,fchdir", "-o", prefix, *argv],
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
            check=False)
        traces = {int(path.rsplit(".", 1)[1]): path for path in glob.glob(prefix + ".*")}
        paths: set[bytes] = set()
        while traces:  # the first process, then any whose fork line was not seen
            _walk(min(traces), cwd.encode(), traces, paths)
        return paths


def _walk(pid: int, cwd: bytes, traces: dict[int, str], paths: set[bytes]) -> None:
    with open(traces.pop(pid), "rb") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        match = _LINE.match(line)
        if not match:
            continue
        call, rest = match.group(1), match.group(2)
        result = _RESULT.search(line)
        code = int(result.group(1)) if result else None
        if call in _FORKS:
            if code and code > 0 and code in traces:
                _walk(code, cwd, traces, paths)
            continue
        fd = _FD.match(rest)
        if call == b"fchdir":
            if fd and code == 0:
                cwd = _unescape(fd.group(2))
            continue
        quoted = _QUOTED.search(rest)
        if call in _NOT_PATHS or not quoted:
            continue
        path = _unescape(quoted.group(1))
        if not path:
            continue
        if not path.startswith(b"/"):
            dirfd = _FD.search(rest[:quoted.start()])
            path = os.path.join(_unescape(dirfd.group(2)) if dirfd else cwd, path)
        path = os.path.normpath(path)
        if path.startswith(b"//"):
            path = path[1:]
        paths.add(path)
        if call == b"chdir" and code == 0:
            cwd = path

"""One line of `snoop watch`: what a process did to which file, and how it ended."""

from __future__ import annotations

import errno as errno_names
from dataclasses import dataclass

from snoop.common.protocol import AccessKind
from snoop.tracer.syscalls import ALL_NAMES

_OP_OF_KIND = {kind: kind.name.lower() for kind in AccessKind}
_OP_OF_KIND.update({AccessKind.READ: "open", AccessKind.WRITE: "open",
                    AccessKind.STATFS: "stat"})
IO_SYSCALL_OPS = {"read": "read", "pread64": "read", "readv": "read",
                  "write": "write", "pwrite64": "write", "writev": "write", "close": "close"}


def op_of_kind(kind: AccessKind) -> str:
    return _OP_OF_KIND[kind]


def io_op_of(syscall: int) -> str | None:
    name = ALL_NAMES[syscall] if 0 <= syscall < len(ALL_NAMES) else ""
    return IO_SYSCALL_OPS.get(name)


@dataclass
class WatchEvent:
    time: float  # wall clock, seconds
    pid: int  # the process (thread group) id
    tid: int
    comm: bytes
    op: str
    path: bytes | None  # None: the fd's path could not be found
    fd: int | None = None
    ret: int = 0  # the syscall's result: an fd, a byte count, 0, or -errno
    bytes: int | None = None  # read and write: bytes moved (summed when aggregated)
    calls: int = 1  # read and write lines stand for this many calls
    failed: int = 0  # of which failed
    mode: str = ""  # open: "r" or "w"

    @property
    def result(self) -> str:
        if self.calls > 1:
            return f"{self.calls} calls" + (f", {self.failed} failed" if self.failed else "")
        return _errno(self.ret) if self.ret < 0 else "ok"

    def as_json(self) -> dict:
        return {"type": "event", "time": round(self.time, 6), "pid": self.pid,
                "tid": self.tid, "comm": _text(self.comm), "op": self.op,
                "fd": self.fd, "bytes": self.bytes, "calls": self.calls,
                "failed": self.failed, "result": self.result, "mode": self.mode or None,
                "path": None if self.path is None else _text(self.path)}


def _errno(ret: int) -> str:
    return errno_names.errorcode.get(-ret, f"errno {-ret}")


def _text(raw: bytes) -> str:
    """Bytes as text, any byte that is not UTF-8 kept as a \\x escape."""
    return raw.decode("utf-8", errors="backslashreplace")


def display_path(path: bytes | None) -> str:
    return "?" if path is None else _text(path)

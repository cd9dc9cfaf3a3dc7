"""What `snoop watch` was asked to show: flags checked into one typed value."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

# Operations by name: read, write and close have hooks of their own, compiled in only
# when asked for; the others are the path syscalls the tracer always hooks.
IO_OPS = ("read", "write", "close")
PATH_OPS = ("open", "exec", "stat", "access", "readlink", "chdir", "truncate", "xattr",
            "mkdir", "unlink", "rename", "link", "chmod", "chown", "utime", "mknod")
ALL_OPS = PATH_OPS[:2] + IO_OPS + PATH_OPS[2:]
DEFAULT_OPS = ("open", "read", "write", "close", "exec")
MAX_COMMS = 16
COMM_BYTES = 15  # the kernel keeps 15 bytes of a process name, and a NUL


class OptionsError(ValueError):
    """A flag that cannot work; the message names it."""


@dataclass(frozen=True)
class WatchOptions:
    dirs: tuple[bytes, ...] = ()  # absolute, normalized; empty: every path
    comms: tuple[bytes, ...] = ()
    pid: int | None = None
    ops: tuple[str, ...] = DEFAULT_OPS
    target: str = "all"  # "all", "cgroup" or "container"
    cgroups: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    output_format: str = "table"
    duration: float | None = None
    interval: float = 1.0
    ringbuf_bytes: int = 8 * 1024 * 1024

    @property
    def io_ops(self) -> tuple[str, ...]:
        return tuple(op for op in self.ops if op in IO_OPS)

    def wants_path(self, path: bytes) -> bool:
        if not self.dirs:
            return True
        return any(path == d or path.startswith(d.rstrip(b"/") + b"/") for d in self.dirs)


def options_from(args: argparse.Namespace) -> WatchOptions:
    ops = _ops(args.op)
    dirs = []
    for raw in args.dir or ():
        if not os.path.isabs(raw):
            raw = os.path.abspath(raw)
        dirs.append(os.fsencode(os.path.normpath(raw)))
    comms = tuple(os.fsencode(name) for name in args.comm or ())
    for comm in comms:
        if not comm or len(comm) > COMM_BYTES:
            raise OptionsError(f"--comm {os.fsdecode(comm)!r}: a process name is 1 to "
                               f"{COMM_BYTES} bytes (the kernel keeps no more)")
    if len(comms) > MAX_COMMS:
        raise OptionsError(f"--comm given {len(comms)} times: at most {MAX_COMMS}")
    if args.pid is not None and args.pid <= 0:
        raise OptionsError(f"--pid {args.pid}: expected a process id above 0")
    if args.duration is not None and args.duration <= 0:
        raise OptionsError(f"--duration {args.duration}: expected seconds above 0")
    if args.interval <= 0:
        raise OptionsError(f"--interval {args.interval}: expected seconds above 0")
    if args.ring_buffer < 4096:
        raise OptionsError(f"--ring-buffer {args.ring_buffer}: at least 4096 bytes")
    target = "cgroup" if args.cgroup else "container" if args.container else "all"
    return WatchOptions(
        dirs=tuple(dirs), comms=comms, pid=args.pid, ops=ops, target=target,
        cgroups=tuple(args.cgroup or ()), containers=tuple(args.container or ()),
        output_format=args.format, duration=args.duration, interval=args.interval,
        ringbuf_bytes=args.ring_buffer)


def _ops(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_OPS
    if text == "all":
        return ALL_OPS
    ops = tuple(dict.fromkeys(op.strip() for op in text.split(",") if op.strip()))
    unknown = [op for op in ops if op not in ALL_OPS]
    if unknown or not ops:
        raise OptionsError(f"--op {text!r}: unknown {', '.join(unknown) or 'empty list'}; "
                           f"known: {','.join(ALL_OPS)} or all")
    return ops

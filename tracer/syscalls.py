"""The syscalls Snoop hooks, in one table; indices are passed to the BPF C as SYS_IDX_*.

Each name has a PROBE line in tracer/bpf/snoop.bpf.c (tests check the two lists agree).
A syscall this kernel lacks is skipped at load time with one log line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

SYSCALLS: tuple[str, ...] = (
    "open", "creat", "openat", "openat2",
    "execve", "execveat",
    "newstat", "newlstat", "newfstatat", "statx",
    "access", "faccessat", "faccessat2",
    "readlink", "readlinkat",
    "chdir", "fchdir", "chroot",
    "truncate", "statfs",
    "getxattr", "lgetxattr", "listxattr", "llistxattr", "getxattrat", "listxattrat",
    "setxattr", "lsetxattr", "removexattr", "lremovexattr",
    "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
    "chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat",
    "utime", "utimes", "utimensat", "futimesat",
    "mknod", "mknodat",
    "name_to_handle_at", "inotify_add_watch", "file_getattr", "open_tree", "pivot_root",
    # No path, but they copy an fd that later serves as a dirfd.
    "fcntl", "dup", "dup2", "dup3",
)

# Scheduler tracepoints, indexed after the syscalls.
SCHED_EVENTS: tuple[str, ...] = ("sched_process_exec", "sched_process_fork", "sched_process_exit")

ALL_NAMES: tuple[str, ...] = SYSCALLS + SCHED_EVENTS



def available(tracefs: str, names: Iterable[str] = SYSCALLS) -> tuple[list[str], list[str]]:
    """(present, missing): which syscalls have an entry tracepoint on this kernel."""
    present, missing = [], []
    base = os.path.join(tracefs, "events", "syscalls")
    for name in names:
        found = os.path.isdir(os.path.join(base, f"sys_enter_{name}"))
        (present if found else missing).append(name)
    return present, missing


def name_of(index: int) -> str:
    return ALL_NAMES[index] if 0 <= index < len(ALL_NAMES) else f"unknown_{index}"


def index_defines() -> list[str]:
    return [f"-DSYS_IDX_{name}={i}" for i, name in enumerate(ALL_NAMES)]

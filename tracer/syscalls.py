"""The syscalls Snoop hooks, in one table; indices are passed to the BPF C as SYS_IDX_*.

Each name has a PROBE line in tracer/bpf/snoop.bpf.c (tests check the two lists agree).
A syscall this kernel lacks is skipped at load time with one log line.
"""

from __future__ import annotations

import os
import re
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
    # No path, but they change what an fd or the cwd stands for.
    "fcntl", "dup", "dup2", "dup3", "close", "close_range", "clone", "clone3", "unshare",
    "socketpair", "sendmsg", "recvmsg",
)

# Scheduler tracepoints, indexed after the syscalls (then the watch-only syscalls).
SCHED_EVENTS: tuple[str, ...] = ("sched_process_exec", "sched_process_fork", "sched_process_exit")

# Hooked only by `snoop watch`, when asked for (WATCH_IO_PROBE lines in the BPF C).
WATCH_SYSCALLS: tuple[str, ...] = ("read", "pread64", "readv", "write", "pwrite64", "writev")

ALL_NAMES: tuple[str, ...] = SYSCALLS + SCHED_EVENTS + WATCH_SYSCALLS

# io_uring's submit tracepoint, by its name on newer and older kernels. Only one with an
# opcode field is of use.
IO_URING_SUBMIT: tuple[str, ...] = ("io_uring_submit_req", "io_uring_submit_sqe")


def tracepoint_fields(tracefs: str, category: str, event: str) -> set[str] | None:
    """The field names of a tracepoint's format, or None when it does not exist."""
    try:
        with open(os.path.join(tracefs, "events", category, event, "format")) as handle:
            text = handle.read()
    except OSError:
        return None
    return set(re.findall(r"field:[^;]*?(\w+)(?:\[\d*\])?;", text))


def feature_defines(tracefs: str) -> list[str]:
    """-D flags for what this kernel's sched and io_uring tracepoints offer."""
    defines = []
    exit_fields = tracepoint_fields(tracefs, "sched", "sched_process_exit") or set()
    if "group_dead" in exit_fields:
        defines.append("-DHAVE_GROUP_DEAD")
    for event in IO_URING_SUBMIT:
        if "opcode" in (tracepoint_fields(tracefs, "io_uring", event) or set()):
            defines.append(f"-DHAVE_{event}")
            break
    return defines


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

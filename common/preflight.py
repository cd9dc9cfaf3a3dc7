"""Can BPF work here? One line per missing piece, never a traceback."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys


def problems() -> list[str]:
    found = []
    if os.geteuid() != 0:
        found.append("not root: the tracer needs root (or CAP_BPF + CAP_PERFMON)")
    if not os.path.exists("/sys/kernel/btf/vmlinux") and not os.path.exists("/proc/kallsyms"):
        found.append("no BPF support visible: /sys/kernel/btf/vmlinux and /proc/kallsyms missing")
    tracefs = tracefs_problem()
    if tracefs:
        found.append(tracefs)
    build = f"/lib/modules/{platform.release()}/build"
    if not os.path.isdir(f"{build}/include"):
        found.append(f"no kernel headers at {build}: bcc cannot compile the BPF program")
    # Found, not imported: importing bcc maps LLVM, which the tracer must never hold.
    if importlib.util.find_spec("bcc") is None:
        found.append("python module bcc missing: install Debian's python3-bpfcc")
    return found


def tracefs_problem() -> str | None:
    """None when a tracefs with syscall tracepoints can be read; else what is wrong."""
    unreadable = []
    for root in tracefs_roots():
        try:
            if "syscalls" in os.listdir(os.path.join(root, "events")):
                return None
        except PermissionError:
            unreadable.append(root)
        except OSError:
            continue
    if unreadable:
        return (f"tracefs is mounted at {unreadable[0]} but this user cannot read it "
                "(the tracer needs root)")
    return ("no tracefs with syscall tracepoints at /sys/kernel/tracing "
            "(mount -t tracefs nodev /sys/kernel/tracing)")


def tracefs_roots() -> list[str]:
    return ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]


def main() -> int:
    for problem in problems():
        print(f"snoop: BPF cannot work here: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

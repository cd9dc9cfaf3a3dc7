"""What the kernel side is built from: the BPF source, its settings and the -D flags
for this kernel. No bcc here: the long-running tracer uses this to decide whether the
pinned kernel side it finds is the one it would build."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from snoop.tracer import features
from snoop.tracer.syscalls import (
    SYSCALLS,
    WATCH_SYSCALLS,
    available,
    feature_defines,
    index_defines,
)

BPF_SOURCE = Path(__file__).with_name("bpf") / "snoop.bpf.c"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class LoadError(RuntimeError):
    """The BPF program cannot be compiled or attached here; the message says why."""


@dataclass(frozen=True)
class KernelSettings:
    ringbuf_bytes: int = 8 * 1024 * 1024
    dedup_entries: int = 65536
    dedup_ttl: float = 600.0
    max_cgroup_levels: int = 16
    wakeup_every: int = 64


def ringbuf_pages(size_bytes: int) -> int:
    """The ring buffer size in pages: a power of two, at least one page."""
    pages = max(1, -(-size_bytes // PAGE_SIZE))
    return 1 << (pages - 1).bit_length()


def find_tracefs() -> str:
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(root, "events", "syscalls")):
            return root
    raise LoadError("no tracefs with syscall tracepoints at /sys/kernel/tracing "
                    "(mount -t tracefs nodev /sys/kernel/tracing)")


def cflags_for(settings: KernelSettings, present: Iterable[str],
               features: Iterable[str] = ()) -> list[str]:
    return [
        "-Wno-ignored-attributes",
        "-Wno-unused-function",
        f"-DRINGBUF_PAGES={ringbuf_pages(settings.ringbuf_bytes)}",
        f"-DDEDUP_ENTRIES={settings.dedup_entries}",
        f"-DDEDUP_TTL_NS={int(settings.dedup_ttl * 1e9)}ULL",
        f"-DMAX_CGROUP_LEVELS={settings.max_cgroup_levels}",
        f"-DWAKEUP_EVERY={settings.wakeup_every}",
        *index_defines(),
        *(f"-DHAVE_{name}" for name in present),
        *features,
    ]


@dataclass(frozen=True)
class WatchBuild:
    """What `snoop watch` adds to the kernel side (the tracer never builds these)."""

    io_ops: tuple[str, ...] = ()  # of "read", "write", "close"
    pid: int | None = None
    comms: bool = False  # filter on the names put in the watch_comms map

    def defines(self, tracefs: str) -> list[str]:
        flags = [f"-DWATCH_{op.upper()}" for op in self.io_ops]
        if self.io_ops:
            flags.append("-DWATCH_IO")
            present, _ = available(tracefs, WATCH_SYSCALLS)
            flags.extend(f"-DHAVE_{name}" for name in present)
        if self.pid is not None:
            flags.append(f"-DWATCH_PID={int(self.pid)}")
        if self.comms:
            flags.append("-DWATCH_COMMS")
        return flags


@dataclass(frozen=True)
class BuildPlan:
    """Everything the compile step needs, and a digest of it."""

    settings: KernelSettings
    tracefs: str
    present: tuple[str, ...]
    missing: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def cflags(self) -> list[str]:
        return cflags_for(self.settings, self.present, self.features)

    @property
    def ringbuf(self) -> bool:
        """The BPF ring buffer; else one perf buffer per CPU."""
        return "-DHAVE_RINGBUF" in self.features

    @property
    def digest(self) -> str:
        """Changes whenever the program that would be loaded changes."""
        text = BPF_SOURCE.read_bytes() + "\0".join(self.cflags).encode()
        return hashlib.sha256(text).hexdigest()[:32]


def plan(settings: KernelSettings, watch: WatchBuild | None = None) -> BuildPlan:
    tracefs = find_tracefs()
    present, missing = available(tracefs, SYSCALLS)
    extra = watch.defines(tracefs) if watch is not None else []
    return BuildPlan(settings, tracefs, tuple(present), tuple(missing),
                     tuple(feature_defines(tracefs) + features.probe().defines + extra))

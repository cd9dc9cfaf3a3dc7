"""Compile and attach the BPF program with bcc, and give typed access to its maps.

Only this module imports bcc. It compiles once at startup, frees bcc's compiler memory,
and exposes: target updates (live, without reloading), self-exclusion by process, the
per-CPU counters, and the ring buffer drain.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from snoop.tracer.syscalls import SYSCALLS, available, feature_defines, index_defines

BPF_SOURCE = Path(__file__).with_name("bpf") / "snoop.bpf.c"
INCLUDE = 1
EXCLUDE = 2
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

log = logging.getLogger(__name__)


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


def _return_freed_heap() -> None:
    """Give the compiler's freed heap back to the system (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class KernelProbe:
    """The loaded, attached program. Use as a context manager, or call close()."""

    def __init__(self, settings: KernelSettings = KernelSettings()) -> None:
        try:
            from bcc import BPF
        except ImportError:
            raise LoadError("python module bcc missing: install Debian's python3-bpfcc") \
                from None
        if not os.path.isdir(f"/lib/modules/{platform.release()}/build/include"):
            raise LoadError(f"no kernel headers at /lib/modules/{platform.release()}/build: "
                            "bcc cannot compile (run scripts/setup.sh)")
        tracefs = find_tracefs()
        self.present, self.missing = available(tracefs, SYSCALLS)
        features = feature_defines(tracefs)
        for name in self.missing:
            log.info("syscall not available on this kernel, skipped", extra={"syscall": name})
        started = time.monotonic()
        stderr_fd = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            # bcc's clang prints pages of header warnings on stderr; keep the log clean.
            os.dup2(devnull, 2)
            self._bpf = BPF(src_file=str(BPF_SOURCE).encode(),
                            cflags=cflags_for(settings, self.present, features))
        except Exception as exc:
            raise LoadError(f"BPF program failed to load: {exc}") from None
        finally:
            os.dup2(stderr_fd, 2)
            os.close(stderr_fd)
            os.close(devnull)
        self._load_stages(BPF)
        self._bpf.free_bcc_memory()
        _return_freed_heap()
        self.compile_seconds = time.monotonic() - started
        self.attached = tuple(self.present) + ("sched_process_exec", "sched_process_fork",
                                               "sched_process_exit") + tuple(
            f.removeprefix("-DHAVE_") for f in features if "io_uring" in f)
        self._targets = self._bpf[b"targets"]
        self._generation = self._bpf[b"generation"]
        self._excluded = self._bpf[b"excluded_tgids"]
        self._counters = self._bpf[b"counters"]
        self._procs = self._bpf[b"procs"]
        self._cwds = self._bpf[b"cwds"]
        self._fds = self._bpf[b"fds"]
        self._uring = self._bpf[b"uring_path_ops"]
        self._ring_open = False
        self._closed = False

    def _load_stages(self, bpf_class) -> None:
        """The programs the hooks reach by tail call (see `struct stage` in the C)."""
        for array, kind, names in (
            (b"raw_stages", bpf_class.RAW_TRACEPOINT,
             (b"stage_path2", b"finish_raw", b"stage_model", b"magic_raw")),
            (b"tp_stages", bpf_class.TRACEPOINT, (b"finish_tp", b"magic_tp")),
        ):
            table = self._bpf[array]
            for index, name in enumerate(names):
                try:
                    function = self._bpf.load_func(name, kind)
                except Exception as exc:
                    raise LoadError(f"BPF stage {name.decode()} failed to load: {exc}") \
                        from None
                table[table.Key(index)] = table.Leaf(function.fd)

    # ------------------------------------------------------------ targets

    def set_targets(self, include: Iterable[int], exclude: Iterable[int]) -> None:
        """Replace the target set; the kernel sees the change at once."""
        wanted = {int(i): INCLUDE for i in include}
        wanted.update({int(i): EXCLUDE for i in exclude})
        key_type, leaf_type = self._targets.Key, self._targets.Leaf
        for key in list(self._targets.keys()):
            if key.value not in wanted:
                del self._targets[key]
        for cgroup_id, mark in wanted.items():
            self._targets[key_type(cgroup_id)] = leaf_type(mark)
        # Cached per-cgroup verdicts carry the generation they were computed in.
        zero = self._generation.Key(0)
        self._generation[zero] = self._generation.Leaf(self._generation[zero].value + 1)

    def exclude_process(self, tgid: int) -> None:
        self._excluded[self._excluded.Key(tgid)] = self._excluded.Leaf(1)

    # ------------------------------------------------------------ ring buffer

    def open_ring(self, on_record: Callable[[bytes], None]) -> None:
        def callback(_ctx, data, size) -> int:
            on_record(ctypes.string_at(data, size))
            return 0

        self._bpf[b"events"].open_ring_buffer(callback)
        self._ring_open = True

    def drain(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for a wakeup, then consume everything in the ring."""
        self._bpf.ring_buffer_poll(timeout_ms)
        self._bpf.ring_buffer_consume()

    # ------------------------------------------------------------ counters

    def counters(self) -> dict[int, int]:
        """Per-CPU counter slots, summed over CPUs."""
        totals = {}
        for key, per_cpu in self._counters.items():
            totals[key.value] = sum(int(v) for v in per_cpu)
        return totals

    # ------------------------------------------------------------ the model

    def contexts(self, tgid: int) -> tuple[int, int] | None:
        """(fs context, fd table) the kernel holds for a process, None if none."""
        value = self._procs.get(self._procs.Key(tgid))
        return (int(value.fs), int(value.files)) if value is not None else None

    def cwd_base(self, fs_context: int) -> int:
        """The serial the kernel holds for a process's cwd (0: none)."""
        value = self._cwds.get(self._cwds.Key(fs_context))
        return int(value.base) if value is not None else 0

    def fd_base(self, files_context: int, fd: int) -> int:
        """The serial the kernel's own entry holds for an fd (0: none, or closed)."""
        key = self._fds.Key()
        key.files, key.fd = files_context, fd
        value = self._fds.get(key)
        return int(value.now.base) if value is not None else 0

    def io_uring_path_ops(self) -> dict[int, int]:
        """cgroup id -> io_uring requests that named a path, since the program loaded."""
        return {int(k.value): int(v.value) for k, v in self._uring.items()}

    # ------------------------------------------------------------ life cycle

    def pause(self) -> None:
        """Stop new events at once (programs stay attached but return immediately)."""
        control = self._bpf[b"control"]
        control[control.Key(0)] = control.Leaf(1)

    def detach(self) -> None:
        """Stop new events; the ring buffer stays readable for a final drain.

        Each tracepoint detach waits for an RCU grace period (~80 ms here). Done one
        after another, a hundred of them take ~10 s; done from parallel threads (bcc's
        C calls release the GIL) they share grace periods and take well under one.
        """
        tracepoints = list(self._bpf.tracepoint_fds)
        if not tracepoints:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(tracepoints))) as pool:
            list(pool.map(self._bpf.detach_tracepoint, tracepoints))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bpf.cleanup()

    def __enter__(self) -> KernelProbe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def layout(self) -> list[tuple[str, int, int]]:
        """(field, offset, size) of `struct event_hdr` as bcc compiled it."""
        leaf = self._bpf[b"event_layout"].Leaf
        return [(name, getattr(leaf, name).offset, getattr(leaf, name).size)
                for name, _ in leaf._fields_]

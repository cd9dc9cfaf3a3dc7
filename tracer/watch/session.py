"""A `snoop watch` run: build the tracer's kernel side with the watch hooks, keep it on
the chosen cgroups, turn its records into lines, and stop cleanly.

The kernel side is private to this run (nothing pinned) and detached when it ends.
Paths come out as reports have them: the tracer's translator resolves relative and
dirfd paths, and a read, write or close names its fd's path through the kernel's
cwd/fd model (an fd from before the watch began is read from /proc/PID/fd once).
"""

from __future__ import annotations

import os
import threading
import time
from typing import TextIO

from snoop.common.config import Config, TargetMode
from snoop.tracer import build, cgroups, maps, records
from snoop.tracer.build import KernelSettings, WatchBuild
from snoop.tracer.descendants import DescendantTracker
from snoop.tracer.events import RecordTranslator
from snoop.tracer.kernel import KernelSide, compile_in_child
from snoop.tracer.perfbuf import PerfReader
from snoop.tracer.resolve import PathResolver
from snoop.tracer.syscalls import WATCH_SYSCALLS
from snoop.tracer.targets import TargetWatcher
from snoop.tracer.watch.aggregate import Aggregator, Summary
from snoop.tracer.watch.events import WatchEvent, io_op_of, op_of_kind
from snoop.tracer.watch.options import WatchOptions
from snoop.tracer.watch.render import Renderer

KIND_IO = 110  # a read, write or close record (KIND_IO in snoop.bpf.c)
STAT_RINGBUF_FULL, STAT_PRIMED, STAT_NOTES_DROPPED, STAT_IO_DROPPED = 1, 5, 6, 7
TARGETS_REFRESH = 1.0
POLL_MS = 20
STOP_DRAIN_SECONDS = 2.0
MAX_LABELS = 4096


class WatchSession:
    def __init__(self, options: WatchOptions, out: TextIO, err: TextIO,
                 stop: threading.Event) -> None:
        self.options = options
        self.renderer = Renderer(out, options.output_format)
        self._err = err
        self._stop = stop
        self.aggregator = Aggregator()
        self.summary = Summary()
        self._labels: dict[tuple[int, int, int], bytes | None] = {}

    def run(self) -> int:
        opts = self.options
        plan = build.plan(
            KernelSettings(ringbuf_bytes=opts.ringbuf_bytes, dedup_ttl=0.0),
            watch=WatchBuild(io_ops=opts.io_ops, pid=opts.pid, comms=bool(opts.comms)))
        manifest, fds = compile_in_child(plan)
        kernel = KernelSide(manifest, fds, None, adopted=False)
        self.resolver = PathResolver(kernel=kernel)
        self.translator = RecordTranslator(self.resolver)
        started = time.monotonic()
        try:
            if opts.comms:
                kernel.set_watch_comms(opts.comms)
            kernel.exclude_process(os.getpid())
            self._watch_loop(kernel)
        finally:
            kernel.pause()
            try:
                self._drain(kernel, final=True)
            except BrokenPipeError:
                kernel.close(detach=True)
                raise
            self.renderer.events(self._shown(self.aggregator.flush()))
            counters = kernel.counters()
            self.renderer.summary(self.summary, {
                "dropped_io": counters.get(STAT_IO_DROPPED, 0),
                "dropped_paths": counters.get(STAT_RINGBUF_FULL, 0),
                "dropped_notes": counters.get(STAT_NOTES_DROPPED, 0),
                "primed": counters.get(STAT_PRIMED, 0),
                "fd_map_entries": kernel.entries("fds"),
                "fd_map_capacity": maps.FD_ENTRIES,
            }, time.monotonic() - started)
            kernel.close(detach=True)
        return 0

    # ------------------------------------------------------------ the loop

    def _watch_loop(self, kernel: KernelSide) -> None:
        opts = self.options
        root = cgroups.discover_cgroup2_root()
        targets = _Targets(opts, root, kernel, self._err)
        deadline = None if opts.duration is None else time.monotonic() + opts.duration
        next_flush = time.monotonic() + opts.interval
        targets.refresh()
        next_targets = time.monotonic() + TARGETS_REFRESH
        self._say_ready(kernel)
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_targets:
                targets.refresh()
                next_targets = now + TARGETS_REFRESH
            targets.pick_up()
            kernel.ring.wait(POLL_MS)
            self._drain(kernel)
            if time.monotonic() >= next_flush:
                self.renderer.events(self._shown(self.aggregator.flush()))
                next_flush = time.monotonic() + opts.interval
        targets.close()

    def _say_ready(self, kernel: KernelSide) -> None:
        """One line on stderr once the kernel side traces what was asked."""
        io_hooks = [name for name in WATCH_SYSCALLS if name in kernel.attached]
        if "close" in self.options.io_ops:
            io_hooks.append("close")
        self._err.write(f"snoop watch: watching ({len(kernel.attached)} syscalls, "
                        f"{kernel.manifest.get('event_path', 'ring buffer')}); "
                        f"read/write/close hooks: {', '.join(io_hooks) or 'none'}\n")
        self._err.flush()

    def _drain(self, kernel: KernelSide, final: bool = False) -> None:
        deadline = time.monotonic() + (STOP_DRAIN_SECONDS if final else 0)
        while True:
            ring = kernel.ring
            # Paused: perf buffers hold nothing back for a record still being written.
            batch = ring.read(final=True) if final and isinstance(ring, PerfReader) else \
                ring.read()
            shown: list[WatchEvent] = []
            for data in batch:
                event = self._event(records.decode(data))
                if event is not None:
                    shown.extend(self.aggregator.add(event))
            ring.commit()
            self.renderer.events(self._shown(shown))
            if not final or ring.produced == ring.position or time.monotonic() > deadline:
                return

    def _event(self, record: records.Record) -> WatchEvent | None:
        opts = self.options
        if record.kind == KIND_IO:
            op = io_op_of(record.syscall)
            if op is None or op not in opts.ops:
                return None
            path = self.resolver.base(record.base) if record.base else None
            if path is None:
                path = self._not_a_file(record)
            moved = record.ret if op != "close" and record.ret >= 0 else None
            return WatchEvent(time.time(), record.tgid, record.pid,
                              record.comm.split(b"\0", 1)[0], op, path, fd=record.dirfd,
                              ret=record.ret, bytes=moved if op != "close" else None,
                              failed=int(record.ret < 0))
        event = self.translator.translate(record)
        if event is None:
            return None
        op = op_of_kind(event.kind)
        if op not in opts.ops:
            return None
        mode = ("w" if event.kind.name == "WRITE" else "r") if op == "open" else ""
        fd = record.ret if op == "open" and record.ret >= 0 else None
        return WatchEvent(time.time(), record.tgid, record.pid, event.comm, op, event.path,
                          fd=fd, ret=record.ret if record.ret < 0 else 0, mode=mode)

    def _not_a_file(self, record: records.Record) -> bytes | None:
        """What /proc calls an fd that is no file (`pipe:[…]`, `socket:[…]`,
        `anon_inode:[eventfd]`): shown as its path, which no --dir matches. None for a
        file whose path the kernel side could not confirm: never a guess."""
        key = (record.tgid, record.dirfd, record.base)
        if key in self._labels:
            return self._labels[key]
        try:
            target = os.readlink(f"/proc/{record.tgid}/fd/{record.dirfd}").encode(
                errors="surrogateescape")
        except OSError:
            target = b"/"
        label = None if target.startswith(b"/") else target
        if len(self._labels) >= MAX_LABELS:
            self._labels.clear()
        self._labels[key] = label
        return label

    def _shown(self, events: list[WatchEvent]) -> list[WatchEvent]:
        """The directory filter (on resolved, absolute paths), then the summary."""
        kept = []
        for event in events:
            if event.path is not None and not self.options.wants_path(event.path):
                self.summary.filtered += 1
                continue
            # An fd whose path was not found cannot be matched: shown, never hidden.
            self.summary.count(event)
            kept.append(event)
        return kept


class _Targets:
    """The cgroups watched: all, or those of --cgroup / --container, kept current."""

    def __init__(self, opts: WatchOptions, root: str, kernel: KernelSide, err: TextIO) -> None:
        self._kernel = kernel
        self._err = err
        self._root = root
        self._index = cgroups.CgroupIndex(root)
        self._watcher = None
        self._tracker = None if kernel.has_ancestor_helper else DescendantTracker(root)
        if self._tracker is not None:
            kernel.ring.wake_on(self._tracker.fd)
        if opts.target == "all":
            self._listed = {"/": True}
        else:
            mode = TargetMode.CGROUP if opts.target == "cgroup" else TargetMode.CONTAINER
            config = Config(target_mode=mode, target_cgroup=opts.cgroups,
                            target_container_id=opts.containers)
            self._watcher = TargetWatcher(config, root, self._index,
                                          cgroups.read_self_cgroup())
        self._warned: tuple[str, ...] = ()
        self._applied = False

    def refresh(self) -> None:
        needs_walk = self._tracker is not None and self._tracker.needs_walk
        if self._watcher is None:
            if self._applied and not needs_walk:
                return
            self._applied = True
            listed = self._listed
        else:
            changed = self._watcher.poll()
            current = self._watcher.current
            if current.missing != self._warned:
                self._warned = current.missing
                if current.missing:
                    self._err.write("snoop watch: not found (yet): "
                                    + "; ".join(current.reasons.get(t, t) for t in current.missing)
                                    + "\n")
            if not changed and not needs_walk:
                return
            listed = current.listed()
        if self._tracker is not None:
            marks = self._tracker.expand(listed)
        else:
            marks = {}
            for rel, traced in listed.items():
                cid = self._index.id_of(rel)
                if cid is not None:
                    marks[cid] = traced
        self._kernel.set_targets([i for i, t in marks.items() if t],
                                 [i for i, t in marks.items() if not t])

    def pick_up(self) -> None:
        if self._tracker is not None:
            changes = self._tracker.poll()
            if changes:
                self._kernel.update_targets(changes.added, changes.removed)

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()

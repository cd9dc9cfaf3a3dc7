"""The tracer's run loop: adopt or build the kernel side, keep targets current, drain,
resolve, batch, spool, send.

One thread. Each turn: wait briefly for the ring buffer, turn records into events, send
a batch when it is full or old enough, and about once a second refresh the targets,
send stats and re-send batches no reporter has confirmed.

What survives a SIGKILL: the kernel side (pinned: it keeps capturing), every batch
sent but not confirmed (spooled before sending), the records read but not yet spooled
(the ring buffer's consumer position only moves past records whose events are
spooled), and what the resolver learned (tracer/state.py). A restarted tracer adopts
the kernel side and goes on. Flow control: while the re-send buffer is full or the
processor refuses more, the tracer stops draining, so what does not fit is lost in one
place, the ring buffer, and counted by the kernel.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry

from snoop.common import protocol
from snoop.common.config import Config, TargetMode
from snoop.common.protocol import (
    MAX_INTERVALS,
    CaptureCounts,
    Checkpoint,
    Event,
    EventBatch,
    Header,
    MessageType,
    TracerStats,
    Workload,
)
from snoop.common.transport import EVENTS_HWM, Receiver, Security, Sender, new_context
from snoop.tracer import build, cgroups, container_names, records, syscalls
from snoop.tracer.container_names import ContainerNames
from snoop.tracer.containerd import Containerd
from snoop.tracer.descendants import DescendantTracker
from snoop.tracer.events import RecordTranslator
from snoop.tracer.kernel import KernelSide
from snoop.tracer.metrics import TracerMetrics
from snoop.tracer.newcomers import NewcomerGate, running_processes
from snoop.tracer.pending import PendingBatch, PendingBatches
from snoop.tracer.perfbuf import PerfReader
from snoop.tracer.resolve import PathResolver
from snoop.tracer.spool import Spool
from snoop.tracer.state import BasesLog, TracerState
from snoop.tracer.targets import TargetError, TargetWatcher

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 1.0
# Counting a map's entries walks its keys (a syscall each: ~60 ms for a full dedup map).
MAP_SIZE_INTERVAL = 30.0
SIZED_MAPS = ("dedup", "targets", "inflight")
STOP_DRAIN_SECONDS = 1.0
RESEND_BATCHES_PER_TURN = 64
# A batch this recent may still be on its way; only older unconfirmed ones are holes.
HOLE_GRACE = 2.0
MAX_RECORDS_PER_TURN = 65536
_BATCHES = frozenset({MessageType.EVENT_BATCH})


def _lock_run_dir(run_dir: str) -> int:
    """One tracer per run directory: its kernel side, spool and state are that tracer's."""
    fd = os.open(os.path.join(run_dir, "tracer.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(f"another tracer is running with the run directory {run_dir} "
                      "(SNOOP_RUN_DIR): give each tracer its own") from None
    return fd


def container_lookup(config: Config) -> ContainerNames:
    """Who names containers: containerd when its socket is given, else the Docker
    engine (or nobody, with neither)."""
    if config.containerd_socket:
        containerd = Containerd(config.containerd_socket, config.containerd_namespace)
        return ContainerNames(config.containerd_socket, containerd=containerd.inspect)
    return ContainerNames(config.docker_socket)


def new_sender_id() -> str:
    """Unique per tracer incarnation: seq numbers restart with each one."""
    return f"tracer/{socket.gethostname()}/{os.getpid()}/{time.time_ns()}"


@dataclass
class BatchBuilder:
    max_events: int
    max_delay: float
    events: list[Event] = field(default_factory=list)
    workloads: dict[int, Workload] = field(default_factory=dict)
    coverage: dict[int, CaptureCounts] = field(default_factory=dict)
    opened_at: float = 0.0

    def add_all(self, events: list[Event], workloads: dict[int, Workload], now: float) -> None:
        """`workloads`: those of the events' cgroups that the batch does not have yet."""
        if not self.events and not self.coverage:
            self.opened_at = now
        self.events.extend(events)
        self.workloads.update(workloads)

    def add_coverage(self, cgroup_id: int, workload: Workload, counts: CaptureCounts,
                     now: float) -> None:
        if not self.events and not self.coverage:
            self.opened_at = now
        self.coverage[cgroup_id] = self.coverage.get(cgroup_id, CaptureCounts()) + counts
        self.workloads.setdefault(cgroup_id, workload)

    def __bool__(self) -> bool:
        return bool(self.events) or bool(self.coverage)

    def ready(self, now: float) -> bool:
        return bool(self) and (
            len(self.events) >= self.max_events or now - self.opened_at >= self.max_delay
        )

    def take(self) -> tuple[tuple[Event, ...], dict[int, Workload], dict[int, CaptureCounts]]:
        taken = tuple(self.events), self.workloads, self.coverage
        self.events, self.workloads, self.coverage = [], {}, {}
        return taken


class Tracer:
    def __init__(self, config: Config, registry: CollectorRegistry, stop: threading.Event,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        run_dir = os.path.abspath(config.run_dir)
        os.makedirs(run_dir, exist_ok=True)
        self._run_dir = run_dir
        self._lock = _lock_run_dir(run_dir)  # first: a refused tracer changes nothing
        self.metrics = TracerMetrics(registry)
        self.sender_id = new_sender_id()
        self.seq = 0
        self.started_at = clock()
        self.stop_requested = stop
        self.ready = False
        self._made_cgroup = ""
        self._reporter = ""  # identity of the reporter whose checkpoints arrive
        self.cgroup_root = cgroups.discover_cgroup2_root()
        self.index = cgroups.CgroupIndex(self.cgroup_root)
        self.resolver = PathResolver(kernel=None)
        self.translator = RecordTranslator(self.resolver)
        self._io_uring_seen: dict[int, int] = {}
        self.descendants: DescendantTracker | None = None
        self._workloads: dict[int, Workload] = {}
        self.container_names = container_lookup(config)
        self._unnamed: dict[int, float] = {}  # cgroup id -> when to ask its name again
        self.watcher = TargetWatcher(config, self.cgroup_root, self.index,
                                     self._own_cgroup(config))
        self.batch = BatchBuilder(config.batch_max_events, config.batch_max_delay)
        self.pending = PendingBatches(config.pending_max)
        # A reporter confirms once its journal is synced (about every 100 ms).
        self.resend_after = config.resend_after
        self.context = new_context()
        security = Security(config.curve_secret_key, config.curve_server_key,
                            config.curve_allowed_keys, config.insecure_tcp)
        self.sender = Sender(self.context, config.endpoint("events"), security=security,
                             hwm=EVENTS_HWM)
        self.checkpoints = Receiver(self.context, config.endpoint("checkpoint"),
                                    {MessageType.CHECKPOINT}, bind=False, subscribe=True,
                                    security=security)
        self.kernel: KernelSide | None = None
        # Records per syscall index (cheaper per event than names; see syscall_counts).
        self._counts_by_index = defaultdict(int)
        self._exported_counts: dict[str, int] = {}
        self._state_path = os.path.join(run_dir, "tracer-state.json")
        self.state = TracerState.load(self._state_path)
        self.spool = Spool(os.path.join(run_dir, "tracer-spool"))
        self.bases_log = BasesLog(os.path.join(run_dir, "tracer-bases.log"))
        self._kernel_baseline: dict[int, int] = {}
        self._blocked = False  # the last send was refused: hold until one goes through
        self.unobserved: list[tuple[float, float]] = []  # when no tracer was attached

    # ------------------------------------------------------------ setup

    def start(self) -> None:
        started = time.monotonic()
        plan = build.plan(build.KernelSettings(
            ringbuf_bytes=self.config.ringbuf_bytes,
            dedup_entries=self.config.dedup_entries,
            dedup_ttl=self.config.dedup_ttl,
        ))
        self.kernel = KernelSide.open(plan, self._run_dir)
        self.kernel.exclude_process(os.getpid())
        self.resolver = PathResolver(kernel=self.kernel, journal=self.bases_log,
                                     max_bases=4 * self.config.dedup_entries + 65536)
        self.translator = RecordTranslator(self.resolver)
        self._take_over(plan.digest)
        self.kernel.resume()  # a clean stop paused it; a crash did not
        self.gate = NewcomerGate(running_processes())
        if not self.kernel.has_ancestor_helper:
            self.descendants = DescendantTracker(self.cgroup_root)
            self.kernel.ring.wake_on(self.descendants.fd)
        for name in self.kernel.attached:
            self.metrics.attached.labels(name).set(1)
        self._refresh_targets()
        self._export_map_sizes()  # there from the first scrape, then every 30 s
        self.metrics.startup_seconds.set(time.monotonic() - started)
        if not any(flag.startswith("-DHAVE_io_uring") for flag in plan.features):
            log.warning("no io_uring submit tracepoint with an opcode here (before 5.5, or "
                        "no io_uring): io_uring requests that name paths, if any, are "
                        "neither seen nor counted")
        for hook in self.kernel.skipped:
            # Today only io_uring's submit hook is optional: without it, io_uring
            # requests that name paths are neither seen nor counted.
            log.warning("optional hook not loaded: its events go unseen and uncounted",
                        extra={"hook": hook})
        self.ready = True
        log.info("tracer attached", extra={
            "sender": self.sender_id, "syscalls": len(self.kernel.attached),
            "event_path": self.kernel.manifest.get("event_path", "ring buffer"),
            "missing": ",".join(self.kernel.missing),
            "compile_seconds": round(self.kernel.compile_seconds, 2),
            "adopted": self.kernel.adopted, "pinned": self.kernel.pin_dir or "",
            "resent": len(self.pending), "mode": self.config.target_mode.value,
        })

    def _take_over(self, digest: str) -> None:
        """Pick up what an earlier incarnation left: its unconfirmed batches always; its
        bases and counters only if this is the kernel side it drained."""
        for batch, encoded in self.spool.load():
            self.pending.add(PendingBatch(
                batch.header.seq, batch.header.sender, len(batch.events), encoded,
                created_at=batch.sent_at, last_sent=0.0, times_sent=1))
        if not self.kernel.adopted and self.state.observed_until > 0:
            # The kernel side did not live on: nothing was seen from when the last
            # tracer stopped observing until now.
            self.unobserved.append((self.state.observed_until, self.clock()))
            log.warning("capture was interrupted: nothing seen in between", extra={
                "from": self.state.observed_until, "to": self.clock()})
        if self.kernel.adopted and self.state.digest == digest:
            for serial, path in self.bases_log.replay():
                self.resolver.learn(serial, path, replayed=True)
            self._kernel_baseline = {int(k): v for k, v in self.state.kernel_reported.items()}
        else:
            self.bases_log.discard()
        self.state = TracerState(observed_until=self.clock(), digest=digest)
        self.state.save(self._state_path)

    def _own_cgroup(self, config: Config) -> str:
        """Snoop's cgroup, to exclude; a cgroup of its own if it shares the root one."""
        own = cgroups.read_self_cgroup()
        if own == "/" and config.target_mode is TargetMode.ALL_BUT_SELF:
            own = cgroups.isolate_self(self.cgroup_root, f"snoop-tracer-{os.getpid()}")
            self._made_cgroup = own
            log.info("moved the tracer into a cgroup of its own", extra={"cgroup": own})
        return own

    def _leave_own_cgroup(self) -> None:
        """Back to the root cgroup, and remove the one made at start (if any)."""
        if not self._made_cgroup:
            return
        try:
            cgroups.move_process(self.cgroup_root, os.getpid())
            cgroups.remove_cgroup(cgroups.abspath(self.cgroup_root, self._made_cgroup))
        except cgroups.CgroupError as exc:
            log.warning("cannot remove the tracer's cgroup", extra={"error": str(exc)})

    @property
    def is_ready(self) -> bool:
        """Attached, and tracing at least one cgroup (a target that is not found yet,
        such as a pod Snoop cannot see from its cgroup namespace, is not ready)."""
        return self.ready and bool(self.watcher.current.include)

    def _refresh_targets(self) -> None:
        try:
            changed = self.watcher.poll()
        except (TargetError, cgroups.CgroupError) as exc:
            log.error("cannot resolve targets", extra={"error": str(exc)})
            return
        current = self.watcher.current
        if self.descendants is not None:
            if changed or self.descendants.needs_walk:
                listed = self.descendants.expand(current.listed())
                self.kernel.set_targets([i for i, traced in listed.items() if traced],
                                        [i for i, traced in listed.items() if not traced])
        elif changed:
            self.kernel.set_targets(current.include, current.exclude)
        if changed:
            self.metrics.targets.labels(self.config.target_mode.value).set(len(current.include))

    def _list_new_cgroups(self) -> None:
        """Kernels without the ancestor helper: put new cgroups below the targets into
        the kernel's target set, and say when a process ran in one before."""
        changes = self.descendants.poll()
        if not changes:
            return
        self.kernel.update_targets(changes.added, changes.removed)
        for cgroup_id, traced in changes.added.items():
            if not traced:
                continue
            late = self.kernel.ran_untraced(cgroup_id)
            self.metrics.cgroups_listed.labels("yes" if late else "no").inc()
            if late:
                log.warning("a process ran in a new cgroup before the tracer listed it: "
                            "its first syscalls there were not seen",
                            extra={"cgroup_id": cgroup_id,
                                   "cgroup": self.index.lookup(cgroup_id) or ""})

    # ------------------------------------------------------------ records

    def _workload_of(self, cgroup_id: int) -> Workload:
        workload = self._workloads.get(cgroup_id)
        if workload is not None and self._unnamed and cgroup_id in self._unnamed and \
                time.monotonic() >= self._unnamed[cgroup_id]:
            del self._unnamed[cgroup_id]
            workload = None
        if workload is None:
            rel_path = self.index.lookup(cgroup_id)
            if rel_path is None:
                # Not cached: the cgroup may be found on a later lookup.
                return cgroups.on_node(Workload(key=f"cgroup-{cgroup_id}"),
                                       self.config.node_name)
            workload = cgroups.on_node(
                cgroups.workload_for(rel_path, self.config.target_mode,
                                     self.config.target_cgroup, root=self.cgroup_root),
                self.config.node_name)
            if workload.container_id:
                info = self.container_names.info_of(workload.container_id)
                if info is None:  # the engine did not answer: ask again after its backoff
                    self._unnamed[cgroup_id] = time.monotonic() + container_names.BACKOFF
                else:
                    name, meta = info
                    workload = replace(workload, name=name or workload.name, meta=meta)
            if len(self._workloads) > 65536:
                self._workloads.clear()
                self._unnamed.clear()
            self._workloads[cgroup_id] = workload
        return workload

    @property
    def holding(self) -> bool:
        """Nothing more can be handed on: leave the records in the ring buffer."""
        return self._blocked or self.pending.full

    def _drain(self, timeout_ms: int) -> None:
        """Take what the ring buffer holds, then translate it in kernel order."""
        ring = self.kernel.ring
        if self.holding:
            self.stop_requested.wait(timeout_ms / 1000)
            return
        ring.wait(timeout_ms)
        now = self.clock()
        counts = self._counts_by_index
        translate, passes, decode = self.translator.translate, self.gate.passes, records.decode
        straight = self.gate.passes_straight
        events: list[Event] = []
        append = events.append
        for data in ring.read(MAX_RECORDS_PER_TURN):
            try:
                record = decode(data)
            except records.RecordError as exc:
                log.warning("bad ring buffer record", extra={"error": str(exc)})
                continue
            counts[record.syscall] += 1
            event = translate(record)
            if event is not None and straight(record):
                append(event)
            else:
                events.extend(passes(record, event, now))
        events.extend(self.gate.expired(now))
        self._add(events, now)

    def _export_map_sizes(self) -> None:
        if self.kernel is None:
            return
        for name in SIZED_MAPS:
            self.metrics.map_size.labels(name).set(self.kernel.entries(name))

    def _compact_bases_log(self) -> None:
        """Bases are learned again as the dedup's TTL sends paths again: rewrite the log
        from what the resolver holds once it is mostly stale, so it stays bounded."""
        if self.bases_log.entries > 2 * len(self.resolver) + 10_000:
            self.bases_log.rewrite(self.resolver.bases())

    def _commit(self) -> None:
        """Everything read is spooled: the ring buffer may reuse its space."""
        ring = self.kernel.ring
        if ring.position != ring.committed:
            self.bases_log.flush()
            ring.commit()

    def _add_coverage(self, now: float) -> None:
        """What was seen but is no file, per workload, into the open batch."""
        for cgroup_id, uncounted in self.translator.take_uncounted().items():
            self.batch.add_coverage(cgroup_id, self._workload_of(cgroup_id), CaptureCounts(
                paths_too_long=uncounted.paths_too_long,
                uncertain_paths=uncounted.uncertain_paths), now)
        if self.kernel is None:
            return
        for cgroup_id, total in self.kernel.io_uring_path_ops().items():
            delta = total - self._io_uring_seen.get(cgroup_id, 0)
            if delta > 0:
                self._io_uring_seen[cgroup_id] = total
                self.batch.add_coverage(cgroup_id, self._workload_of(cgroup_id),
                                        CaptureCounts(io_uring_ops=delta), now)

    def _add(self, events: list[Event], now: float) -> None:
        batch = self.batch
        while events:
            room = batch.max_events - len(batch.events)
            taken, events = events[:room], events[room:]
            batch.add_all(taken, {c: self._workload_of(c) for c in {e.cgroup_id for e in taken}
                                  if c not in batch.workloads}, now)
            if len(batch.events) >= batch.max_events:
                self._flush()

    # ------------------------------------------------------------ sending

    def _next_header(self) -> Header:
        self.seq += 1
        return Header(sender=self.sender_id, seq=self.seq)

    def _flush(self) -> None:
        if not self.batch:
            return
        events, workloads, coverage = self.batch.take()
        now = self.clock()
        header = self._next_header()
        encoded = protocol.encode(EventBatch(header, events, workloads, sent_at=now,
                                             coverage=coverage))
        pending = PendingBatch(header.seq, self.sender_id, len(events), encoded,
                               created_at=now, last_sent=0.0)
        self.spool.put(self.sender_id, header.seq, encoded)
        self.pending.add(pending)
        if not self._blocked and self.sender.send_encoded(encoded):
            pending.last_sent = now
            pending.times_sent = 1
            self.metrics.batches_sent.inc()
        else:
            self._blocked = True
            self.metrics.send_blocked.inc()

    def _resend_due(self) -> None:
        now = self.clock()
        for count, batch in enumerate(self.pending.due(now, self.resend_after)):
            if count >= RESEND_BATCHES_PER_TURN:
                break
            if batch.times_sent:
                # Marked as a re-send, which the processor does not count again.
                first = protocol.decode(batch.encoded, _BATCHES, now=self.clock())
                data = protocol.encode(replace(first, resend=True))
            else:
                data = batch.encoded
            if not self.sender.send_encoded(data):
                self._blocked = True
                self.metrics.send_blocked.inc()
                return
            if batch.times_sent:
                self.metrics.batches_resent.inc()
            batch.times_sent += 1
            batch.last_sent = now
        self._blocked = False

    def _send_stats(self) -> None:
        counters = self.kernel.counters() if self.kernel else {}

        def mine(slot: int) -> int:
            """An adopted kernel side counted for earlier incarnations too."""
            return max(0, counters.get(slot, 0) - self._kernel_baseline.get(slot, 0))

        stats = TracerStats(
            header=self._next_header(),
            started_at=self.started_at,
            kernel_dropped=mine(records.STAT_RINGBUF_FULL),
            read_failures=mine(records.STAT_READ_FAILED),
            unresolved=self.translator.unresolved,
            events_by_syscall=self.syscall_counts(),
            attached=self.kernel.attached if self.kernel else (),
            unobserved=tuple(self.unobserved[-MAX_INTERVALS:]),
        )
        if not self.sender.send(stats) and self.seq == stats.header.seq:
            self.seq -= 1  # not sent: the next message takes the seq, so no gap shows
        # After the send: a kill in between makes the next incarnation count those again
        # (too much, never too little).
        self.state.kernel_reported = {str(k): v for k, v in counters.items()}
        self.state.observed_until = self.clock()
        self.state.save(self._state_path)
        for name, total in stats.events_by_syscall.items():
            delta = total - self._exported_counts.get(name, 0)
            if delta:
                self.metrics.events.labels(name).inc(delta)
                self._exported_counts[name] = total
        self.metrics.dropped.set_total(stats.kernel_dropped, "kernel")
        self.metrics.dropped.set_total(stats.read_failures, "read_failure")
        self.metrics.dropped.set_total(stats.pending_dropped, "pending")
        self.metrics.notes_dropped.set_total(counters.get(records.STAT_NOTES_DROPPED, 0))
        self.metrics.dedup_hits.set_total(counters.get(records.STAT_DEDUP_HITS, 0))
        self.metrics.pending_events.set(self.pending.events)

    def syscall_counts(self) -> dict[str, int]:
        return {syscalls.name_of(i): n for i, n in self._counts_by_index.items()}

    def _take_checkpoints(self) -> None:
        for message in self.checkpoints.recv_all(limit=100):
            if isinstance(message, Checkpoint):
                self.metrics.checkpoints.inc()
                if message.header.sender != self._reporter and self._reporter:
                    # A new reporter: what the old one had not persisted died with it.
                    for batch in self.pending.holes(self.sender_id, self.seq + 1,
                                                    self.clock() - 0.5):
                        batch.last_sent = 0.0
                self._reporter = message.header.sender
                for sender in self.pending.senders():
                    ranges = message.persisted.get(sender)
                    if not ranges:
                        continue
                    for batch in self.pending.confirm(sender, ranges):
                        self.spool.remove(sender, batch.seq)
                    # Reporters persist in arrival order: a batch still unconfirmed while
                    # a later one is confirmed was lost downstream. Re-send it now rather
                    # than after the timeout.
                    newest = max(last for _, last in ranges)
                    for batch in self.pending.holes(sender, newest,
                                                    self.clock() - HOLE_GRACE):
                        batch.last_sent = 0.0

    # ------------------------------------------------------------ loop

    def run(self) -> int:
        self.start()
        next_housekeeping = 0.0
        next_map_sizes = 0.0
        poll_ms = max(1, int(self.config.batch_max_delay * 1000 / 2))
        unresolved_seen = 0
        while not self.stop_requested.is_set():
            self._drain(poll_ms)
            if self.descendants is not None:
                self._list_new_cgroups()
            now = self.clock()
            if self.batch.ready(now):
                self._flush()
            if not self.batch:
                self._commit()
            if self._blocked:
                self._resend_due()
            if now >= next_housekeeping:
                next_housekeeping = now + HOUSEKEEPING_INTERVAL
                self._add_coverage(now)
                if isinstance(self.kernel.ring, PerfReader):
                    self.metrics.perf_lost.set(self.kernel.ring.lost)
                self._compact_bases_log()
                self._refresh_targets()
                self._take_checkpoints()
                self._resend_due()
                self._send_stats()
                if now >= next_map_sizes:
                    next_map_sizes = now + MAP_SIZE_INTERVAL
                    self._export_map_sizes()
                self.metrics.unresolved.inc(self.translator.unresolved - unresolved_seen)
                unresolved_seen = self.translator.unresolved
        return self.shutdown()

    def shutdown(self) -> int:
        """Pause, drain what the ring buffer still holds, spool and send it, detach."""
        self.ready = False
        if self.kernel is not None:
            self.kernel.pause()
            self._blocked = False
            self.pending.max_events = max(self.pending.max_events, self.pending.events + 1)
            deadline = time.monotonic() + STOP_DRAIN_SECONDS
            while self.kernel.ring.produced != self.kernel.ring.position and \
                    time.monotonic() < deadline:
                self._drain(0)
            self._add(self.gate.release_all(), self.clock())
            self._add_coverage(self.clock())
            self._flush()
            self._commit()
            self._resend_due()
            self._send_stats()
            # Paused, so leaving is safe; the detach goes on in a child, which must not
            # hold the cgroup the tracer made.
            self._leave_own_cgroup()
            made = os.environ.get(cgroups.MADE_CGROUP_ENV)
            leaving = made and cgroups.read_self_cgroup() == made
            self.kernel.close(detach=True, move_to=self.cgroup_root if leaving else None)
            self.bases_log.discard()
        else:
            self._leave_own_cgroup()
        self.bases_log.close()
        if self.descendants is not None:
            self.descendants.close()
        self.checkpoints.close(linger=0)
        self.sender.close()
        self.context.term()
        log.info("tracer stopped", extra={"pending_batches": len(self.pending),
                                          "sent": self.sender.sent})
        return 0

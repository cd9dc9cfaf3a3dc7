"""The reporter's in-memory reports: FileUpdates folded in, counters kept, changes tracked.

Layout: in sidecar mode every workload folds into one report (key ""); in node mode
each workload key has its own report. Per-report counters: files, total_events,
unresolved_paths, unique_file_cap_hits, and the tracer's capture counts
(paths_too_long, uncertain_paths, io_uring_ops). Reporter-wide counters, written into
every report because nobody can tell whose events were lost: kernel_dropped,
read_failures and pending_dropped (cumulative per tracer sender, so the max per sender,
summed over senders), message_gaps and invalid_messages (between processes).

One sender must not poison every report: a tracer's counter that grows faster than
MAX_COUNTS_PER_SECOND since that sender was last heard from (or since it started) is
impossible, so that stats message is ignored, counted (`TracerCounters.ignored`) and
logged once per sender. Every total saturates at COUNT_MAX (int64).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snoop.common.config import Config
from snoop.common.protocol import (
    COUNT_MAX,
    FileUpdates,
    TracerStats,
    Workload,
    WorkloadMeta,
)
from snoop.common.report import Report, add_counts, merge_intervals, path_to_json

log = logging.getLogger("snoop.reporter")

TRACER_FIELDS = ("kernel_dropped", "read_failures", "pending_dropped")
MAX_TRACERS = 4096
MAX_COMM_SETS = 4096
FORGET_TRACER_AFTER = 24 * 3600.0
# No tracer counts a billion events a second: a syscall takes ~100 ns of a core, so that
# is a hundred cores doing nothing else. RATE_SLACK covers messages delayed on the way
# and clocks that differ between hosts.
MAX_COUNTS_PER_SECOND = 10**9
RATE_SLACK = 60.0


@dataclass(frozen=True)
class Identity:
    """What the deployment says about the workload; copied into every report."""

    image_ref: str = ""
    image_digest: str = ""
    pod_name: str = ""
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    workload_name: str = ""

    @classmethod
    def from_config(cls, config: Config) -> Identity:
        return cls(config.image_ref, config.image_digest, config.pod_name, config.namespace,
                   dict(config.labels), config.workload_name)

    def sidecar_name(self) -> str:
        """The sidecar report's name as configured: SNOOP_WORKLOAD_NAME, else the pod."""
        if self.workload_name:
            return self.workload_name
        if self.pod_name:
            return f"{self.namespace}/{self.pod_name}" if self.namespace else self.pod_name
        return ""


class TracerCounters:
    """Cumulative tracer counters: the max seen per sender, summed over senders.

    Senders silent for `forget_after` seconds (or beyond `max_senders`) are folded into
    `retired`, so totals never go backwards. A stats message whose counters jumped
    further than a tracer can count is ignored (`ignored`).
    """

    def __init__(self, *, max_senders: int = MAX_TRACERS,
                 forget_after: float = FORGET_TRACER_AFTER) -> None:
        self.max_senders = max_senders
        self.forget_after = forget_after
        self.maxima: dict[str, list[int]] = {}
        self.last_seen: dict[str, float] = {}
        self.retired = [0, 0, 0]
        self.ignored = 0
        self._warned: set[str] = set()

    def update(self, stats: TracerStats, now: float) -> bool:
        """Fold one stats message in; True when a total changed."""
        sender = stats.header.sender
        values = [stats.kernel_dropped, stats.read_failures, stats.pending_dropped]
        current = self.maxima.get(sender)
        # Known senders may have grown since they were last heard from, new ones since start.
        since = self.last_seen.get(sender, 0.0) if current is not None else stats.started_at
        allowance = MAX_COUNTS_PER_SECOND * (max(0.0, now - since) + RATE_SLACK)
        base = current or [0, 0, 0]
        jumps = [v - b for v, b in zip(values, base, strict=True)]
        if max(jumps) > allowance:
            self._ignore(sender, stats, jumps, now - since)
            return False
        self.last_seen[sender] = now
        if current is None:
            self.maxima[sender] = values
            self._bound(now)
            return any(values)
        merged = [max(a, b) for a, b in zip(current, values, strict=True)]
        self.maxima[sender] = merged
        return merged != current

    def _ignore(self, sender: str, stats: TracerStats, jumps: list[int],
                seconds: float) -> None:
        self.ignored += 1
        if sender in self._warned or len(self._warned) >= self.max_senders:
            return
        self._warned.add(sender)
        field_name, jump = max(zip(TRACER_FIELDS, jumps, strict=True), key=lambda fj: fj[1])
        log.warning("ignored tracer stats: a counter grew faster than any tracer can count "
                    "(logged once per sender)", extra={
                        "sender": sender, "seq": stats.header.seq, "counter": field_name,
                        "jump": jump, "seconds": round(seconds, 3),
                        "max_per_second": MAX_COUNTS_PER_SECOND})

    def _bound(self, now: float) -> None:
        stale = [s for s, t in self.last_seen.items() if now - t > self.forget_after]
        if len(self.maxima) - len(stale) > self.max_senders:
            by_age = sorted(self.last_seen, key=self.last_seen.__getitem__)
            stale = by_age[: len(self.maxima) - self.max_senders]
        for sender in stale:
            values = self.maxima.pop(sender, [0, 0, 0])
            self.retired = [add_counts(a, b) for a, b in zip(self.retired, values, strict=True)]
            self.last_seen.pop(sender, None)
            self._warned.discard(sender)

    def totals(self) -> dict[str, int]:
        sums = list(self.retired)
        for values in self.maxima.values():
            sums = [add_counts(a, b) for a, b in zip(sums, values, strict=True)]
        return dict(zip(TRACER_FIELDS, sums, strict=True))

    def raise_floor(self, floor: Mapping[str, int]) -> None:
        """Totals are at least `floor` (what reports on disk already say)."""
        totals = self.totals()
        self.retired = [add_counts(r, max(0, floor.get(name, 0) - totals[name]))
                        for r, name in zip(self.retired, TRACER_FIELDS, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return {
            "senders": {s: {"counters": dict(zip(TRACER_FIELDS, v, strict=True)),
                            "last_seen": self.last_seen.get(s, 0.0)}
                        for s, v in self.maxima.items()},
            "retired": dict(zip(TRACER_FIELDS, self.retired, strict=True)),
        }

    def load_json(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("senders", {}), dict):
            raise ValueError("tracers: expected an object with 'senders'")
        maxima, last_seen = {}, {}
        for sender, entry in data.get("senders", {}).items():
            counters = entry["counters"]
            maxima[str(sender)] = [_count(counters.get(name, 0), name) for name in TRACER_FIELDS]
            last_seen[str(sender)] = float(entry.get("last_seen", 0.0))
        retired = data.get("retired", {})
        self.maxima, self.last_seen = maxima, last_seen
        self.retired = [_count(retired.get(name, 0), name) for name in TRACER_FIELDS]


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a count, got {value!r}")
    return min(value, COUNT_MAX)


class ReportStore:
    def __init__(self, identity: Identity, *, sidecar: bool, max_unique_files: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.sidecar = sidecar
        self.max_unique_files = max_unique_files
        self._clock = clock
        self.reports: dict[str, Report] = {}
        self.dirty: set[str] = set()
        # Paths new or changed per report since the last delta was spooled; kept only
        # when something pushes deltas (reporter/deltas.py).
        self.track_changes = False
        self.changed: dict[str, set[bytes]] = {}
        self.tracers = TracerCounters()
        self.message_gaps = 0
        # Reporter-wide, like the tracer counters: when no tracer was attached.
        self.unobserved: tuple[tuple[float, float], ...] = ()
        self.invalid_messages = 0
        self._comm_names: dict[tuple[bytes, ...], tuple[str, ...]] = {}

    def key_for(self, workload_key: str) -> str:
        return "" if self.sidecar else workload_key

    def _report(self, key: str, workload: Workload | None, now: float) -> Report:
        report = self.reports.get(key)
        if report is None:
            report = self.reports[key] = Report(started_at=now, last_updated_at=now)
            self.dirty.add(key)
        if workload is not None:
            # Sidecar mode: the first workload names the report; others fill gaps only.
            for name in ("container_id", "cgroup_path"):
                if not getattr(report, name) and getattr(workload, name):
                    setattr(report, name, getattr(workload, name))
                    self.dirty.add(key)
            if not report.workload_key:
                report.workload_key = workload.key
                self.dirty.add(key)
            name = (self.identity.sidecar_name() if self.sidecar else "") or workload.name
            # A readable name replaces a bare key (one learnt later, or a report from
            # before names); it never replaces another name.
            if name and report.workload in ("", report.workload_key) and name != report.workload:
                report.workload = name
                self.dirty.add(key)
            elif not report.workload:
                report.workload = workload.key
                self.dirty.add(key)
            if workload.meta is not None and self._take_meta(report, workload.meta):
                self.dirty.add(key)
        return report

    def _take_meta(self, report: Report, meta: WorkloadMeta) -> bool:
        """The runtime's word on what the workload runs; True when the report changed.
        A node-mode report is one container's: it takes what the runtime says. A
        sidecar's report folds several: the first to say something fills it in."""
        changed = False
        for name in ("image_ref", "image_digest", "pod_name", "namespace", "container_name"):
            value = getattr(meta, name)
            if value and getattr(report, name) != value and (
                    not self.sidecar or not getattr(report, name)):
                setattr(report, name, value)
                changed = True
        if meta.labels:
            labels = {**dict(meta.labels), **report.labels} if self.sidecar \
                else {**report.labels, **dict(meta.labels)}
            if labels != report.labels:
                report.labels = labels
                changed = True
        return changed

    def adopt(self, key: str, report: Report) -> None:
        """A report loaded from disk; two files for one key are merged."""
        if key in self.reports:
            self.reports[key].merge(report)
            self.dirty.add(key)
            if self.track_changes:
                self.changed.setdefault(key, set()).update(report.files)
        else:
            self.reports[key] = report

    def apply(self, updates: FileUpdates) -> None:
        now = self._clock()
        for update in updates.updates:
            key = self.key_for(update.workload.key)
            report = self._report(key, update.workload, now)
            changed = False
            files = report.files
            track = self.changed.setdefault(key, set()) if self.track_changes else None
            for seen in update.files:
                if seen.path in files or len(files) < self.max_unique_files:
                    if report.add_file(seen.path, seen.kinds, seen.first_seen,
                                       seen.last_seen, seen.outcomes,
                                       self._names_of(seen.comms)):
                        changed = True
                        if track is not None:
                            track.add(seen.path)
                else:
                    report.coverage.unique_file_cap_hits += 1
                    changed = True
            if update.total_events or update.unresolved or update.capture.any():
                report.total_events = add_counts(report.total_events, update.total_events)
                report.coverage.unresolved_paths = add_counts(report.coverage.unresolved_paths,
                                                              update.unresolved)
                report.coverage.add_capture(update.capture)
                changed = True
            if changed:
                report.last_updated_at = now
                self.dirty.add(key)
        if self.sidecar and (updates.tracer_stats or updates.gaps or updates.invalid_messages):
            self._report("", None, now)
        global_change = False
        for stats in updates.tracer_stats:
            global_change |= self.tracers.update(stats, now)
            if stats.unobserved:
                merged = merge_intervals(self.unobserved, stats.unobserved)
                global_change |= merged != self.unobserved
                self.unobserved = merged
        if updates.gaps or updates.invalid_messages:
            self.message_gaps = add_counts(self.message_gaps, updates.gaps)
            self.invalid_messages = add_counts(self.invalid_messages, updates.invalid_messages)
            global_change = True
        if global_change:
            self._all_changed(now)

    def count_lost(self, gaps: int = 0, invalid: int = 0) -> None:
        """Messages the reporter itself saw missing or malformed."""
        if gaps or invalid:
            self.message_gaps = add_counts(self.message_gaps, gaps)
            self.invalid_messages = add_counts(self.invalid_messages, invalid)
            self._all_changed(self._clock())

    def _all_changed(self, now: float) -> None:
        for key, report in self.reports.items():
            report.last_updated_at = now
            self.dirty.add(key)

    def _names_of(self, comms: tuple[bytes, ...]) -> tuple[str, ...]:
        """Process names as text, one shared tuple per distinct set: 100K files of a
        workload mostly share a few."""
        names = self._comm_names.get(comms)
        if names is None:
            if len(self._comm_names) >= MAX_COMM_SETS:
                self._comm_names.clear()
            names = self._comm_names[comms] = tuple(path_to_json(c) for c in comms)
        return names

    def push_name(self, key: str) -> str:
        """What the pusher knows a report by: its key, stable while its readable name may
        change (and two replicas may share one)."""
        report = self.reports[key]
        return key or report.workload_key or report.workload

    def render(self, key: str) -> str:
        """The report's JSON, with identity and reporter-wide counters filled in."""
        report = self.reports[key]
        ident = self.identity
        for name in ("image_ref", "image_digest", "pod_name", "namespace"):
            if getattr(ident, name):
                setattr(report, name, getattr(ident, name))
        report.labels = {**report.labels, **ident.labels}
        coverage = report.coverage
        for name, value in self.tracers.totals().items():
            setattr(coverage, name, value)
        coverage.message_gaps = self.message_gaps
        coverage.invalid_messages = self.invalid_messages
        # The intervals that concern this workload: those that end after it was first seen.
        coverage.unobserved = merge_intervals(
            coverage.unobserved,
            [i for i in self.unobserved if not report.started_at or i[1] >= report.started_at])
        return report.dumps()

    # ------------------------------------------------------------ state file

    def state_json(self) -> dict[str, Any]:
        return {"tracers": self.tracers.to_json(), "message_gaps": self.message_gaps,
                "invalid_messages": self.invalid_messages,
                "unobserved": [list(i) for i in self.unobserved]}

    def load_state(self, data: Mapping[str, Any]) -> None:
        self.tracers.load_json(data.get("tracers", {}))
        self.message_gaps = _count(data.get("message_gaps", 0), "message_gaps")
        self.invalid_messages = _count(data.get("invalid_messages", 0), "invalid_messages")
        raw = data.get("unobserved", [])
        self.unobserved = merge_intervals(
            (float(e[0]), float(e[1])) for e in (raw if isinstance(raw, list) else [])
            if isinstance(e, list) and len(e) == 2
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in e)
            and e[0] <= e[1])

    def settle_counters(self) -> None:
        """After loading: reporter-wide counters are never below what a report says."""
        floor = {name: 0 for name in TRACER_FIELDS}
        for report in self.reports.values():
            for name in TRACER_FIELDS:
                floor[name] = max(floor[name], getattr(report.coverage, name))
            self.message_gaps = max(self.message_gaps, report.coverage.message_gaps)
            self.invalid_messages = max(self.invalid_messages, report.coverage.invalid_messages)
            self.unobserved = merge_intervals(self.unobserved, report.coverage.unobserved)
        self.tracers.raise_floor(floor)

    def unique_files(self) -> dict[str, int]:
        """Files per report, by the key the processor's same metric uses (two replicas
        may share a readable name)."""
        return {key or report.workload_key or report.workload: len(report.files)
                for key, report in list(self.reports.items())}

"""The processor's logic, without sockets: tracer messages in, FileUpdates out.

`Pipeline.handle()` takes one validated message; `Pipeline.flush(send)` hands every
pending FileUpdates to `send` (a `Sender.send`: False means "not sent, keep it") until
one is refused. `Pipeline.has_room()` is the flow-control gate: while it is False the
caller takes in no tracer message (processor/flow.py), so nothing pending is ever
dropped. Counters are plain integers; `snoop.processor.metrics` exposes them. A lock
guards the state so the metrics thread reads a consistent view.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from snoop.common.config import Config
from snoop.common.outcomes import OUTCOMES_MAX
from snoop.common.protocol import EventBatch, FileUpdates, Header, Message, TracerStats
from snoop.processor.dedup import KINDS_MASK, OUTCOMES_AT, Dedup, facts
from snoop.processor.exclude import Exclusions
from snoop.processor.normalize import normalize
from snoop.processor.outbox import Outbox
from snoop.processor.tracers import GapCounter, TracerTable

log = logging.getLogger("snoop.processor")


@dataclass
class PipelineCounts:
    batches: int = 0
    resent_batches: int = 0
    stats: int = 0
    events: int = 0
    excluded: int = 0
    unresolved: int = 0
    invalid: int = 0
    updates_sent: int = 0
    sends_blocked: int = 0
    intake_pauses: int = 0  # times the outbox filled up and intake stopped


class Pipeline:
    def __init__(self, config: Config, sender_id: str, *, outbox: Outbox | None = None) -> None:
        self.sender_id = sender_id
        self.exclusions = Exclusions(config.exclude_paths)
        # last_seen moves at most once per report interval: finer is never written anyway.
        self.dedup = Dedup(config.max_unique_files, config.report_interval)
        self.outbox = outbox or Outbox()
        self.gaps = GapCounter()
        self.tracers = TracerTable()
        self.counts = PipelineCounts()
        self.lock = threading.Lock()
        self._seq = 0
        self._logged_caps: set[str] = set()
        self.paused = False  # the last has_room() said no

    # ------------------------------------------------------------ input

    def has_room(self) -> bool:
        """Whether the outbox may take another tracer message (it holds less than it
        should); False until sends to the reporter make room."""
        with self.lock:
            full = self.outbox.full()
            if full and not self.paused:
                self.counts.intake_pauses += 1
            self.paused = full
            return not full

    def handle(self, message: Message) -> None:
        with self.lock:
            if isinstance(message, EventBatch):
                self._batch(message)
            elif isinstance(message, TracerStats):
                self._stats(message)
            else:  # the receiver only accepts the two types above
                raise TypeError(f"unexpected message {type(message).__name__}")

    def note_invalid(self, total_invalid: int) -> None:
        """The receiver's running count of dropped invalid messages."""
        with self.lock:
            delta = total_invalid - self.counts.invalid
            if delta > 0:
                self.counts.invalid = total_invalid
                self.outbox.add_invalid(delta)

    def _batch(self, batch: EventBatch) -> None:
        counts = self.counts
        counts.batches += 1
        sender, seq = batch.header.sender, batch.header.seq
        if batch.resend:
            counts.resent_batches += 1
        else:
            self.outbox.add_gaps(self.gaps.observe(sender, seq))
        self.outbox.reserve(len(batch.events), len(batch.workloads))
        when = batch.sent_at
        per_workload: dict[int, list[int]] = {}  # cgroup id -> [events, unresolved]
        excludes = self.exclusions.excludes
        observe = self.dedup.observe
        comm_index = self.dedup.comm_index
        add_file = self.outbox.add_file
        force = batch.resend
        workloads = batch.workloads
        # (cgroup id, kind, errno, comm) -> fact mask: a batch repeats few of them.
        fact_masks: dict[tuple, int] = {}
        for event in batch.events:
            cgroup_id, _, _, kind, raw_path, resolved, errno, comm = event
            tally = per_workload.get(cgroup_id)
            if tally is None:
                tally = per_workload[cgroup_id] = [0, 0]
            tally[0] += 1
            if not resolved:
                tally[1] += 1
                continue  # a relative name is not a file anyone can keep
            path = normalize(raw_path)
            if excludes(path):
                counts.excluded += 1
                continue
            workload = workloads[cgroup_id]
            key = workload.key
            mask = fact_masks.get((cgroup_id, kind, errno, comm))
            if mask is None:
                mask = fact_masks[cgroup_id, kind, errno, comm] = facts(
                    kind, errno, comm_index(key, comm))
            known = observe(key, path, mask, when, force)
            if known:
                add_file(workload, path, known & KINDS_MASK, when,
                         (known >> OUTCOMES_AT) & OUTCOMES_MAX, comm)
        counts.events += len(batch.events)
        # A re-sent batch was counted when it first arrived; only its files matter now.
        if not batch.resend:
            for cgroup_id, (events, unresolved) in per_workload.items():
                counts.unresolved += unresolved
                self.outbox.add_counts(batch.workloads[cgroup_id], events, unresolved)
            for cgroup_id, capture in batch.coverage.items():
                self.outbox.add_capture(batch.workloads[cgroup_id], capture)
        self.outbox.cover(sender, seq)
        self._log_news()

    def _stats(self, stats: TracerStats) -> None:
        self.counts.stats += 1
        self.outbox.add_gaps(self.gaps.observe(stats.header.sender, stats.header.seq))
        self.tracers.update(stats)
        self.outbox.add_stats(stats)

    def _log_news(self) -> None:
        for key in self.dedup.capped - self._logged_caps:
            self._logged_caps.add(key)
            log.warning("workload reached the unique-file cap; further new paths are "
                        "forwarded but not remembered",
                        extra={"workload": key, "max_unique_files": self.dedup.max_unique_files})

    # ------------------------------------------------------------ output

    def flush(self, send: Callable[[FileUpdates], bool]) -> bool:
        """Send pending FileUpdates in order; True when nothing is left pending."""
        with self.lock:
            while True:
                message = self.outbox.peek(Header(self.sender_id, self._seq + 1))
                if message is None:
                    return True
                if not send(message):
                    self.counts.sends_blocked += 1
                    return False
                self._seq += 1
                self.outbox.commit(message)
                self.counts.updates_sent += 1

    def backlog(self) -> int:
        """Full units waiting behind the open one (a reason to flush right away)."""
        return self.outbox.waiting_units()

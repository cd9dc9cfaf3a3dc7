"""Deltas from the reports: what each write round puts in the push spool.

Per report, a round spools one delta when anything the endpoint has not been sent
changed: files new or changed since the last spooled delta (`ReportStore.changed`), or
(at most once a minute, and in the last round) its identity and coverage counters. A
workload the spool does not `know` (a new report, one loaded from disk that was never
pushed, one whose deltas were dropped over the spool's bound or refused for good) gets
a full snapshot instead, once the spool has room for it. A delta of more than 20,000
files goes as several.

The spool is written before the round writes the reports: a reporter killed between the
two replays its journal at restart, and the same files become a delta again, which the
receiver's union takes twice with no change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from snoop.common.delta import Delta
from snoop.common.report import Report
from snoop.reporter.spool import Prepared, Spool
from snoop.reporter.store import ReportStore

log = logging.getLogger("snoop.reporter")

# Files per delta, at most: ~6 MB of JSON, well under a receiver's default 32 MiB limit.
MAX_DELTA_FILES = 20_000
# A report whose counters changed but no file sends them at most this often (but in the
# last round before a stop): node-wide counters change every round on a busy node.
HEAD_EVERY = 60.0


def _fingerprint(report: Report) -> tuple[Any, ...]:
    """What a delta carries beside files; a change in it alone is worth a delta."""
    return (report.workload, report.workload_key, report.container_id, report.cgroup_path,
            report.image_ref, report.image_digest, report.pod_name, report.namespace,
            tuple(sorted(report.labels.items())), report.started_at, report.total_events,
            tuple(report.coverage.counters().items()), report.coverage.unobserved)


class DeltaSpooler:
    def __init__(self, spool: Spool, *, max_files: int = MAX_DELTA_FILES,
                 head_every: float = HEAD_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spool = spool
        self.max_files = max_files
        self.head_every = head_every
        self._clock = clock
        self._sent: dict[str, tuple[Any, ...]] = {}  # report key -> fingerprint spooled
        self._head_at: dict[str, float] = {}  # report key -> when its last delta was
        self._heads_waiting: set[str] = set()  # counters changed, held back by head_every

    @property
    def origin(self) -> str:
        return self.spool.origin

    def snapshots_due(self, store: ReportStore) -> int:
        """Reports the spool does not know: each waits to be spooled in full."""
        known = self.spool.known
        return sum(1 for key in store.reports
                   if store.push_name(key) and store.push_name(key) not in known)

    def heads_due(self) -> bool:
        """Counters held back earlier may go now."""
        now = self._clock()
        return any(now - self._head_at.get(k, -1e18) >= self.head_every
                   for k in self._heads_waiting)

    def spool_round(self, store: ReportStore, rendered: Iterable[str], *,
                    final: bool = False) -> int:
        """Spool the deltas of this round; `rendered` are the report keys whose
        identity and counters `store.render` just filled in. Returns how many were
        spooled; OSError (nothing spooled, nothing forgotten) when the spool cannot be
        written. `final`: the last round before a stop, which sends every change."""
        rendered = set(rendered)
        budget = self.spool.snapshot_budget()
        take_one = self.spool.empty()
        now = self._clock()
        records: list[Prepared] = []
        known: list[str] = []
        done: list[tuple[str, tuple[Any, ...]]] = []
        unknown = {key for key in store.reports if store.push_name(key) not in self.spool.known}
        self._heads_waiting &= set(store.reports)
        for key in sorted(rendered | unknown | self._heads_waiting):
            report = store.reports[key]
            wid = store.push_name(key)
            if not wid:
                continue  # no workload has named it yet: its first delta comes then
            if key in unknown:
                if budget == 0 and not take_one:
                    continue  # waits, whole, until the endpoint has taken the backlog
                if key not in rendered:
                    store.render(key)
                parts = self._prepare(Delta(self.origin, wid, True, report))
                size = sum(len(p.body) for p in parts)
                if size > budget and not take_one:
                    continue  # a later round, with the room the endpoint leaves
                take_one = False
                budget = max(0, budget - size)
                known.append(wid)
            else:
                if key not in rendered:
                    store.render(key)
                changed = store.changed.get(key) or ()
                print_ = _fingerprint(report)
                if not changed and self._sent.get(key) == print_:
                    self._heads_waiting.discard(key)
                    continue
                if not changed and not final and \
                        now - self._head_at.get(key, -1e18) < self.head_every:
                    self._heads_waiting.add(key)  # only counters, and sent lately
                    continue
                files = {path: report.files[path] for path in changed if path in report.files}
                parts = self._prepare(Delta(self.origin, wid, False,
                                            replace(report, files=files, recovery=None)))
            records.extend(parts)
            done.append((key, _fingerprint(report)))
        if records:
            self.spool.append(records, known)
        for key, print_ in done:
            store.changed.pop(key, None)
            self._sent[key] = print_
            self._head_at[key] = now
            self._heads_waiting.discard(key)
        return len(records)

    def _prepare(self, delta: Delta) -> list[Prepared]:
        """The delta as spool records, split so none holds more than `max_files` files:
        a receiver's body limit is met before a 413, and a split never needs the whole
        delta parsed again."""
        pending, out = [delta], []
        while pending:
            part = pending.pop()
            if len(part.report.files) > self.max_files:
                first, second = part.split()
                pending += [second, first]
                continue
            # In the spool, each part of a snapshot counts as one: they hold every file
            # between them, in one segment.
            out.append(Prepared.of(part.workload_id, part.encode(), delta.full))
        return out

"""Deltas from the reports: what each write round puts in the push spool.

Per report, a round spools one delta when anything the endpoint has not been sent
changed: files new or changed since the last spooled delta (`ReportStore.changed`), or
its identity and coverage counters. A workload the spool does not `know` (a new report,
one loaded from disk that was never pushed, one whose deltas were dropped over the
spool's bound) gets a full snapshot instead, once the spool has room for it.

The spool is written before the round writes the reports: a reporter killed between the
two replays its journal at restart, and the same files become a delta again, which the
receiver's union takes twice with no change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from snoop.common.delta import Delta
from snoop.common.report import Report
from snoop.reporter.spool import Spool
from snoop.reporter.store import ReportStore

log = logging.getLogger("snoop.reporter")


def _fingerprint(report: Report) -> tuple[Any, ...]:
    """What a delta carries beside files; a change in it alone is worth a delta."""
    return (report.workload, report.workload_key, report.container_id, report.cgroup_path,
            report.image_ref, report.image_digest, report.pod_name, report.namespace,
            tuple(sorted(report.labels.items())), report.started_at, report.total_events,
            tuple(report.coverage.counters().items()), report.coverage.unobserved)


class DeltaSpooler:
    def __init__(self, origin: str, spool: Spool) -> None:
        self.origin = origin
        self.spool = spool
        self._sent: dict[str, tuple[Any, ...]] = {}  # report key -> fingerprint spooled

    def snapshots_due(self, store: ReportStore) -> int:
        """Reports the spool does not know: each waits to be spooled in full."""
        known = self.spool.known
        return sum(1 for key in store.reports if store.push_name(key) not in known)

    def spool_round(self, store: ReportStore, rendered: Iterable[str]) -> int:
        """Spool the deltas of this round; `rendered` are the report keys whose
        identity and counters `store.render` just filled in. Returns how many were
        spooled; OSError (nothing spooled, nothing forgotten) when the spool cannot be
        written."""
        rendered = set(rendered)
        room = self.spool.room_for_snapshot()
        deltas: list[tuple[str, bytes]] = []
        known: list[str] = []
        done: list[tuple[str, tuple[Any, ...]]] = []
        unknown = {key for key in store.reports if store.push_name(key) not in self.spool.known}
        for key in sorted(rendered | unknown):
            report = store.reports[key]
            wid = store.push_name(key)
            if key in unknown:
                if not room:
                    continue  # waits, whole, until the endpoint has taken the backlog
                if key not in rendered:
                    store.render(key)
                delta = Delta(self.origin, wid, True, report)
                known.append(wid)
            else:
                changed = store.changed.get(key) or ()
                print_ = _fingerprint(report)
                if not changed and self._sent.get(key) == print_:
                    continue
                files = {path: report.files[path] for path in changed if path in report.files}
                delta = Delta(self.origin, wid, False,
                              replace(report, files=files, recovery=None))
            deltas.append((wid, delta.encode()))
            done.append((key, _fingerprint(report)))
        if deltas:
            self.spool.append(deltas, known)
        for key, print_ in done:
            store.changed.pop(key, None)
            self._sent[key] = print_
        return len(deltas)

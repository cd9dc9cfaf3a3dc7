"""The reporter with a journal: a batch is confirmed once its content is in the journal.

`Reporter` (core.py) confirms tracer batches only after a write round, so a crash loses
everything since the last round, and the tracer may have dropped it already if an
earlier checkpoint covered it. `DurableReporter` adds the journal (journal.py):
- `apply` appends each FileUpdates to the journal before applying it in memory;
- `sync_journal` (every ~100 ms, from the service loop) fsyncs the journal, and only then
  moves the covers received so far to *persisted*, so the next Checkpoint names them;
- `write_round` runs core's round and, when it succeeded, empties the journal. The state
  file written in that round carries a `journal` section: `through`, the last journal
  record the reports hold, and each report's counters as of that record;
- `load` loads reports and state (core), then replays the journal records after
  `through` on top.

Files and access kinds are set unions, so replaying content the reports already hold
changes nothing. Counters add up, so a replay must not count a record twice. A crash
can leave reports newer than the state file (between writing the reports and the state),
so the reports alone cannot say what they hold. The replay therefore starts each
counter from the state's values as of `through`, adds the records after it, and takes
the larger of that and what the report file says (a report can only be ahead of the
state by records that are in the journal, unless the journal lost its torn tail, in
which case the report is the better count). Tracer counters are maxima per sender, so a
replay is idempotent for them anyway.

All of this runs under the reporter's lock, made re-entrant here so that an append and
its application, or a round and the journal reset after it, are one step.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from snoop.common.config import Config
from snoop.common.protocol import CaptureCounts, FileUpdates, Header
from snoop.common.report import Report
from snoop.reporter.core import Reporter
from snoop.reporter.deltas import DeltaSpooler
from snoop.reporter.journal import Entry, Journal, JournalSuspended
from snoop.reporter.push import Pusher
from snoop.reporter.writer import ReportFiles

log = logging.getLogger("snoop.reporter")

# How often appended records are fsynced and confirmed: the most a tracer waits for a
# checkpoint, and the most the reporter's fsyncs cost (one per interval, if busy).
SYNC_EVERY = 0.1
# A journal this big asks for a write round now (which empties it), not at the interval.
ROUND_AT_BYTES = 32 * 1024 * 1024
# Counters a report sums from FileUpdates (the rest are reporter-wide or maxima).
REPORT_COUNTERS = ("total_events", "unresolved_paths", "unique_file_cap_hits",
                   *(f.name for f in fields(CaptureCounts)))


def report_counters(report: Report) -> dict[str, int]:
    return {name: getattr(report if name == "total_events" else report.coverage, name)
            for name in REPORT_COUNTERS}


def set_report_counters(report: Report, values: Mapping[str, int]) -> None:
    for name in REPORT_COUNTERS:
        setattr(report if name == "total_events" else report.coverage, name,
                values.get(name, 0))


def _journal_section(state: Mapping[str, Any] | None) -> tuple[int, dict[str, dict[str, int]]]:
    """(through, counters per report key) from a state file; (0, {}) when it has none."""
    section = (state or {}).get("journal")
    if not isinstance(section, dict):
        return 0, {}
    through = section.get("through", 0)
    reports = section.get("reports", {})
    if (isinstance(through, bool) or not isinstance(through, int) or through < 0
            or not isinstance(reports, dict)):
        log.error("state file: malformed journal section; replaying the whole journal",
                  extra={"through": repr(through)[:80]})
        return 0, {}
    counters: dict[str, dict[str, int]] = {}
    for key, values in reports.items():
        if isinstance(values, dict):
            counters[str(key)] = {name: v for name, v in values.items()
                                  if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
    return through, counters


class DurableReporter(Reporter):
    def __init__(self, config: Config, files: ReportFiles, sender_id: str, *,
                 pusher: Pusher | None = None, deltas: DeltaSpooler | None = None,
                 clock: Callable[[], float] = time.time,
                 journal: Journal | None = None) -> None:
        super().__init__(config, files, sender_id, pusher=pusher, deltas=deltas, clock=clock)
        self.lock = threading.RLock()
        self.journal = journal or Journal(files.journal_path, aside_path=files.aside_path)
        files.state_sections["journal"] = self._journal_state

    # ------------------------------------------------------------ start

    def load(self) -> None:
        with self.lock:
            super().load()
            entries = self.journal.open()
            through, counters = _journal_section(self.files.loaded_state)
            self.journal.last_seq = max(self.journal.last_seq, through)
            replay = [e for e in entries if e.seq > through]
            if replay:
                self._replay(replay, [e for e in entries if e.seq <= through], counters)

    def _replay(self, replay: list[Entry], skipped: list[Entry],
                counters: dict[str, dict[str, int]]) -> None:
        store = self.store
        on_disk = {key: report_counters(report) for key, report in store.reports.items()}
        # Back to the counters as of `through`: core settled them up to what the reports
        # say, and the reports may already hold some of the records replayed below.
        state = self.files.loaded_state or {}
        try:
            store.load_state(state)
        except (ValueError, TypeError, KeyError, AttributeError):
            store.load_state({})
        for key, report in store.reports.items():
            set_report_counters(report, counters.get(key, {}))
        updates_before = self.counts.updates
        # Processor seq numbering carries on from the last record the reports hold, so
        # gaps are counted once: those before it already are.
        last_skipped: dict[str, Header] = {}
        for entry in skipped:
            last_skipped[entry.updates.header.sender] = entry.updates.header
        for header in last_skipped.values():
            super().apply(FileUpdates(header, (), {}))
        for entry in replay:
            super().apply(entry.updates)
        self.counts.updates = updates_before
        for key, report in store.reports.items():
            disk = on_disk.get(key)
            if disk is not None:
                now = report_counters(report)
                set_report_counters(report, {n: max(now[n], disk[n]) for n in now})
        store.settle_counters()
        # What the journal holds is durable: confirm it at once.
        self.checkpoints.commit(self.checkpoints.take_received())
        self.state_dirty = True
        log.info("journal replayed", extra={
            "records": len(replay), "skipped": len(skipped), "path": self.journal.path,
            "tracers_persisted": len(self.checkpoints.persisted)})

    # ------------------------------------------------------------ input

    def apply(self, updates: FileUpdates, encoded: bytes | None = None) -> None:
        with self.lock:
            # A suspended journal logged why once; a write round confirms this one.
            with contextlib.suppress(JournalSuspended):
                self.journal.append(updates, encoded)
            super().apply(updates)

    def sync_journal(self) -> bool:
        """fsync what was appended; True when that made new tracer batches persisted."""
        with self.lock:
            if self.journal.suspended is not None:
                return False
            try:
                self.journal.sync()
            except JournalSuspended:
                return False
            taken = self.checkpoints.take_received()
            if not taken:
                return False
            self.checkpoints.commit(taken)
            return True

    def wants_round(self) -> bool:
        """The journal is big enough that a write round should empty it now."""
        return self.journal.size >= ROUND_AT_BYTES

    # ------------------------------------------------------------ output

    def write_round(self, final: bool = False) -> bool | None:
        with self.lock:
            ok = super().write_round(final)
            if ok:
                try:
                    self.journal.reset()
                except OSError as exc:
                    log.error("journal could not be emptied after a write round",
                              extra={"path": self.journal.path, "error": str(exc)})
            return ok

    def _journal_state(self) -> dict[str, Any]:
        # Called by the writer inside core's write round, under the lock: it describes
        # exactly the reports written in that round.
        return {"through": self.journal.last_seq,
                "reports": {key: report_counters(report)
                            for key, report in self.store.reports.items()}}

    def close(self) -> None:
        with self.lock:
            self.journal.close()

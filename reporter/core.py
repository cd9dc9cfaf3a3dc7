"""The reporter's logic, without sockets: apply FileUpdates, run write rounds, and say
which tracer messages are persisted.

A write round writes every changed report, then the state file (persisted seq ranges
and reporter-wide counters). Only when all of that succeeded do the covers received so
far become persisted, and a Checkpoint may say so. A failed write is counted and logged
once; the reports on disk stay as they were (atomic rename), the changes stay pending,
and the next round retries.

History is never thrown away: a report loaded with parts it could not read (see
`Report.recovery`) keeps every path it could, and its original file is kept beside it
(`NAME.unreadable-<UTC time>`) before anything overwrites it; if no copy can be made,
`load()` fails rather than overwrite. A processor's seq jumping further than
protocol.MAX_SEQ_GAP (either way) counts no gaps, only a `seq_jumps`, and restarts its
numbering there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from snoop.common.config import Config
from snoop.common.protocol import Checkpoint, FileUpdates, Header, seq_gap
from snoop.common.report import Recovery, add_counts, keep_copy
from snoop.reporter.checkpoints import Checkpoints
from snoop.reporter.deltas import DeltaSpooler
from snoop.reporter.push import Pusher
from snoop.reporter.store import Identity, ReportStore
from snoop.reporter.writer import ReportFiles

log = logging.getLogger("snoop.reporter")

STATE_SCHEMA = 1
MAX_PROCESSORS = 1024


@dataclass
class ReporterCounts:
    updates: int = 0
    invalid: int = 0  # malformed messages this reporter dropped itself
    gaps: int = 0  # FileUpdates missing from a processor's seq numbering
    seq_jumps: int = 0  # processor seqs further ahead than any loss explains (no gaps)
    recovered_reports: int = 0  # reports loaded with parts unreadable (original kept)
    writes: int = 0  # report files written
    write_errors: int = 0  # write rounds that failed
    checkpoints: int = 0
    last_write_at: float = 0.0


class Reporter:
    def __init__(self, config: Config, files: ReportFiles, sender_id: str, *,
                 pusher: Pusher | None = None, deltas: DeltaSpooler | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.files = files
        self.sender_id = sender_id
        self.pusher = pusher
        self.deltas = deltas
        self._clock = clock
        self.store = ReportStore(Identity.from_config(config), sidecar=files.sidecar,
                                 max_unique_files=config.max_unique_files, clock=clock)
        self.store.track_changes = deltas is not None
        self.checkpoints = Checkpoints(clock=clock)
        self.counts = ReporterCounts()
        self.last_write_ok: bool | None = None
        self.state_dirty = False
        self.lock = threading.Lock()
        self._seq = 0
        self._processor_seq: dict[str, int] = {}
        self._logged_errno: int | None = None

    # ------------------------------------------------------------ start

    def load(self) -> None:
        """Pick up reports and state from disk: weeks of observation survive restarts."""
        self.files.prepare()
        for key, report in self.files.load_reports():
            if report.recovery is not None:
                self._keep_original(report.recovery, len(report.files))
            self.store.adopt(key, report)
        state = self.files.load_state()
        if state is not None:
            try:
                if state.get("schema") != STATE_SCHEMA:
                    raise ValueError(f"state schema {state.get('schema')!r}, "
                                     f"expected {STATE_SCHEMA}")
                self.checkpoints.load_json(state.get("persisted", {}))
                self.store.load_state(state)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                self.files.move_state_aside(f"malformed state file: {exc}")
                self.checkpoints.persisted.clear()
                self.store.tracers.maxima.clear()
        self.store.settle_counters()
        log.info("reports loaded", extra={
            "reports": len(self.store.reports),
            "files": sum(len(r.files) for r in self.store.reports.values()),
            "tracers_persisted": len(self.checkpoints.persisted),
            "corrupt_moved": self.files.corrupt_moved})

    def _keep_original(self, recovery: Recovery, files: int) -> None:
        """Keep the file as read before a write round replaces it; OSError if impossible."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        try:
            kept = keep_copy(recovery.path, f".unreadable-{stamp}")
        except OSError as exc:
            log.error("report has parts that cannot be read and no copy of it can be kept; "
                      "refusing to overwrite it", extra={
                          "path": recovery.path, "problem": recovery.first,
                          "error": exc.strerror or str(exc)})
            raise
        self.counts.recovered_reports += 1
        log.error("report has parts that cannot be read: kept every path it could, original "
                  "kept beside it", extra={
                      "path": recovery.path, "kept_as": kept, "files": files,
                      "problems": recovery.problems, "paths_lost": recovery.lost_paths,
                      "first_problem": recovery.first})

    # ------------------------------------------------------------ input

    def apply(self, updates: FileUpdates) -> None:
        with self.lock:
            self.counts.updates += 1
            sender, seq = updates.header.sender, updates.header.seq
            last = self._processor_seq.pop(sender, None)
            gap = 0 if last is None else seq_gap(last, seq)
            if gap is None:
                # No processor loses that many messages: its numbering restarted or the
                # seq is corrupt. Count nothing and start again from this seq.
                self.counts.seq_jumps += 1
                if self.counts.seq_jumps == 1:
                    log.warning("processor seq jumped further than messages can be lost; not "
                                "counted as gaps", extra={"sender": sender, "seq": seq,
                                                          "last": last})
            elif gap:
                self.counts.gaps = add_counts(self.counts.gaps, gap)
                self.store.count_lost(gaps=gap)
            self._processor_seq[sender] = seq if last is None or gap is None else max(last, seq)
            if len(self._processor_seq) > MAX_PROCESSORS:
                del self._processor_seq[next(iter(self._processor_seq))]
            self.store.apply(updates)
            self.checkpoints.receive(updates.covers)
            if updates.tracer_stats or updates.covers:
                self.state_dirty = True

    def note_invalid(self, total_invalid: int) -> None:
        with self.lock:
            delta = total_invalid - self.counts.invalid
            if delta > 0:
                self.counts.invalid = total_invalid
                self.store.count_lost(invalid=delta)

    # ------------------------------------------------------------ output

    def pending(self) -> bool:
        return bool(self.store.dirty or self.checkpoints.received or self.state_dirty)

    def snapshots_waiting(self) -> int:
        """Workloads the push spool must send in full, not yet spooled."""
        with self.lock:
            return 0 if self.deltas is None else self.deltas.snapshots_due(self.store)

    def write_round(self, final: bool = False) -> bool | None:
        """Write what changed. True: all on disk; False: failed (retry later); None: idle.

        With a push configured, the round's deltas are spooled first: see deltas.py.
        `final`: the last round before a stop."""
        with self.lock:
            deltas = self.deltas
            spool_due = deltas is not None and (
                deltas.heads_due() or deltas.snapshots_due(self.store)
                and (deltas.spool.snapshot_budget() > 0 or deltas.spool.empty()))
            if not self.pending() and not spool_due:
                return None
            taken = self.checkpoints.take_received()
            error: tuple[str, OSError] | None = None
            texts = {key: self.store.render(key) for key in sorted(self.store.dirty)}
            spooled = 0
            if self.deltas is not None:
                try:
                    spooled = self.deltas.spool_round(self.store, texts, final=final)
                except OSError as exc:
                    error = (self.deltas.spool.directory, exc)
            for key, text in texts.items() if error is None else ():
                name = self.store.reports[key].workload
                try:
                    self.files.write_report(key, text, name)
                except OSError as exc:
                    error = (self.files.path_for(key, name), exc)
                    break
                self.store.dirty.discard(key)
                self.counts.writes += 1
            if error is None:
                persisted = self.checkpoints.preview(taken)
                state = {"schema": STATE_SCHEMA,
                         "persisted": Checkpoints.to_json(persisted, self.checkpoints.last_seen),
                         **self.store.state_json()}
                try:
                    self.files.write_state(state)
                except OSError as exc:
                    error = (self.files.state_path, exc)
            if error is not None:
                self.checkpoints.restore(taken)
                self.counts.write_errors += 1
                path, exc = error
                # One line when writes start failing (or fail differently); the metric
                # counts every failed round.
                if self.last_write_ok is not False or exc.errno != self._logged_errno:
                    log.error("report write failed; previous report kept, retrying every "
                              "interval", extra={"path": path, "errno": exc.errno,
                                                 "error": exc.strerror or str(exc),
                                                 "reports_pending": len(self.store.dirty)})
                    self._logged_errno = exc.errno
                self.last_write_ok = False
            else:
                self.checkpoints.commit(taken)
                self.state_dirty = False
                if self.last_write_ok is False:
                    log.info("report writes succeed again")
                self.last_write_ok = True
                self.counts.last_write_at = self._clock()
        if self.pusher is not None and spooled:
            self.pusher.wake()
        return error is None

    def checkpoint(self) -> Checkpoint:
        with self.lock:
            self._seq += 1
            self.counts.checkpoints += 1
            return Checkpoint(Header(self.sender_id, self._seq),
                              self.checkpoints.persisted_ranges())

    def ready(self) -> bool:
        return self.last_write_ok is not False

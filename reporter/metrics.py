"""Prometheus view of the reporter, read at scrape time under the reporter's lock."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from snoop.reporter.core import Reporter
from snoop.reporter.durable import DurableReporter


class ReporterCollector(Collector):
    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def collect(self) -> Iterator[Metric]:
        r = self.reporter
        with r.lock:
            c = r.counts
            simple = [
                ("snoop_updates_received", "FileUpdates messages received", c.updates),
                ("snoop_messages_invalid", "malformed messages dropped", c.invalid),
                ("snoop_message_gaps", "FileUpdates missing from processor seq numbering",
                 c.gaps),
                ("snoop_report_writes", "report files written", c.writes),
                ("snoop_report_write_errors", "report write rounds that failed", c.write_errors),
                ("snoop_checkpoints_published", "checkpoints published to tracers",
                 c.checkpoints),
                ("snoop_reports_corrupt", "corrupt files moved aside at start",
                 r.files.corrupt_moved),
                ("snoop_reports_recovered", "reports loaded in part (the original kept)",
                 c.recovered_reports),
                ("snoop_message_seq_restarts", "processor seq jumps too big to be losses",
                 c.seq_jumps),
                ("snoop_tracer_stats_ignored", "tracer stats whose counters grew impossibly "
                 "fast, ignored", r.store.tracers.ignored),
                ("snoop_unique_file_cap_hits", "paths not kept: report at SNOOP_MAX_UNIQUE_FILES",
                 sum(rep.coverage.unique_file_cap_hits for rep in r.store.reports.values())),
            ]
            dropped = r.store.tracers.totals()
            unique = r.store.unique_files()
            last_write = c.last_write_at
            pending = len(r.store.dirty)
            journal = r.journal if isinstance(r, DurableReporter) else None
            if journal is not None:
                j = journal.counts
                simple += [
                    ("snoop_journal_records", "FileUpdates appended to the journal",
                     j.appended),
                    ("snoop_journal_syncs", "journal fsyncs that confirmed records", j.syncs),
                    ("snoop_journal_errors", "journal appends, fsyncs or resets that failed",
                     j.errors),
                    ("snoop_journal_replayed", "journal records replayed at start",
                     j.replayed),
                    ("snoop_journal_damaged", "torn tails dropped, damaged stretches kept "
                     "aside or undecodable records skipped at start",
                     j.torn + j.corrupt + j.undecodable),
                ]
                journal_bytes, journal_suspended = journal.size, journal.suspended is not None
        pusher = r.pusher
        for name, doc, value in simple:
            yield CounterMetricFamily(name, doc, value=value)
        if journal is not None:
            yield GaugeMetricFamily("snoop_journal_bytes", "size of the journal",
                                    value=journal_bytes)
            yield GaugeMetricFamily("snoop_journal_suspended", "1 while the journal takes no "
                                    "records (full or failing) until the next report write",
                                    value=int(journal_suspended))
        if pusher is not None:
            pushes, spool = pusher.counts, pusher.spool
            for name, doc, value in (
                ("snoop_report_pushes", "deltas delivered to the API endpoint", pushes.pushed),
                ("snoop_report_push_errors", "failed POST attempts (no reply, 408, 429, 5xx), "
                 "retried with backoff", pushes.errors),
                ("snoop_report_push_refusals", "POSTs the endpoint refused as a whole (3xx, "
                 "401, 403, 404, 405, 421: a wrong token or URL), retried every few minutes",
                 pushes.refusals),
                ("snoop_report_push_splits", "deltas split in two after a 413", pushes.splits),
                ("snoop_report_push_rejected", "deltas the endpoint refused for good (4xx "
                 "but 401, 403, 404, 405, 408, 421, 429; 413 after splits), set aside in the "
                 "spool's rejected/; their workloads are sent in full again",
                 pushes.rejected),
                ("snoop_report_push_too_large", "single-file deltas still refused with 413, "
                 "set aside", pushes.too_large),
                ("snoop_report_spool_appended", "deltas written to the push spool",
                 spool.counts.appended),
                ("snoop_report_spool_dropped", "spooled deltas dropped over "
                 "SNOOP_SPOOL_MAX_BYTES; their workloads are sent as full snapshots instead",
                 spool.counts.dropped),
                ("snoop_report_spool_write_errors", "push spool writes that failed",
                 spool.counts.write_errors),
            ):
                yield CounterMetricFamily(name, doc, value=value)
            yield GaugeMetricFamily("snoop_report_spool_deltas",
                                    "deltas in the push spool, not yet delivered",
                                    value=spool.records())
            yield GaugeMetricFamily("snoop_report_spool_bytes", "disk the push spool uses",
                                    value=spool.bytes())
            yield GaugeMetricFamily("snoop_report_snapshots_waiting", "workloads waiting for "
                                    "room in the spool to be sent as full snapshots",
                                    value=r.snapshots_waiting())
        family = CounterMetricFamily("snoop_events_dropped", "events tracers could not deliver, "
                                     "by reason (as persisted in reports)", labels=["reason"])
        for field, reason in (("kernel_dropped", "kernel"), ("read_failures", "read_failure"),
                              ("pending_dropped", "pending")):
            family.add_metric([reason], dropped[field])
        yield family
        family = GaugeMetricFamily("snoop_unique_files", "paths in each report",
                                   labels=["workload"])
        for key, value in sorted(unique.items()):
            family.add_metric([key], value)
        yield family
        yield GaugeMetricFamily("snoop_report_last_write_timestamp_seconds",
                                "when the last write round succeeded", value=last_write)
        yield GaugeMetricFamily("snoop_reports_pending", "reports changed but not yet written",
                                value=pending)


def register(registry: CollectorRegistry, reporter: Reporter) -> ReporterCollector:
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu seconds
    collector = ReporterCollector(reporter)
    registry.register(collector)
    return collector

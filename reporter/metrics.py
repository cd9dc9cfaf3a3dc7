"""Prometheus view of the reporter, read at scrape time under the reporter's lock."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from snoop.reporter.core import Reporter


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
                ("snoop_unique_file_cap_hits", "paths not kept: report at SNOOP_MAX_UNIQUE_FILES",
                 sum(rep.coverage.unique_file_cap_hits for rep in r.store.reports.values())),
            ]
            dropped = r.store.tracers.totals()
            unique = r.store.unique_files()
            last_write = c.last_write_at
            pending = len(r.store.dirty)
        pushes = r.pusher.counts if r.pusher is not None else None
        for name, doc, value in simple:
            yield CounterMetricFamily(name, doc, value=value)
        if pushes is not None:
            yield CounterMetricFamily("snoop_report_pushes", "reports POSTed to the API",
                                      value=pushes.pushed)
            yield CounterMetricFamily("snoop_report_push_errors", "failed POST attempts",
                                      value=pushes.errors)
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
    collector = ReporterCollector(reporter)
    registry.register(collector)
    return collector

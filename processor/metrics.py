"""Prometheus view of the processor: read at scrape time from the pipeline's counters.

The hot path only bumps plain integers; this collector turns them into metric families
when /metrics is scraped, under the pipeline's lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from snoop.processor.pipeline import Pipeline


class ProcessorCollector(Collector):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        p = self.pipeline
        with p.lock:
            c, d, o, g = p.counts, p.dedup.counts, p.outbox, p.gaps
            simple = [
                ("snoop_batches_received", "event batches received from tracers", c.batches),
                ("snoop_resent_batches_received", "re-sent batches received (dedup bypassed)",
                 c.resent_batches),
                ("snoop_tracer_stats_received", "tracer stats messages received", c.stats),
                ("snoop_events_received", "events in received batches", c.events),
                ("snoop_events_excluded", "events left out by SNOOP_EXCLUDE_PATHS", c.excluded),
                ("snoop_unresolved_paths", "events whose relative path the tracer could not "
                 "resolve", c.unresolved),
                ("snoop_messages_invalid", "malformed messages dropped", c.invalid),
                ("snoop_message_gaps", "tracer messages lost: seqs missing for good "
                 "(docs/processor.md)", g.total),
                ("snoop_messages_late", "tracer messages that came after newer ones and "
                 "filled a seq hole", g.late),
                ("snoop_message_seq_restarts", "tracer seq jumps too large to be loss "
                 "(restarted numbering or a corrupt seq)", g.restarts),
                ("snoop_updates_sent", "FileUpdates messages sent to the reporter",
                 c.updates_sent),
                ("snoop_update_sends_blocked", "FileUpdates sends refused (reporter slow or "
                 "away)", c.sends_blocked),
                ("snoop_intake_pauses", "times the outbox filled and the processor stopped "
                 "taking in tracer messages", c.intake_pauses),
                ("snoop_unique_file_cap_hits", "new paths forwarded but not remembered "
                 "(workload at SNOOP_MAX_UNIQUE_FILES)", d.cap_hits),
            ]
            forwarded = {"new": d.new, "new_kind": d.widened, "last_seen": d.refreshed,
                         "resend": d.forced}
            suppressed = d.suppressed
            by_syscall = p.tracers.events_by_syscall()
            dropped = p.tracers.dropped()
            unique = p.dedup.unique_files()
            gauges = [
                ("snoop_pending_files", "files waiting to be sent to the reporter",
                 o.pending_files),
                ("snoop_pending_units", "FileUpdates messages' worth of content waiting",
                 o.pending_units()),
                ("snoop_pending_files_peak", "most files waiting at once since start",
                 o.peak_files),
                ("snoop_pending_units_peak", "most units waiting at once since start",
                 o.peak_units),
                ("snoop_intake_paused", "1 while the outbox is full and intake stops",
                 int(p.paused)),
                ("snoop_open_seq_holes", "tracer seqs missing but not yet counted as gaps "
                 "(they may still come)", g.open_seqs()),
                ("snoop_tracers", "tracer senders known", len(p.tracers)),
            ]
        for name, doc, value in simple:
            yield CounterMetricFamily(name, doc, value=value)
        family = CounterMetricFamily("snoop_files_forwarded", "path sightings forwarded, by why",
                                     labels=["reason"])
        for reason, value in forwarded.items():
            family.add_metric([reason], value)
        yield family
        yield CounterMetricFamily("snoop_files_suppressed", "path sightings deduplicated away",
                                  value=suppressed)
        family = CounterMetricFamily("snoop_events", "events seen by tracers, by syscall "
                                     "(summed over tracers)", labels=["syscall"])
        for syscall, value in sorted(by_syscall.items()):
            family.add_metric([syscall], value)
        yield family
        family = CounterMetricFamily("snoop_events_dropped", "events tracers could not deliver, "
                                     "by reason (summed over tracers)", labels=["reason"])
        for reason, value in sorted(dropped.items()):
            family.add_metric([reason], value)
        yield family
        family = GaugeMetricFamily("snoop_unique_files", "unique paths remembered per workload",
                                   labels=["workload"])
        for key, value in sorted(unique.items()):
            family.add_metric([key], value)
        yield family
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)


def register(registry: CollectorRegistry, pipeline: Pipeline) -> ProcessorCollector:
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu seconds
    collector = ProcessorCollector(pipeline)
    registry.register(collector)
    return collector

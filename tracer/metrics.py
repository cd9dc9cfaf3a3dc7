"""The tracer's Prometheus metrics, on an explicit registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector


class TracerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu seconds
        self.events = Counter("snoop_events", "Records received from the kernel, by syscall",
                              ["syscall"], registry=registry)
        self.dropped = Gauge("snoop_events_dropped_total",
                             "Events the kernel could not put in the ring buffer",
                             registry=registry)
        self.notes_dropped = Gauge("snoop_bookkeeping_dropped_total",
                                   "Fork, exit and prime records the ring buffer had no "
                                   "room for (path records: snoop_events_dropped_total)",
                                   registry=registry)
        self.read_failures = Gauge("snoop_path_read_failures_total",
                                   "Paths unreadable from user memory", registry=registry)
        self.dedup_hits = Gauge("snoop_kernel_dedup_hits_total",
                                "Events the in-kernel dedup map suppressed", registry=registry)
        self.unresolved = Counter("snoop_unresolved_paths",
                                  "Relative paths recorded as given, not made absolute",
                                  registry=registry)
        self.attached = Gauge("snoop_attached_syscalls", "1 for each syscall hooked",
                              ["syscall"], registry=registry)
        self.startup_seconds = Gauge("snoop_tracer_startup_seconds",
                                     "Seconds to compile and attach the BPF program",
                                     registry=registry)
        self.targets = Gauge("snoop_target_cgroups", "Cgroup ids in the kernel target set",
                             ["mode"], registry=registry)
        self.batches_sent = Counter("snoop_batches_sent", "Event batches handed to ZeroMQ",
                                    registry=registry)
        self.batches_resent = Counter("snoop_batches_resent",
                                      "Unconfirmed batches sent again", registry=registry)
        self.send_blocked = Counter("snoop_send_blocked",
                                    "Sends refused because the processor is absent or full",
                                    registry=registry)
        self.pending_events = Gauge("snoop_pending_events",
                                    "Events sent but not yet confirmed persisted",
                                    registry=registry)
        self.checkpoints = Counter("snoop_checkpoints_received",
                                   "Checkpoints received from reporters", registry=registry)

"""The tracer's Prometheus metrics, on an explicit registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector


class KernelCounter:
    """A Counter fed with totals the BPF program keeps: exported as a counter, so rate()
    works, though what arrives are totals."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry,
                 label: str | None = None) -> None:
        self._counter = Counter(name, documentation, [label] if label else [],
                                registry=registry)
        self._totals: dict[str, int] = {}

    def set_total(self, total: int, label_value: str = "") -> None:
        seen = self._totals.get(label_value, 0)
        if total > seen:
            counter = self._counter.labels(label_value) if label_value else self._counter
            counter.inc(total - seen)
            self._totals[label_value] = total


class TracerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu seconds
        self.events = Counter("snoop_events", "Records received from the kernel, by syscall",
                              ["syscall"], registry=registry)
        # The name and reasons the processor and reporter use, for this tracer alone.
        self.dropped = KernelCounter("snoop_events_dropped",
                                     "Events lost before any report, by reason: kernel (the "
                                     "ring buffer was full), read_failure (path unreadable), "
                                     "pending (given up unconfirmed)",
                                     registry, label="reason")
        self.notes_dropped = KernelCounter("snoop_bookkeeping_dropped",
                                           "Fork, exit and prime records the ring buffer had "
                                           "no room for (path records: "
                                           "snoop_events_dropped_total)", registry)
        self.dedup_hits = KernelCounter("snoop_kernel_dedup_hits",
                                        "Events the in-kernel dedup map suppressed", registry)
        self.map_size = Gauge("snoop_ebpf_map_size", "Entries in use in a BPF map", ["map"],
                              registry=registry)
        self.unresolved = Counter("snoop_unresolved_paths",
                                  "Relative paths that could not be made absolute, so "
                                  "not listed in reports",
                                  registry=registry)
        self.attached = Gauge("snoop_attached_syscalls", "1 for each syscall hooked",
                              ["syscall"], registry=registry)
        self.startup_seconds = Gauge("snoop_tracer_startup_seconds",
                                     "Seconds to compile and attach the BPF program",
                                     registry=registry)
        self.targets = Gauge("snoop_target_cgroups", "Cgroup ids in the kernel target set",
                             ["mode"], registry=registry)
        self.cgroups_listed = Counter(
            "snoop_cgroups_listed_late",
            "Kernels without the ancestor helper: new cgroups listed by the tracer, by "
            "whether a process had run in one before (its first syscalls unseen)",
            ["ran_before"], registry=registry)
        self.perf_lost = Gauge(
            "snoop_perf_buffer_lost",
            "Perf buffers only (before 5.8): records that did not fit, as the kernel's own "
            "lost-records notes say; a cross-check of snoop_events_dropped and "
            "snoop_bookkeeping_dropped together", registry=registry)
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

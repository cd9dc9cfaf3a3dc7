"""How deltas fold into what the receiver keeps: pure functions, no database.

Every merge here is a join: commutative, associative and idempotent. So a delta applied
twice, deltas applied in any order, or a delta split in parts give the same state.

- A file (per workload and path): kinds and outcomes OR'd, first seen the earliest,
  last seen the latest, process names the union bounded to MAX_COMMS. Which names stay
  past the bound must not depend on arrival order, so it is the first MAX_COMMS in
  sorted order.
- A workload's head (its identity, started_at, total_events, coverage): that of the
  report with the newest `last_updated_at`; between reports updated at the same time,
  the largest of each value (counters, text fields) and the union of the unobserved
  intervals. `started_at` is the earliest known one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from snoop.common.protocol import MAX_COMMS
from snoop.common.report import Coverage, FileDetail, Report, merge_intervals

# Identity fields of a report: kept from the newest one, compared as text on a tie.
HEAD_TEXT_FIELDS = ("workload", "workload_key", "container_id", "cgroup_path", "image_ref",
                    "image_digest", "pod_name", "namespace")


@dataclass(frozen=True, slots=True)
class FileRow:
    kinds: int
    outcomes: int  # the 64-bit unsigned mask of common/outcomes.py
    comms: tuple[str, ...]  # sorted, MAX_COMMS at most
    first_seen: float
    last_seen: float

    @classmethod
    def of(cls, detail: FileDetail) -> FileRow:
        return cls(detail.kinds, detail.outcomes, bounded_comms(detail.comms),
                   detail.first_seen, detail.last_seen)

    def detail(self) -> FileDetail:
        return FileDetail(self.kinds, self.first_seen, self.last_seen, self.outcomes,
                          self.comms)


def bounded_comms(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({comm for group in groups for comm in group}))[:MAX_COMMS]


def earliest(a: float, b: float) -> float:
    """The earlier of two times, where 0 means not known."""
    return min(a, b) if a and b else a or b


def merge_files(a: FileRow | None, b: FileRow) -> FileRow:
    if a is None:
        return b
    return FileRow(a.kinds | b.kinds, a.outcomes | b.outcomes, bounded_comms(a.comms, b.comms),
                   earliest(a.first_seen, b.first_seen), max(a.last_seen, b.last_seen))


def head_of(report: Report) -> Report:
    """A report's head: everything but its files, on copies the caller may keep."""
    return replace(report, files={}, labels=dict(report.labels),
                   coverage=replace(report.coverage), recovery=None)


def merge_heads(a: Report, b: Report) -> Report:
    """The head of a workload that sent reports `a` and `b` (files are not looked at)."""
    if a.last_updated_at != b.last_updated_at:
        head = head_of(a if a.last_updated_at > b.last_updated_at else b)
    else:
        head = head_of(a)
        for name in HEAD_TEXT_FIELDS:
            setattr(head, name, max(getattr(a, name), getattr(b, name)))
        head.labels = {key: max(value, b.labels[key]) if key in b.labels else value
                       for key, value in a.labels.items()}
        head.labels.update((k, v) for k, v in b.labels.items() if k not in a.labels)
        head.total_events = max(a.total_events, b.total_events)
        head.coverage = _max_coverage(a.coverage, b.coverage)
    head.started_at = earliest(a.started_at, b.started_at)
    return head


def _max_coverage(a: Coverage, b: Coverage) -> Coverage:
    merged = Coverage()
    for f in fields(Coverage):
        if f.name == "unobserved":
            merged.unobserved = merge_intervals(a.unobserved, b.unobserved)
        else:
            setattr(merged, f.name, max(getattr(a, f.name), getattr(b, f.name)))
    return merged

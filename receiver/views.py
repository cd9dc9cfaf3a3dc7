"""What the read routes answer, built from store records: pure functions, no HTTP.

An image's report is a common/report.py report (Report.to_json), so `snoop slim` and
`snoop report` read it like any other; it adds how many workloads used each file
(`file_details[path].workloads`) and how many workloads it unions (`workload_count`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from snoop.common.report import (
    Coverage,
    Report,
    add_counts,
    iso_time,
    merge_intervals,
    path_to_json,
)
from snoop.receiver.merge import FileRow, earliest
from snoop.receiver.store import ImageSummary, WorkloadRecord


def images_json(images: Iterable[ImageSummary]) -> dict[str, Any]:
    return {"images": [{"image_ref": image.image_ref, "image_digest": image.image_digest,
                        "workloads": image.workloads, "files": image.files,
                        "first_seen": iso_time(image.first_seen),
                        "last_seen": iso_time(image.last_seen)} for image in images]}


def _chosen(image: str, values: set[str]) -> str:
    """The image_ref (or digest) an image's report names: the one asked for, else the
    only one its workloads have, else none."""
    if image in values:
        return image
    return next(iter(values)) if len(values) == 1 else ""


# Counters a reporter writes, the same, into every report it keeps (reporter/store.py
# render(): its tracers' totals and the messages lost between its processes), since
# nobody can tell whose events were lost. Every other counter is the workload's own.
REPORTER_WIDE = ("kernel_dropped", "read_failures", "pending_dropped", "message_gaps",
                 "invalid_messages")
PER_WORKLOAD = tuple(f.name for f in fields(Coverage)
                     if f.name not in REPORTER_WIDE and f.name != "unobserved")


def image_coverage(workloads: list[WorkloadRecord]) -> Coverage:
    """What may be missing from an image's union: each workload's own counters summed;
    a reporter-wide counter once per reporter (its origin), the largest its workloads
    hold (it only grows, so that is the newest), summed over origins; the unobserved
    intervals unioned. Summed per workload, one lost event would count once per
    workload of its node."""
    coverage = Coverage()
    by_origin: dict[str, dict[str, int]] = {}
    heads = [record.head.coverage for record in workloads]
    for record, head in zip(workloads, heads, strict=True):
        for name in PER_WORKLOAD:
            setattr(coverage, name, add_counts(getattr(coverage, name), getattr(head, name)))
        wide = by_origin.setdefault(record.origin, dict.fromkeys(REPORTER_WIDE, 0))
        for name in REPORTER_WIDE:
            wide[name] = max(wide[name], getattr(head, name))
    coverage.unobserved = merge_intervals(*(head.unobserved for head in heads))
    for wide in by_origin.values():
        for name in REPORTER_WIDE:
            setattr(coverage, name, add_counts(getattr(coverage, name), wide[name]))
    return coverage


def image_report(image: str, workloads: list[WorkloadRecord],
                 union: Iterable[tuple[bytes, FileRow, int]]) -> dict[str, Any]:
    """The union of every file of the image's workloads (Store.image_union: each path's
    merged file and how many workloads have it), as report JSON."""
    report = Report(workload=f"image {image}",
                    image_ref=_chosen(image, {w.head.image_ref for w in workloads}),
                    image_digest=_chosen(image, {w.head.image_digest for w in workloads}))
    for record in workloads:
        head = record.head
        report.total_events = add_counts(report.total_events, head.total_events)
        report.started_at = earliest(report.started_at, head.started_at)
        report.last_updated_at = max(report.last_updated_at, head.last_updated_at)
    report.coverage = image_coverage(workloads)
    users: dict[bytes, int] = {}
    for path, row, count in union:
        report.files[path] = row.detail()
        users[path] = count
    data = report.to_json()
    # Report.dropped_events adds two counters that may each be at the int64 bound.
    data["dropped_events"] = add_counts(report.coverage.kernel_dropped,
                                        report.coverage.pending_dropped)
    details = data["file_details"]
    for path, count in users.items():
        details[path_to_json(path)]["workloads"] = count
    data["workload_count"] = len(workloads)
    return data


def is_complete(coverage: Coverage) -> bool:
    """Nothing may be missing: every counter 0, no time without a tracer."""
    return not any(coverage.counters().values()) and not coverage.unobserved


def workloads_json(image: str, workloads: Iterable[WorkloadRecord]) -> dict[str, Any]:
    return {"image": image, "workloads": [{
        "origin": record.origin,
        "workload_id": record.workload_id,
        "name": record.head.workload,
        "image_ref": record.head.image_ref,
        "image_digest": record.head.image_digest,
        "pod_name": record.head.pod_name,
        "namespace": record.head.namespace,
        "started_at": iso_time(record.head.started_at),
        "last_updated_at": iso_time(record.head.last_updated_at),
        "first_received": iso_time(record.first_received),
        "last_received": iso_time(record.last_received),
        "files": record.files,
        "total_events": record.head.total_events,
        "coverage": record.head.coverage.to_json(),
        "complete": is_complete(record.head.coverage),
    } for record in workloads]}


def diff_json(old: str, new: str, old_paths: set[bytes], new_paths: set[bytes]) -> dict[str, Any]:
    return {"from": old, "to": new,
            "added": [path_to_json(p) for p in sorted(new_paths - old_paths)],
            "removed": [path_to_json(p) for p in sorted(old_paths - new_paths)],
            "unchanged": len(old_paths & new_paths)}

"""A delta: what a reporter pushes to the API endpoint, and what `snoop receive` takes.

One delta is one workload's report with only the files new or changed since the
reporter's previous delta of it (all of them when `full`), plus the report's identity
and its coverage counters as they are now. The receiver unions deltas, so applying one
twice, or two out of order, gives the same result: a file's kinds, outcomes and process
names are unions, its first/last seen a min/max; the workload's identity and counters
come from the delta with the newest `last_updated_at`.

A workload is named fleet-wide by (`origin`, `workload_id`): the reporter's host, and
the reporter's stable key for the report (a container id, a cgroup path, or the
sidecar's name). The body's SHA-256 is its idempotency key (`delta_key`): a delta sent
again, after a timeout or a restart, changes nothing.

JSON body:
    {"delta_schema": 1, "origin": "node-a", "workload_id": "4f3c…", "full": false,
     "report": {<a report, as common/report.py writes it>}}
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from snoop.common.report import MAX_INTERVALS, Report, ReportError, iso_time, path_to_json

DELTA_SCHEMA = 1
MAX_NAME = 1024  # origin and workload_id, in characters


class DeltaError(ValueError):
    """A body that is not a valid delta; the message names the field in one line."""


@dataclass(frozen=True)
class Delta:
    origin: str
    workload_id: str
    full: bool
    report: Report

    def to_json(self) -> dict[str, Any]:
        return {"delta_schema": DELTA_SCHEMA, "origin": self.origin,
                "workload_id": self.workload_id, "full": self.full,
                "report": self.report.to_json()}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=True, separators=(",", ":"),
                          sort_keys=True).encode("ascii")

    def split(self) -> tuple[Delta, Delta]:
        """Two deltas holding half the files each; together they say what this one says.
        Both are partial: a receiver must not read half a snapshot as the whole."""
        paths = sorted(self.report.files)
        half = len(paths) // 2
        parts = []
        for chosen in (paths[:half], paths[half:]):
            report = replace(self.report, files={p: self.report.files[p] for p in chosen},
                             recovery=None)
            parts.append(replace(self, full=False, report=report))
        return parts[0], parts[1]


def delta_key(body: bytes) -> str:
    """The idempotency key of an encoded delta."""
    return hashlib.sha256(b"snoop-delta\0" + body).hexdigest()


def _name(data: dict, field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise DeltaError(f"{field}: expected a string")
    if len(value) > MAX_NAME:
        raise DeltaError(f"{field}: longer than {MAX_NAME} characters")
    return value


_REPORT_TEXT = ("workload", "workload_key", "container_id", "container_name", "cgroup_path",
                "image_ref", "image_digest", "pod_name", "namespace")
_REPORT_OBJECTS = ("labels", "file_details", "coverage")


def _check_report_shape(report: Any) -> None:
    """What Report.from_json reads leniently from a file on disk (a number as a name, null
    as no labels, one kind for a list of them), a delta may not hold: a receiver stores
    what was sent or nothing."""
    if not isinstance(report, dict):
        return  # from_json says what is wrong
    if "schema" in report and type(report["schema"]) is not int:
        raise DeltaError("report.schema: expected 1")
    for name in _REPORT_TEXT:
        if name in report and not isinstance(report[name], str):
            raise DeltaError(f"report.{name}: expected a string")
    for name in ("started_at", "last_updated_at"):
        if name in report and not (isinstance(report[name], str) and report[name]):
            raise DeltaError(f"report.{name}: expected an ISO 8601 time")
        _check_offset(report.get(name), f"report.{name}")
    dropped = report.get("dropped_events", 0)  # read only when coverage is missing
    if type(dropped) is not int or dropped < 0:
        raise DeltaError("report.dropped_events: expected a count")
    for name in _REPORT_OBJECTS:
        if name in report and not isinstance(report[name], dict):
            raise DeltaError(f"report.{name}: expected an object")
    unobserved = report.get("coverage", {}).get("unobserved")
    if isinstance(unobserved, list):
        if len(unobserved) > MAX_INTERVALS:
            # No reporter sends more (merge_intervals joins them), and joining them is work.
            raise DeltaError(f"report.coverage.unobserved: {len(unobserved)} intervals, "
                             f"expected at most {MAX_INTERVALS}")
        for interval in unobserved:
            for value in interval if isinstance(interval, list) else ():
                _check_offset(value, "report.coverage.unobserved")
    if not all(isinstance(value, str) for value in report.get("labels", {}).values()):
        raise DeltaError("report.labels: expected string values")
    for path, detail in report.get("file_details", {}).items():
        if not isinstance(detail, dict):
            raise DeltaError(f"report.file_details[{path[:80]!r}]: expected an object")
        if "kinds" in detail and not isinstance(detail["kinds"], list):
            raise DeltaError(f"report.file_details[{path[:80]!r}].kinds: expected a list")
        for name in ("first_seen", "last_seen"):
            _check_offset(detail.get(name), f"report.file_details[{path[:80]!r}].{name}")


def _check_offset(value: Any, field: str) -> None:
    """A time without a UTC offset would be read in the receiver's local time zone: a
    reporter writes Z, so one without is refused."""
    if not isinstance(value, str):
        return  # from_json says what is wrong
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return  # from_json says what is wrong
    if parsed.tzinfo is None:
        raise DeltaError(f"{field}: {value[:40]!r} has no UTC offset, expected Z or +HH:MM")


def decode_delta(body: bytes | str, *, latest: float = math.inf) -> Delta:
    """A delta from its JSON body, strictly: anything unreadable is a DeltaError, so a
    receiver never stores half of what was meant. So is a time later than `latest`: the
    newest `last_updated_at` wins, so one far ahead would pin a workload's head."""
    try:
        delta = _decode(body)
    except RecursionError:  # json.loads, or reading what it built: arrays in arrays ...
        raise DeltaError("body: nested too deeply") from None
    _check_not_after(delta.report, latest)
    return delta


def _check_not_after(report: Report, latest: float) -> None:
    def refuse(field: str, value: float) -> None:
        raise DeltaError(f"{field}: {iso_time(value)} is later than {iso_time(latest)}")

    for name in ("started_at", "last_updated_at"):
        if getattr(report, name) > latest:
            refuse(f"report.{name}", getattr(report, name))
    for path, detail in report.files.items():
        for name in ("first_seen", "last_seen"):
            if getattr(detail, name) > latest:
                refuse(f"report.file_details[{path_to_json(path)[:80]!r}].{name}",
                       getattr(detail, name))


def _decode(body: bytes | str) -> Delta:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeltaError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DeltaError("expected a JSON object")
    if type(data.get("delta_schema")) is not int or data["delta_schema"] != DELTA_SCHEMA:
        raise DeltaError(f"delta_schema: {str(data.get('delta_schema'))[:20]!r}, "
                         f"expected {DELTA_SCHEMA}")
    full = data.get("full")
    if not isinstance(full, bool):
        raise DeltaError("full: expected true or false")
    _check_report_shape(data.get("report"))
    try:
        report = Report.from_json(data.get("report"))
    except ReportError as exc:
        raise DeltaError(f"report: {exc}") from None
    if report.recovery is not None:
        raise DeltaError(f"report: {report.recovery.first}")
    return Delta(_name(data, "origin"), _name(data, "workload_id"), full, report)

"""The report: one workload's deduplicated file set, its identity and coverage counters.

Shared by the reporter (which builds and persists reports) and by `snoop report` and
`snoop slim` (which read them). JSON field names follow the plan: `container_id`,
`image_ref`, `image_digest`, `pod_name`, `namespace`, `labels`, `started_at`,
`last_updated_at`, `files`, `total_events`, `dropped_events`; the rest extends it.

Paths are bytes. In JSON a path that is not valid UTF-8 is written with PEP 383
"surrogateescape": each undecodable byte 0xHH becomes the code point U+DCHH, which JSON
writes as the escape "\\udcHH". `path_from_json(path_to_json(p)) == p` for every path.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from snoop.common.protocol import ACCESS_KIND_NAMES, AccessKind, CaptureCounts

REPORT_SCHEMA = 1
_KIND_BY_NAME = {name: kind for kind, name in ACCESS_KIND_NAMES.items()}


class ReportError(ValueError):
    """A file that is not a Snoop report; the message names what is wrong."""


def path_to_json(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def path_from_json(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def iso_time(timestamp: float) -> str:
    """UTC, millisecond precision: 2026-11-22T01:02:03.456Z."""
    millis = int(round(timestamp * 1000))
    seconds, millis = divmod(millis, 1000)
    return f"{_utc_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=65536)
def _utc_second(seconds: int) -> str:
    # Reports hold many files first seen in the same second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_iso_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class FileDetail:
    kinds: int = 0  # bit mask: 1 << AccessKind
    first_seen: float = 0.0
    last_seen: float = 0.0

    def merge(self, kinds: int, first_seen: float, last_seen: float) -> bool:
        """Fold another sighting in; True when anything changed."""
        before = (self.kinds, self.first_seen, self.last_seen)
        self.kinds |= kinds
        self.first_seen = min(self.first_seen, first_seen) if self.first_seen else first_seen
        self.last_seen = max(self.last_seen, last_seen)
        return before != (self.kinds, self.first_seen, self.last_seen)


@dataclass
class Coverage:
    """What may be missing from `files`, and why. All zero means nothing was lost."""

    kernel_dropped: int = 0  # events the kernel could not deliver (ring buffer full)
    read_failures: int = 0  # paths unreadable at syscall entry and exit
    unresolved_paths: int = 0  # relative paths not made absolute, so not in `files`
    message_gaps: int = 0  # messages lost between processes (sequence gaps)
    invalid_messages: int = 0  # messages dropped as malformed
    pending_dropped: int = 0  # unconfirmed events a tracer had to give up re-sending
    unique_file_cap_hits: int = 0  # paths not kept because a memory cap was reached
    # The tracer's CaptureCounts, same names (common/protocol.py says what each means).
    paths_too_long: int = 0
    uncertain_paths: int = 0
    io_uring_ops: int = 0

    def add(self, other: Coverage) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def add_capture(self, capture: CaptureCounts) -> None:
        for f in fields(capture):
            setattr(self, f.name, getattr(self, f.name) + getattr(capture, f.name))

    def warnings(self) -> list[str]:
        """One line per counter whose cause the user should hear about in plain words."""
        lines = []
        if self.io_uring_ops:
            lines.append(f"the workload used io_uring ({self.io_uring_ops} open/stat "
                         "requests), whose paths Snoop cannot see: the file list may be "
                         "incomplete")
        return lines


@dataclass
class Report:
    workload: str = ""
    container_id: str = ""
    cgroup_path: str = ""
    image_ref: str = ""
    image_digest: str = ""
    pod_name: str = ""
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    last_updated_at: float = 0.0
    files: dict[bytes, FileDetail] = field(default_factory=dict)
    total_events: int = 0
    coverage: Coverage = field(default_factory=Coverage)

    @property
    def dropped_events(self) -> int:
        return self.coverage.kernel_dropped + self.coverage.pending_dropped

    def add_file(self, path: bytes, kinds: int, first_seen: float, last_seen: float) -> bool:
        """Union one path into the report; True when the report changed."""
        detail = self.files.get(path)
        if detail is None:
            self.files[path] = FileDetail(kinds, first_seen, last_seen)
            return True
        return detail.merge(kinds, first_seen, last_seen)

    def merge(self, other: Report) -> None:
        """Set union of files; counters add up; identity fields fill in where empty."""
        for path, detail in other.files.items():
            self.add_file(path, detail.kinds, detail.first_seen, detail.last_seen)
        self.total_events += other.total_events
        self.coverage.add(other.coverage)
        for name in ("workload", "container_id", "cgroup_path", "image_ref", "image_digest",
                     "pod_name", "namespace"):
            if not getattr(self, name):
                setattr(self, name, getattr(other, name))
        self.labels = {**other.labels, **self.labels}
        starts = [t for t in (self.started_at, other.started_at) if t]
        self.started_at = min(starts) if starts else 0.0
        self.last_updated_at = max(self.last_updated_at, other.last_updated_at)

    def copy(self) -> Report:
        return replace(
            self,
            labels=dict(self.labels),
            files={p: replace(d) for p, d in self.files.items()},
            coverage=replace(self.coverage),
        )

    # ------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        paths = sorted(self.files)
        texts = [path_to_json(p) for p in paths]
        details = {}
        for path, text in zip(paths, texts, strict=True):
            detail = self.files[path]
            details[text] = {
                "kinds": kinds_by_name(detail.kinds),
                "first_seen": iso_time(detail.first_seen),
                "last_seen": iso_time(detail.last_seen),
            }
        return {
            "schema": REPORT_SCHEMA,
            "workload": self.workload,
            "container_id": self.container_id,
            "cgroup_path": self.cgroup_path,
            "image_ref": self.image_ref,
            "image_digest": self.image_digest,
            "pod_name": self.pod_name,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "started_at": iso_time(self.started_at),
            "last_updated_at": iso_time(self.last_updated_at),
            "files": texts,
            "file_details": details,
            "total_events": self.total_events,
            "dropped_events": self.dropped_events,
            "coverage": dict(vars(self.coverage)),
        }

    def dumps(self) -> str:
        """JSON text: one file per line, so reports diff well; fast at 100K files.

        json's C encoder is used for every value (indent= would switch to the pure-Python
        one). ensure_ascii keeps surrogate-escaped bytes as \\udcHH: valid UTF-8 text.
        """
        data = self.to_json()
        encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ": ")).encode
        lines = []
        for key, value in data.items():
            if key in ("files", "file_details") and value:
                items = (encode(v) for v in value) if key == "files" else (
                    f"{encode(k)}: {encode(v)}" for k, v in value.items())
                opener, closer = ("[", "]") if key == "files" else ("{", "}")
                body = ",\n  ".join(items)
                lines.append(f" {encode(key)}: {opener}\n  {body}\n {closer}")
            else:
                lines.append(f" {encode(key)}: {encode(value)}")
        return "{\n" + ",\n".join(lines) + "\n}\n"

    @classmethod
    def from_json(cls, data: Any) -> Report:
        try:
            return cls._from_json(data)
        except ReportError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ReportError(f"malformed report: {exc.__class__.__name__}: {exc}") from None

    @classmethod
    def _from_json(cls, data: Any) -> Report:
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise ReportError("not a Snoop report: expected an object with a 'files' list")
        if data.get("schema", REPORT_SCHEMA) != REPORT_SCHEMA:
            raise ReportError(f"report schema {data.get('schema')!r}, expected {REPORT_SCHEMA}")
        details = data.get("file_details") or {}
        if not isinstance(details, dict):
            raise ReportError("file_details: expected an object")
        started = parse_iso_time(data["started_at"]) if data.get("started_at") else 0.0
        updated = parse_iso_time(data["last_updated_at"]) if data.get("last_updated_at") else 0.0
        files: dict[bytes, FileDetail] = {}
        for text in data["files"]:
            if not isinstance(text, str) or not text:
                raise ReportError(f"files: expected non-empty path strings, got {text!r}")
            detail = details.get(text) or {}
            kinds = 0
            for name in detail.get("kinds", []):
                if name not in _KIND_BY_NAME:
                    raise ReportError(f"file_details[{text!r}]: unknown access kind {name!r}")
                kinds |= 1 << int(_KIND_BY_NAME[name])
            files[path_from_json(text)] = FileDetail(
                kinds=kinds,
                first_seen=parse_iso_time(detail["first_seen"]) if "first_seen" in detail
                else started,
                last_seen=parse_iso_time(detail["last_seen"]) if "last_seen" in detail
                else updated,
            )
        raw_coverage = data.get("coverage") or {}
        coverage = Coverage(**{
            name: int(raw_coverage.get(name, 0)) for name in Coverage.__dataclass_fields__
        })
        if not raw_coverage and data.get("dropped_events"):
            coverage.kernel_dropped = int(data["dropped_events"])
        labels = data.get("labels") or {}
        if not isinstance(labels, dict):
            raise ReportError("labels: expected an object")
        return cls(
            workload=str(data.get("workload", "")),
            container_id=str(data.get("container_id", "")),
            cgroup_path=str(data.get("cgroup_path", "")),
            image_ref=str(data.get("image_ref", "")),
            image_digest=str(data.get("image_digest", "")),
            pod_name=str(data.get("pod_name", "")),
            namespace=str(data.get("namespace", "")),
            labels={str(k): str(v) for k, v in labels.items()},
            started_at=started,
            last_updated_at=updated,
            files=files,
            total_events=int(data.get("total_events", 0)),
            coverage=coverage,
        )


def load_report(path: str | os.PathLike) -> Report:
    """Read a report file; ReportError names the file and the problem."""
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read())
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ReportError(f"{path}: not JSON: {exc}") from None
    try:
        return Report.from_json(data)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory.

    Readers see the old file or the new one, never a partial one; on any error the old
    file is untouched and the temp file is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            data = text.encode("utf-8")
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def merge_reports(reports: Iterable[Report]) -> Report:
    merged = Report()
    for report in reports:
        merged.merge(report)
    return merged


def kinds_by_name(mask: int) -> list[str]:
    return list(_kind_names(mask))


@lru_cache(maxsize=4096)
def _kind_names(mask: int) -> tuple[str, ...]:
    return tuple(ACCESS_KIND_NAMES[k] for k in AccessKind if mask & (1 << int(k)))


def counts_by_kind(files: Mapping[bytes, FileDetail]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for detail in files.values():
        for name in kinds_by_name(detail.kinds):
            counts[name] = counts.get(name, 0) + 1
    return counts

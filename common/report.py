"""The report: one workload's deduplicated file set, its identity and coverage counters.

Shared by the reporter (which builds and persists reports) and by `snoop report` and
`snoop slim` (which read them). JSON field names follow the plan: `container_id`,
`image_ref`, `image_digest`, `pod_name`, `namespace`, `labels`, `started_at`,
`last_updated_at`, `files`, `total_events`, `dropped_events`; the rest extends it.

Paths are bytes. In JSON a path that is not valid UTF-8 is written with PEP 383
"surrogateescape": each undecodable byte 0xHH becomes the code point U+DCHH, which JSON
writes as the escape "\\udcHH". `path_from_json(path_to_json(p)) == p` for every path.

Never lose history: writing clamps any timestamp to what the format can hold (years
1970-9999), counters saturate at int64, and loading keeps every path it can read. A
field or entry it cannot parse (a time, a kind, a counter) falls back to a safe value
and is noted in `Report.recovery`; only a file that is no report at all is a
ReportError.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from snoop.common.outcomes import FOUND, MAYBE_FOUND, error_names, outcomes_from_names
from snoop.common.protocol import (
    ACCESS_KIND_NAMES,
    COMM_BYTES,
    COUNT_MAX,
    MAX_COMMS,
    AccessKind,
    CaptureCounts,
)

REPORT_SCHEMA = 1
# The latest time an ISO 8601 report timestamp (four-digit year) can hold.
REPORT_TIME_MAX = 253402300799.999  # 9999-12-31T23:59:59.999Z
_KIND_BY_NAME = {name: kind for kind, name in ACCESS_KIND_NAMES.items()}


class ReportError(ValueError):
    """A file that is not a Snoop report; the message names what is wrong."""


def path_to_json(path: bytes) -> str:
    return path.decode("utf-8", "surrogateescape")


def path_from_json(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def iso_time(timestamp: float) -> str:
    """UTC, millisecond precision: 2026-11-22T01:02:03.456Z.

    Never raises: a time outside 1970..9999 (or NaN) is clamped into it, so whatever
    is written loads again. Receivers refuse such times at the edge (protocol.decode).
    """
    if not 0.0 <= timestamp <= REPORT_TIME_MAX:  # also False for NaN
        timestamp = REPORT_TIME_MAX if timestamp > 0 else 0.0
    millis = int(round(timestamp * 1000))
    seconds, millis = divmod(millis, 1000)
    return f"{_utc_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=65536)
def _utc_second(seconds: int) -> str:
    # Reports hold many files first seen in the same second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_iso_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def add_counts(a: int, b: int) -> int:
    """a + b, saturating at COUNT_MAX: a report counter stays within int64."""
    return min(a + b, COUNT_MAX)


MAX_INTERVALS = 1000


def merge_intervals(*groups: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """The union of (from, to) intervals, sorted, overlapping ones joined. Past
    MAX_INTERVALS the closest neighbours are joined: an interval may grow, never shrink,
    so what was unobserved stays covered.

    Joining two neighbours leaves every other gap as it was, so joining the smallest gap
    again and again (the lower one first on a tie) keeps the MAX_INTERVALS - 1 largest
    gaps: one sort finds them, where joining one pair at a time was quadratic (hours for
    a hostile delta's intervals)."""
    merged: list[list[float]] = []
    for start, end in sorted(i for group in groups for i in group):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if len(merged) > MAX_INTERVALS:
        gaps = sorted(range(len(merged) - 1), key=lambda i: (merged[i + 1][0] - merged[i][1], i))
        kept = sorted(gaps[len(merged) - MAX_INTERVALS:])  # the gaps that stay open
        starts = [0, *(i + 1 for i in kept)]
        ends = [*kept, len(merged) - 1]
        merged = [[merged[a][0], merged[b][1]] for a, b in zip(starts, ends, strict=True)]
    return tuple((a, b) for a, b in merged)


@dataclass(slots=True)  # one per file: 100K of them in a report
class FileDetail:
    kinds: int = 0  # bit mask: 1 << AccessKind
    first_seen: float = 0.0
    last_seen: float = 0.0
    outcomes: int = 0  # bit mask of common/outcomes.py; 0 when no outcome is known
    comms: tuple[str, ...] = ()  # process names that made the accesses, MAX_COMMS at most
    # This entry's line of `dumps()`, kept until the entry changes: a report is written
    # again and again, and most of its files have not changed since the last time.
    line: str = field(default="", compare=False, repr=False)
    name: str = field(default="", compare=False, repr=False)  # its path, as JSON text

    @property
    def found(self) -> bool | None:
        """True when an access succeeded, False when every one failed, None: not known
        (no outcome, or one of an access nobody recorded the outcome of)."""
        if self.outcomes & FOUND:
            return True
        return None if not self.outcomes or self.outcomes & MAYBE_FOUND else False

    def merge(self, kinds: int, first_seen: float, last_seen: float, outcomes: int = 0,
              comms: Iterable[str] = ()) -> bool:
        """Fold another sighting in; True when anything changed."""
        before = (self.kinds, self.first_seen, self.last_seen, self.outcomes, self.comms)
        self.kinds |= kinds
        self.first_seen = min(self.first_seen, first_seen) if self.first_seen else first_seen
        self.last_seen = max(self.last_seen, last_seen)
        self.outcomes |= outcomes
        for comm in comms:
            if comm not in self.comms and len(self.comms) < MAX_COMMS:
                self.comms += (comm,)
        if before == (self.kinds, self.first_seen, self.last_seen, self.outcomes, self.comms):
            return False
        self.line = ""
        return True

    def to_json(self) -> dict[str, Any]:
        return {"kinds": kinds_by_name(self.kinds), "found": self.found,
                "errors": error_names(self.outcomes), "comms": list(self.comms),
                "first_seen": iso_time(self.first_seen), "last_seen": iso_time(self.last_seen)}


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
    # (from, to) wall times when no tracer was attached: nothing was seen then.
    unobserved: tuple[tuple[float, float], ...] = ()

    def add(self, other: Coverage) -> None:
        for name in self.__dataclass_fields__:
            if name == "unobserved":
                self.unobserved = merge_intervals(self.unobserved, other.unobserved)
            else:
                setattr(self, name, add_counts(getattr(self, name), getattr(other, name)))

    def counters(self) -> dict[str, int]:
        return {name: value for name, value in vars(self).items() if name != "unobserved"}

    def to_json(self) -> dict[str, Any]:
        return {**self.counters(),
                "unobserved": [[iso_time(a), iso_time(b)] for a, b in self.unobserved]}

    def add_capture(self, capture: CaptureCounts) -> None:
        for f in fields(capture):
            setattr(self, f.name, add_counts(getattr(self, f.name), getattr(capture, f.name)))

    def warnings(self) -> list[str]:
        """One line per counter whose cause the user should hear about in plain words."""
        lines = []
        if self.unobserved:
            seconds = sum(b - a for a, b in self.unobserved)
            first = self.unobserved[0]
            lines.append(f"no tracer was attached for {seconds:.1f} s in "
                         f"{len(self.unobserved)} interval(s), the first from "
                         f"{iso_time(first[0])} to {iso_time(first[1])}: files touched "
                         "then may be missing")
        if self.io_uring_ops:
            lines.append(f"the workload used io_uring ({self.io_uring_ops} open/stat "
                         "requests), whose paths Snoop cannot see: the file list may be "
                         "incomplete")
        return lines


@dataclass(frozen=True)
class Recovery:
    """What loading a report could not read as written; everything else was kept."""

    problems: int  # fields and entries that fell back to a default or were skipped
    lost_paths: int  # entries of `files` that were no path at all, so are not kept
    first: str  # the first problem, for a log line
    path: str = ""  # the file read (set by load_report)


@dataclass
class Report:
    workload: str = ""  # what people call it (see reporter/store.py); else its key
    # The stable key its events come under (a container id, a cgroup path); "" in a
    # report written before the field, whose `workload` was its key.
    workload_key: str = ""
    container_id: str = ""
    container_name: str = ""  # what its runtime calls the container (node mode)
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
    # Set by from_json when parts of the file could not be read (not written to JSON).
    recovery: Recovery | None = field(default=None, compare=False, repr=False)

    @property
    def dropped_events(self) -> int:
        return add_counts(self.coverage.kernel_dropped, self.coverage.pending_dropped)

    def add_file(self, path: bytes, kinds: int, first_seen: float, last_seen: float,
                 outcomes: int = 0, comms: Iterable[str] = ()) -> bool:
        """Union one path into the report; True when the report changed."""
        detail = self.files.get(path)
        if detail is None:
            # The caller's tuple itself when it can be: one per distinct set of names.
            names = comms if type(comms) is tuple and len(comms) <= MAX_COMMS \
                else tuple(dict.fromkeys(comms))[:MAX_COMMS]
            self.files[path] = FileDetail(kinds, first_seen, last_seen, outcomes, names)
            return True
        return detail.merge(kinds, first_seen, last_seen, outcomes, comms)

    def merge(self, other: Report) -> None:
        """Set union of files; counters add up; identity fields fill in where empty."""
        for path, detail in other.files.items():
            self.add_file(path, detail.kinds, detail.first_seen, detail.last_seen,
                          detail.outcomes, detail.comms)
        self.total_events = add_counts(self.total_events, other.total_events)
        self.coverage.add(other.coverage)
        for name in ("workload", "workload_key", "container_id", "container_name",
                     "cgroup_path", "image_ref", "image_digest", "pod_name", "namespace"):
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
        files = self.files
        return {**self._head_json(), "files": texts,
                "file_details": {text: files[path].to_json()
                                 for path, text in zip(paths, texts, strict=True)},
                **self._tail_json()}

    def _head_json(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "workload": self.workload,
            "workload_key": self.workload_key,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "cgroup_path": self.cgroup_path,
            "image_ref": self.image_ref,
            "image_digest": self.image_digest,
            "pod_name": self.pod_name,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "started_at": iso_time(self.started_at),
            "last_updated_at": iso_time(self.last_updated_at),
        }

    def _tail_json(self) -> dict[str, Any]:
        return {
            "total_events": self.total_events,
            "dropped_events": self.dropped_events,
            "coverage": self.coverage.to_json(),
        }

    def dumps(self) -> str:
        """JSON text: one file per line, so reports diff well; fast at 100K files.

        json's C encoder is used for every value (indent= would switch to the pure-Python
        one). ensure_ascii keeps surrogate-escaped bytes as \\udcHH: valid UTF-8 text.
        """
        encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ": ")).encode
        lines = [f" {encode(key)}: {encode(value)}" for key, value in self._head_json().items()]
        paths = sorted(self.files)
        if paths:
            files = self.files
            names, details = [], []
            for path in paths:
                detail = files[path]
                if not detail.line:
                    if not detail.name:
                        detail.name = encode(path_to_json(path))
                    head = _detail_head(detail.kinds, detail.outcomes, detail.comms)
                    detail.line = (
                        f'{detail.name}: {head}"first_seen": "{iso_time(detail.first_seen)}",'
                        f'"last_seen": "{iso_time(detail.last_seen)}"}}')
                names.append(detail.name)
                details.append(detail.line)
            lines.append(' "files": [\n  ' + ",\n  ".join(names) + "\n ]")
            lines.append(' "file_details": {\n  ' + ",\n  ".join(details) + "\n }")
        else:
            lines += [' "files": []', ' "file_details": {}']
        lines += [f" {encode(key)}: {encode(value)}" for key, value in self._tail_json().items()]
        return "{\n" + ",\n".join(lines) + "\n}\n"

    @classmethod
    def from_json(cls, data: Any) -> Report:
        """A report from parsed JSON. ReportError only when `data` is no report at all;
        unreadable parts are recovered as far as possible and noted in `recovery`."""
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise ReportError("not a Snoop report: expected an object with a 'files' list")
        if data.get("schema", REPORT_SCHEMA) != REPORT_SCHEMA:
            raise ReportError(f"report schema {data.get('schema')!r}, expected {REPORT_SCHEMA}")
        try:
            return _Reader(data).report()
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ReportError(f"malformed report: {exc.__class__.__name__}: {exc}") from None


class _Reader:
    """Reads one report object, keeping every path it can and noting what it cannot."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.problems: list[str] = []
        self.lost_paths = 0

    def note(self, problem: str) -> None:
        self.problems.append(problem)

    def time(self, value: Any, name: str, fallback: float) -> float:
        try:
            return parse_iso_time(value)
        except (TypeError, ValueError, AttributeError, OverflowError):
            self.note(f"{name}: unreadable time {str(value)[:40]!r}")
            return fallback

    def intervals(self, value: Any) -> tuple[tuple[float, float], ...]:
        found = []
        for raw in value if isinstance(value, list) else []:
            if isinstance(raw, list) and len(raw) == 2:
                start = self.time(raw[0], "coverage.unobserved", -1.0)
                end = self.time(raw[1], "coverage.unobserved", -1.0)
                if 0 <= start <= end:
                    found.append((start, end))
                    continue
            self.note(f"coverage.unobserved: unreadable interval {str(raw)[:40]!r}")
        if not isinstance(value, list):
            self.note("coverage.unobserved: expected a list")
        return merge_intervals(found)

    def count(self, value: Any, name: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return min(value, COUNT_MAX)
        self.note(f"{name}: expected a count, got {str(value)[:40]!r}")
        return 0

    def mapping(self, value: Any, name: str) -> dict:
        if value is None or isinstance(value, dict):
            return value or {}
        self.note(f"{name}: expected an object")
        return {}

    def report(self) -> Report:
        data = self.data
        details = self.mapping(data.get("file_details"), "file_details")
        started = self.time(data["started_at"], "started_at", 0.0) \
            if data.get("started_at") else 0.0
        updated = self.time(data["last_updated_at"], "last_updated_at", started) \
            if data.get("last_updated_at") else 0.0
        files: dict[bytes, FileDetail] = {}
        for text in data["files"]:
            try:
                if not isinstance(text, str) or not text:
                    raise ValueError("expected a non-empty path string")
                path = path_from_json(text)
            except ValueError as exc:  # UnicodeEncodeError: a surrogate no path makes
                self.lost_paths += 1
                self.note(f"files: {str(text)[:40]!r}: {exc}")
                continue
            files[path] = self.detail(text, details.get(text), started, updated)
        raw_coverage = self.mapping(data.get("coverage"), "coverage")
        coverage = Coverage(**{
            name: self.count(raw_coverage.get(name, 0), f"coverage.{name}")
            for name in Coverage.__dataclass_fields__ if name != "unobserved"
        })
        coverage.unobserved = self.intervals(raw_coverage.get("unobserved", []))
        if not raw_coverage and data.get("dropped_events"):
            coverage.kernel_dropped = self.count(data["dropped_events"], "dropped_events")
        labels = self.mapping(data.get("labels"), "labels")
        report = Report(
            workload=str(data.get("workload", "")),
            workload_key=str(data.get("workload_key", "")),
            container_id=str(data.get("container_id", "")),
            container_name=str(data.get("container_name", "")),
            cgroup_path=str(data.get("cgroup_path", "")),
            image_ref=str(data.get("image_ref", "")),
            image_digest=str(data.get("image_digest", "")),
            pod_name=str(data.get("pod_name", "")),
            namespace=str(data.get("namespace", "")),
            labels={str(k): str(v) for k, v in labels.items()},
            started_at=started,
            last_updated_at=updated,
            files=files,
            total_events=self.count(data.get("total_events", 0), "total_events"),
            coverage=coverage,
        )
        if self.problems:
            report.recovery = Recovery(len(self.problems), self.lost_paths, self.problems[0])
        return report

    def detail(self, text: str, raw: Any, started: float, updated: float) -> FileDetail:
        """A path is kept even when nothing else about it can be read."""
        detail = self.mapping(raw, f"file_details[{text!r}]")
        kinds = 0
        names = detail.get("kinds", [])
        for name in names if isinstance(names, list) else [names]:
            kind = _KIND_BY_NAME.get(name) if isinstance(name, str) else None
            if kind is None:
                self.note(f"file_details[{text!r}]: unknown access kind {str(name)[:40]!r}")
                continue
            kinds |= 1 << int(kind)
        first = self.time(detail["first_seen"], f"file_details[{text!r}].first_seen", started) \
            if "first_seen" in detail else started
        last = self.time(detail["last_seen"], f"file_details[{text!r}].last_seen", updated) \
            if "last_seen" in detail else updated
        result = FileDetail(kinds=kinds, first_seen=first, last_seen=max(first, last))
        result.merge(0, first, last, self.outcomes(detail, text), self.comms(detail, text))
        return result

    def outcomes(self, detail: dict, text: str) -> int:
        """`found` and `errors` as a mask; a report older than them has neither (0)."""
        found = detail.get("found")
        errors = detail.get("errors", [])
        if found not in (True, False, None):
            self.note(f"file_details[{text!r}].found: expected true, false or null")
            found = None
        if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
            self.note(f"file_details[{text!r}].errors: expected a list of errno names")
            errors = []
        mask, unknown = outcomes_from_names(bool(found), errors)
        if found is None:  # not known (a report from before outcomes): may have been found
            mask |= MAYBE_FOUND
        if unknown:
            self.note(f"file_details[{text!r}].errors: unknown errno {unknown[0][:40]!r}")
        return mask

    def comms(self, detail: dict, text: str) -> list[str]:
        comms = detail.get("comms", [])
        if not isinstance(comms, list) or not all(isinstance(c, str) for c in comms):
            self.note(f"file_details[{text!r}].comms: expected a list of process names")
            return []
        return [comm[:COMM_BYTES - 1] for comm in comms[:MAX_COMMS]]


def load_report(path: str | os.PathLike) -> Report:
    """Read a report file; ReportError (naming the file) only when it is no report at all.

    Parts it cannot read are recovered as far as possible: see `Report.recovery`. A file
    that is not JSON any more (damaged on disk) is read line by line, as `dumps()` wrote
    it, for every entry still whole.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror}") from None
    salvage: tuple[int, str] | None = None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        data, bad_lines = _salvage_lines(raw.decode("utf-8", "replace"))
        if data is None:
            raise ReportError(f"{path}: not JSON: {exc}") from None
        salvage = (bad_lines, f"not JSON ({exc}): read line by line")
    try:
        report = Report.from_json(data)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None
    if salvage is not None:
        bad_lines, problem = salvage
        before = report.recovery or Recovery(0, 0, problem)
        report.recovery = Recovery(before.problems + 1 + bad_lines, before.lost_paths, problem)
    if report.recovery is not None:
        report.recovery = replace(report.recovery, path=os.fspath(path))
    return report


def _salvage_lines(text: str) -> tuple[dict | None, int]:
    """The entries of a damaged `dumps()` text that still parse, and how many lines did not.

    `dumps()` puts each top-level field on a line of its own (` "key": value`), and each
    path of `files` and each entry of `file_details` on one line inside them.
    """
    data: dict[str, Any] = {}
    bad = 0
    section: str | None = None
    for line in text.splitlines():
        stripped = line.strip().rstrip(",")
        if not stripped or stripped in ("{", "}"):
            continue
        try:
            if section is not None and line.startswith("  "):
                if section == "files":
                    data["files"].append(json.loads(stripped))
                else:
                    entry = json.loads("{" + stripped + "}")
                    data["file_details"].update(entry)
                continue
            if stripped in ("]", "}") or line.startswith(" ]") or line.startswith(" }"):
                section = None
                continue
            entry = json.loads("{" + stripped.removesuffix("[").removesuffix("{") + "null}") \
                if stripped.endswith(("[", "{")) else json.loads("{" + stripped + "}")
        except ValueError:
            bad += 1
            continue
        for key, value in entry.items():
            if key in ("files", "file_details") and value is None:
                section = key
                data[key] = [] if key == "files" else {}
            else:
                data[key] = value
    if not data.get("files"):
        return None, bad
    return data, bad


def write_atomically(path: str | os.PathLike, text: str | bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory.

    Readers see the old file or the new one, never a partial one; on any error the old
    file is untouched and the temp file is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            data = text.encode("utf-8") if isinstance(text, str) else text
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


def keep_copy(path: str | os.PathLike, suffix: str) -> str:
    """Keep the file at `path` as `path + suffix` (a hard link, else a copy); returns it.

    For a file about to be rewritten whose old content must survive. Raises OSError
    when neither works: then the caller must not overwrite `path`.
    """
    target = f"{os.fspath(path)}{suffix}"
    n = 0
    while os.path.lexists(target):
        n += 1
        target = f"{os.fspath(path)}{suffix}-{n}"
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)
    return target


def merge_reports(reports: Iterable[Report]) -> Report:
    merged = Report()
    for report in reports:
        merged.merge(report)
    return merged


def kinds_by_name(mask: int) -> list[str]:
    return list(_kind_names(mask))


@lru_cache(maxsize=4096)
def _detail_head(kinds: int, outcomes: int, comms: tuple[str, ...]) -> str:
    """A file's JSON line up to its times, as `json` writes FileDetail.to_json(): files of
    a workload share a few kinds, outcomes and names, so most lines reuse one."""
    encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ": ")).encode
    found = FileDetail(kinds, 0.0, 0.0, outcomes, comms)
    return (f'{{"kinds": {encode(kinds_by_name(kinds))},"found": {encode(found.found)},'
            f'"errors": {encode(error_names(outcomes))},"comms": {encode(list(comms))},')


@lru_cache(maxsize=4096)
def _kind_names(mask: int) -> tuple[str, ...]:
    return tuple(ACCESS_KIND_NAMES[k] for k in AccessKind if mask & (1 << int(k)))


def counts_by_kind(files: Mapping[bytes, FileDetail]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for detail in files.values():
        for name in kinds_by_name(detail.kinds):
            counts[name] = counts.get(name, 0) + 1
    return counts

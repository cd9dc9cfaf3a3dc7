"""What the receiver keeps, behind one small interface: `Store`, with a SQLite
(store_sqlite.py) and a PostgreSQL (store_postgres.py) back end on the same schema.

Storing a delta is one transaction: record its idempotency key and body hash, lock and
merge the workload's head, merge its files (merge.py says how). Every writer of a
workload holds its row lock (PostgreSQL) or the database's write lock (SQLite) while it
reads and rewrites that workload's files, so receivers sharing a database never lose an
update.

Text from a report is stored as UTF-8 bytes with surrogates passed through: a JSON
string may hold NUL or a lone surrogate (a cgroup path with undecodable bytes), which
neither database's text type can keep. Paths are bytes already.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from snoop.common.delta import Delta
from snoop.common.report import Coverage, Report, merge_intervals
from snoop.receiver.merge import FileRow

U64 = 1 << 64
I64_MAX = (1 << 63) - 1


class StoreError(RuntimeError):
    """The database cannot be reached or used; the message says which and why."""


class MigrationError(StoreError):
    """The database's schema is not one this receiver can use or bring up to date."""


class Outcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # this key with this body was stored before: nothing changed
    CONFLICT = "conflict"  # this key was stored before with another body: refused


@dataclass(frozen=True)
class Stored:
    outcome: Outcome
    files: int = 0  # file entries merged (those of the delta)


@dataclass(frozen=True)
class ImageSummary:
    image_ref: str
    image_digest: str
    workloads: int
    files: int  # distinct paths over its workloads
    first_seen: float  # earliest started_at of its workloads
    last_seen: float  # latest last_updated_at


@dataclass(frozen=True)
class WorkloadRecord:
    origin: str
    workload_id: str
    head: Report  # no files
    first_received: float
    last_received: float
    files: int


class Store(Protocol):
    def store_delta(self, delta: Delta, key: str, body_sha256: str,
                    received_at: float) -> Stored: ...

    def images(self) -> list[ImageSummary]: ...

    def workloads(self, image: str) -> list[WorkloadRecord]:
        """The workloads whose image_ref or image_digest is `image`."""
        ...

    def image_files(self, image: str) -> Iterable[tuple[bytes, FileRow]]:
        """Each (path, file) of each of those workloads: a path once per workload."""
        ...

    def image_union(self, image: str) -> list[tuple[bytes, FileRow, int]]:
        """Each distinct path of those workloads: its files merged (merge.py) and how many
        workloads have it. Folded by the database, so memory goes with distinct paths,
        not with (workload, path) rows."""
        ...

    def image_paths(self, image: str) -> set[bytes] | None:
        """The distinct paths of those workloads; None when there are none."""
        ...

    def prune_keys(self, received_before: float, *, now: float, every: float,
                   limit: int) -> int:
        """Forget up to `limit` idempotency keys received before `received_before`, oldest
        first; how many. None at all when a receiver on this database pruned less than
        `every` seconds before `now` (a time after `now` is a clock ahead, not a reason to
        wait), or is pruning now."""
        ...

    def ping(self) -> None:
        """Raises StoreError when the database does not answer."""
        ...

    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """The store a --db URL names, migrated; StoreError when it cannot be used."""
    if url.startswith("sqlite:///"):
        from snoop.receiver.store_sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    from snoop.receiver.store_postgres import PostgresStore

    return PostgresStore(url)


# ------------------------------------------------------------ row encoding, both back ends

def to_db_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def from_db_text(data: bytes | memoryview) -> str:
    return bytes(data).decode("utf-8", "surrogatepass")


def to_signed(mask: int) -> int:
    """A 64-bit unsigned mask as the int64 both databases store (two's complement)."""
    return mask - U64 if mask > I64_MAX else mask


def to_unsigned(value: int) -> int:
    return value + U64 if value < 0 else value


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True)


HEAD_COLUMNS = ("name", "workload_key", "container_id", "cgroup_path", "image_ref",
                "image_digest", "pod_name", "namespace", "labels", "started_at",
                "last_updated_at", "total_events", "coverage")


def head_row(head: Report) -> tuple:
    """A head's values for HEAD_COLUMNS."""
    coverage = {**head.coverage.counters(), "unobserved": [list(i) for i in
                                                            head.coverage.unobserved]}
    return (to_db_text(head.workload), to_db_text(head.workload_key),
            to_db_text(head.container_id), to_db_text(head.cgroup_path),
            to_db_text(head.image_ref), to_db_text(head.image_digest),
            to_db_text(head.pod_name), to_db_text(head.namespace), _json(head.labels),
            head.started_at, head.last_updated_at, head.total_events, _json(coverage))


def head_from_row(row: tuple) -> Report:
    """The head of HEAD_COLUMNS' values, as head_row wrote them."""
    (name, key, container, cgroup, ref, digest, pod, namespace, labels, started, updated,
     total, coverage) = row
    return Report(workload=from_db_text(name), workload_key=from_db_text(key),
                  container_id=from_db_text(container), cgroup_path=from_db_text(cgroup),
                  image_ref=from_db_text(ref), image_digest=from_db_text(digest),
                  pod_name=from_db_text(pod), namespace=from_db_text(namespace),
                  labels=json.loads(labels), started_at=started, last_updated_at=updated,
                  total_events=total, coverage=coverage_from_json(json.loads(coverage)))


def coverage_from_json(data: Mapping[str, Any]) -> Coverage:
    """Coverage as head_row stored it; a counter added to Coverage since then is 0."""
    coverage = Coverage()
    for f in fields(Coverage):
        if f.name == "unobserved":
            coverage.unobserved = merge_intervals(
                (float(a), float(b)) for a, b in data.get("unobserved", ()))
        else:
            setattr(coverage, f.name, int(data.get(f.name, 0)))
    return coverage


def file_values(row: FileRow) -> tuple:
    """A file's values for (kinds, outcomes, comms, first_seen, last_seen)."""
    return (row.kinds, to_signed(row.outcomes), _json(list(row.comms)), row.first_seen,
            row.last_seen)


def file_from_values(kinds: int, outcomes: int, comms: str, first: float,
                     last: float) -> FileRow:
    return FileRow(kinds, to_unsigned(outcomes), tuple(json.loads(comms)), first, last)

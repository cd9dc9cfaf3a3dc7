"""The SQLite back end: one file, WAL, a connection per thread.

A delta is stored under `BEGIN IMMEDIATE`, the database's one write lock, so writers
(threads of this receiver, or another receiver on the same file) take turns; readers
go on meanwhile, on the last committed state.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator

from snoop.common.delta import Delta
from snoop.receiver import migrations
from snoop.receiver.merge import FileRow, merge_files, merge_heads
from snoop.receiver.store import (
    HEAD_COLUMNS,
    ImageSummary,
    Outcome,
    Stored,
    StoreError,
    WorkloadRecord,
    file_from_values,
    file_values,
    from_db_text,
    head_from_row,
    head_row,
    to_db_text,
)

BUSY_TIMEOUT_MS = 30_000
CHUNK = 500  # paths per `IN (...)`, well below SQLite's bound on parameters
_IMAGE = "(w.image_ref = ? OR w.image_digest = ?)"


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        with self._errors("open"):
            self._migrate(self._connection())

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # Closed from whichever thread calls close(); used only by its own thread.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: cannot {doing}: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute(begin)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        known = migrations.known("sqlite")
        with self._transaction("BEGIN IMMEDIATE") as db:
            db.execute(migrations.SCHEMA_MIGRATIONS)
            applied = db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            for migration in migrations.pending(applied.fetchone()[0], known):
                for statement in _statements(migration.sql):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                           (migration.version, migration.name, time.time()))

    def store_delta(self, delta: Delta, key: str, body_sha256: str,
                    received_at: float) -> Stored:
        with self._errors("store a delta"), self._transaction("BEGIN IMMEDIATE") as db:
            seen = db.execute("SELECT body_sha256 FROM deltas WHERE idempotency_key = ?",
                              (key,)).fetchone()
            if seen is not None:
                return Stored(Outcome.DUPLICATE if seen[0] == body_sha256 else Outcome.CONFLICT)
            db.execute("INSERT INTO deltas VALUES (?, ?, ?)", (key, body_sha256, received_at))
            workload, *head = db.execute(
                "INSERT INTO workloads (origin, workload_id, first_received, last_received) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (origin, workload_id) DO UPDATE SET "
                "first_received = min(first_received, excluded.first_received), "
                "last_received = max(last_received, excluded.last_received) "
                f"RETURNING id, {', '.join(HEAD_COLUMNS)}",
                (to_db_text(delta.origin), to_db_text(delta.workload_id), received_at,
                 received_at)).fetchone()
            merged = merge_heads(head_from_row(tuple(head)), delta.report)
            db.execute(f"UPDATE workloads SET {', '.join(f'{c} = ?' for c in HEAD_COLUMNS)} "
                       "WHERE id = ?", (*head_row(merged), workload))
            files = delta.report.files
            existing = self._files(db, workload, list(files))
            rows = []
            for path, detail in files.items():
                before = existing.get(path)
                after = merge_files(before, FileRow.of(detail))
                if after != before:
                    rows.append((workload, path, *file_values(after)))
            db.executemany(
                "INSERT INTO files (workload, path, kinds, outcomes, comms, first_seen, "
                "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workload, path) DO "
                "UPDATE SET kinds = excluded.kinds, outcomes = excluded.outcomes, "
                "comms = excluded.comms, first_seen = excluded.first_seen, "
                "last_seen = excluded.last_seen", rows)
            return Stored(Outcome.STORED, len(files))

    @staticmethod
    def _files(db: sqlite3.Connection, workload: int,
               paths: list[bytes]) -> dict[bytes, FileRow]:
        found = {}
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start:start + CHUNK]
            rows = db.execute(
                "SELECT path, kinds, outcomes, comms, first_seen, last_seen FROM files "
                f"WHERE workload = ? AND path IN ({', '.join('?' * len(chunk))})",
                (workload, *chunk))
            for path, *values in rows:
                found[path] = file_from_values(*values)
        return found

    def images(self) -> list[ImageSummary]:
        with self._errors("list images"), self._transaction() as db:
            rows = db.execute(
                "SELECT w.image_ref, w.image_digest, count(DISTINCT w.id), "
                "count(DISTINCT f.path), min(w.started_at), max(w.last_updated_at) "
                "FROM workloads w LEFT JOIN files f ON f.workload = w.id "
                "WHERE w.image_ref != x'' OR w.image_digest != x'' "
                "GROUP BY w.image_ref, w.image_digest ORDER BY w.image_ref, w.image_digest"
            ).fetchall()
        return [ImageSummary(from_db_text(ref), from_db_text(digest), workloads, files,
                             first, last)
                for ref, digest, workloads, files, first, last in rows]

    def workloads(self, image: str) -> list[WorkloadRecord]:
        text = to_db_text(image)
        with self._errors("list workloads"), self._transaction() as db:
            rows = db.execute(
                f"SELECT w.origin, w.workload_id, w.first_received, w.last_received, "
                f"(SELECT count(*) FROM files f WHERE f.workload = w.id), "
                f"{', '.join(f'w.{c}' for c in HEAD_COLUMNS)} FROM workloads w "
                f"WHERE {_IMAGE} ORDER BY w.origin, w.workload_id", (text, text)).fetchall()
        return [WorkloadRecord(from_db_text(origin), from_db_text(workload_id),
                               head_from_row(tuple(head)), first, last, files)
                for origin, workload_id, first, last, files, *head in rows]

    def image_files(self, image: str) -> Iterable[tuple[bytes, FileRow]]:
        text = to_db_text(image)
        with self._errors("read files"), self._transaction() as db:
            rows = db.execute(
                "SELECT f.path, f.kinds, f.outcomes, f.comms, f.first_seen, f.last_seen "
                f"FROM files f JOIN workloads w ON w.id = f.workload WHERE {_IMAGE}",
                (text, text)).fetchall()
        return [(path, file_from_values(*values)) for path, *values in rows]

    def image_union(self, image: str) -> list[tuple[bytes, FileRow, int]]:
        # SQLite has no bit_or: the rows come ordered by path and are folded as they come.
        text = to_db_text(image)
        union: list[tuple[bytes, FileRow, int]] = []
        with self._errors("read files"), self._transaction() as db:
            rows = db.execute(
                "SELECT f.path, f.kinds, f.outcomes, f.comms, f.first_seen, f.last_seen "
                f"FROM files f JOIN workloads w ON w.id = f.workload WHERE {_IMAGE} "
                "ORDER BY f.path", (text, text))
            path, merged, users = None, None, 0
            for row_path, *values in rows:
                if row_path != path:
                    if merged is not None:
                        union.append((path, merged, users))
                    path, merged, users = row_path, None, 0
                merged = merge_files(merged, file_from_values(*values))
                users += 1  # a path is once per workload (the primary key)
            if merged is not None:
                union.append((path, merged, users))
        return union

    def image_paths(self, image: str) -> set[bytes] | None:
        text = to_db_text(image)
        with self._errors("read paths"), self._transaction() as db:
            rows = db.execute("SELECT DISTINCT f.path FROM workloads w LEFT JOIN files f ON "
                              f"f.workload = w.id WHERE {_IMAGE}", (text, text)).fetchall()
        return {path for (path,) in rows if path is not None} if rows else None

    def prune_keys(self, received_before: float, *, now: float, every: float,
                   limit: int) -> int:
        with self._errors("prune keys"), self._transaction("BEGIN IMMEDIATE") as db:
            claimed = db.execute(
                "UPDATE maintenance SET done_at = ? WHERE task = 'prune_keys' AND "
                "(done_at <= ? OR done_at > ?)", (now, now - every, now)).rowcount
            if not claimed:
                return 0
            return db.execute(
                "DELETE FROM deltas WHERE rowid IN (SELECT rowid FROM deltas WHERE "
                "received_at < ? ORDER BY received_at LIMIT ?)",
                (received_before, limit)).rowcount

    def ping(self) -> None:
        with self._errors("ping"):
            self._connection().execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration file, one by one: executescript would commit first,
    outside the migration's transaction."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip() and not all(line.strip().startswith("--") or not line.strip()
                                   for line in pending.splitlines()):
        raise StoreError(f"migration ends in an incomplete statement: {pending.strip()[:80]}")

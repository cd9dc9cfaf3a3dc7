"""The PostgreSQL back end: psycopg 3 and a connection pool, for several receivers on
one database.

Storing a delta takes, in one READ COMMITTED transaction: the idempotency key's row
(a second receiver with the same key waits on it, then sees it), then the workload's
row (INSERT ... ON CONFLICT DO UPDATE locks it), so writers of one workload take turns
while writers of others go on. The files are read and written in one statement each
(`= ANY(array)`, `unnest(arrays)`), not one round trip per file. Migrations run under
a transaction-scoped advisory lock: receivers starting together apply each one once.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from snoop.common.delta import Delta
from snoop.receiver import migrations
from snoop.receiver.merge import FileRow, bounded_comms, merge_files, merge_heads
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
    to_unsigned,
)

MIGRATION_LOCK = 0x736E6F6F70  # "snoop": pg_advisory_xact_lock's key for migrations
PRUNE_LOCK = MIGRATION_LOCK + 1  # held by the one receiver pruning keys
CONNECT_TIMEOUT = 10.0
POOL_SIZE = 10
_IMAGE = "(w.image_ref = %(image)s OR w.image_digest = %(image)s)"


def describe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql (unparsable DSN)"
    host = parts.get("host") or "localhost"
    return (f"postgresql {parts.get('user', '')}@{host}:{parts.get('port', 5432)}/"
            f"{parts.get('dbname', '')}")


class PostgresStore:
    def __init__(self, dsn: str, pool_size: int = POOL_SIZE) -> None:
        self.name = describe(dsn)
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                self._migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"{self.name}: cannot connect and migrate: "
                             f"{_one_line(exc)}") from None
        self._pool = ConnectionPool(dsn, min_size=1, max_size=pool_size, open=False,
                                    kwargs={"autocommit": True},
                                    check=ConnectionPool.check_connection,
                                    timeout=CONNECT_TIMEOUT, name="snoop-receiver")
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            self._pool.close()
            raise StoreError(f"{self.name}: no connection within {CONNECT_TIMEOUT:g} s") \
                from None

    @staticmethod
    def _migrate(conn: psycopg.Connection) -> None:
        known = migrations.known("postgresql")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(migrations.SCHEMA_MIGRATIONS)
            applied = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            for migration in migrations.pending(applied.fetchone()[0], known):
                conn.execute(migration.sql)
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                             (migration.version, migration.name, time.time()))

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[psycopg.Connection]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"{self.name}: cannot {doing}: {_one_line(exc)}") from None

    def store_delta(self, delta: Delta, key: str, body_sha256: str,
                    received_at: float) -> Stored:
        with self._transaction("store a delta") as db:
            new = db.execute("INSERT INTO deltas VALUES (%s, %s, %s) ON CONFLICT "
                             "(idempotency_key) DO NOTHING RETURNING 1",
                             (key, body_sha256, received_at)).fetchone()
            if new is None:
                seen = db.execute("SELECT body_sha256 FROM deltas WHERE idempotency_key = %s",
                                  (key,)).fetchone()
                return Stored(Outcome.DUPLICATE if seen[0] == body_sha256 else Outcome.CONFLICT)
            workload, *head = db.execute(
                "INSERT INTO workloads (origin, workload_id, first_received, last_received) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (origin, workload_id) DO UPDATE SET "
                "first_received = least(workloads.first_received, excluded.first_received), "
                "last_received = greatest(workloads.last_received, excluded.last_received) "
                f"RETURNING id, {', '.join(HEAD_COLUMNS)}",
                (to_db_text(delta.origin), to_db_text(delta.workload_id), received_at,
                 received_at)).fetchone()
            merged = merge_heads(head_from_row(tuple(head)), delta.report)
            db.execute(f"UPDATE workloads SET {', '.join(f'{c} = %s' for c in HEAD_COLUMNS)} "
                       "WHERE id = %s", (*head_row(merged), workload))
            files = delta.report.files
            existing = {
                path: file_from_values(*values) for path, *values in db.execute(
                    "SELECT path, kinds, outcomes, comms, first_seen, last_seen FROM files "
                    "WHERE workload = %s AND path = ANY(%s::bytea[])",
                    (workload, list(files)))}
            columns: tuple[list, ...] = ([], [], [], [], [], [])
            for path, detail in files.items():
                before = existing.get(path)
                after = merge_files(before, FileRow.of(detail))
                if after != before:
                    for column, value in zip(columns, (path, *file_values(after)), strict=True):
                        column.append(value)
            if columns[0]:
                db.execute(
                    "INSERT INTO files (workload, path, kinds, outcomes, comms, first_seen, "
                    "last_seen) SELECT %s, * FROM unnest(%s::bytea[], %s::bigint[], "
                    "%s::bigint[], %s::text[], %s::float8[], %s::float8[]) "
                    "ON CONFLICT (workload, path) DO UPDATE SET kinds = excluded.kinds, "
                    "outcomes = excluded.outcomes, comms = excluded.comms, "
                    "first_seen = excluded.first_seen, last_seen = excluded.last_seen",
                    (workload, *columns))
            return Stored(Outcome.STORED, len(files))

    def images(self) -> list[ImageSummary]:
        with self._transaction("list images") as db:
            rows = db.execute(
                "SELECT w.image_ref, w.image_digest, count(DISTINCT w.id), "
                "count(DISTINCT f.path), min(w.started_at), max(w.last_updated_at) "
                "FROM workloads w LEFT JOIN files f ON f.workload = w.id "
                "WHERE w.image_ref != ''::bytea OR w.image_digest != ''::bytea "
                "GROUP BY w.image_ref, w.image_digest ORDER BY w.image_ref, w.image_digest"
            ).fetchall()
        return [ImageSummary(from_db_text(ref), from_db_text(digest), workloads, files,
                             first, last)
                for ref, digest, workloads, files, first, last in rows]

    def workloads(self, image: str) -> list[WorkloadRecord]:
        with self._transaction("list workloads") as db:
            rows = db.execute(
                "SELECT w.origin, w.workload_id, w.first_received, w.last_received, "
                "(SELECT count(*) FROM files f WHERE f.workload = w.id), "
                f"{', '.join(f'w.{c}' for c in HEAD_COLUMNS)} FROM workloads w "
                f"WHERE {_IMAGE} ORDER BY w.origin, w.workload_id",
                {"image": to_db_text(image)}).fetchall()
        return [WorkloadRecord(from_db_text(origin), from_db_text(workload_id),
                               head_from_row(tuple(head)), first, last, files)
                for origin, workload_id, first, last, files, *head in rows]

    def image_files(self, image: str) -> Iterable[tuple[bytes, FileRow]]:
        with self._transaction("read files") as db:
            rows = db.execute(
                "SELECT f.path, f.kinds, f.outcomes, f.comms, f.first_seen, f.last_seen "
                f"FROM files f JOIN workloads w ON w.id = f.workload WHERE {_IMAGE}",
                {"image": to_db_text(image)}).fetchall()
        return [(path, file_from_values(*values)) for path, *values in rows]

    def image_union(self, image: str) -> list[tuple[bytes, FileRow, int]]:
        # bit_or of the int64 outcomes ORs their two's complement: the same 64 bits. The
        # process names are JSON text (which may hold \u0000, no PostgreSQL text can):
        # their distinct lists come back, merged here, few per path.
        with self._transaction("read files") as db:
            rows = db.execute(
                "SELECT f.path, bit_or(f.kinds), bit_or(f.outcomes), "
                "array_agg(DISTINCT f.comms), coalesce(min(nullif(f.first_seen, 0)), 0), "
                "max(f.last_seen), count(*) "  # a path is once per workload (primary key)
                f"FROM files f JOIN workloads w ON w.id = f.workload WHERE {_IMAGE} "
                "GROUP BY f.path", {"image": to_db_text(image)})
            return [(path, FileRow(kinds, to_unsigned(outcomes),
                                   bounded_comms(*(tuple(json.loads(c)) for c in comms)),
                                   first, last), users)
                    for path, kinds, outcomes, comms, first, last, users in rows]

    def image_paths(self, image: str) -> set[bytes] | None:
        with self._transaction("read paths") as db:
            rows = db.execute("SELECT DISTINCT f.path FROM workloads w LEFT JOIN files f ON "
                              f"f.workload = w.id WHERE {_IMAGE}",
                              {"image": to_db_text(image)}).fetchall()
        return {path for (path,) in rows if path is not None} if rows else None

    def prune_keys(self, received_before: float, *, now: float, every: float,
                   limit: int) -> int:
        with self._transaction("prune keys") as db:
            # A receiver finding another one pruning goes on with its request: no waiting
            # on the `maintenance` row.
            if not db.execute("SELECT pg_try_advisory_xact_lock(%s)",
                              (PRUNE_LOCK,)).fetchone()[0]:
                return 0
            claimed = db.execute(
                "UPDATE maintenance SET done_at = %s WHERE task = 'prune_keys' AND "
                "(done_at <= %s OR done_at > %s)", (now, now - every, now)).rowcount
            if not claimed:
                return 0
            # SKIP LOCKED: a row some other transaction holds is left for the next time.
            return db.execute(
                "DELETE FROM deltas WHERE idempotency_key IN (SELECT idempotency_key FROM "
                "deltas WHERE received_at < %s ORDER BY received_at LIMIT %s "
                "FOR UPDATE SKIP LOCKED)", (received_before, limit)).rowcount

    def ping(self) -> None:
        with self._transaction("ping") as db:
            db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._pool.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or exc.__class__.__name__

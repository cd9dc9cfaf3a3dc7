"""Versioned schema migrations: receiver/migrations/<dialect>/NNNN_name.sql, applied in
order at start, each recorded in `schema_migrations`.

The back ends apply them (store_sqlite.py, store_postgres.py) under a lock, so two
receivers starting at once apply each migration once. A database at a version newer
than the files here was migrated by a newer receiver: this one refuses it rather than
write rows a newer schema does not expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from snoop.receiver.store import MigrationError

SCHEMA_MIGRATIONS = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                     "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def known(dialect: str) -> tuple[Migration, ...]:
    """The dialect's migrations, by version: 1, 2, ... with none missing."""
    folder = resources.files("snoop.receiver").joinpath("migrations", dialect)
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2),
                                   entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations/{dialect}: versions {[m.version for m in found]}, "
                             "expected 1, 2, ... with none missing")
    return tuple(found)


def pending(applied: int, migrations: tuple[Migration, ...]) -> tuple[Migration, ...]:
    """What a database at version `applied` (0: empty) still needs."""
    latest = migrations[-1].version if migrations else 0
    if applied > latest:
        raise MigrationError(f"database schema is at version {applied}, newer than this "
                             f"receiver knows ({latest}): run a newer snoop receive")
    return tuple(m for m in migrations if m.version > applied)

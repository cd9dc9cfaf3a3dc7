"""Migrations on both back ends, and receivers sharing one PostgreSQL database."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from snoop.receiver import migrations
from snoop.receiver.merge import FileRow, bounded_comms
from snoop.receiver.store import MigrationError, StoreError, open_store
from tests.receiver.harness import READ, STAT, execute, file, make_delta, open_api


def _schema(url: str) -> list[tuple]:
    if url.startswith("sqlite:///"):
        return execute(url, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    return execute(url, "SELECT table_name, column_name, data_type FROM "
                         "information_schema.columns WHERE table_schema = 'public' "
                         "ORDER BY table_name, column_name")


def test_migrating_twice_is_a_no_op(store_url):
    open_store(store_url).close()
    schema = _schema(store_url)
    versions = execute(store_url, "SELECT version, name FROM schema_migrations")
    dialect = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    assert [v for v, _ in versions] == [m.version for m in migrations.known(dialect)]
    with open_api(store_url) as api:
        api.post(make_delta({"/a": file()}))
    open_store(store_url).close()
    assert _schema(store_url) == schema
    assert execute(store_url, "SELECT version, name FROM schema_migrations") == versions
    assert execute(store_url, "SELECT count(*) FROM files") == [(1,)]  # data kept


def test_a_database_of_a_newer_receiver_is_refused(store_url):
    open_store(store_url).close()
    execute(store_url, "INSERT INTO schema_migrations VALUES (9999, 'future', 0)")
    with pytest.raises(MigrationError, match="version 9999, newer than this receiver knows"):
        open_store(store_url)


def test_an_unreachable_database_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot connect") as caught:
        open_store("postgresql://nobody:hunter2@127.0.0.1:1/none?connect_timeout=2")
    assert "nobody@127.0.0.1:1/none" in str(caught.value)
    assert "hunter2" not in str(caught.value)  # the password never reaches a log line
    not_sqlite = tmp_path / "garbage.db"
    not_sqlite.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="garbage.db"):
        open_store(f"sqlite:///{not_sqlite}")


def test_migration_versions_are_contiguous():
    for dialect in ("sqlite", "postgresql"):
        assert [m.version for m in migrations.known(dialect)][0] == 1
    assert migrations.pending(0, migrations.known("sqlite")) == migrations.known("sqlite")
    latest = migrations.known("sqlite")[-1].version
    assert migrations.pending(latest, migrations.known("sqlite")) == ()
    assert migrations.pending(1, migrations.known("sqlite")) == migrations.known("sqlite")[1:]


def test_receivers_starting_together_migrate_once(postgres_server):
    url = postgres_server.new_database()
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        open_store(url).close()

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(start) for _ in range(4)]:
            future.result()
    assert execute(url, "SELECT version FROM schema_migrations ORDER BY version") == [
        (m.version,) for m in migrations.known("postgresql")]


def test_two_receivers_on_one_postgresql_store_concurrent_deltas(postgres_server):
    """200 deltas of 20 workloads, from 8 threads over two receivers; some deltas sent to
    both, some twice: the union is what was sent, each counted once."""
    url = postgres_server.new_database()
    sent: dict[tuple[str, str], dict[bytes, FileRow]] = {}
    deltas = []
    for n in range(200):
        workload = f"w{n % 20}"
        origin = f"node-{n % 3}"
        files = {f"/shared/lib{i}.so": file(READ if n % 2 else STAT, comms=(f"c{n % 11}",),
                                            first=1000.0 + n, last=2000.0 + n)
                 for i in range(n % 7, n % 7 + 30)}
        files.update({f"/own/{workload}/{n}": file()})
        delta = make_delta(files, origin=origin, workload_id=workload, updated=5000.0 + n,
                           image_ref="app:fleet", total_events=n)
        deltas.append((f"key-{n}", delta))
        into = sent.setdefault((origin, workload), {})
        for path, detail in delta.report.files.items():
            row = FileRow.of(detail)
            old = into.get(path)
            into[path] = row if old is None else FileRow(
                old.kinds | row.kinds, old.outcomes | row.outcomes,
                bounded_comms(old.comms, row.comms), min(old.first_seen, row.first_seen),
                max(old.last_seen, row.last_seen))
    with open_api(url) as first, open_api(url) as second:
        receivers = (first, second)

        def push(index: int) -> list[str]:
            key, delta = deltas[index]
            statuses = [receivers[index % 2].post(delta, key).json()["status"]]
            if index % 5 == 0:  # a retry that reaches the other receiver
                statuses.append(receivers[(index + 1) % 2].post(delta, key).json()["status"])
            return statuses

        with ThreadPoolExecutor(8) as pool:
            results = [s for statuses in pool.map(push, range(200)) for s in statuses]
        assert results.count("stored") == 200 and results.count("duplicate") == 40
        stored = sum(r.metric("snoop_receiver_deltas_stored_total") for r in receivers)
        assert stored == 200
        workloads = first.json("/v1/workloads", image="app:fleet")["workloads"]
        assert len(workloads) == len(sent)
        union = {}
        for path, row in first.store.image_files("app:fleet"):
            union.setdefault(path, []).append(row)
        expected = {}
        for rows in sent.values():
            for path, row in rows.items():
                expected.setdefault(path, []).append(row)
        assert {p: sorted(r, key=repr) for p, r in union.items()} == \
            {p: sorted(r, key=repr) for p, r in expected.items()}
        for workload in workloads:
            key = (workload["origin"], workload["workload_id"])
            assert workload["files"] == len(sent[key])
            newest = max(n for n in range(200)
                         if (f"node-{n % 3}", f"w{n % 20}") == key)
            assert workload["total_events"] == newest  # the newest delta's head won


def test_a_delta_of_10000_files_is_stored_in_well_under_a_second(postgres_server):
    store = open_store(postgres_server.new_database())
    try:
        paths = [f"/usr/lib/python3/dist-packages/pkg{i // 50}/m{i}.py" for i in range(10_000)]
        first = make_delta({p: file(READ, last=100.0) for p in paths}, updated=100.0)
        again = make_delta({p: file(STAT, last=200.0) for p in paths}, updated=200.0)
        for n, delta in enumerate((first, again)):  # new rows, then every row changed
            start = time.monotonic()
            assert store.store_delta(delta, f"k{n}", f"h{n}", 1.0).files == 10_000
            elapsed = time.monotonic() - start
            assert elapsed < 1.0, f"{elapsed:.2f} s"
        assert {row.kinds for _, row in store.image_files("app:1")} == {READ | STAT}
    finally:
        store.close()

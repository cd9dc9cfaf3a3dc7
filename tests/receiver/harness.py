"""Receivers for the tests: an app on a store of either back end, a client that speaks
to it in-process, and deltas built from small file tables."""

from __future__ import annotations

import contextlib
import gzip
import sqlite3
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from prometheus_client import CollectorRegistry

from snoop.common.delta import Delta
from snoop.common.protocol import AccessKind
from snoop.common.report import Coverage, FileDetail, Report
from snoop.receiver.app import create_app
from snoop.receiver.config import ReceiverConfig
from snoop.receiver.store import Store, open_store

with warnings.catch_warnings():
    # Starlette would have its test client on httpx2; httpx is what the project has.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

TOKEN = "test-token-1"
OTHER_TOKEN = "test-token-2"
READ = 1 << AccessKind.READ
EXEC = 1 << AccessKind.EXEC
STAT = 1 << AccessKind.STAT
FOUND = 1
ENOENT_BIT = 1 << 2


@dataclass
class Api:
    """One receiver: its app behind an in-process client, its store and its metrics."""

    client: TestClient
    store: Store
    registry: CollectorRegistry

    def post(self, delta: Delta | bytes, key: str | None = None, *, compress: bool = False,
             headers: Mapping[str, str] | None = None, token: str | None = TOKEN,
             ) -> httpx.Response:
        body = delta if isinstance(delta, bytes) else delta.encode()
        sent = {"Content-Type": "application/json",
                "Idempotency-Key": key or uuid.uuid4().hex}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if compress:
            body = gzip.compress(body)
            sent["Content-Encoding"] = "gzip"
        sent.update(headers or {})
        return self.client.post("/v1/deltas", content=body, headers=sent)

    def get(self, path: str, token: str | None = TOKEN, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.get(path, params=params, headers=headers)

    def json(self, path: str, **params: str) -> dict:
        reply = self.get(path, **params)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@contextlib.contextmanager
def open_api(url: str, *, tokens: tuple[str, ...] = (TOKEN, OTHER_TOKEN),
             clock: Callable[[], float] = time.time, **settings: Any) -> Iterator[Api]:
    """A receiver on the database at `url` (a sqlite:/// or postgresql:// URL); `settings`
    are ReceiverConfig's (max_body_bytes=..., key_ttl=...)."""
    config = ReceiverConfig(db_url=url, tokens=tokens, **settings)
    store = open_store(url)
    registry = CollectorRegistry()
    try:
        with TestClient(create_app(config, store=store, registry=registry, clock=clock),
                        raise_server_exceptions=False) as client:
            yield Api(client, store, registry)
    finally:
        store.close()


def execute(url: str, sql: str) -> list[tuple]:
    """One statement on the database at `url`, outside any receiver; its rows."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            rows = conn.execute(sql).fetchall()
            conn.commit()
            return rows
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def make_delta(files: Mapping[str, tuple], *, origin: str = "node-a", workload_id: str = "w1",
               updated: float = 1_700_000_100.0, image_ref: str = "app:1",
               image_digest: str = "sha256:aaa", full: bool = False,
               coverage: Coverage | None = None, **fields) -> Delta:
    """A delta of `files`: path -> (kinds, outcomes, comms, first_seen, last_seen)."""
    report = Report(workload=fields.pop("workload", workload_id), image_ref=image_ref,
                    image_digest=image_digest, started_at=fields.pop("started", 1_700_000_000.0),
                    last_updated_at=updated, coverage=coverage or Coverage(), **fields)
    for path, (kinds, outcomes, comms, first, last) in files.items():
        report.files[path.encode("utf-8", "surrogateescape")] = FileDetail(
            kinds, first, last, outcomes, tuple(comms))
    return Delta(origin, workload_id, full, report)


def file(kinds: int = READ, outcomes: int = FOUND, comms: tuple[str, ...] = ("app",),
         first: float = 1_700_000_010.0, last: float = 1_700_000_020.0) -> tuple:
    return (kinds, outcomes, comms, first, last)

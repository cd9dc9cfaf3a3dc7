"""What bounds a receiver's memory: deltas taken in at once (past the bound, 503 before
the body is read), and an image's report folded per distinct path by the database."""

from __future__ import annotations

import json
import threading

import anyio
from prometheus_client import CollectorRegistry

from snoop.common.report import Report
from snoop.receiver.app import create_app
from snoop.receiver.config import ReceiverConfig
from snoop.receiver.merge import merge_files
from snoop.receiver.store import open_store
from tests.receiver.harness import EXEC, FOUND, READ, TOKEN, file, make_delta, open_api

T0 = 1_700_000_000.0


class _Held:
    """A store whose store_delta waits until released."""

    def __init__(self, store) -> None:
        self.store = store
        self.entered = threading.Event()
        self.release = threading.Event()

    def store_delta(self, *args, **kwargs):
        self.entered.set()
        assert self.release.wait(30)
        return self.store.store_delta(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


async def _post(app, body: bytes, key: str, reads: list[str]) -> tuple[int, dict, bytes]:
    """One POST /v1/deltas straight to the ASGI app; `reads` notes each body read."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/deltas",
             "raw_path": b"/v1/deltas", "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 1), "server": ("receiver", 80),
             "headers": [(b"authorization", f"Bearer {TOKEN}".encode()),
                         (b"idempotency-key", key.encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    sent: list[dict] = []

    async def receive() -> dict:
        reads.append(key)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent
                                              if m["type"] == "http.response.body")


def test_past_max_concurrent_deltas_a_post_is_503_without_reading_its_body(tmp_path):
    url = f"sqlite:///{tmp_path}/receiver.db"
    store = _Held(open_store(url))
    registry = CollectorRegistry()
    app = create_app(ReceiverConfig(db_url=url, tokens=(TOKEN,), max_concurrent_deltas=2),
                     store=store, registry=registry)
    body = make_delta({"/a": file()}).encode()
    reads: list[str] = []
    results: dict[str, tuple] = {}

    async def scenario() -> None:
        async def post(key: str) -> None:
            results[key] = await _post(app, body, key, reads)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(post, "first")
            await anyio.to_thread.run_sync(store.entered.wait)  # held in the store
            tasks.start_soon(post, "second")  # reads its body, waits for the store
            while reads.count("second") == 0:
                await anyio.sleep(0.01)
            await post("third")  # two are being taken in: refused
            store.release.set()
        await post("fourth")  # room again

    try:
        anyio.run(scenario)
    finally:
        store.close()
    status, headers, reply = results["third"]
    assert status == 503 and headers["retry-after"] == "2"
    assert "busy" in json.loads(reply)["error"]
    assert "third" not in reads  # refused before its body was read
    assert [results[k][0] for k in ("first", "second", "fourth")] == [200, 200, 200]
    assert registry.get_sample_value("snoop_receiver_requests_rejected_total",
                                     {"reason": "busy"}) == 1


def test_the_union_is_the_fold_of_every_workloads_files(store_url):
    """Store.image_union (bit_or and friends in PostgreSQL, a fold over rows ordered by
    path in SQLite) gives what merging every workload's rows gives."""
    high = (1 << 63) | FOUND
    with open_api(store_url) as api:
        for n in range(5):
            files = {f"/lib/{i}": file(READ if (n + i) % 2 else EXEC,
                                       high if n == 3 else 1 << (n + 1),
                                       tuple(f"p{(n * 3 + j) % 11}" for j in range(4)),
                                       0.0 if n == 1 else T0 + 10 * n + i, T0 + 100 + n)
                     for i in range(n, n + 6)}
            files["/odd/\udcff"] = file(comms=("x\x00y",), first=T0 + n, last=T0 + n)
            assert api.post(make_delta(files, workload_id=f"w{n}",
                                       origin=f"node-{n % 2}")).status_code == 200
        expected: dict[bytes, tuple] = {}
        for path, row in api.store.image_files("app:1"):
            merged, users = expected.get(path, (None, 0))
            expected[path] = (merge_files(merged, row), users + 1)
        union = api.store.image_union("app:1")
        assert len(union) == len(expected) == 11
        assert {path: (row, users) for path, row, users in union} == expected
        assert max(users for _, _, users in union) == 5

        def per_workload_rows(image: str):
            raise AssertionError("the report reads every (workload, path) row")

        api.store.image_files = per_workload_rows
        report = Report.from_json(api.json("/v1/report", image="app:1"))
        assert {p: d.outcomes for p, d in report.files.items()} == {
            p: row.outcomes for p, (row, _) in expected.items()}

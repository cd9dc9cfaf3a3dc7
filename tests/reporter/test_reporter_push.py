from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from snoop.reporter.push import Pusher


class Api:
    """A local endpoint that fails the first `failures` POSTs with 503."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[str, dict, str | None]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if api.failures > 0:
                    api.failures -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                api.received.append((self.path, json.loads(body),
                                     self.headers.get("Authorization")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/reports"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture
def api():
    servers: list[Api] = []

    def make(failures: int = 0) -> Api:
        servers.append(Api(failures))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_posts_report_with_bearer_token(api) -> None:
    server = api()
    pusher = Pusher(server.url, "s3cret").start()
    try:
        pusher.submit("c1", json.dumps({"workload": "c1", "files": ["/a"]}))
        wait_for(lambda: pusher.counts.pushed == 1)
    finally:
        pusher.stop(1.0)
    assert server.received == [("/v1/reports", {"workload": "c1", "files": ["/a"]},
                                "Bearer s3cret")]


def test_no_token_no_header(api) -> None:
    server = api()
    pusher = Pusher(server.url).start()
    try:
        pusher.submit("c1", "{}")
        wait_for(lambda: pusher.counts.pushed == 1)
    finally:
        pusher.stop(1.0)
    assert server.received[0][2] is None


def test_retries_with_backoff_and_counts_errors(api) -> None:
    server = api(failures=2)
    pusher = Pusher(server.url, first_backoff=0.01).start()
    try:
        pusher.submit("c1", "{}")
        wait_for(lambda: pusher.counts.pushed == 1)
    finally:
        pusher.stop(1.0)
    assert pusher.counts.errors == 2 and pusher.counts.given_up == 0


def test_gives_up_after_attempts_and_never_blocks_submit() -> None:
    attempts: list[float] = []

    def refuse(url: str, body: bytes, token: str, timeout: float) -> None:
        attempts.append(time.monotonic())
        raise ConnectionRefusedError(111, "Connection refused")

    pusher = Pusher("http://127.0.0.1:9/", post=refuse, attempts=3, first_backoff=0.02).start()
    try:
        started = time.monotonic()
        pusher.submit("c1", "{}")
        assert time.monotonic() - started < 0.01
        wait_for(lambda: pusher.counts.given_up == 1)
    finally:
        pusher.stop(1.0)
    assert pusher.counts.errors == 3
    assert attempts[2] - attempts[1] >= attempts[1] - attempts[0] >= 0.02  # backoff grows


def test_newest_version_replaces_waiting_one() -> None:
    bodies: list[bytes] = []
    gate = threading.Event()

    def post(url: str, body: bytes, token: str, timeout: float) -> None:
        gate.wait(2.0)
        bodies.append(body)

    pusher = Pusher("http://x/", post=post).start()
    try:
        pusher.submit("c1", "v1")
        wait_for(lambda: pusher._busy)  # v1 is being posted
        pusher.submit("c1", "v2")
        pusher.submit("c1", "v3")
        gate.set()
        wait_for(lambda: pusher.counts.pushed == 2)
    finally:
        pusher.stop(1.0)
    assert bodies == [b"v1", b"v3"]

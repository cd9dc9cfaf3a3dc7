"""Remote push against a local endpoint on loopback: delivery until it succeeds, what is
never retried, Retry-After, idempotency keys, the delivery log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from snoop.reporter.delivery import DeliveryLog, version_key
from snoop.reporter.push import Pusher, Reply, retry_after_seconds
from tests.support.net import free_port

# (status, headers) for one POST; the default answers 200.
Behaviour = Callable[[int], tuple[int, dict[str, str]]]


class Api:
    """A local endpoint: `behaviour(n)` (n counts POSTs from 0) says how to answer."""

    def __init__(self, behaviour: Behaviour | None = None, port: int = 0,
                 hang: float = 0.0) -> None:
        self.behaviour = behaviour or (lambda n: (200, {}))
        self.hang = hang
        self.posts: list[dict] = []  # every POST, answered or not
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with api.lock:
                    n = len(api.posts)
                    api.posts.append({"at": time.monotonic(), "path": self.path,
                                      "body": body, "headers": dict(self.headers)})
                if api.hang:
                    time.sleep(api.hang)
                status, headers = api.behaviour(n)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/reports"

    def delivered(self) -> list[dict]:
        """POSTs answered 2xx, in order."""
        with self.lock:
            posts = list(enumerate(self.posts))
        return [p for n, p in posts if 200 <= self.behaviour(n)[0] < 300]

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

    def make(behaviour: Behaviour | None = None, **kwargs) -> Api:
        servers.append(Api(behaviour, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def pushers():
    made: list[Pusher] = []

    def make(url: str, token: str = "", **kwargs) -> Pusher:
        made.append(Pusher(url, token, **kwargs).start())
        return made[-1]

    yield make
    for pusher in made:
        pusher.stop(1.0)


def fails(times: int, status: int = 503, headers: dict | None = None) -> Behaviour:
    return lambda n: (status, headers or {}) if n < times else (200, {})


def test_posts_report_with_bearer_token_and_idempotency_key(api, pushers) -> None:
    server = api()
    pusher = pushers(server.url, "s3cret")
    text = json.dumps({"workload": "c1", "files": ["/a"]})
    pusher.submit("c1", text)
    wait_for(lambda: pusher.counts.pushed == 1)
    [post] = server.posts
    assert post["path"] == "/v1/reports" and json.loads(post["body"]) == json.loads(text)
    assert post["headers"]["Authorization"] == "Bearer s3cret"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Idempotency-Key"] == version_key("c1", text.encode())


def test_no_token_no_header(api, pushers) -> None:
    server = api()
    pusher = pushers(server.url)
    pusher.submit("c1", "{}")
    wait_for(lambda: pusher.counts.pushed == 1)
    assert "Authorization" not in server.posts[0]["headers"]


def test_version_keys_differ_by_report_and_content() -> None:
    keys = {version_key("c1", b"{}"), version_key("c2", b"{}"), version_key("c1", b"{ }")}
    assert len(keys) == 3 and version_key("c1", b"{}") == version_key("c1", b"{}")


def test_retries_until_delivered_without_new_activity() -> None:
    attempts: list[float] = []

    def refuse_then_take(url: str, body: bytes, headers, timeout: float) -> Reply:
        attempts.append(time.monotonic())
        if len(attempts) <= 6:
            raise ConnectionRefusedError(111, "Connection refused")
        return Reply(200)

    pusher = Pusher("http://127.0.0.1:9/", post=refuse_then_take, first_backoff=0.1,
                    max_backoff=0.4).start()
    try:
        started = time.monotonic()
        pusher.submit("c1", "{}")  # once: nothing else is submitted
        assert time.monotonic() - started < 0.01  # never blocks
        wait_for(lambda: pusher.counts.pushed == 1, timeout=10)
    finally:
        pusher.stop(1.0)
    assert pusher.counts.errors == 6 and len(attempts) == 7
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[1] >= gaps[0] >= 0.1  # backoff grows...
    assert all(g < 0.4 + 0.2 for g in gaps)  # ...up to its bound
    assert pusher.idle()


def test_newest_version_replaces_waiting_one() -> None:
    bodies: list[bytes] = []
    gate = threading.Event()

    def post(url: str, body: bytes, headers, timeout: float) -> Reply:
        gate.wait(2.0)
        bodies.append(body)
        return Reply(204)

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


def test_a_newer_version_replaces_one_that_is_being_retried() -> None:
    bodies: list[bytes] = []

    def post(url: str, body: bytes, headers, timeout: float) -> Reply:
        bodies.append(body)
        return Reply(503 if len(bodies) == 1 else 200)

    pusher = Pusher("http://x/", post=post, first_backoff=0.3).start()
    try:
        pusher.submit("c1", "v1")
        wait_for(lambda: pusher.counts.errors == 1)
        pusher.submit("c1", "v2")  # arrives during the backoff
        wait_for(lambda: pusher.counts.pushed == 1)
        time.sleep(0.4)
    finally:
        pusher.stop(1.0)
    assert bodies == [b"v1", b"v2"]


def test_413_is_not_retried_and_says_the_report_is_too_big(api, pushers, caplog) -> None:
    server = api(lambda n: (413, {}))
    pusher = pushers(server.url, first_backoff=0.05)
    pusher.submit("c1", '{"files": ["/a"]}')
    wait_for(lambda: pusher.counts.rejected == 1)
    time.sleep(0.3)
    assert len(server.posts) == 1
    assert pusher.counts.too_large == 1 and pusher.counts.errors == 0 and pusher.idle()
    [line] = [r for r in caplog.records if "413" in r.getMessage()]
    assert line.levelname == "ERROR" and "too large" in line.getMessage()
    assert line.bytes == len('{"files": ["/a"]}')
    pusher.submit("c1", '{"files": ["/a", "/b"]}')  # a new version is tried again
    wait_for(lambda: len(server.posts) == 2)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 301])
def test_other_client_errors_are_not_retried(api, pushers, status: int) -> None:
    server = api(lambda n: (status, {"Location": "http://127.0.0.1:9/"}))
    pusher = pushers(server.url, first_backoff=0.05)
    pusher.submit("c1", "{}")
    wait_for(lambda: pusher.counts.rejected == 1)
    time.sleep(0.3)
    assert len(server.posts) == 1 and pusher.counts.too_large == 0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_server_errors_are_retried(api, pushers, status: int) -> None:
    server = api(fails(2, status))
    pusher = pushers(server.url, first_backoff=0.05)
    pusher.submit("c1", "{}")
    wait_for(lambda: pusher.counts.pushed == 1)
    assert pusher.counts.errors == 2 and len(server.posts) == 3
    keys = {p["headers"]["Idempotency-Key"] for p in server.posts}
    assert len(keys) == 1  # one version, one key: the receiver can tell repeats


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(api, pushers, status: int) -> None:
    server = api(fails(1, status, {"Retry-After": "1"}))
    pusher = pushers(server.url, first_backoff=0.05)
    pusher.submit("c1", "{}")
    wait_for(lambda: pusher.counts.pushed == 1, timeout=5)
    first, second = server.posts
    assert 1.0 <= second["at"] - first["at"] < 1.8


def test_retry_after_http_date_is_honoured(api, pushers) -> None:
    # HTTP dates have whole seconds: ask for 2 s from now, so at least ~1 s remains.
    when = formatdate(time.time() + 2, usegmt=True)
    server = api(fails(1, 503, {"Retry-After": when}))
    pusher = pushers(server.url, first_backoff=0.05)
    pusher.submit("c1", "{}")
    wait_for(lambda: pusher.counts.pushed == 1, timeout=5)
    first, second = server.posts
    assert 0.9 <= second["at"] - first["at"] < 2.8


def test_retry_after_is_bounded_and_parsed_strictly() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("99999999", now, bound=600.0) == 600.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after_seconds(formatdate(now + 86400, usegmt=True), now, bound=600.0) == 600.0
    for bad in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2026 00:00:00 GMT"):
        assert retry_after_seconds(bad, now) is None


def test_a_huge_retry_after_is_capped(api, pushers) -> None:
    server = api(fails(1, 429, {"Retry-After": "86400"}))
    pusher = pushers(server.url, first_backoff=0.05, max_retry_after=0.5)
    pusher.submit("c1", "{}")
    wait_for(lambda: pusher.counts.pushed == 1, timeout=3)
    first, second = server.posts
    assert 0.5 <= second["at"] - first["at"] < 1.3


def test_a_hanging_endpoint_times_out_and_gets_the_same_key_again(api, pushers) -> None:
    server = api(hang=1.0)
    pusher = pushers(server.url, first_backoff=0.05, timeout=0.3)
    pusher.submit("c1", "{}")
    wait_for(lambda: len(server.posts) >= 2, timeout=5)
    first, second = server.posts[:2]
    assert second["at"] - first["at"] < 1.0  # the attempt was cut off at the timeout
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]
    assert first["body"] == second["body"]
    server.hang = 0.0
    wait_for(lambda: pusher.counts.pushed == 1, timeout=5)


def test_endpoint_down_for_seconds_after_activity_stopped(pushers) -> None:
    """Connection refused for 3 s after the last submit; then every report arrives once."""
    port = free_port()
    pusher = pushers(f"http://127.0.0.1:{port}/r", first_backoff=0.1, max_backoff=0.5)
    texts = {f"w{i}": json.dumps({"workload": f"w{i}", "v": 1}) for i in range(5)}
    for name, text in texts.items():
        pusher.submit(name, text)
    pusher.submit("w0", json.dumps({"workload": "w0", "v": 2}))  # a newer version
    texts["w0"] = json.dumps({"workload": "w0", "v": 2})
    wait_for(lambda: pusher.counts.errors >= 3)
    time.sleep(3.0)
    assert pusher.counts.pushed == 0
    server = Api(port=port)
    try:
        wait_for(lambda: pusher.counts.pushed == 5, timeout=5)
        time.sleep(0.3)
        keys = [p["headers"]["Idempotency-Key"] for p in server.posts]
    finally:
        server.close()
    assert sorted(keys) == sorted(version_key(n, t.encode()) for n, t in texts.items())
    assert pusher.idle()


def test_stop_does_not_wait_out_a_backoff() -> None:
    def refuse(url: str, body: bytes, headers, timeout: float) -> Reply:
        raise ConnectionRefusedError(111, "Connection refused")

    pusher = Pusher("http://x/", post=refuse, first_backoff=30.0).start()
    pusher.submit("c1", "{}")
    wait_for(lambda: pusher.counts.errors == 1)
    started = time.monotonic()
    pusher.stop(5.0)
    assert time.monotonic() - started < 0.5
    assert not pusher._thread.is_alive()


def test_delivered_versions_are_remembered_across_restarts(api, pushers,
                                                           tmp_path: Path) -> None:
    server = api()
    path = str(tmp_path / ".delivered.json")
    first = pushers(server.url, delivered=DeliveryLog(path).load())
    first.submit("c1", "v1")
    first.submit("c2", "v1")
    wait_for(lambda: first.counts.pushed == 2)
    first.stop(1.0)
    again = pushers(server.url, delivered=DeliveryLog(path).load())
    again.submit("c1", "v1")  # what a restarted reporter loaded, already delivered
    again.submit("c2", "v2")  # changed since
    wait_for(lambda: again.counts.pushed == 1 and again.counts.already_delivered == 1)
    assert [p["body"] for p in server.posts] == [b"v1", b"v1", b"v2"]


def test_unreadable_delivery_log_means_push_again(tmp_path: Path, caplog) -> None:
    path = tmp_path / ".delivered.json"
    path.write_text("{nope")
    log = DeliveryLog(str(path)).load()
    assert not log.delivered("c1", "k")
    assert any("delivery state unreadable" in r.getMessage() for r in caplog.records)
    log.mark("c1", "k")
    assert DeliveryLog(str(path)).load().delivered("c1", "k")


def test_delivery_log_write_failure_is_counted_not_fatal(tmp_path: Path) -> None:
    def full(path: str, text: str) -> None:
        raise OSError(28, "No space left on device", path)

    log = DeliveryLog(str(tmp_path / "d.json"), write=full)
    log.mark("c1", "k")
    log.mark("c1", "k2")
    assert log.write_errors == 2 and log.delivered("c1", "k2")

"""Remote push of spooled deltas against a local endpoint on loopback: gzip bodies, keys
and tokens, retries with backoff, Retry-After, 413 splits, slow retries on 401/403,
what is set aside, restarts and TLS verification."""

from __future__ import annotations

import gzip
import json
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from snoop.common.delta import Delta, decode_delta, delta_key
from snoop.common.report import Report
from snoop.reporter.push import Pusher, delta_url, new_client, retry_after_seconds
from snoop.reporter.spool import Prepared, Spool
from tests.support.net import free_port

# (status, headers) for one POST; the default answers 200.
Behaviour = Callable[[int], tuple[int, dict[str, str]]]


class Api:
    """A local endpoint: `behaviour(n)` (n counts POSTs from 0) says how to answer."""

    def __init__(self, behaviour: Behaviour | None = None, port: int = 0,
                 hang: float = 0.0) -> None:
        self.behaviour = behaviour or (lambda n: (200, {}))
        self.mutex = threading.Lock()
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
                reply = headers.pop("_body", "").encode() if "_body" in headers else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

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
def spool(tmp_path: Path) -> Spool:
    return Spool(str(tmp_path / "spool"), 1 << 24).open()


@pytest.fixture
def pushers():
    made: list[Pusher] = []

    def make(url: str, spool: Spool, token: str = "", **kwargs) -> Pusher:
        made.append(Pusher(url, token, spool, **kwargs).start())
        return made[-1]

    yield make
    for pusher in made:
        pusher.stop(1.0)


def delta(workload: str, *paths: str, full: bool = False) -> bytes:
    report = Report(workload=workload, workload_key=workload, started_at=1e9,
                    last_updated_at=1e9)
    for path in paths:
        report.add_file(path.encode(), 1, 1e9, 1e9)
    return Delta("node-a", workload, full, report).encode()


def spooled(spool: Spool, *bodies: bytes, pusher: Pusher | None = None) -> None:
    spool.append([Prepared.of(decode_delta(b).workload_id, b, decode_delta(b).full)
                  for b in bodies], known=[decode_delta(b).workload_id for b in bodies])
    if pusher is not None:
        pusher.wake()


def posted(post: dict) -> bytes:
    assert post["headers"]["Content-Encoding"] == "gzip"
    return gzip.decompress(post["body"])


def fails(times: int, status: int = 503, headers: dict | None = None) -> Behaviour:
    return lambda n: (status, dict(headers or {})) if n < times else (200, {})


def test_posts_gzip_delta_with_bearer_token_and_idempotency_key(api, spool, pushers) -> None:
    server = api()
    body = delta("c1", "/a")
    pusher = pushers(server.url, spool, "s3cret")
    spooled(spool, body, pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1)
    [post] = server.posts
    assert post["path"] == "/v1/deltas" and posted(post) == body
    assert post["headers"]["Authorization"] == "Bearer s3cret"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Idempotency-Key"] == delta_key(body)
    wait_for(lambda: pusher.idle())
    assert spool.records() == 0


def test_no_token_no_header(api, spool, pushers) -> None:
    server = api()
    pusher = pushers(server.url, spool)
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1)
    assert "Authorization" not in server.posts[0]["headers"]


def test_the_endpoint_url_gets_the_deltas_path_only_when_it_has_none() -> None:
    assert delta_url("http://recv:8787") == "http://recv:8787/v1/deltas"
    assert delta_url("https://recv/") == "https://recv/v1/deltas"
    assert delta_url("https://api.example/snoop/in?x=1") == "https://api.example/snoop/in?x=1"


def test_retries_with_growing_jittered_backoff_until_delivered(spool) -> None:
    attempts: list[float] = []

    def refuse_then_take(request: httpx.Request) -> httpx.Response:
        attempts.append(time.monotonic())
        if len(attempts) <= 6:
            raise httpx.ConnectError("Connection refused", request=request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(refuse_then_take))
    pusher = Pusher("http://127.0.0.1:9/", "", spool, client=client, first_backoff=0.1,
                    max_backoff=0.4).start()
    try:
        spooled(spool, delta("c1", "/a"), pusher=pusher)  # once: nothing else comes
        wait_for(lambda: pusher.counts.pushed == 1, timeout=10)
    finally:
        pusher.stop(1.0)
    assert pusher.counts.errors == 6 and len(attempts) == 7
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[2] >= 0.2  # grows from half the first backoff...
    assert all(g < 0.4 + 0.2 for g in gaps)  # ...up to its bound
    assert pusher.idle()


def test_413_splits_the_delta_until_the_halves_fit(api, spool, pushers) -> None:
    server = api()
    server.behaviour = lambda n: (
        (413, {}) if len(decode_delta(posted(server.posts[n])).report.files) > 2 else (200, {}))
    paths = [f"/f{i}" for i in range(9)]
    pusher = pushers(server.url, spool)
    spooled(spool, delta("c1", *paths, full=True), pusher=pusher)
    wait_for(lambda: pusher.idle() and pusher.counts.pushed >= 5)
    delivered = [decode_delta(posted(p)) for p in server.delivered()]
    got = [p for d in delivered for p in d.report.files]
    assert sorted(got) == sorted(p.encode() for p in paths)  # each file once
    assert all(not d.full for d in delivered)  # a half is no snapshot
    assert pusher.counts.splits >= 4 and pusher.counts.rejected == 0


def test_413_on_a_single_file_sets_it_aside(api, spool, pushers, caplog) -> None:
    server = api(lambda n: (413, {}) if n == 0 else (200, {}))
    pusher = pushers(server.url, spool)
    body = delta("c1", "/" + "a" * 4000)
    spooled(spool, body, delta("c2", "/b"), pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1)
    assert pusher.counts.too_large == 1 and pusher.counts.rejected == 1
    kept = Path(spool.directory) / "rejected" / f"{delta_key(body)}.json.gz"
    assert gzip.decompress(kept.read_bytes()) == body
    assert "refused a delta for good" in caplog.text


@pytest.mark.parametrize("status", [400, 409, 410, 415, 422])
def test_a_delta_refused_for_good_is_set_aside_and_its_workload_resent_whole(
        api, spool, pushers, status: int) -> None:
    server = api(lambda n: (status, {"_body": '{"error": "report: files: bad"}'})
                 if n == 0 else (200, {}))
    pusher = pushers(server.url, spool, first_backoff=0.05)
    first = delta("c1", "/a")
    spooled(spool, first, delta("c2", "/b"), pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1)
    time.sleep(0.2)
    assert len(server.posts) == 2 and pusher.counts.rejected == 1
    reply = Path(spool.directory) / "rejected" / f"{delta_key(first)}.json.gz.reply"
    assert reply.read_text().startswith(f"HTTP {status}\n") and "files: bad" in reply.read_text()
    # Its files are not lost with it: the next round sends c1 in full.
    assert spool.known == {"c2"}
    assert Spool(spool.directory, 1 << 20).open().known == {"c2"}


def test_a_refused_snapshot_is_not_sent_again_and_again(api, spool, pushers) -> None:
    server = api(lambda n: (400, {}))
    pusher = pushers(server.url, spool)
    spooled(spool, delta("c1", "/a", full=True), pusher=pusher)
    wait_for(lambda: pusher.counts.rejected == 1)
    assert spool.known == {"c1"}


@pytest.mark.parametrize("status", [401, 403, 404, 405, 421, 301, 308])
def test_refusals_of_every_delta_are_retried_slowly_not_dropped(api, spool, pushers,
                                                                status: int, caplog) -> None:
    server = api(fails(2, status, {"Location": "https://elsewhere/"}))
    pusher = pushers(server.url, spool, auth_retry=0.6, first_backoff=0.01)
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1, timeout=5)
    first, second, third = server.posts
    assert second["at"] - first["at"] >= 0.6 and third["at"] - second["at"] >= 0.6
    assert pusher.counts.refusals == 2 and pusher.counts.rejected == 0
    assert len([r for r in caplog.records if "refuses every delta" in r.getMessage()]) == 1


def test_the_pusher_survives_what_it_did_not_expect(spool, caplog) -> None:
    calls = []

    def odd(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise UnicodeEncodeError("ascii", "\u200b", 0, 1, "a header no codec takes")
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(odd))
    pusher = Pusher("http://x/", "", spool, client=client, first_backoff=0.05).start()
    try:
        spooled(spool, delta("c1", "/a"), pusher=pusher)
        wait_for(lambda: pusher.counts.pushed == 1)
    finally:
        pusher.stop(1.0)
    assert pusher.counts.errors == 1 and "unexpectedly" in caplog.text


def test_only_the_newest_rejected_deltas_are_kept(api, spool, pushers) -> None:
    server = api(lambda n: (400, {}))
    pusher = pushers(server.url, spool)
    spooled(spool, *[delta(f"c{i}", "/a") for i in range(104)], pusher=pusher)
    wait_for(lambda: pusher.counts.rejected == 104, timeout=20)
    kept = [n for n in os.listdir(Path(spool.directory) / "rejected") if n.endswith(".gz")]
    assert len(kept) == 100


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_server_errors_are_retried(api, spool, pushers,
                                                           status: int) -> None:
    server = api(fails(2, status))
    pusher = pushers(server.url, spool, first_backoff=0.05)
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1)
    assert pusher.counts.errors == 2 and len(server.posts) == 3
    keys = {p["headers"]["Idempotency-Key"] for p in server.posts}
    assert len(keys) == 1  # one delta, one key: the receiver can tell repeats


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(api, spool, pushers, status: int) -> None:
    server = api(fails(1, status, {"Retry-After": "1"}))
    pusher = pushers(server.url, spool, first_backoff=0.05)
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1, timeout=5)
    first, second = server.posts
    assert 1.0 <= second["at"] - first["at"] < 1.8


def test_retry_after_http_date_is_honoured(api, spool, pushers) -> None:
    # HTTP dates have whole seconds: ask for 2 s from now, so at least ~1 s remains.
    when = formatdate(time.time() + 2, usegmt=True)
    server = api(fails(1, 503, {"Retry-After": when}))
    pusher = pushers(server.url, spool, first_backoff=0.05)
    spooled(spool, delta("c1", "/a"), pusher=pusher)
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


def test_a_huge_retry_after_is_capped(api, spool, pushers) -> None:
    server = api(fails(1, 429, {"Retry-After": "86400"}))
    pusher = pushers(server.url, spool, first_backoff=0.05, max_retry_after=0.5)
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1, timeout=3)
    first, second = server.posts
    assert 0.5 <= second["at"] - first["at"] < 1.3


def test_a_hanging_endpoint_times_out_and_gets_the_same_key_again(api, spool, pushers) -> None:
    server = api(hang=1.0)
    pusher = pushers(server.url, spool, first_backoff=0.05, client=new_client(timeout=0.3))
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: len(server.posts) >= 2, timeout=5)
    first, second = server.posts[:2]
    assert second["at"] - first["at"] < 1.0  # the attempt was cut off at the timeout
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]
    assert first["body"] == second["body"]
    server.hang = 0.0
    wait_for(lambda: pusher.counts.pushed == 1, timeout=5)


def test_endpoint_down_for_seconds_after_activity_stopped(spool, pushers) -> None:
    """Connection refused for 3 s after the last delta; then each one arrives once."""
    port = free_port()
    pusher = pushers(f"http://127.0.0.1:{port}", spool, first_backoff=0.1, max_backoff=0.5)
    bodies = [delta(f"w{i}", f"/f{i}") for i in range(5)]
    spooled(spool, *bodies[:3], pusher=pusher)
    spooled(spool, *bodies[3:], pusher=pusher)
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
    assert keys == [delta_key(b) for b in bodies]  # oldest first, each once
    assert pusher.idle()


def test_stop_does_not_wait_out_a_backoff(spool) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    pusher = Pusher("http://x/", "", spool, client=client, first_backoff=30.0).start()
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: pusher.counts.errors == 1)
    started = time.monotonic()
    pusher.stop(5.0)
    assert time.monotonic() - started < 0.5
    assert not pusher._thread.is_alive()
    assert spool.records() == 1  # kept for the next start


def test_what_a_stopped_pusher_held_goes_out_after_a_restart(api, tmp_path: Path,
                                                             pushers) -> None:
    directory = str(tmp_path / "spool")
    spool = Spool(directory, 1 << 20).open()
    port = free_port()
    first = pushers(f"http://127.0.0.1:{port}", spool, first_backoff=0.05)
    bodies = [delta("c1", "/a"), delta("c2", "/b")]
    spooled(spool, *bodies, pusher=first)
    wait_for(lambda: first.counts.errors >= 1)
    first.stop(1.0)
    server = Api(port=port)
    try:
        again = pushers(server.url, Spool(directory, 1 << 20).open())
        again.wake()
        wait_for(lambda: again.counts.pushed == 2)
        assert [posted(p) for p in server.posts] == bodies
    finally:
        server.close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS endpoint on loopback with a self-signed certificate for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = Api()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    server.url = server.url.replace("http://", "https://")
    yield server, str(cert)
    server.close()


def test_tls_certificates_are_verified_by_default(tls_server, spool, pushers) -> None:
    server, _ = tls_server
    pusher = pushers(server.url, spool, first_backoff=0.05)
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: pusher.counts.errors >= 2)
    assert pusher.counts.pushed == 0 and spool.records() == 1


def test_tls_with_the_endpoints_ca_delivers(tls_server, spool, pushers) -> None:
    server, ca_file = tls_server
    pusher = pushers(server.url, spool, client=new_client(verify=ca_file))
    spooled(spool, delta("c1", "/a"), pusher=pusher)
    wait_for(lambda: pusher.counts.pushed == 1)
    assert json.loads(posted(server.posts[-1]))["workload_id"] == "c1"

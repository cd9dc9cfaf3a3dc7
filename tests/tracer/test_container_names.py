"""Container names from the Docker Engine API, against a stand-in engine on a unix socket
(tests/docker/test_container.py asks a real one)."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from snoop.tracer.container_names import BACKOFF, ContainerNames, name_from_inspect

K8S = "a" * 64
COMPOSE = "b" * 64
PLAIN = "c" * 64
UNKNOWN = "d" * 64
BROKEN = "e" * 64
DEEP = "f" * 64
IMAGE_ID = "sha256:" + "9" * 64
ANSWERS = {
    K8S: {"Name": "/k8s_app_web-7d9f_prod_uid_0", "Image": IMAGE_ID, "Config": {
        "Image": "registry.example/shop/web:1.2", "Labels": {
            "io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.name": "web-7d9f",
            "io.kubernetes.container.name": "app", "io.kubernetes.pod.uid": "u-1",
            "app.kubernetes.io/name": "web"}}},
    COMPOSE: {"Name": "/shop-web-1", "Config": {"Labels": {
        "com.docker.compose.project": "shop", "com.docker.compose.service": "web"}}},
    PLAIN: {"Name": "/quirky_turing", "Config": {"Labels": None}},
}


class Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    asked: list[str]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.server.asked.append(self.path)  # type: ignore[attr-defined]
        if self.path == f"/images/{IMAGE_ID}/json":
            body = json.dumps({"RepoDigests": [
                "mirror.example/other@sha256:" + "1" * 64,
                "registry.example/shop/web@sha256:" + "2" * 64]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        container = self.path.split("/")[2]
        if container == BROKEN:
            self.send_response(500)
            self.end_headers()
            return
        if container == DEEP:
            body = b"[" * 100_000 + b"]" * 100_000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        answer = ANSWERS.get(container)
        body = json.dumps(answer or {"message": "No such container"}).encode()
        self.send_response(200 if answer else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    path = str(tmp_path / "docker.sock")
    server = Engine(path, Handler)
    server.asked = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_names_say_what_the_container_is(engine: tuple[Engine, str]) -> None:
    server, path = engine
    names = ContainerNames(path)
    assert names.name_of(K8S) == "prod/web-7d9f/app"
    assert names.name_of(COMPOSE) == "shop/web"
    assert names.name_of(PLAIN) == "quirky_turing"
    assert names.name_of(UNKNOWN) == ""  # another runtime's container: keeps its id
    for container in (K8S, COMPOSE, PLAIN, UNKNOWN):
        names.name_of(container)
    assert len(server.asked) == 5  # each asked once, and the one image
    assert server.asked[:2] == [f"/containers/{K8S}/json", f"/images/{IMAGE_ID}/json"]


def test_a_pods_container_says_its_image_digest_pod_and_labels(
        engine: tuple[Engine, str]) -> None:
    _, path = engine
    name, meta = ContainerNames(path).info_of(K8S)
    assert name == "prod/web-7d9f/app"
    assert (meta.image_ref, meta.image_digest, meta.pod_name, meta.namespace,
            meta.container_name) == ("registry.example/shop/web:1.2", "sha256:" + "2" * 64,
                                     "web-7d9f", "prod", "app")
    assert meta.labels == (("app.kubernetes.io/name", "web"),)  # kubelet bookkeeping left out
    _, plain = ContainerNames(path).info_of(PLAIN)
    assert (plain.image_ref, plain.image_digest, plain.container_name) == ("", "", "quirky_turing")
    assert ContainerNames(path).info_of(UNKNOWN) == ("", None)


def test_an_engine_that_fails_is_left_alone_for_a_while(engine: tuple[Engine, str],
                                                       tmp_path: Path) -> None:
    server, path = engine
    now = [1000.0]
    names = ContainerNames(path, clock=lambda: now[0])
    assert names.name_of(BROKEN) is None  # no answer: ask again later
    assert names.name_of(PLAIN) is None  # backing off: not asked
    assert len(server.asked) == 1
    now[0] += BACKOFF + 1
    assert names.name_of(PLAIN) == "quirky_turing"
    assert names.name_of(BROKEN) is None  # still failing; not cached as nameless
    missing = ContainerNames(str(tmp_path / "no-engine.sock"))
    assert missing.name_of(PLAIN) == ""  # no engine on this host: none to ask
    assert ContainerNames("").name_of(PLAIN) == ""  # switched off


def test_odd_answers_give_no_name_rather_than_a_wrong_one() -> None:
    assert name_from_inspect({}) == ""
    assert name_from_inspect({"Config": "x", "Name": 3}) == ""
    # Half the compose labels: the container's own name.
    assert name_from_inspect({"Name": "/x", "Config": {"Labels": {
        "com.docker.compose.project": "shop"}}}) == "x"
    assert len(name_from_inspect({"Name": "/" + "n" * 1000})) == 256


def test_an_answer_nested_too_deep_is_no_answer(engine: tuple[Engine, str]) -> None:
    _, path = engine
    assert ContainerNames(path).name_of(DEEP) is None  # json's RecursionError: no crash

"""What people call a container, and what it runs, asked of its runtime: the Docker
Engine API.

    GET /containers/<id>/json  over the engine's unix socket (SNOOP_DOCKER_SOCKET)
    GET /images/<image id>/json  (once per image: its repo digest)

The name is, in order: `namespace/pod/container` from the Kubernetes labels a kubelet
puts on containers it runs through Docker (cri-dockerd), `project/service` from Docker
Compose's labels, or the container's own name. The metadata (common/protocol.py
WorkloadMeta): the image as the container was started with it (`Config.Image`), its
digest (the repo digest the image was pulled by, else the image id), the pod, namespace
and container name from those Kubernetes labels (else the container's name), and the
container's labels. A container the engine does not know (another runtime's, or no
engine at all) has neither, and its report keeps its id.

The lookup is made once per container, the first time its events are seen, with a short
timeout: a container is known to the engine before its first process runs. An engine
that does not answer is not asked again for BACKOFF seconds.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from snoop.common.protocol import (
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_META_LABELS,
    MAX_META_VALUE,
    MAX_WORKLOAD_NAME,
    WorkloadMeta,
)

log = logging.getLogger("snoop.tracer")

TIMEOUT = 0.5
BACKOFF = 30.0
MAX_CACHED = 65536
MAX_ANSWER_BYTES = 4 << 20
_K8S = ("io.kubernetes.pod.namespace", "io.kubernetes.pod.name",
        "io.kubernetes.container.name")
_COMPOSE = ("com.docker.compose.project", "com.docker.compose.service")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def name_from_inspect(answer: dict[str, Any]) -> str:
    """The readable name of a container from its `docker inspect` document."""
    config = answer.get("Config") if isinstance(answer.get("Config"), dict) else {}
    labels = config.get("Labels") if isinstance(config.get("Labels"), dict) else {}
    for keys in (_K8S, _COMPOSE):
        values = [labels.get(key) for key in keys]
        if all(isinstance(value, str) and value for value in values):
            return "/".join(values)[:MAX_WORKLOAD_NAME]  # type: ignore[arg-type]
    name = answer.get("Name")
    if isinstance(name, str):
        return name.lstrip("/")[:MAX_WORKLOAD_NAME]
    return ""


def _text(value: Any) -> str:
    return value[:MAX_META_VALUE] if isinstance(value, str) else ""


def meta_from_inspect(answer: dict[str, Any], repo_digests: list[Any] | None = None
                      ) -> WorkloadMeta:
    """What a container runs, from its `docker inspect` document (and its image's
    RepoDigests)."""
    config = answer.get("Config") if isinstance(answer.get("Config"), dict) else {}
    labels = config.get("Labels") if isinstance(config.get("Labels"), dict) else {}
    texts = {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)
             and len(k) <= MAX_LABEL_KEY and len(v) <= MAX_LABEL_VALUE}
    ref = _text(config.get("Image"))
    digest = ""
    repo = ref.rsplit("@", 1)[0].rsplit(":", 1)[0] if "/" in ref or ":" in ref else ref
    for entry in repo_digests or []:
        if isinstance(entry, str) and "@" in entry:
            name, _, sha = entry.partition("@")
            if not digest or name == repo:  # the digest of the repo it was started from
                digest = sha
    if not digest:
        digest = _text(answer.get("Image"))  # the image id: its config's digest
    container = texts.get("io.kubernetes.container.name") or _text(answer.get("Name")).lstrip("/")
    # Kubernetes' own bookkeeping labels say nothing a report needs twice.
    kept = sorted((k, v) for k, v in texts.items() if not k.startswith("io.kubernetes."))
    return WorkloadMeta(image_ref=ref, image_digest=digest[:MAX_META_VALUE],
                        pod_name=_text(texts.get("io.kubernetes.pod.name")),
                        namespace=_text(texts.get("io.kubernetes.pod.namespace")),
                        container_name=container[:MAX_META_VALUE],
                        labels=tuple(kept[:MAX_META_LABELS]))


class ContainerNames:
    def __init__(self, socket_path: str, *, clock: Callable[[], float] = time.monotonic,
                 timeout: float = TIMEOUT,
                 containerd: Callable[[str], dict[str, Any] | None] | None = None) -> None:
        """`containerd`: an inspect that asks containerd instead of the Docker engine
        (tracer/containerd.py); `socket_path` is then only what logs name."""
        self.socket_path = socket_path
        self._containerd = containerd
        self._clock = clock
        self._timeout = timeout
        self._known: dict[str, tuple[str, WorkloadMeta | None]] = {}
        self._digests: dict[str, list[Any]] = {}  # image id -> its RepoDigests
        self._quiet_until = 0.0  # the engine did not answer: not asked again before

    def name_of(self, container_id: str) -> str | None:
        """The container's readable name; "" when the engine does not know it (or none
        is asked); None when the engine did not answer: ask again later."""
        info = self.info_of(container_id)
        return None if info is None else info[0]

    def info_of(self, container_id: str) -> tuple[str, WorkloadMeta | None] | None:
        """(name, metadata) of a container: ("", None) when the engine does not know it
        (or none is asked); None when the engine did not answer: ask again later."""
        if not self.socket_path or not container_id:
            return "", None
        known = self._known.get(container_id)
        if known is not None:
            return known
        if self._clock() < self._quiet_until:
            return None
        try:
            if self._containerd is not None:
                answer, digests = self._containerd(container_id), None
            else:
                answer = self._get(f"/containers/{container_id}/json")
                digests = self._repo_digests(answer.get("Image")) if answer else None
        except FileNotFoundError:  # no engine on this host: its containers keep their ids
            self._quiet_until = self._clock() + BACKOFF
            return "", None
        except Exception as exc:  # noqa: BLE001  (a runtime's odd answer is no crash)
            self._quiet_until = self._clock() + BACKOFF
            log.info("no container names from the container runtime",
                     extra={"socket": self.socket_path, "error": str(exc)[:200]})
            return None
        info = ("", None) if answer is None else (name_from_inspect(answer),
                                                  meta_from_inspect(answer, digests))
        if len(self._known) >= MAX_CACHED:
            self._known.clear()
            self._digests.clear()
        self._known[container_id] = info
        return info

    def _repo_digests(self, image_id: Any) -> list[Any]:
        if not isinstance(image_id, str) or not image_id.startswith("sha256:"):
            return []
        known = self._digests.get(image_id)
        if known is None:
            answer = self._get(f"/images/{image_id}/json")
            found = answer.get("RepoDigests") if answer is not None else None
            known = self._digests[image_id] = found if isinstance(found, list) else []
        return known

    def _get(self, path: str) -> dict[str, Any] | None:
        """The engine's JSON answer; None when it does not know the object (404)."""
        connection = _UnixConnection(self.socket_path, self._timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read(MAX_ANSWER_BYTES)
        finally:
            connection.close()
        if response.status == 404:
            return None
        if response.status != 200:
            raise ValueError(f"GET {path[:40]}: HTTP {response.status}")
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise ValueError("the engine's answer is not a JSON object")
        return answer

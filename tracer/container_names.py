"""What people call a container, asked of its runtime: the Docker Engine API.

    GET /containers/<id>/json  over the engine's unix socket (SNOOP_DOCKER_SOCKET)

The name is, in order: `namespace/pod/container` from the Kubernetes labels a kubelet
puts on containers it runs through Docker (cri-dockerd), `project/service` from Docker
Compose's labels, or the container's own name. A container the engine does not know
(another runtime's, or no engine at all) has no name, and its report keeps its id.

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

from snoop.common.protocol import MAX_WORKLOAD_NAME

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


class ContainerNames:
    def __init__(self, socket_path: str, *, clock: Callable[[], float] = time.monotonic,
                 timeout: float = TIMEOUT) -> None:
        self.socket_path = socket_path
        self._clock = clock
        self._timeout = timeout
        self._names: dict[str, str] = {}
        self._quiet_until = 0.0  # the engine did not answer: not asked again before

    def name_of(self, container_id: str) -> str | None:
        """The container's readable name; "" when the engine does not know it (or none
        is asked); None when the engine did not answer: ask again later."""
        if not self.socket_path or not container_id:
            return ""
        known = self._names.get(container_id)
        if known is not None:
            return known
        if self._clock() < self._quiet_until:
            return None
        try:
            answer = self._inspect(container_id)
        except FileNotFoundError:  # no engine on this host: its containers keep their ids
            self._quiet_until = self._clock() + BACKOFF
            return ""
        except (OSError, http.client.HTTPException, ValueError, RecursionError) as exc:
            self._quiet_until = self._clock() + BACKOFF
            log.info("no container names from the Docker engine",
                     extra={"socket": self.socket_path, "error": str(exc)[:200]})
            return None
        name = name_from_inspect(answer) if answer is not None else ""
        if len(self._names) >= MAX_CACHED:
            self._names.clear()
        self._names[container_id] = name
        return name

    def _inspect(self, container_id: str) -> dict[str, Any] | None:
        """The engine's inspect document; None when it does not know the container."""
        connection = _UnixConnection(self.socket_path, self._timeout)
        try:
            connection.request("GET", f"/containers/{container_id}/json")
            response = connection.getresponse()
            body = response.read(MAX_ANSWER_BYTES)
        finally:
            connection.close()
        if response.status == 404:
            return None
        if response.status != 200:
            raise ValueError(f"GET /containers/{container_id[:12]}/json: HTTP {response.status}")
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise ValueError("inspect answer is not a JSON object")
        return answer

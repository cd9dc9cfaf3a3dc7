"""What a container is, asked of containerd: its gRPC API over its unix socket
(SNOOP_CONTAINERD_SOCKET), in the namespace its containers live in
(SNOOP_CONTAINERD_NAMESPACE: `k8s.io` for Kubernetes' CRI, `moby` for Docker's).

    containerd.services.containers.v1.Containers/Get  {id}   -> labels, image
    containerd.services.images.v1.Images/Get          {name} -> target digest (once per image)

The kubelet's CRI puts the pod's name and namespace and the container's name on each
container as labels (`io.kubernetes.pod.name` ...), so a node tracer on a containerd
node names a report `namespace/pod/container` and fills its pod, image and digest, as it
does from the Docker Engine API (container_names.py).

gRPC is HTTP/2 (the `h2` library: frames and HPACK) carrying length-prefixed protobuf
messages; the three messages needed are small enough to encode and read here, by field
number, from containerd's published .proto files, without generated code.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from snoop.common.protocol import MAX_WORKLOAD_NAME
from snoop.tracer.container_names import meta_from_inspect, name_from_inspect

TIMEOUT = 0.5
MAX_ANSWER_BYTES = 4 << 20
GRPC_NOT_FOUND = 5
CONTAINERS_GET = "/containerd.services.containers.v1.Containers/Get"
IMAGES_GET = "/containerd.services.images.v1.Images/Get"


class ContainerdError(OSError):
    """containerd did not answer as expected (not a missing container)."""


# ---------------------------------------------------------------- protobuf, by hand

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string_field(number: int, text: str) -> bytes:
    data = text.encode("utf-8")
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def read_fields(data: bytes) -> dict[int, list[Any]]:
    """Field number -> values (ints for varints, bytes for length-delimited); ValueError
    on a message that is cut short or of a wire type protobuf does not have."""
    fields: dict[int, list[Any]] = {}
    at = 0

    def varint() -> int:
        nonlocal at
        value = shift = 0
        while True:
            if at >= len(data) or shift > 63:
                raise ValueError("protobuf: varint cut short")
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while at < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value: Any = varint()
        elif wire == 2:
            size = varint()
            if at + size > len(data):
                raise ValueError("protobuf: field cut short")
            value, at = data[at:at + size], at + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, at = data[at:at + width], at + width
        else:
            raise ValueError(f"protobuf: wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _text(fields: dict[int, list[Any]], number: int) -> str:
    values = fields.get(number) or [b""]
    value = values[-1]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def container_from(message: bytes) -> tuple[str, dict[str, str]]:
    """(image, labels) of a GetContainerResponse."""
    container = read_fields((read_fields(message).get(1) or [b""])[0])
    labels = {}
    for entry in container.get(2, []):
        pair = read_fields(entry)
        labels[_text(pair, 1)] = _text(pair, 2)
    return _text(container, 3), labels


def image_digest_from(message: bytes) -> str:
    """The target digest of a GetImageResponse's image."""
    image = read_fields((read_fields(message).get(1) or [b""])[0])
    target = read_fields((image.get(3) or [b""])[0])
    return _text(target, 2)


# ---------------------------------------------------------------- gRPC over h2

def grpc_call(socket_path: str, path: str, request: bytes, namespace: str,
              timeout: float = TIMEOUT) -> bytes | None:
    """One unary call; the reply message, or None when containerd says NotFound."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                 header_encoding="utf-8"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "containerd"), ("content-type", "application/grpc"),
            ("te", "trailers"), ("containerd-namespace", namespace)])
        conn.send_data(stream, b"\0" + len(request).to_bytes(4, "big") + request,
                       end_stream=True)
        sock.sendall(conn.data_to_send())
        body, status, ended = bytearray(), None, False
        while not ended:
            chunk = sock.recv(65536)
            if not chunk:
                raise ContainerdError("containerd closed the connection")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                    if len(body) > MAX_ANSWER_BYTES:
                        raise ContainerdError("containerd's answer is too large")
                elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    headers = dict(event.headers)
                    if headers.get(":status", "200") != "200":
                        raise ContainerdError(f"HTTP {headers[':status']}")
                    if "grpc-status" in headers:
                        status = int(headers["grpc-status"])
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    ended = True
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise ContainerdError("containerd ended the connection")
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    if status == GRPC_NOT_FOUND:
        return None
    if status != 0:
        raise ContainerdError(f"grpc-status {status}")
    if len(body) < 5 or body[0] != 0:
        raise ContainerdError("containerd's answer is not one uncompressed message")
    size = int.from_bytes(body[1:5], "big")
    return bytes(body[5:5 + size])


# ---------------------------------------------------------------- lookups

class Containerd:
    """Container lookups in one containerd namespace: the same answers as
    ContainerNames.info_of, so the tracer asks either."""

    def __init__(self, socket_path: str, namespace: str, *,
                 call: Callable[..., bytes | None] = grpc_call) -> None:
        self.socket_path = socket_path
        self.namespace = namespace
        self._call = call
        self._digests: dict[str, str] = {}

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container as a Docker inspect document (the fields container_names.py
        reads); None when containerd does not know it. OSError or ValueError when it
        could not be asked."""
        reply = self._call(self.socket_path, CONTAINERS_GET,
                           string_field(1, container_id), self.namespace)
        if reply is None:
            return None
        image, labels = container_from(reply)
        digest = self._digest(image) if image else ""
        return {"Name": "", "Image": digest, "Config": {"Image": image, "Labels": labels}}

    def _digest(self, image: str) -> str:
        known = self._digests.get(image)
        if known is None:
            reply = self._call(self.socket_path, IMAGES_GET, string_field(1, image),
                               self.namespace)
            known = self._digests[image] = image_digest_from(reply) if reply else ""
        return known


def info_from(answer: dict[str, Any]) -> tuple[str, Any]:
    name = name_from_inspect(answer)[:MAX_WORKLOAD_NAME]
    return name, meta_from_inspect(answer)

"""containerd lookups without containerd: the protobuf messages as containerd's .proto
files define them, and what a node tracer makes of a CRI container's labels. The real
socket is exercised in tests/docker/test_containerd.py."""

from __future__ import annotations

import pytest

from snoop.tracer.containerd import (
    CONTAINERS_GET,
    IMAGES_GET,
    Containerd,
    container_from,
    image_digest_from,
    info_from,
    read_fields,
    string_field,
)


def message(*fields: bytes) -> bytes:
    return b"".join(fields)


def nested(number: int, body: bytes) -> bytes:
    return bytes([number << 3 | 2]) + _len(body) + body


def _len(body: bytes) -> bytes:
    out, size = bytearray(), len(body)
    while True:
        if size < 0x80:
            out.append(size)
            return bytes(out)
        out.append(size & 0x7F | 0x80)
        size >>= 7


def label(key: str, value: str) -> bytes:
    return nested(2, string_field(1, key) + string_field(2, value))


CRI_LABELS = {"io.kubernetes.pod.name": "web-7d9f", "io.kubernetes.pod.namespace": "prod",
              "io.kubernetes.container.name": "app", "io.kubernetes.pod.uid": "u-1",
              "app.kubernetes.io/name": "web"}
IMAGE = "docker.io/library/nginx:1.25"
DIGEST = "sha256:" + "4" * 64


def container_reply(labels: dict[str, str], image: str = IMAGE) -> bytes:
    body = string_field(1, "c" * 64) + b"".join(label(k, v) for k, v in labels.items())
    body += string_field(3, image) + string_field(4, "io.containerd.runc.v2")
    return nested(1, body)


def image_reply(digest: str) -> bytes:
    target = string_field(1, "application/vnd.oci.image.index.v1+json") + \
        string_field(2, digest) + bytes([3 << 3]) + b"\x90\x03"
    return nested(1, string_field(1, IMAGE) + nested(3, target))


def test_messages_read_back_by_field_number() -> None:
    assert string_field(1, "abc") == b"\x0a\x03abc"
    long = "x" * 300
    assert read_fields(string_field(7, long)) == {7: [long.encode()]}
    assert read_fields(b"\x18\x90\x03") == {3: [400]}
    assert container_from(container_reply(CRI_LABELS)) == (IMAGE, CRI_LABELS)
    assert image_digest_from(image_reply(DIGEST)) == DIGEST


@pytest.mark.parametrize("bad", [b"\x0a\x05ab", b"\x0a", b"\x0b\x00", b"\x08\xff"])
def test_a_message_cut_short_or_odd_is_a_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError, match="protobuf"):
        read_fields(bad)


def test_a_cri_container_is_named_and_described_as_a_pod_container() -> None:
    calls = []

    def call(socket_path: str, path: str, request: bytes, namespace: str) -> bytes | None:
        calls.append((path, read_fields(request)[1][0].decode(), namespace))
        if path == CONTAINERS_GET:
            return container_reply(CRI_LABELS) if request.endswith(b"c" * 64) else None
        return image_reply(DIGEST)

    containerd = Containerd("/run/containerd/containerd.sock", "k8s.io", call=call)
    name, meta = info_from(containerd.inspect("c" * 64))
    assert name == "prod/web-7d9f/app"
    assert (meta.image_ref, meta.image_digest, meta.pod_name, meta.namespace,
            meta.container_name, meta.labels) == (
        IMAGE, DIGEST, "web-7d9f", "prod", "app", (("app.kubernetes.io/name", "web"),))
    assert containerd.inspect("d" * 64) is None  # NotFound: another runtime's container
    containerd.inspect("c" * 64)
    assert calls.count((IMAGES_GET, IMAGE, "k8s.io")) == 1  # each image asked once

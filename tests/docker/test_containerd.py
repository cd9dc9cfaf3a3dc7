"""The containerd lookup against a real containerd: the one the private dockerd runs.

A container is made in a namespace of the test's own with `ctr`, labelled as the
kubelet's CRI labels its containers, from an image imported there; the tracer's client
(tracer/containerd.py, gRPC over the unix socket) must read its labels, its image and
that image's digest as containerd itself lists them.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from snoop.tracer.containerd import Containerd, info_from
from tests.docker.engine import Engine

APP_IMAGE = "snoop-example-app:latest"


def ctr(socket: str, namespace: str, *args: str, check: bool = True) -> str:
    result = subprocess.run(["ctr", "-a", socket, "-n", namespace, *args],
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture
def containerd_socket(engine: Engine) -> str:
    sockets = sorted(Path(engine.directory).glob("exec/containerd/containerd.sock"))
    assert sockets, f"the private dockerd runs no containerd under {engine.directory}/exec"
    return str(sockets[0])


def test_a_cri_labelled_container_is_read_from_containerd(engine: Engine, containerd_socket,
                                                          tmp_path: Path) -> None:
    namespace = f"snoop-test-{uuid.uuid4().hex[:8]}"
    image = f"docker.io/library/snoop-cri-test:{uuid.uuid4().hex[:6]}"
    container = uuid.uuid4().hex + uuid.uuid4().hex
    archive = tmp_path / "image.tar"
    engine.docker("tag", APP_IMAGE, image)
    engine.docker("save", "-o", str(archive), image)
    try:
        ctr(containerd_socket, namespace, "images", "import", str(archive))
        ctr(containerd_socket, namespace, "containers", "create",
            "--label", "io.kubernetes.pod.name=web-7d9f",
            "--label", "io.kubernetes.pod.namespace=prod",
            "--label", "io.kubernetes.container.name=app",
            "--label", "app.kubernetes.io/name=web", image, container)
        listed = ctr(containerd_socket, namespace, "images", "ls").splitlines()
        digest = next(line.split()[2] for line in listed[1:] if line.split()[0] == image)
        containerd = Containerd(containerd_socket, namespace)
        name, meta = info_from(containerd.inspect(container))
        assert name == "prod/web-7d9f/app"
        assert (meta.image_ref, meta.image_digest, meta.pod_name, meta.namespace,
                meta.container_name) == (image, digest, "web-7d9f", "prod", "app")
        assert ("app.kubernetes.io/name", "web") in meta.labels
        assert containerd.inspect(uuid.uuid4().hex * 2) is None  # not one of its containers
    finally:
        ctr(containerd_socket, namespace, "containers", "delete", container, check=False)
        ctr(containerd_socket, namespace, "images", "remove", image, check=False)
        for leftover in ctr(containerd_socket, namespace, "images", "ls", "-q",
                            check=False).split():
            ctr(containerd_socket, namespace, "images", "remove", leftover, check=False)
        ctr(containerd_socket, namespace, "content", "prune", "references", check=False)
        ctr(containerd_socket, "default", "namespaces", "remove", namespace, check=False)
        engine.docker("rmi", image, check=False)

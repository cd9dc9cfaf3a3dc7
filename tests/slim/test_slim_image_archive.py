"""`snoop slim --rootfs` on a docker save or OCI input writes OUT/image.tar: a docker save
archive and an OCI layout in one, carrying the original config over one new layer, with
digests and diff ids that hold. (tests/docker/test_slim_image.py loads and runs one.)"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from snoop.cli.main import main
from snoop.slim.image import open_image

from .helpers import docker_save_tar, layer_tar, write_report

CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--serve"],
        "Env": ["PATH=/usr/bin:/bin", "MODE=prod"],
        "WorkingDir": "/srv/app",
        "User": "app:app",
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"org.example.team": "platform"},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
    "history": [{"created_by": "/bin/sh -c #(nop) ADD app"}],
    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD app"]},
}
LAYER = layer_tar([
    ("bin", "dir", None), ("bin/app", "file", b"#!/bin/sh\necho hi\n"),
    ("bin/unused", "file", b"x" * 5000),
    ("etc", "dir", None), ("etc/passwd", "file", b"app:x:1000:1000::/srv/app:/bin/sh\n"),
    ("etc/group", "file", b"app:x:1000:\n"), ("etc/motd", "file", b"hello\n"),
    ("srv", "dir", None), ("srv/app", "dir", None), ("srv/app/data", "file", b"d"),
])


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def slimmed(tmp_path: Path) -> Path:
    image = docker_save_tar(tmp_path / "app.tar", [LAYER], config=CONFIG, tags=["app:1.2"])
    report = write_report(tmp_path / "r.json", {"/bin/app": ["exec", "read"]})
    out = tmp_path / "out"
    assert main(["slim", "--image", str(image), "--report", str(report), "--out", str(out),
                 "--rootfs"]) == 0
    return out


def test_the_slim_image_carries_the_original_config_over_one_layer(slimmed: Path) -> None:
    files = members(slimmed / "image.tar")
    [docker] = json.loads(files["manifest.json"])
    assert docker["RepoTags"] == ["app:1.2-slim"]
    config_bytes = files[docker["Config"]]
    assert docker["Config"] == "blobs/sha256/" + sha256(config_bytes).split(":")[1]
    config = json.loads(config_bytes)
    assert config["config"] == CONFIG["config"]
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert "container_config" not in config
    [layer_name] = docker["Layers"]
    layer = files[layer_name]
    assert layer == (slimmed / "rootfs.tar").read_bytes()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(layer)]}
    assert len(config["history"]) == 1 and "snoop slim" in config["history"][0]["created_by"]

    # The OCI view names the same blobs, each under its own digest.
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    [descriptor] = json.loads(files["index.json"])["manifests"]
    assert descriptor["annotations"]["io.containerd.image.name"] == "app:1.2-slim"
    manifest_bytes = files["blobs/sha256/" + descriptor["digest"].split(":")[1]]
    assert sha256(manifest_bytes) == descriptor["digest"]
    assert descriptor["size"] == len(manifest_bytes)
    manifest = json.loads(manifest_bytes)
    assert manifest["config"]["digest"] == sha256(config_bytes)
    assert [(d["digest"], d["size"]) for d in manifest["layers"]] == [(sha256(layer), len(layer))]

    summary = json.loads((slimmed / "summary.json").read_text())
    assert summary["slim_image"]["id"] == sha256(config_bytes)
    assert summary["slim_image"]["tag"] == "app:1.2-slim"


def test_what_the_runtime_reads_is_kept(slimmed: Path) -> None:
    # A named User is looked up in /etc/passwd and /etc/group; WorkingDir must exist.
    keep = (slimmed / "keep.txt").read_text().split()
    assert {"/etc/passwd", "/etc/group", "/srv/app", "/bin/app"} <= set(keep)
    assert "/etc/motd" not in keep and "/srv/app/data" not in keep
    assert json.loads((slimmed / "summary.json").read_text())["kept_by_reason"]["image config"] == 3


def test_the_slim_image_reads_back_as_the_slim_tree(slimmed: Path, tmp_path: Path) -> None:
    with open_image(slimmed / "image.tar") as tree:
        assert tree.config is not None and tree.config["config"] == CONFIG["config"]
        assert tree.tags == ["app:1.2-slim"]
        assert tree.read(tree.entries[b"/bin/app"]) == b"#!/bin/sh\necho hi\n"
        assert b"/bin/unused" not in tree
    # Slimming the slim image with the same report changes nothing.
    again = tmp_path / "again"
    report = write_report(tmp_path / "r2.json", {"/bin/app": ["exec", "read"]})
    assert main(["slim", "--image", str(slimmed / "image.tar"), "--report", str(report),
                 "--out", str(again)]) == 0
    assert (again / "keep.txt").read_text() == (slimmed / "keep.txt").read_text()


def test_tag_names_the_image(tmp_path: Path) -> None:
    image = docker_save_tar(tmp_path / "app.tar", [LAYER], config=CONFIG, tags=[])
    report = write_report(tmp_path / "r.json", {"/bin/app": ["exec"]})
    out = tmp_path / "out"
    assert main(["slim", "--image", str(image), "--report", str(report), "--out", str(out),
                 "--rootfs", "--tag", "registry.example:5000/team/app:slim"]) == 0
    [docker] = json.loads(members(out / "image.tar")["manifest.json"])
    assert docker["RepoTags"] == ["registry.example:5000/team/app:slim"]


def test_an_untagged_image_stays_untagged(tmp_path: Path) -> None:
    image = docker_save_tar(tmp_path / "app.tar", [LAYER], config=CONFIG, tags=[])
    report = write_report(tmp_path / "r.json", {"/bin/app": ["exec"]})
    out = tmp_path / "out"
    assert main(["slim", "--image", str(image), "--report", str(report), "--out", str(out),
                 "--rootfs"]) == 0
    [docker] = json.loads(members(out / "image.tar")["manifest.json"])
    assert docker["RepoTags"] is None


@pytest.mark.parametrize("extra, problem", [
    (["--tag", "app:slim"], "--tag names the slim image, which only --rootfs writes"),
    (["--rootfs", "--tag", "app:slim"], "has no image config"),
])
def test_tag_without_an_image_to_name_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        problem: str) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "app").write_text("x")
    report = write_report(tmp_path / "r.json", {"/bin/app": ["exec"]})
    assert main(["slim", "--image", str(rootfs), "--report", str(report),
                 "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err and "Traceback" not in err

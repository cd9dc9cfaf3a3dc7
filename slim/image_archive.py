"""The slim image as one tarball that is both a `docker save` archive and an OCI layout.

    oci-layout, index.json            the OCI image layout (skopeo, podman, containerd)
    manifest.json                     docker load's view: Config, RepoTags, Layers
    blobs/sha256/<digest>             the layer (uncompressed tar), the config, the manifest

Both views name the same blobs, as `docker save` itself writes since Docker 25. The layer
is stored uncompressed, so its digest is also its diff id.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from typing import Any

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageWritten:
    image_id: str  # the config's digest: what `docker images --no-trunc` shows as its ID
    tag: str | None
    size: int


def file_digest(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while piece := handle.read(_CHUNK):
            digest.update(piece)
            size += len(piece)
    return f"sha256:{digest.hexdigest()}", size


def _blob(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/", 1)


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
            "size": len(data)}


def _add(archive: tarfile.TarFile, name: str, data: bytes | None = None,
         source: str | None = None, size: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    if data is not None:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        return
    assert source is not None
    info.size = size
    with open(source, "rb") as handle:
        archive.addfile(info, handle)


def _add_dir(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    archive.addfile(info)


def write_image(layer_tar: str, config: dict[str, Any], tag: str | None,
                dest: str) -> ImageWritten:
    """Write the image of `layer_tar` and `config` (its rootfs already naming the layer's
    diff id) to `dest`, atomically."""
    layer_digest, layer_size = file_digest(layer_tar)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if diff_ids != [layer_digest]:
        raise ValueError(f"config diff ids {diff_ids} do not name the layer {layer_digest}")
    config_bytes = _json_bytes(config)
    config_descriptor = _descriptor(CONFIG_TYPE, config_bytes)
    manifest_bytes = _json_bytes({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_descriptor,
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer_size}],
    })
    manifest_descriptor = _descriptor(MANIFEST_TYPE, manifest_bytes)
    if tag:
        manifest_descriptor["annotations"] = {
            "io.containerd.image.name": tag,
            "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[-1]
            if tag.rfind(":") > tag.rfind("/") else "latest",
        }
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [manifest_descriptor]}
    docker_manifest = [{
        "Config": _blob(config_descriptor["digest"]),
        "RepoTags": [tag] if tag else None,
        "Layers": [_blob(layer_digest)],
    }]

    tmp = f"{dest}.{os.getpid()}.tmp"
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as archive:
            _add(archive, "oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
            _add_dir(archive, "blobs")
            _add_dir(archive, "blobs/sha256")
            _add(archive, _blob(layer_digest), source=layer_tar, size=layer_size)
            _add(archive, _blob(config_descriptor["digest"]), config_bytes)
            _add(archive, _blob(manifest_descriptor["digest"]), manifest_bytes)
            _add(archive, "index.json", _json_bytes(index))
            _add(archive, "manifest.json", _json_bytes(docker_manifest))
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return ImageWritten(config_descriptor["digest"], tag, os.path.getsize(dest))


"""The image config of the slim image, and the paths the container runtime itself needs.

The slim image keeps the original config whole (Entrypoint, Cmd, Env, WorkingDir, User,
ExposedPorts, Labels, Volumes, StopSignal, Healthcheck ...); only its root filesystem
(one layer) and its history change.

Some files are read by the runtime before the workload starts, outside what a recording
of the workload can be sure to see: a named `User` is looked up in the image's
/etc/passwd and /etc/group by runc, and `WorkingDir` must exist with its owner and mode.
"""

from __future__ import annotations

import copy
import time
from typing import Any

PASSWD = b"/etc/passwd"
GROUP = b"/etc/group"


def runtime_paths(config: dict[str, Any] | None) -> list[bytes]:
    """Paths of the image the runtime reads to start a container of `config`."""
    settings = (config or {}).get("config") or {}
    if not isinstance(settings, dict):
        return []
    paths = []
    workdir = settings.get("WorkingDir")
    if isinstance(workdir, str) and workdir.startswith("/"):
        paths.append(workdir.encode("utf-8", "surrogateescape"))
    user = settings.get("User")
    if isinstance(user, str) and user:
        names = [part for part in user.split(":", 1) if part and not part.isdigit()]
        if names:
            paths += [PASSWD, GROUP]
    return paths


def slim_config(original: dict[str, Any], diff_id: str, kept_files: int,
                image_files: int) -> dict[str, Any]:
    """`original` with one layer (`diff_id`) and one history entry saying where it came from."""
    config = copy.deepcopy(original)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config["created"] = created
    config["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    config["history"] = [{
        "created": created,
        "created_by": f"snoop slim: {kept_files} of {image_files} files kept",
        "comment": "the files of the original image its recorded workloads used",
    }]
    # Legacy docker fields describing the build container of the last original layer.
    for stale in ("container", "container_config"):
        config.pop(stale, None)
    return config


def slim_tag(original_tags: list[str]) -> str | None:
    """The default tag of the slim image: the original's first tag with `-slim` added."""
    if not original_tags:
        return None
    name = original_tags[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return f"{name}-slim"
    return f"{name}:slim"

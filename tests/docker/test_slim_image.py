"""The slim image runs: record an image's container with Snoop, `snoop slim` its `docker
save`, `docker load` the result, and `docker run` it with no arguments.

The image sets what a slim image must carry over: ENTRYPOINT and CMD, ENV, WORKDIR, a
named USER (looked up by runc in the image's /etc/passwd, not by the workload), a label
and an exposed port. Its output names all of them, so equal output means an equal start.
A program the recording never ran (tar) must be gone from the slim image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from snoop.tracer import cgroups
from tests.docker.engine import Engine, HostSnoop, remove_cgroup_everywhere

pytestmark = [pytest.mark.e2e, pytest.mark.bpf, pytest.mark.timeout(1800)]

DOCKERFILE = """\
FROM debian:bookworm-slim
RUN useradd --uid 4321 --user-group --create-home appuser \\
 && mkdir -p /srv/app/data && echo one > /srv/app/data/a.txt && echo two > /srv/app/data/b.txt
COPY app.sh /srv/app/app.sh
ENV GREETING=hello
WORKDIR /srv/app
USER appuser
LABEL org.example.team=platform
EXPOSE 8080
ENTRYPOINT ["/bin/sh", "/srv/app/app.sh"]
CMD ["world"]
"""
APP = """\
echo "$GREETING $1 from $(pwd) as $(id -un):$(id -gn) home $HOME"
for f in data/*.txt; do printf '%s: ' "$f"; cat "$f"; done
ls -l data | sed 1d | awk '{print $1, $3, $9}'
"""
CARRIED = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Labels")


def build_image(engine: Engine, tmp: Path, tag: str) -> None:
    context = tmp / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "app.sh").write_text(APP)
    result = subprocess.run(["docker", "build", "--network", "none", "-t", tag, str(context)],
                            env={**engine.env, "DOCKER_BUILDKIT": "0"}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def run(engine: Engine, image: str, *args: str) -> subprocess.CompletedProcess:
    return engine.docker("run", "--rm", "--network", "none", *args, image, check=False)


def test_the_slim_image_loads_and_runs_like_the_original(engine: Engine, tmp_path: Path):
    name = uuid.uuid4().hex[:10]
    original, slim = f"snoop-slim-test:{name}", f"snoop-slim-test:{name}-slim"
    pod = f"snoop-slimtest-{name}"
    build_image(engine, tmp_path, original)
    root = cgroups.discover_cgroup2_root()
    os.mkdir(os.path.join(root, pod))
    snoop = None
    try:
        snoop = HostSnoop(tmp_path, {"SNOOP_TARGET_MODE": "cgroup",
                                     "SNOOP_TARGET_CGROUP": f"/{pod}"})
        recorded = run(engine, original, "--cgroup-parent", f"/{pod}")
        assert recorded.returncode == 0, recorded.stderr
        assert snoop.stop() == 0, snoop.log()
        assert "/srv/app/app.sh" in snoop.files(), snoop.log()

        saved = tmp_path / "original.tar"
        engine.docker("save", "-o", str(saved), original)
        out = tmp_path / "slim"
        slimmed = subprocess.run(
            [sys.executable, "-m", "snoop.cli", "slim", "--image", str(saved), "--report",
             str(snoop.report), "--out", str(out), "--rootfs", "--tag", slim],
            capture_output=True, text=True, timeout=600)
        assert slimmed.returncode == 0, slimmed.stderr
        print(slimmed.stdout)
        engine.docker("load", "-i", str(out / "image.tar"))

        again = run(engine, slim)
        assert (again.returncode, again.stdout) == (0, recorded.stdout), again.stderr
        assert "hello world from /srv/app as appuser:appuser home /home/appuser" in again.stdout

        inspected = json.loads(engine.docker("image", "inspect", original, slim).stdout)
        before, after = ({key: image["Config"].get(key) for key in CARRIED}
                         for image in inspected)
        assert after == before
        assert inspected[1]["Size"] < inspected[0]["Size"] / 2, inspected[1]["Size"]
        summary = json.loads((out / "summary.json").read_text())
        assert inspected[1]["Id"] == summary["slim_image"]["id"]

        # Slimming removed what the recording never used.
        unused = run(engine, slim, "--entrypoint", "/usr/bin/tar")
        assert unused.returncode != 0
        assert run(engine, original, "--entrypoint", "/usr/bin/tar").returncode != 127
    finally:
        if snoop is not None:
            snoop.close()
        engine.docker("rmi", "-f", original, slim, check=False)
        remove_cgroup_everywhere(pod)

"""Snoop and real containers: a private Docker engine, the images of the Dockerfile and
deploy/example-app, and the application's file accesses in the report as the container
sees them (`/app/config.txt`, never `<data root>/overlay2/<layer>/merged/app/config.txt`).

- container mode (a leaf: the container's own cgroup), `snoop run` on the host: a
  restarted container (same id, new cgroup) is traced again within PICKUP_LIMIT seconds;
- pod mode (a parent cgroup shared with the application), docker-compose.yaml's sidecar
  and deploy/compose.split.yaml: nothing is missed at container start, restarts included,
  and `docker-compose stop` ends Snoop cleanly with the final report written.

The first run builds the images (debootstrap and the Snoop image: minutes); later runs
load them from the cache in seconds. Without a working dockerd these tests fail, never
skip: they are the only check that the image and the compose files work.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from snoop.tracer import cgroups
from tests.docker.engine import (
    APP_IMAGE,
    ROOT,
    Compose,
    Engine,
    HostSnoop,
    remove_cgroup_everywhere,
    report_files,
)

pytestmark = [pytest.mark.e2e, pytest.mark.bpf, pytest.mark.timeout(1800)]

PICKUP_LIMIT = 2.0
# What the example app reads (deploy/example-app/run.sh), in the container's view.
APP_FILES = {"/app/run.sh", "/app/startup.txt", "/app/config.txt", "/etc/os-release"}
# Each start touches /tmp/started-<ns> first: the report holds one per traced start.
STARTED = "/tmp/started-"
APP_COMMAND = ["sh", "-c", "touch /tmp/started-$$(date +%s%N); exec /app/run.sh"]
# Reads the app's files and touches /tmp/tick-<ns> ten times a second.
TICK_LOOP = ("while :; do cat /etc/os-release /app/config.txt >/dev/null; "
             "touch /tmp/tick-$(date +%s%N); sleep 0.1; done")
LAYOUTS = {
    "sidecar": (ROOT / "docker-compose.yaml", ("snoop",)),
    "split": (ROOT / "deploy" / "compose.split.yaml", ("tracer", "processor", "reporter")),
}


def container_view_problems(files: set[str], data_root: Path) -> list[str]:
    """The app's files reported under another name (the host's view of the container)."""
    return sorted(
        f for f in files
        if f not in APP_FILES and any(f.endswith(app_file) for app_file in APP_FILES)
    ) + sorted(f for f in files if f.startswith(f"{data_root}/overlay2/") and "/app/" in f)


def stamps(files: set[str], prefix: str) -> list[float]:
    """Epoch seconds of the `<prefix><ns>` files in `files`, sorted."""
    return sorted(int(f[len(prefix):]) / 1e9 for f in files
                  if f.startswith(prefix) and f[len(prefix):].isdigit())


# ---------------------------------------------------------------- container mode


def test_container_mode_reports_container_paths_and_follows_a_restart(engine, tmp_path):
    app = engine.docker("run", "-d", "--init", "--network", "none", APP_IMAGE,
                        "sh", "-c", TICK_LOOP).stdout.strip()
    snoop = HostSnoop(tmp_path, {"SNOOP_TARGET_MODE": "container",
                                 "SNOOP_TARGET_CONTAINER_ID": app})
    try:
        wanted = {"/app/config.txt", "/etc/os-release"}
        assert not snoop.wait_for(wanted), snoop.log()
        assert not container_view_problems(snoop.files(), engine.data_root)

        engine.docker("restart", "-t", "0", app)
        started = engine.started_at(app)
        deadline = time.monotonic() + PICKUP_LIMIT + 10
        while not [t for t in stamps(snoop.files(), "/tmp/tick-") if t >= started]:
            assert time.monotonic() < deadline, f"restart never picked up\n{snoop.log()}"
            time.sleep(0.2)
        first = min(t for t in stamps(snoop.files(), "/tmp/tick-") if t >= started)
        print(f"restart picked up {first - started:.2f}s after the container started")
        assert first - started <= PICKUP_LIMIT, (
            f"first traced access {first - started:.2f}s after the restart")
        assert snoop.stop() == 0, snoop.log()
        assert not container_view_problems(snoop.files(), engine.data_root)
    finally:
        snoop.close()
        engine.docker("rm", "-f", app, check=False)


# ---------------------------------------------------------------- pod mode, compose


def compose_project(engine: Engine, tmp_path: Path, layout: str) -> tuple[Compose, Path, str]:
    """A compose project of `layout` with loopback-only networking and a report folder."""
    compose_file, snoop_services = LAYOUTS[layout]
    tag = uuid.uuid4().hex[:10]
    pod = f"snoop-test-{tag}"
    reports = tmp_path / "reports"
    reports.mkdir()
    services = {name: {"network_mode": "none"} for name in snoop_services}
    services["app"] = {"network_mode": "none", "command": APP_COMMAND,
                       "environment": {"APP_INTERVAL": "0.5"}}
    override = tmp_path / "compose.test.yaml"  # JSON is YAML
    override.write_text(json.dumps({"version": "2.4", "services": services}, indent=1))
    compose = Compose(engine, f"snooptest{tag}", [compose_file, override], {
        "SNOOP_POD_CGROUP": pod, "SNOOP_REPORTS": str(reports), "SNOOP_REPORT_INTERVAL": "1s",
    })
    return compose, reports / "snoop-report.json", pod


def wait_for_files(report: Path, wanted: set[str], timeout: float = 20.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while (missing := wanted - report_files(report)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return missing


def count_started(report: Path) -> int:
    return len(stamps(report_files(report), STARTED))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_pod_mode_misses_nothing_from_container_start(engine, tmp_path, layout):
    compose, report, pod = compose_project(engine, tmp_path, layout)
    try:
        up = compose("up", "-d", "--no-build")
        assert up.returncode == 0, f"{up.stderr}\n{compose.logs()}"
        app = compose.container("app")
        assert not wait_for_files(report, APP_FILES), compose.logs()
        assert count_started(report) == 1, compose.logs()
        data = json.loads(report.read_bytes())
        assert data["container_id"] == app
        assert data["cgroup_path"] == f"/{pod}/{app}"
        # Named as the compose file says (SNOOP_WORKLOAD_NAME), keyed by the container.
        assert (data["workload"], data["workload_key"]) == ("example/app", app)
        files = set(data["files"])
        assert not container_view_problems(files, engine.data_root)
        assert not [f for f in files if f.startswith("/opt/snoop/")], "Snoop traced itself"

        restart = compose("restart", "-t", "1", "app")
        assert restart.returncode == 0, restart.stderr
        deadline = time.monotonic() + PICKUP_LIMIT + 3  # + report interval and write
        while count_started(report) < 2:
            assert time.monotonic() < deadline, f"restart not traced\n{compose.logs()}"
            time.sleep(0.2)

        stop = compose("stop")
        assert stop.returncode == 0, stop.stderr
        _, snoop_services = LAYOUTS[layout]
        for service in snoop_services:
            container = compose("ps", "-q", service).stdout.strip()
            assert engine.exit_code(container) == 0, f"{service}\n{compose.logs()}"
        assert count_started(report) == 2
        assert not APP_FILES - report_files(report)
    finally:
        compose("down", "-v", "--remove-orphans", "-t", "5")
        remove_cgroup_everywhere(pod)


def test_runtime_setup_paths_stay_out_of_the_report(engine, tmp_path):
    """runc init works in the host's view until pivot_root; its events from before the
    switch are dropped (tracer/newcomers.py), so no host path reaches the report."""
    compose, report, pod = compose_project(engine, tmp_path, "sidecar")
    try:
        # Set-up failures raise RuntimeError: only the assertion below is expected to fail.
        up = compose("up", "-d", "--no-build")
        if up.returncode != 0:
            raise RuntimeError(f"{up.stderr}\n{compose.logs()}")
        if wait_for_files(report, APP_FILES):
            raise RuntimeError(f"the app's files never reached the report\n{compose.logs()}")
        host_paths = sorted(f for f in report_files(report)
                            if f.startswith(f"{engine.directory}/"))
        assert not host_paths, f"{len(host_paths)} engine paths, e.g. {host_paths[:3]}"
    finally:
        compose("down", "-v", "--remove-orphans", "-t", "5")
        remove_cgroup_everywhere(pod)


# ---------------------------------------------------------------- report names


def test_node_mode_reports_are_named_for_their_containers(engine, tmp_path):
    """One report per container, named from what the engine calls it (the container's
    name, or compose's project/service), with its own image ref, digest and labels from
    the engine; its id stays inside the report."""
    pod = f"snoop-names-{uuid.uuid4().hex[:8]}"
    root = cgroups.discover_cgroup2_root()
    os.mkdir(os.path.join(root, pod))
    reports = tmp_path / "reports"
    snoop = None
    started: list[str] = []
    # A second image, so the two containers run different images (refs and digests).
    other = f"snoop-meta-test:{uuid.uuid4().hex[:8]}"
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {APP_IMAGE}\nLABEL snoop.test=other\n")
    build = subprocess.run(["docker", "build", "--network", "none", "-t", other, str(context)],
                           env={**engine.env, "DOCKER_BUILDKIT": "0"}, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    try:
        snoop = HostSnoop(tmp_path, {"SNOOP_TARGET_MODE": "cgroup",
                                     "SNOOP_TARGET_CGROUP": f"/{pod}",
                                     "SNOOP_REPORT_DIR": str(reports),
                                     "SNOOP_DOCKER_SOCKET": engine.host[len("unix://"):]})
        name = f"shop-web-{uuid.uuid4().hex[:6]}"
        pod_labels = ["--label", "io.kubernetes.pod.namespace=prod",
                      "--label", "io.kubernetes.pod.name=web-7d9f",
                      "--label", "io.kubernetes.container.name=app"]  # as cri-dockerd sets
        for image, extra in ((APP_IMAGE, ["--name", name, "--label", "tier=web"]),
                             (other, ["--label", "com.docker.compose.project=shop",
                                      "--label", "com.docker.compose.service=worker"]),
                             (APP_IMAGE, pod_labels)):
            started.append(engine.docker(
                "run", "-d", "--network", "none", "--cgroup-parent", f"/{pod}", *extra,
                image, "cat", "/app/config.txt").stdout.strip())
        for container in started:
            engine.docker("wait", container)
        assert snoop.stop() == 0, snoop.log()
        by_file = {path.name: json.loads(path.read_text()) for path in reports.glob("*.json")}
        wanted = {f"{name}-{started[0][:12]}.json": ("web", name, APP_IMAGE, started[0]),
                  f"shop_worker-{started[1][:12]}.json": ("worker", "shop/worker", other,
                                                          started[1]),
                  f"prod_web-7d9f_app-{started[2][:12]}.json": ("pod", "prod/web-7d9f/app",
                                                                APP_IMAGE, started[2])}
        digests = set()
        for file_name, (role, workload, image, container) in wanted.items():
            assert file_name in by_file, sorted(by_file)
            report = by_file[file_name]
            assert (report["workload"], report["workload_key"], report["container_id"]) == \
                (workload, container, container)
            assert "/app/config.txt" in report["files"]
            image_id = engine.docker("inspect", "-f", "{{.Image}}", container).stdout.strip()
            assert (report["image_ref"], report["image_digest"]) == (image, image_id)
            digests.add(report["image_digest"])
            labels = report["labels"]
            if role == "web":
                assert labels["tier"] == "web" and report["container_name"] == name
            elif role == "pod":
                assert (report["namespace"], report["pod_name"], report["container_name"]) == \
                    ("prod", "web-7d9f", "app")
                assert not [k for k in labels if k.startswith("io.kubernetes.")]
            else:
                assert labels["com.docker.compose.project"] == "shop"
                assert labels["com.docker.compose.service"] == "worker"
                assert labels["snoop.test"] == "other"  # the image's own label
        assert len(digests) == 2
    finally:
        if snoop is not None:
            snoop.close()
        for container in started:
            engine.docker("rm", "-f", container, check=False)
        engine.docker("rmi", "-f", other, check=False)
        remove_cgroup_everywhere(pod)

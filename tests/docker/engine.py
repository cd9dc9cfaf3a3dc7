"""A private Docker engine, Compose projects on it, and `snoop run` on the host, for the
container tests. Everything started here is stopped by pid and removed afterwards.

The engine is scripts/docker-daemon.sh's (own data root, exec root, pid file and socket
under a temporary directory); images come from scripts/docker-up.sh, which keeps Snoop's
image in IMAGE_CACHE by content hash, so only the first run builds it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from snoop.tracer import cgroups
from tests.support.net import free_port_block, is_ready

ROOT = Path(__file__).resolve().parents[2]
IMAGE_CACHE = Path(os.environ.get("SNOOP_TEST_CACHE", "/var/cache/snoop-test")) / "docker"
APP_IMAGE = "snoop-example-app:latest"
SNOOP_IMAGE = "snoop:latest"
READY_TIMEOUT = 120.0


class EngineError(RuntimeError):
    """The private engine or the images cannot be set up; the message says why."""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def parse_docker_time(text: str) -> float:
    """Epoch seconds of Docker's RFC 3339 nanosecond time (`2026-01-02T03:04:05.123456789Z`)."""
    stamp, _, fraction = text.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC)
    return whole.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


class Engine:
    """`docker` and `docker-compose` against one private engine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.host = f"unix://{directory}/docker.sock"
        self.data_root = directory / "data"

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "DOCKER_HOST": self.host, "SNOOP_DOCKER_DIR": str(self.directory)}
        env.pop("DOCKER_CONTEXT", None)
        return env

    def docker(self, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
        return result

    def started_at(self, container: str) -> float:
        return parse_docker_time(
            self.docker("inspect", "-f", "{{.State.StartedAt}}", container).stdout.strip())

    def exit_code(self, container: str) -> int:
        return int(self.docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout)

    def remove_all_containers(self) -> None:
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids, check=False)


def _script(name: str, *args: str, env: Mapping[str, str],
            timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *args], env=dict(env),
                          capture_output=True, text=True, timeout=timeout)


def preflight() -> list[str]:
    """What this machine lacks to run the container tests, one line each."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root: dockerd and BPF need root")
    for tool, package in (("dockerd", "docker.io"), ("docker", "docker.io"),
                          ("docker-compose", "docker-compose")):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found: apt-get install {package}")
    return problems


@contextlib.contextmanager
def private_engine() -> Iterator[Engine]:
    """Start an engine of our own, bring in the images, and remove it all afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="snoop-dockerd-"))
    engine = Engine(directory)
    try:
        started = _script("docker-daemon.sh", "start", env=engine.env, timeout=180)
        if started.returncode != 0:
            raise EngineError(
                f"cannot start a private dockerd (data root {engine.data_root}):\n"
                + _tail(started.stderr + started.stdout))
        up = _script("docker-up.sh", env={**engine.env, "SNOOP_IMAGE_CACHE": str(IMAGE_CACHE)},
                     timeout=1800)
        if up.returncode != 0:
            raise EngineError("scripts/docker-up.sh failed:\n" + _tail(up.stderr + up.stdout))
        yield engine
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            engine.remove_all_containers()
        _script("docker-daemon.sh", "stop", "--purge", env=engine.env, timeout=180)
        shutil.rmtree(directory, ignore_errors=True)


def remove_cgroup_everywhere(name: str) -> None:
    """rmdir `<mount>/<name>` in every cgroup hierarchy: a `cgroup_parent` runc made."""
    if not name or "/" in name:
        raise ValueError(f"cgroup name {name!r}: expected one path component")
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            left, _, right = line.partition(" - ")
            if right.split()[:1] in (["cgroup"], ["cgroup2"]):
                path = os.path.join(left.split()[4], name)
                # A stopped tracer's programs are detached by a process that lingers a few
                # seconds in the cgroup (docs/tracer.md, "Stopping"): wait for it.
                with contextlib.suppress(OSError, cgroups.CgroupError):
                    if os.path.isdir(path):
                        cgroups.remove_cgroup(path, timeout=60.0)


class Compose:
    """One docker-compose project on the engine, from the given files."""

    def __init__(self, engine: Engine, project: str, files: Sequence[Path],
                 env: Mapping[str, str]) -> None:
        self.engine = engine
        self.project = project
        self.files = files
        self.env = {**engine.env, **env}

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        argv = ["docker-compose", "--no-ansi", "-p", self.project]
        for path in self.files:
            argv += ["-f", str(path)]
        return subprocess.run([*argv, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)

    def container(self, service: str) -> str:
        return self("ps", "-q", service).stdout.strip()

    def logs(self) -> str:
        result = self("logs", "--no-color", "--tail", "40")
        return _tail(result.stdout + result.stderr, 120)


def report_files(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_bytes())["files"])
    except (FileNotFoundError, ValueError, KeyError):
        return set()


class HostSnoop:
    """`snoop run` on the host (outside any container), reporting to one file."""

    def __init__(self, tmp: Path, settings: Mapping[str, str]) -> None:
        self.report = tmp / "report.json"
        self.port = free_port_block()
        self.log_path = tmp / "snoop-run.log"
        env = {
            **os.environ,
            "SNOOP_REPORT_PATH": str(self.report),
            "SNOOP_RUN_DIR": str(tmp / "run"),
            "SNOOP_REPORT_INTERVAL": "0.5s",
            "SNOOP_METRICS_ADDR": f"127.0.0.1:{self.port}",
            **settings,
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed by close())
        # `snoop run` execs supervisord: this pid is supervisord's, and its programs are
        # its children, all in the cgroup `snoop run` made for itself (snoop-<pid>).
        self.proc = subprocess.Popen([sys.executable, "-m", "snoop.cli", "run"], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(is_ready(self.port + offset) for offset in range(3)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.close()
                raise RuntimeError(f"snoop run did not become ready:\n{log}")
            time.sleep(0.25)

    def log(self) -> str:
        return _tail(self.log_path.read_bytes().decode(errors="replace"), 40)

    def files(self) -> set[str]:
        return report_files(self.report)

    def wait_for(self, wanted: set[str], timeout: float = 20.0) -> set[str]:
        """The files of `wanted` still missing from the report after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (missing := wanted - self.files()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return missing

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        return self.proc.poll()

    def close(self) -> None:
        own = None
        with contextlib.suppress(OSError, cgroups.CgroupError):
            own = cgroups.abspath(cgroups.discover_cgroup2_root(), f"/snoop-{self.proc.pid}")
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if own and os.path.isdir(own):
            # Programs a killed supervisord left behind: all started by this run.
            with contextlib.suppress(OSError):
                for pid in Path(own, "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(cgroups.CgroupError):
                cgroups.remove_cgroup(own, timeout=5.0)
        self._log.close()

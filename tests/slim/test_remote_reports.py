"""`snoop report --from URL` and `snoop slim --report URL?image=…` against a real
`snoop receive` process: the union of an image's workloads, its workloads' coverage,
the diff between two versions, and one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from snoop.common.delta import Delta, delta_key
from snoop.common.report import Coverage
from tests.support.net import free_port, wait_healthy

from .helpers import make_report
from .test_slim_cli import rootfs  # noqa: F401  (a fixture)

SNOOP = [sys.executable, "-m", "snoop.cli"]
TOKEN = "remote-report-token"


class Receiver:
    def __init__(self, url: str) -> None:
        self.url = url

    def push(self, origin: str, workload: str, image: str, files: dict[str, list[str]],
             coverage: Coverage | None = None) -> None:
        report = make_report(files, workload=workload, workload_key=workload,
                             image_ref=image, started_at=1000.0, last_updated_at=3000.0)
        report.coverage = coverage or Coverage()
        body = Delta(origin, workload, True, report).encode()
        reply = httpx.post(f"{self.url}/v1/deltas", content=body, timeout=10, headers={
            "Authorization": f"Bearer {TOKEN}", "Idempotency-Key": delta_key(body),
            "Content-Type": "application/json"})
        assert reply.status_code == 200, reply.text


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)
    port = free_port()
    child = subprocess.Popen([*SNOOP, "receive", "--listen", f"127.0.0.1:{port}", "--db",
                              f"sqlite:///{tmp_path / 'r.db'}", "--tokens-file", str(tokens)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, child)
        receiver = Receiver(url)
        receiver.push("node-a", "c1", "shop:1.1", {"/app/run.sh": ["exec", "found"],
                                                   "/etc/app.conf": ["read", "found"]})
        receiver.push("node-b", "c2", "shop:1.1", {"/app/run.sh": ["exec", "found"],
                                                   "/usr/bin/dash": ["exec", "found"]})
        receiver.push("node-a", "c3", "shop:1.2", {"/app/run.sh": ["exec", "found"],
                                                   "/etc/missing.conf": ["stat", "ENOENT"]},
                      coverage=Coverage(kernel_dropped=3))
        yield receiver
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


def snoop(*args: str, token: str = TOKEN) -> subprocess.CompletedProcess:
    env = {**os.environ, "SNOOP_API_TOKEN": token}
    return subprocess.run([*SNOOP, *args], capture_output=True, text=True, env=env, timeout=60)


def test_images_and_their_workloads_with_coverage(receiver: Receiver) -> None:
    images = snoop("report", "--from", receiver.url, "images")
    assert images.returncode == 0, images.stderr
    lines = images.stdout.splitlines()
    assert lines[0].split() == ["image", "workloads", "files", "last", "seen"]
    assert any(line.split()[:3] == ["shop:1.1", "2", "3"] for line in lines)
    complete = snoop("report", "--from", receiver.url, "workloads", "shop:1.1")
    assert complete.returncode == 0, complete.stderr
    assert "node-a:c1" in complete.stdout and "node-b:c2" in complete.stdout
    partial = snoop("report", "--from", receiver.url, "workloads", "shop:1.2", "--json")
    assert partial.returncode == 1  # a workload whose files may be incomplete
    assert '"kernel_dropped": 3' in partial.stdout


def test_summary_and_diff_of_the_union_per_image(receiver: Receiver) -> None:
    summary = snoop("report", "--from", receiver.url, "summary", "shop:1.1")
    assert summary.returncode == 0, summary.stderr
    assert "files: 3 " in summary.stdout and "complete: yes" in summary.stdout
    diff = snoop("report", "--from", receiver.url, "diff", "shop:1.1", "shop:1.2")
    assert diff.returncode == 1
    assert "only in shop:1.1: 2 files" in diff.stdout
    assert "only in shop:1.2: 1 files" in diff.stdout
    by_url = snoop("report", "summary", f"{receiver.url}?image=shop:1.2", "--json")
    assert by_url.returncode == 0 and '"files": 2' in by_url.stdout


def test_slim_takes_its_keep_set_from_the_receiver(receiver: Receiver, rootfs: Path,  # noqa: F811
                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = snoop("slim", "--image", str(rootfs), "--report",
                   f"{receiver.url}?image=shop:1.1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    keep = (out / "keep.txt").read_text().split()
    # Every replica's files: c1's config and c2's shell, with what they need.
    for path in ("/app/run.sh", "/etc/app.conf", "/usr/bin/dash",
                 "/usr/lib64/ld-linux-x86-64.so.2"):
        assert path in keep, path
    assert "/usr/share/doc/big/manual.txt" in (out / "remove.txt").read_text().split()


@pytest.mark.parametrize("args, problem", [
    (("report", "--from", "URL", "summary", "nope:0"), "HTTP 404"),
    (("report", "--from", "URL", "images"), "HTTP 403"),
    (("report", "images"), "expected --from URL"),
    (("report", "--from", "ftp://x", "images"), "expected an http:// or https:// URL"),
    (("report", "summary", "URL"), "expected ?image=IMAGE"),
    (("report", "--from", "http://127.0.0.1:9", "images"), "ConnectError"),
])
def test_receiver_problems_are_one_line_and_exit_2(receiver: Receiver, args, problem) -> None:
    args = tuple(a.replace("URL", receiver.url) if a == "URL" else a for a in args)
    token = "wrong-token" if problem == "HTTP 403" else TOKEN
    result = snoop(*args, token=token)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], result.stderr
    assert "Traceback" not in result.stderr

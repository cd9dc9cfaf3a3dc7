"""`snoop watch` with real BPF: what a user watching a directory would check."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

SNOOP = [sys.executable, "-m", "snoop.cli", "watch"]
PYTHON = "/usr/bin/python3"
READY = "snoop watch: watching"
MIB = 1 << 20

# A helper process the test steers line by line on stdin, so each step happens when
# the test says: "open PATH", "write N SIZE" (to the open file), "close", "chdir DIR",
# "create NAME" (open, write 1 byte, close, relative to the cwd), "flood N" (N one-byte
# writes to /dev/null). It answers "ok" to each, in one write.
HELPER = r"""
import os, sys
fd = None
for line in sys.stdin:
    cmd, *rest = line.split()
    if cmd == "open":
        fd = os.open(rest[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    elif cmd == "write":
        block = b"x" * int(rest[1])
        for _ in range(int(rest[0])):
            os.write(fd, block)
    elif cmd == "close":
        os.close(fd)
    elif cmd == "chdir":
        os.chdir(rest[0])
    elif cmd == "create":
        made = os.open(rest[0], os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(made, b"x")
        os.close(made)
    elif cmd == "flood":
        null = os.open("/dev/null", os.O_WRONLY)
        for _ in range(int(rest[0])):
            os.write(null, b"x")
        os.close(null)
    os.write(1, b"ok\n")  # one write per command, which the flood test counts
"""


class Helper:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([PYTHON, "-c", HELPER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def do(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok", command

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class Watch:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*SNOOP, "--format", "json", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"watch exited {self.proc.wait()} before it was ready")
            if line.startswith(READY):
                self.ready = line.strip()
                return
        raise AssertionError("watch not ready after 120 s")

    def stop(self) -> tuple[list[dict], dict]:
        """Every event line, and the summary; each line must be JSON."""
        time.sleep(0.3)  # what the helper did is in the ring buffer: let it be drained
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines and lines[-1]["type"] == "summary", out[-2000:]
        assert all(line["type"] == "event" for line in lines[:-1])
        return lines[:-1], lines[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def helper():
    started = Helper()
    try:
        yield started
    finally:
        started.close()


def by(events: list[dict], pid: int) -> list[dict]:
    return [e for e in events if e["pid"] == pid]


@pytest.mark.bpf
def test_a_mebibyte_in_4k_writes_shows_open_one_aggregated_write_and_close(tmp_path, helper):
    watched = tmp_path / "watched"
    watched.mkdir()
    target = watched / "out.bin"
    watch = Watch("--dir", str(watched), "--op", "open,write,close", "--interval", "60")
    try:
        helper.do(f"open {target}")
        helper.do(f"write 256 {4096}")
        helper.do("close")
        events, summary = watch.stop()
    finally:
        watch.kill()
    mine = [(e["op"], e["path"], e["bytes"], e["calls"]) for e in by(events, helper.proc.pid)]
    assert mine == [("open", str(target), None, 1), ("write", str(target), MIB, 256),
                    ("close", str(target), None, 1)], mine
    assert summary["top_written"][0] == {"path": str(target), "bytes": MIB}


@pytest.mark.bpf
def test_a_write_to_an_fd_opened_before_the_watch_shows_its_path(tmp_path, helper):
    target = tmp_path / "early.log"
    helper.do(f"open {target}")  # before `watch` runs: its kernel side never saw it
    watch = Watch("--pid", str(helper.proc.pid), "--op", "write")
    try:
        helper.do("write 3 100")
        events, summary = watch.stop()
    finally:
        watch.kill()
    writes = [e for e in events if e["op"] == "write" and e["fd"] != 1]  # not its "ok"s
    assert [(e["path"], e["bytes"], e["calls"]) for e in writes] == [(str(target), 300, 3)]
    assert summary["primed"] >= 1  # its path came from /proc/PID/fd, once
    helper.do("close")


@pytest.mark.bpf
def test_relative_opens_match_the_directory_filter_by_their_resolved_path(tmp_path, helper):
    watched, elsewhere = tmp_path / "watched", tmp_path / "elsewhere"
    watched.mkdir()
    elsewhere.mkdir()
    watch = Watch("--dir", str(watched), "--op", "open")
    try:
        helper.do(f"chdir {watched}")
        helper.do("create inside.txt")
        helper.do(f"chdir {elsewhere}")
        helper.do("create outside.txt")
        events, _ = watch.stop()
    finally:
        watch.kill()
    paths = [e["path"] for e in by(events, helper.proc.pid)]
    assert paths == [str(watched / "inside.txt")], paths


@pytest.mark.bpf
def test_a_flood_of_writes_is_seen_or_counted_dropped_exactly(helper):
    flood = 200_000
    watch = Watch("--pid", str(helper.proc.pid), "--op", "write", "--ring-buffer", "4096")
    try:
        helper.do(f"flood {flood}")
        events, summary = watch.stop()
    finally:
        watch.kill()
    seen = sum(e["calls"] for e in events if e["op"] == "write")
    assert summary["dropped_io"] > 0, "a one-page ring buffer should overflow"
    # Every write is a line's call or counted dropped: the flood's and the "ok" after it.
    assert seen + summary["dropped_io"] == flood + 1, (seen, summary)


@pytest.mark.bpf
def test_read_write_and_close_hooks_load_only_when_asked_for(tmp_path, helper):
    for ops, io_hooks in (("open", "none"), ("open,write", "write, pwrite64, writev")):
        watch = Watch("--pid", str(helper.proc.pid), "--op", ops)
        try:
            helper.do(f"open {tmp_path / 'x'}")
            helper.do("close")
            events, _ = watch.stop()
        finally:
            watch.kill()
        assert watch.ready.endswith(f"read/write/close hooks: {io_hooks}"), watch.ready
        # Its "ok" answers are writes: seen exactly when the write hooks are there.
        assert {e["op"] for e in by(events, helper.proc.pid)} == set(ops.split(","))


def test_bad_flags_give_one_line_and_exit_2():
    for args, needle in ((["--op", "open,frobnicate"], "frobnicate"),
                         (["--comm", "x" * 16], "--comm"),
                         (["--pid", "0"], "--pid"),
                         (["--interval", "0"], "--interval")):
        result = subprocess.run([*SNOOP, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr
        assert "Traceback" not in result.stderr

"""`snoop receive` as a command: one line and exit 2 for bad input, exit 1 for a database
it cannot use, and a real server process that takes a delta and answers a report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from snoop.common.report import Report
from tests.receiver.harness import TOKEN, file, make_delta
from tests.support.net import free_port, wait_healthy

SNOOP = [sys.executable, "-m", "snoop.cli.main"]


def _tokens(tmp_path, text: str = f"# fleet\n{TOKEN}\n\n", mode: int = 0o600) -> str:
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def _receive(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SNOOP_RECEIVE_")}
    return subprocess.run([*SNOOP, "receive", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={**environ, **(env or {})}, check=False)


@pytest.mark.parametrize(("args", "problem"), [
    ([], "--tokens-file (or SNOOP_RECEIVE_TOKENS_FILE): required"),
    (["--tokens-file", "/nonexistent/tokens"], "/nonexistent/tokens does not exist"),
    (["--listen", "localhost"], "--listen='localhost': expected HOST:PORT"),
    (["--listen", "127.0.0.1:70000"], "port 1-65535"),
    (["--db", "mysql://x"], "--db='mysql://x': expected sqlite:///PATH or postgresql://"),
    (["--db", "sqlite:///no/such/dir/r.db"], "directory"),
    (["--max-body-bytes", "lots"], "--max-body-bytes='lots': expected a size"),
    (["--log-format", "xml"], "--log-format='xml': expected text or json"),
    (["--max-concurrent-deltas", "0"], "--max-concurrent-deltas='0': expected a whole number"),
    (["--key-ttl", "soon"], "--key-ttl='soon': expected a duration above zero like 7d"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, problem):
    if args and args[0] not in ("--tokens-file", "--bogus"):
        args = [*args, "--tokens-file", _tokens(tmp_path)]
    done = _receive(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("text", "mode", "problem"), [
    (f"{TOKEN}\n", 0o644, "readable by group or others (mode 0644)"),
    (f"{TOKEN}\n", 0o640, "readable by group or others"),
    ("# only a comment\n\n", 0o600, "holds no token"),
    ("", 0o600, "holds no token"),
    ("two words\n", 0o600, "tokens:1: a token is one word"),
])
def test_tokens_file_problems(tmp_path, text, mode, problem):
    done = _receive("--tokens-file", _tokens(tmp_path, text, mode), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], done.stderr


def test_environment_fallbacks(tmp_path):
    env = {"SNOOP_RECEIVE_TOKENS_FILE": _tokens(tmp_path), "SNOOP_RECEIVE_LISTEN": "nope"}
    done = _receive(cwd=tmp_path, env=env)
    assert done.returncode == 2 and "SNOOP_RECEIVE_LISTEN='nope'" in done.stderr
    # A flag beats its variable.
    done = _receive("--listen", "bad", cwd=tmp_path, env=env)
    assert "--listen='bad'" in done.stderr


def test_key_ttl(tmp_path):
    from snoop.receiver import config

    environ = {"SNOOP_RECEIVE_TOKENS_FILE": _tokens(tmp_path),
               "SNOOP_RECEIVE_DB": f"sqlite:///{tmp_path}/r.db"}
    assert config.load(environ).key_ttl == 7 * 86400
    for text, seconds in (("24h", 86400), ("30m", 1800), ("1.5d", 129600), ("90", 90)):
        assert config.load({**environ, "SNOOP_RECEIVE_KEY_TTL": text}).key_ttl == seconds
    with pytest.raises(config.ConfigError, match="SNOOP_RECEIVE_KEY_TTL='0d'"):
        config.load({**environ, "SNOOP_RECEIVE_KEY_TTL": "0d"})


def test_a_database_it_cannot_use_is_one_line_and_exit_1(tmp_path):
    done = _receive("--tokens-file", _tokens(tmp_path), "--listen", f"127.0.0.1:{free_port()}",
                    "--db", "postgresql://nobody:pw@127.0.0.1:1/x?connect_timeout=2",
                    cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "cannot connect" in lines[-1] and "pw@" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_real_receiver_takes_a_delta_and_answers_a_report(tmp_path):
    port = free_port()
    db = tmp_path / "data"
    db.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SNOOP_RECEIVE_")}
    process = subprocess.Popen(
        [*SNOOP, "receive", "--tokens-file", _tokens(tmp_path), "--listen",
         f"127.0.0.1:{port}", "--log-format", "json"],  # the default db: ./data/receiver.db
        cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        delta = make_delta({"/bin/sh": file(), "/etc/passwd": file()})
        reply = httpx.post(f"{base}/v1/deltas", content=delta.encode(),
                           headers={**auth, "Idempotency-Key": "k-1"}, timeout=10)
        assert reply.json() == {"status": "stored", "files": 2}
        report = httpx.get(f"{base}/v1/report", params={"image": "app:1"}, headers=auth,
                           timeout=10)
        assert set(Report.from_json(report.json()).files) == {b"/bin/sh", b"/etc/passwd"}
        assert (db / "receiver.db").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        stderr = process.stderr.read()
        assert '"msg": "stopped"' in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()

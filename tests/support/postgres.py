"""A private PostgreSQL 15 cluster for the tests: Debian's binaries, a temp directory the
`postgres` user owns, TCP on 127.0.0.1 (a free port, a random password) and a unix socket
in that directory. It is always stopped and removed, even when a test or the start fails.

    def test_x(postgres_server):
        dsn = postgres_server.new_database()

`postgres_dsn` is the DSN of one database made at the start of the session.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from tests.support.net import free_port

PG_BIN = "/usr/lib/postgresql/15/bin"
PG_USER = "postgres"
START_TIMEOUT = 60
STOP_TIMEOUT = 30
START_ATTEMPTS = 3  # a free port can be taken between free_port() and the bind


class PostgresUnavailable(RuntimeError):
    pass


@dataclass
class PostgresServer:
    root: str  # owned by PG_USER: data/, the socket, the log
    port: int
    password: str
    dsn: str = ""
    _databases: int = field(default=0, repr=False)

    @property
    def data_dir(self) -> str:
        return os.path.join(self.root, "data")

    def url(self, database: str) -> str:
        return (f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"
                "?connect_timeout=10")

    def new_database(self, prefix: str = "snoop_test") -> str:
        """A new empty database on this server; its DSN."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                return int(handle.readline())
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.root, "postgres.log"), errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""


def _as_postgres(*argv: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", PG_USER, "--", *argv], capture_output=True,
                          text=True, timeout=timeout, check=False)


def _check_binaries() -> None:
    missing = [name for name in ("initdb", "pg_ctl", "postgres")
               if not os.access(os.path.join(PG_BIN, name), os.X_OK)]
    if missing:
        raise PostgresUnavailable(f"PostgreSQL 15 binaries missing in {PG_BIN} "
                                  f"({', '.join(missing)}): run `make setup-test`")
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        raise PostgresUnavailable(f"no {PG_USER!r} user: run `make setup-test`") from None
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("runuser not found (util-linux): run `make setup-test`")


def start_server() -> PostgresServer:
    """initdb and start a cluster; on any failure what was started is stopped and removed."""
    _check_binaries()
    user = pwd.getpwnam(PG_USER)
    root = tempfile.mkdtemp(prefix="snoop-pg-")
    server = PostgresServer(root=root, port=0, password=secrets.token_hex(16))
    try:
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chmod(root, 0o700)
        pwfile = os.path.join(root, "pwfile")
        with open(pwfile, "w") as handle:
            handle.write(server.password + "\n")
        os.chown(pwfile, user.pw_uid, user.pw_gid)
        done = _as_postgres(f"{PG_BIN}/initdb", "-D", server.data_dir, "-U", PG_USER,
                            f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                            "--locale=C", "--no-sync", timeout=120)
        os.unlink(pwfile)
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
        for attempt in range(START_ATTEMPTS):
            server.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=200")
            done = _as_postgres(f"{PG_BIN}/pg_ctl", "-D", server.data_dir, "-l",
                                os.path.join(root, "postgres.log"), "-o", options, "-w",
                                "-t", str(START_TIMEOUT), "start", timeout=START_TIMEOUT + 10)
            if done.returncode == 0:
                break
            _stop(server)
            if attempt == START_ATTEMPTS - 1:
                raise PostgresUnavailable(f"pg_ctl start failed: {done.stderr.strip()}\n"
                                          f"{server.log_tail()}")
        server.dsn = server.new_database()
        return server
    except BaseException:
        stop_server(server)
        raise


def _stop(server: PostgresServer) -> None:
    """Fast shutdown, else immediate, else SIGKILL to the postmaster this cluster wrote."""
    if not os.path.isdir(server.data_dir):
        return
    for mode in ("fast", "immediate"):
        if server.postmaster_pid() is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            _as_postgres(f"{PG_BIN}/pg_ctl", "-D", server.data_dir, "-m", mode, "-w",
                         "-t", str(STOP_TIMEOUT), "stop", timeout=STOP_TIMEOUT + 10)
    pid = server.postmaster_pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.1)


def _running(pid: int) -> bool:
    """Alive and not a zombie: the postmaster's parent is init, which may reap it late."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def stop_server(server: PostgresServer) -> None:
    try:
        _stop(server)
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private cluster; fails (never skips) when PostgreSQL is missing."""
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.dsn

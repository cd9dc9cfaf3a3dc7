"""The supervisord configuration `snoop run` starts from: pure text, from the Config.

Start order reporter -> processor -> tracer (priorities 100/200/300); supervisord stops
in reverse priority, waiting for each to exit, so shutdown runs tracer -> processor ->
reporter: the tracer detaches and flushes, the processor drains, the reporter writes the
final report. A process that crashes is restarted.
"""

from __future__ import annotations

import secrets
import shlex
import sys
from collections.abc import Mapping

PROGRAMS = (("reporter", 100), ("processor", 200), ("tracer", 300))
# Each process serves metrics on SNOOP_METRICS_ADDR's port plus its offset.
METRICS_OFFSETS = {"tracer": 0, "processor": 1, "reporter": 2}
STOP_WAIT_SECONDS = 15


def metrics_addr_for(base_addr: str, offset: int) -> str:
    host, _, port = base_addr.rpartition(":")
    return f"{host}:{int(port) + offset if int(port) else 0}"


def render(env_by_program: Mapping[str, Mapping[str, str]], run_dir: str,
           snoop_executable: str = "", user: str = "") -> str:
    executable = snoop_executable or f"{sys.executable} -m snoop.cli"
    password = secrets.token_hex(16)
    lines = [
        "[supervisord]",
        "nodaemon=true",
        *([f"user={user}"] if user else []),
        f"pidfile={run_dir}/supervisord.pid",
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        "loglevel=warn",
        "",
        "[unix_http_server]",
        f"file={run_dir}/supervisor.sock",
        "chmod=0700",
        # The socket is the owner's alone (0700); a password per run besides keeps
        # supervisord from warning that the server checks none.
        "username=snoop",
        f"password={password}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run_dir}/supervisor.sock",
        "username=snoop",
        f"password={password}",
        "",
    ]
    for name, priority in PROGRAMS:
        env = ",".join(f'{key}="{_escape(value)}"' for key, value in
                       sorted(env_by_program[name].items()))
        lines += [
            f"[program:{name}]",
            f"command={executable} {shlex.quote(name)}",
            f"priority={priority}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "startretries=1000",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_SECONDS}",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "redirect_stderr=true",
            f"environment={env}",
            "",
        ]
    return "\n".join(lines)


def _escape(value: str) -> str:
    # supervisord expands %(name)s and treats quotes and commas specially in environment=.
    return value.replace("%", "%%").replace('"', '\\"')

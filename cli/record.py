"""`snoop record [-o report.json] -- CMD ARGS...`: CMD's file list from one run.

CMD runs in a new cgroup of its own, traced from its first instruction: the pipeline
(tracer, processor, reporter) starts first, and CMD execs only once the tracer reports
ready. When CMD exits, the pipeline stops in order (tracer flushes, processor drains,
reporter writes the report) and CMD's exit code is returned.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace

from snoop.cli.run import isolate, leave
from snoop.common import config as config_mod
from snoop.common import process
from snoop.tracer import cgroups
from snoop.tracer.kernel import pin_dir_of, remove_pins

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="snoop-report.json",
                        help="report file to write (default: snoop-report.json)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- CMD ARGS...: the command to record")
    config_mod.add_arguments(parser)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, deadline: float) -> bool:
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen, name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"snoop record: {name} did not stop in {STOP_TIMEOUT:.0f}s; killing it",
                  file=sys.stderr)
            proc.kill()
            proc.wait()


def _kill_leftovers(cgroup_dir: str) -> None:
    """Processes CMD left running (daemons) would keep its cgroup alive forever."""
    kill = os.path.join(cgroup_dir, "cgroup.kill")
    if os.path.exists(kill):
        try:
            with open(kill, "w") as handle:
                handle.write("1")
        except OSError:
            pass


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("snoop record: error: no command given (usage: snoop record -o R -- CMD ARGS)",
              file=sys.stderr)
        return 2
    config = process.load_config(args, "record")
    if config is None:
        return 2
    output = os.path.abspath(args.output)
    try:
        root = cgroups.discover_cgroup2_root()
    except (OSError, cgroups.CgroupError) as exc:
        print(f"snoop record: {exc}", file=sys.stderr)
        return 2
    made = isolate("record")
    target_rel = f"/snoop-record-{os.getpid()}"
    target_dir = root + target_rel
    os.makedirs(target_dir, exist_ok=True)
    run_dir = tempfile.mkdtemp(prefix="snoop-record-")
    ports = {name: _free_port() for name in ("tracer", "processor", "reporter")}
    base = replace(
        config,
        target_mode=config_mod.TargetMode.CGROUP,
        target_cgroup=(target_rel,),
        report_path=output,
        report_dir="",
        run_dir=run_dir,
        events_endpoint="",
        updates_endpoint="",
        checkpoint_endpoint="",
        report_interval=min(config.report_interval, 5.0),
    )
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name in ("reporter", "processor", "tracer"):
            env = {**os.environ, **config_mod.to_environ(base),
                   "SNOOP_METRICS_ADDR": f"127.0.0.1:{ports[name]}"}
            procs[name] = subprocess.Popen([sys.executable, "-m", "snoop.cli", name], env=env)
        deadline = time.monotonic() + READY_TIMEOUT
        for name in ("reporter", "processor", "tracer"):
            if not _wait_ready(ports[name], procs[name], deadline):
                print(f"snoop record: the {name} did not become ready", file=sys.stderr)
                return 1

        def enter_cgroup() -> None:
            with open(os.path.join(target_dir, "cgroup.procs"), "w") as handle:
                handle.write("0")
            # Now traced: a chdir to where it already is tells the tracer the cwd, as a
            # container runtime's init does, so CMD's relative paths resolve.
            os.chdir(os.getcwd())

        try:
            child = subprocess.Popen(command, preexec_fn=enter_cgroup)
        except OSError as exc:
            print(f"snoop record: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
            return 127
        while True:
            try:
                exit_code = child.wait()
                break
            except KeyboardInterrupt:
                child.send_signal(signal.SIGINT)
        return exit_code if exit_code >= 0 else 128 - exit_code
    finally:
        for name in ("tracer", "processor", "reporter"):
            if name in procs:
                _stop(procs[name], name)
        remove_pins(pin_dir_of(run_dir))  # a tracer that had to be killed leaves them
        _kill_leftovers(target_dir)
        cgroups.remove_cgroup(target_dir)
        leave(made)
        shutil.rmtree(run_dir, ignore_errors=True)

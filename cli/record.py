"""`snoop record [-o report.json] -- CMD ARGS...`: CMD's file list from one run.

CMD runs in a new cgroup of its own, traced from its first instruction: the pipeline
(tracer, processor, reporter) starts first, and CMD execs only once the tracer reports
ready. When CMD exits, the pipeline stops in order (tracer flushes, processor drains,
reporter writes the report) and CMD's exit code is returned, once the report is on
disk. When it is not (or the pipeline could not start), record exits with NO_REPORT
and one line saying why.
"""

from __future__ import annotations

import argparse
import os
import shlex
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
from snoop.common import outputs, process
from snoop.common.outcomes import only_absent
from snoop.common.protocol import MAX_WORKLOAD_NAME
from snoop.common.report import ReportError, load_report
from snoop.tracer import cgroups
from snoop.tracer.kernel import pin_dir_of, remove_pins

NO_REPORT = 125  # as `timeout` and `docker run` do: the tool failed, not CMD
READY_TIMEOUT = 120.0
# The settings record takes; the rest (targets, report location, endpoints, ports) it
# chooses itself for the one command it runs.
RECORD_OPTIONS = (
    "workload_name", "image_ref", "image_digest", "pod_name", "namespace", "labels",
    "exclude_paths", "log_level", "log_format", "ringbuf_bytes", "dedup_entries",
    "dedup_ttl", "batch_max_events", "batch_max_delay", "pending_max", "resend_after",
    "max_unique_files",
)
STOP_TIMEOUT = 20.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="snoop-report.json",
                        help="report file to write (default: snoop-report.json)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- CMD ARGS...: the command to record")
    config_mod.add_arguments(parser, RECORD_OPTIONS)


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


def _stop_all(procs: dict[str, subprocess.Popen]) -> None:
    """Tracer, processor, reporter: the order in which each hands on what it holds."""
    for name in ("tracer", "processor", "reporter"):
        if name in procs:
            _stop(procs[name], name)


def _report_problem(output: str, started: float, reporter: subprocess.Popen) -> str | None:
    """Why no complete report of this run is on disk at `output`; None when it is."""
    try:
        written = os.stat(output).st_mtime >= started - 1
    except OSError:
        written = False
    if written and reporter.returncode == 0:
        return None
    if written:
        # An earlier write is there, but the final one (after CMD ended) failed.
        return (f"the report at {output} may lack the last files (the reporter exited "
                f"{reporter.returncode}; its log lines above say why)")
    return (f"no report written to {output} (the reporter exited {reporter.returncode}; "
            "its log lines above say why)")


def _summary(output: str) -> str:
    """One line: how many files, where, and what may be missing."""
    try:
        report = load_report(output)
    except (OSError, ReportError) as exc:
        return f"report written to {output}, but it cannot be read back: {exc}"
    missing = {name: value for name, value in report.coverage.counters().items() if value}
    lost = ", ".join(f"{value:,} {name.replace('_', ' ')}" for name, value in missing.items())
    probed = sum(1 for detail in report.files.values() if only_absent(detail.outcomes))
    return (f"{len(report.files):,} files recorded in {output} ({probed:,} only probed, "
            "never found); "
            + (f"may be incomplete: {lost}" if lost else "nothing lost or unresolved"))


def _kill_leftovers(cgroup_dir: str) -> None:
    """Processes CMD left running (daemons) would keep its cgroup alive forever."""
    kill = os.path.join(cgroup_dir, "cgroup.kill")
    if os.path.exists(kill):
        try:
            with open(kill, "w") as handle:
                handle.write("1")
        except OSError:
            pass


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise _Terminated(signum)


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
    problem = outputs.file_problem(output)
    if problem:
        print(f"snoop record: {problem}", file=sys.stderr)
        return 2
    # Found on PATH here, not by the traced child: its failed execve of every PATH entry
    # before the right one would be recorded as CMD's files.
    executable = command[0] if "/" in command[0] else shutil.which(command[0])
    if executable is None:
        print(f"snoop record: cannot run {command[0]}: not found on PATH", file=sys.stderr)
        return 127
    if os.geteuid() != 0:
        print("snoop record: needs root: it loads BPF programs and makes a cgroup for CMD",
              file=sys.stderr)
        return 2
    try:
        root = cgroups.discover_cgroup2_root()
    except (OSError, cgroups.CgroupError) as exc:
        print(f"snoop record: {exc}", file=sys.stderr)
        return 2
    target_rel = f"/snoop-record-{os.getpid()}"
    target_dir = root + target_rel
    try:
        os.makedirs(target_dir, exist_ok=True)
    except OSError as exc:
        print(f"snoop record: cannot make cgroup {target_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    made = isolate("record")
    started = time.time()
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
        # The report's workload is the command recorded, not the cgroup made for it
        # (which stays in cgroup_path).
        workload_name=config.workload_name or shlex.join(command)[:MAX_WORKLOAD_NAME],
    )
    if args.cfg_log_level is None and "SNOOP_LOG_LEVEL" not in os.environ:
        # The three processes speak up only when something goes wrong; the summary line
        # at the end says what was recorded.
        base = replace(base, log_level=config_mod.LogLevel.WARNING)
    procs: dict[str, subprocess.Popen] = {}
    try:
        # SIGTERM and SIGHUP as Ctrl-C: passed on to CMD, then the report is written and
        # everything cleaned up (processes, cgroup, pins).
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_terminated)
        for name in ("reporter", "processor", "tracer"):
            env = {**os.environ, **config_mod.to_environ(base),
                   "SNOOP_METRICS_ADDR": f"127.0.0.1:{ports[name]}"}
            # Die with record, however it ends (a SIGKILL included), and only then: in a
            # session of their own, a Ctrl-C or hangup of the terminal reaches CMD, and
            # record stops them once CMD is done.
            procs[name] = subprocess.Popen([sys.executable, "-m", "snoop.cli", name], env=env,
                                           preexec_fn=process.die_with_parent,
                                           start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        for name in ("reporter", "processor", "tracer"):
            if not _wait_ready(ports[name], procs[name], deadline):
                print(f"snoop record: the {name} did not become ready", file=sys.stderr)
                return NO_REPORT

        def enter_cgroup() -> None:
            with open(os.path.join(target_dir, "cgroup.procs"), "w") as handle:
                handle.write("0")
            # Now traced: a chdir to where it already is tells the tracer the cwd, as a
            # container runtime's init does, so CMD's relative paths resolve.
            os.chdir(os.getcwd())

        try:
            child = subprocess.Popen(command, executable=executable, preexec_fn=enter_cgroup)
        except OSError as exc:
            print(f"snoop record: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
            return 127
        while True:
            try:
                exit_code = child.wait()
                break
            except KeyboardInterrupt:
                child.send_signal(signal.SIGINT)
            except _Terminated as stop:
                child.send_signal(stop.signum)  # CMD decides; record still writes its report
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # CMD is done: the report is written
        _stop_all(procs)
        problem = _report_problem(output, started, procs["reporter"])
        if problem:
            print(f"snoop record: {problem}", file=sys.stderr)
            return NO_REPORT
        print(f"snoop record: {_summary(output)}", file=sys.stderr)
        return exit_code if exit_code >= 0 else 128 - exit_code
    except _Terminated as stop:  # before CMD ran: nothing recorded
        print(f"snoop record: stopped by signal {stop.signum} before CMD ran; no report",
              file=sys.stderr)
        return 128 + stop.signum
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # the clean-up below runs to its end
        _stop_all(procs)
        remove_pins(pin_dir_of(run_dir))  # a tracer that had to be killed leaves them
        _kill_leftovers(target_dir)
        cgroups.remove_cgroup(target_dir)
        leave(made)
        shutil.rmtree(run_dir, ignore_errors=True)

"""`snoop run`: tracer, processor and reporter under supervisord, from one config.

Secrets (the API token) are not written into RUN_DIR/supervisord.conf: supervisord gets
them in its own environment, which its programs inherit. The file is 0600 anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace

from snoop.cli import supervisor_conf
from snoop.common import config as config_mod
from snoop.common import logs, preflight, process
from snoop.common.outputs import report_location_problem
from snoop.tracer import cgroups
from snoop.tracer.kernel import pin_dir_of, remove_pins

FATAL_POLL_SECONDS = 0.2


def configure(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser)


def child_environ(config: config_mod.Config, metrics_offset: int) -> dict[str, str]:
    """One program's environment= in supervisord.conf: everything but secrets."""
    env = config_mod.to_environ(config, secrets=False)
    env["SNOOP_METRICS_ADDR"] = supervisor_conf.metrics_addr_for(config.metrics_addr,
                                                                 metrics_offset)
    return env


def supervisord_environ(config: config_mod.Config,
                        base: Mapping[str, str]) -> dict[str, str]:
    """supervisord's own environment: `base` plus the secrets the conf file leaves out."""
    everything = config_mod.to_environ(config)
    secrets = {o.env: everything[o.env] for o in config_mod.OPTIONS if o.secret}
    return {**base, **{name: value for name, value in secrets.items() if value}}


def write_conf(path: str, text: str) -> None:
    """Only the owner may read it: it names every setting and socket of the run."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as handle:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file left by a last run
        handle.write(text)


def isolate(command: str) -> str:
    """Give Snoop a cgroup of its own when it shares the root cgroup with everything.

    Its children (supervisord's programs) inherit it, so the tracer can exclude
    Snoop's own file accesses by cgroup. Returns the cgroup made, or "" if none.
    """
    try:
        root = cgroups.discover_cgroup2_root()
        if cgroups.read_self_cgroup() == "/":
            made = cgroups.isolate_self(root, f"snoop-{os.getpid()}")
            os.environ[cgroups.MADE_CGROUP_ENV] = made  # children: see KernelSide.close
            return made
    except (OSError, cgroups.CgroupError) as exc:
        print(f"snoop {command}: cannot move Snoop into its own cgroup: {exc}",
              file=sys.stderr)
    return ""


def leave(made: str) -> None:
    """Undo `isolate`: back to the root cgroup, and remove the one made."""
    if not made:
        return
    try:
        root = cgroups.discover_cgroup2_root()
        cgroups.move_process(root, os.getpid())
        cgroups.remove_cgroup(cgroups.abspath(root, made), timeout=5.0)
    except (OSError, cgroups.CgroupError) as exc:
        print(f"snoop: cannot remove cgroup {made}: {exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    config = process.load_config(args, "run")
    if config is None:
        return 2
    problems = preflight.problems()
    if problems:  # the tracer would fail on each of these, and no restart would help
        for problem in problems:
            print(f"snoop run: BPF cannot work here: {problem}", file=sys.stderr)
        return 2
    if config.log_format is config_mod.LogFormat.AUTO:
        # The programs write into supervisord's pipe: whether a person reads them is
        # known here.
        config = replace(config, log_format=config_mod.LogFormat.TEXT
                         if logs.wants_text("auto") else config_mod.LogFormat.JSON)
    problem = report_location_problem(config)
    if problem:
        print(f"snoop run: {problem}", file=sys.stderr)
        return 2
    os.makedirs(config.run_dir, mode=0o770, exist_ok=True)
    made = isolate("run")
    envs = {name: child_environ(config, offset)
            for name, offset in supervisor_conf.METRICS_OFFSETS.items()}
    snoop = shutil.which("snoop", path=os.path.dirname(sys.executable)) or ""
    conf_path = os.path.join(config.run_dir, "supervisord.conf")
    write_conf(conf_path, supervisor_conf.render(
        envs, config.run_dir, snoop, user="root" if os.geteuid() == 0 else ""))
    supervisord = shutil.which("supervisord", path=os.path.dirname(sys.executable)) \
        or shutil.which("supervisord")
    if supervisord is None:
        print("snoop run: supervisord not found (pip install supervisor)", file=sys.stderr)
        return 2
    fatal_path = os.path.join(config.run_dir, "fatal")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fatal_path)  # a last run's
    env = {**supervisord_environ(config, os.environ), process.FATAL_FILE_ENV: fatal_path}
    try:
        return supervise(supervisord, conf_path, env, fatal_path)
    finally:
        # Nobody drains a kernel side left pinned by a tracer that did not stop cleanly
        # now: it would only cost the host's syscalls.
        remove_pins(pin_dir_of(config.run_dir))
        leave(made)


def supervise(supervisord: str, conf_path: str, env: Mapping[str, str],
              fatal_path: str) -> int:
    """Run supervisord with `env` until it exits; SIGTERM, SIGINT and SIGHUP reach it once.

    It runs in a session of its own, so a Ctrl-C on the terminal is not delivered twice,
    and gets SIGTERM if `snoop run` dies (its programs in turn when it does). A program
    that exits on an error no restart can fix writes `fatal_path`: then everything is
    stopped and `snoop run` exits 1 with one line naming it.
    """
    child = subprocess.Popen([supervisord, "-n", "-c", conf_path], start_new_session=True,
                             env=dict(env), preexec_fn=process.die_with_parent)

    def forward(signum: int, _frame) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            code = child.wait(timeout=FATAL_POLL_SECONDS)
        except subprocess.TimeoutExpired:
            failed = _fatal_programs(fatal_path)
            if failed:
                child.send_signal(signal.SIGTERM)
                child.wait()
                name, exit_code = failed[0]
                print(f"snoop run: stopped: the {name} cannot run (it exited {exit_code} on "
                      "an error a restart cannot fix; its line above says which)",
                      file=sys.stderr)
                return 1
            continue
        failed = _fatal_programs(fatal_path)
        return 1 if failed and code == 0 else code


def _fatal_programs(path: str) -> list[tuple[str, str]]:
    try:
        with open(path) as handle:
            return [tuple(line.split()[:2]) for line in handle if len(line.split()) >= 2]
    except OSError:
        return []

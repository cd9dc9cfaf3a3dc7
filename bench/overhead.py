"""What tracing costs the traced workload: Snoop beside bcc's opensnoop and strace.

One run measures every tool on the same machine: no tracer (the baseline), `snoop tracer`
(targeting only the workload's cgroup, its events drained by a stand-in processor), the
same tracer targeting another, empty cgroup (what Snoop costs the workloads beside the one
it traces: its hooks run for every process), bcc's opensnoop (for the workload's cgroup
through --cgroupmap), libbpf-tools' opensnoop where installed (system-wide: it has no
cgroup filter) and `strace -f -e trace=%file`.

Every workload runs in a test cgroup under `runner` (bench/workloads/runner.c), which
reports the wall time and the user+system CPU of the workload alone, measured from inside
whatever wraps it. A tracer's own CPU comes from /proc/<pid>/stat before the workload and
after the tracer has caught up with it (strace's from its rusage, less the workload's).
Work a BPF hook does runs in the traced syscall, so it shows up as the workload's sys time.

Rounds: each tool runs every workload once per round; the order of the tools rotates and
reverses from round to round, and so does the order of the workloads, so that drift on the
machine (page cache, frequency, other tenants) does not bias one tool. Figures are medians.

    .venv/bin/python bench/overhead.py [--quick] [--reps N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import benchlib
from opensnoop_port import SHIPPED as OPENSNOOP_BCC
from opensnoop_port import PortError, write_port

from snoop.tracer import cgroups

OPENSNOOP_LIBBPF = "/usr/sbin/opensnoop"
STRACE_ARGS = ["-f", "-e", "trace=%file", "-o", "/dev/null"]
# A tracer with a backlog runs flat out; one using less than 10% of a CPU over 0.1 s has
# caught up. (A system-wide tracer never goes fully idle on a busy machine.)
IDLE_CPU_PER_TICK = 0.01
READY_TIMEOUT = 120.0
SETTLE_TIMEOUT = 60.0


# ---------------------------------------------------------------- workloads

@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    argv: Callable[[str], list[str]]  # a tag unique to the run -> the command
    ops: int | None = None  # syscalls of the kind the per-op cost is per
    op: str = ""


@dataclass(frozen=True)
class Sizes:
    loop_n: int
    find_root: str
    python_runs: int
    tar_dir: str


DEFAULT_SIZES = Sizes(loop_n=50_000, find_root="/usr", python_runs=6, tar_dir="/usr/include")
QUICK_SIZES = Sizes(loop_n=20_000, find_root="/usr/include", python_runs=2,
                    tar_dir="/usr/share/perl")
PYTHON_IMPORTS = "import json, decimal, email.parser, http.client, asyncio, sqlite3"


def workloads(sizes: Sizes, helpers: dict[str, str], scratch: str) -> list[Workload]:
    filebench = helpers["filebench"]
    same_file = os.path.join(scratch, "same-file")
    with open(same_file, "w") as handle:
        handle.write("x")
    n = sizes.loop_n
    python = (f"i=0; while [ $i -lt {sizes.python_runs} ]; do "
              f"{benchlib.SYSTEM_PYTHON} -c '{PYTHON_IMPORTS}' || exit 1; i=$((i+1)); done")
    # GNU tar does not read the files when the archive is /dev/null: give it a pipe.
    tar = f"tar -cf - {sizes.tar_dir} 2>/dev/null | cat > /dev/null"
    return [
        Workload("open_same", f"open+close of one file, {n:,} times",
                 lambda tag: [filebench, "open-same", same_file, str(n)], n, "open"),
        Workload("open_unique", f"open of {n:,} unique nonexistent paths",
                 lambda tag: [filebench, "open-unique", f"/nonexistent-{tag}", str(n)], n,
                 "open"),
        Workload("stat_unique", f"stat of {n:,} unique nonexistent paths",
                 lambda tag: [filebench, "stat-unique", f"/nonexistent-{tag}", str(n)], n,
                 "stat"),
        Workload("getppid", f"getppid(), {10 * n:,} times: a syscall nothing hooks",
                 lambda tag: [filebench, "getppid", "-", str(10 * n)], 10 * n, "getppid"),
        Workload("find", f"find {sizes.find_root} -name '*.h'",
                 lambda tag: ["find", sizes.find_root, "-name", "*.h"]),
        Workload("python", f"python3 start-up + imports, {sizes.python_runs} times",
                 lambda tag: ["sh", "-c", python]),
        Workload("tar", f"tar -cf - {sizes.tar_dir} | cat > /dev/null",
                 lambda tag: ["sh", "-c", tar]),
    ]


# ---------------------------------------------------------------- tools

class ToolError(RuntimeError):
    """A tool could not start; the message says why."""


class Tool:
    """No tracer at all: the baseline. Subclasses trace."""

    name = "baseline"
    scope = "no tracer"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def wrap(self, argv: list[str]) -> list[str]:
        return argv

    @property
    def pid(self) -> int | None:
        """The long-running tracer process whose CPU counts, if any."""
        return None

    def settle(self) -> None:
        """Return once the tracer has dealt with everything the workload caused."""
        pid = self.pid
        if pid is None:
            return
        deadline = time.monotonic() + SETTLE_TIMEOUT
        before = benchlib.process_cpu_seconds(pid)
        while time.monotonic() < deadline:
            self._wait(0.1)
            now = benchlib.process_cpu_seconds(pid)
            if now - before < IDLE_CPU_PER_TICK:
                return
            before = now

    def _wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def counters(self) -> dict[str, int]:
        """Cumulative counts (events, losses) to report per run as differences."""
        return {}

    def describe_counts(self, counts: dict[str, int]) -> str:
        return ""


class Snoop(Tool):
    """`snoop tracer` for `target`: the workload's cgroup, or another one, to measure what
    Snoop costs the neighbours of what it traces (its hooks run for every process)."""

    def __init__(self, target: benchlib.TestCgroup, name: str = "snoop",
                 scope: str = "the workload's cgroup") -> None:
        self.name = name
        self.target = target
        self.scope = f"{scope}: {target.rel} (SNOOP_TARGET_MODE=cgroup), stand-in processor"
        self.tracer: benchlib.SnoopTracer | None = None
        self.pending_dropped = 0

    def start(self) -> None:
        self.tracer = benchlib.SnoopTracer(self.target.rel)
        self.settle()

    def stop(self) -> None:
        tracer, self.tracer = self.tracer, None
        if tracer is None:
            return
        try:
            # Events given up by the re-send buffer: only the tracer's stats say.
            self.pending_dropped += tracer.fresh_stats().pending_dropped
            code, _ = tracer.stop()
        finally:
            tracer.close()
        if code != 0:
            raise ToolError(f"snoop tracer exited {code}")

    @property
    def pid(self) -> int | None:
        return self.tracer.pid if self.tracer else None

    def _wait(self, seconds: float) -> None:
        self.tracer.pump(seconds)

    def settle(self) -> None:
        super().settle()
        self.tracer.drain()
        # As a reporter would after writing: the tracer may forget confirmed batches.
        self.tracer.confirm_all()

    def counters(self) -> dict[str, int]:
        kernel = self.tracer.kernel_counters()
        return {
            "records": kernel["submitted"],
            "events_received": self.tracer.events_received,
            "dedup_hits": kernel["dedup_hits"],
            "dropped": kernel["dropped"],
            "read_failures": kernel["read_failures"],
        }

    def describe_counts(self, counts: dict[str, int]) -> str:
        return (f"{counts['records']:,} rec, {counts['dedup_hits']:,} dedup, "
                f"{counts['dropped']:,} lost")


_LOST = re.compile(rb"(?:Possibly lost|Lost) (\d+)")


class BpfTool(Tool):
    """A bcc tool that runs until interrupted, its output to /dev/null."""

    def __init__(self, name: str, argv: list[str], scope: str, log_dir: str) -> None:
        self.name = name
        self.argv = argv
        self.scope = scope
        self.log_path = os.path.join(log_dir, f"{name}.stderr")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=log)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Ready once it holds BPF programs and has gone idle (compiled and polling)."""
        deadline = time.monotonic() + READY_TIMEOUT
        idle_since = None
        before = 0.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ToolError(f"{self.name} exited {self.proc.returncode}: {self.error()}")
            time.sleep(0.1)
            now = benchlib.process_cpu_seconds(self.proc.pid)
            holds = self.proc.pid in benchlib.bpf_program_holders()
            if holds and now - before < 2 * IDLE_CPU_PER_TICK:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= 0.5:
                    return
            else:
                idle_since = None
            before = now
        raise ToolError(f"{self.name} not ready after {READY_TIMEOUT:.0f}s: {self.error()}")

    def error(self) -> str:
        """Why it failed: bcc's load error if there is one, else its last line of stderr
        that is not one of clang's warnings."""
        with open(self.log_path, "rb") as handle:
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines()
                     if line.strip() and not line.startswith((" ", "#", "<built-in>", "In file"))
                     and "warning" not in line and "note:" not in line]
        causes = [line for line in lines if "Failed to" in line]
        return (causes or lines or ["(no error message)"])[-1]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def counters(self) -> dict[str, int]:
        with open(self.log_path, "rb") as handle:
            lost = sum(int(n) for n in _LOST.findall(handle.read()))
        return {"lost": lost}

    def describe_counts(self, counts: dict[str, int]) -> str:
        return f"{counts['lost']:,} lost"


class EmptyBpf(Tool):
    """The floor: an empty program on sys_enter_openat, loaded with bcc in this process.
    What any BPF tool pays at least for hooking opens."""

    name = "empty-bpf"
    scope = "an empty program on sys_enter_openat (bcc): the floor"

    def __init__(self) -> None:
        self._bpf = None

    def start(self) -> None:
        from bcc import BPF

        self._bpf = BPF(text=b"TRACEPOINT_PROBE(syscalls, sys_enter_openat) { return 0; }",
                        cflags=["-Wno-ignored-attributes"])

    def stop(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None


class Strace(Tool):
    name = "strace"
    scope = "strace " + " ".join(STRACE_ARGS)

    def wrap(self, argv: list[str]) -> list[str]:
        return [shutil.which("strace") or "strace", *STRACE_ARGS, "--", *argv]


# ---------------------------------------------------------------- opensnoop set-up

class CgroupMap:
    """A pinned BPF hash of cgroup ids, the form opensnoop's --cgroupmap reads."""

    def __init__(self, cgroup_id: int, work_dir: str) -> None:
        self.mounted: str | None = None
        bpffs = _bpffs_mount()
        if bpffs is None:
            bpffs = os.path.join(work_dir, "bpffs")
            os.makedirs(bpffs)
            subprocess.run(["mount", "-t", "bpf", "bpf", bpffs], check=True,
                           capture_output=True)
            self.mounted = bpffs
        self.path = os.path.join(bpffs, f"snoop-bench-{uuid.uuid4().hex[:8]}")
        key = " ".join(f"{b:02x}" for b in cgroup_id.to_bytes(8, sys.byteorder))
        for command in (
            ["bpftool", "map", "create", self.path, "type", "hash", "key", "8", "value", "8",
             "entries", "1024", "name", "cgroupset"],
            ["bpftool", "map", "update", "pinned", self.path, "key", "hex", *key.split(),
             "value", "hex", *["00"] * 8],
        ):
            subprocess.run(command, check=True, capture_output=True)

    def remove(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        if self.mounted:
            subprocess.run(["umount", self.mounted], check=False, capture_output=True)


def _bpffs_mount() -> str | None:
    with open("/proc/mounts") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "bpf":
                return fields[1]
    return None


def ensure_packages(install: bool) -> None:
    """bcc's tools and strace from Debian, when missing and allowed to install."""
    wanted = {"bpfcc-tools": OPENSNOOP_BCC, "libbpf-tools": OPENSNOOP_LIBBPF,
              "strace": "/usr/bin/strace"}
    missing = [package for package, path in wanted.items() if not os.path.exists(path)]
    if not missing:
        return
    if not install or os.geteuid() != 0:
        print(f"note: not installed: {', '.join(missing)} (apt-get install them to compare)")
        return
    print(f"installing {', '.join(missing)} with apt-get ...", flush=True)
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(command, env=env, capture_output=True)


def opensnoop_bcc(cgroup_map: CgroupMap | None, work_dir: str) -> tuple[BpfTool | None, str]:
    """bcc's opensnoop as shipped if it loads here, else its tracepoint port; and a note."""
    if not os.path.exists(OPENSNOOP_BCC):
        return None, f"{OPENSNOOP_BCC} not installed (package bpfcc-tools)"
    filter_args = ["--cgroupmap", cgroup_map.path] if cgroup_map else []
    scope = "the workload's cgroup (--cgroupmap)" if cgroup_map else "system-wide"
    shipped = BpfTool("opensnoop-bpfcc", [benchlib.SYSTEM_PYTHON, OPENSNOOP_BCC, *filter_args],
                      f"{scope}; as shipped", work_dir)
    try:
        shipped.start()
    except ToolError as exc:
        reason = str(exc)
    else:
        shipped.stop()
        return shipped, "runs as shipped"
    port_path = os.path.join(work_dir, "opensnoop-tracepoints.py")
    try:
        write_port(port_path)
    except PortError as exc:
        return None, f"as shipped: {reason}; no tracepoint port either: {exc}"
    port = BpfTool("opensnoop-bpfcc*", [benchlib.SYSTEM_PYTHON, port_path, *filter_args],
                   f"{scope}; hooks moved to syscall tracepoints (bench/opensnoop_port.py)",
                   work_dir)
    return port, f"as shipped it fails to load here ({reason}); measured its tracepoint port"


# ---------------------------------------------------------------- measuring

@dataclass
class Run:
    round: int
    tool: str
    workload: str
    wall: float
    user: float
    sys: float
    tracer_cpu: float | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def measure(tool: Tool, workload: Workload, cgroup: benchlib.TestCgroup, runner: str,
            scratch: str, round_no: int, counts_before: dict[str, int]
            ) -> tuple[Run, dict[str, int]]:
    """One run of `workload` under `tool`; also the tool's counters after it."""
    out = os.path.join(scratch, "runner.out")
    err = os.path.join(scratch, "workload.err")
    argv = tool.wrap([runner, out, *workload.argv(uuid.uuid4().hex)])
    pid = tool.pid
    cpu_before = benchlib.process_cpu_seconds(pid) if pid else 0.0
    with open(err, "wb") as err_handle:
        try:
            proc = cgroup.popen(argv, stdout=subprocess.DEVNULL, stderr=err_handle)
        except subprocess.SubprocessError as exc:
            # The child could not join the cgroup (or chdir) before exec.
            state = "exists" if os.path.isdir(cgroup.path) else "is gone"
            raise RuntimeError(f"cannot start {workload.name} in {cgroup.path} ({state}): "
                               f"{exc}") from exc
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(err, "rb") as handle:
            detail = handle.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"{workload.name} under {tool.name} exited {proc.returncode}: "
                           f"{detail}")
    with open(out) as handle:
        wall, user, system, _ = handle.read().split()
    tool.settle()
    if pid:
        tracer_cpu: float | None = benchlib.process_cpu_seconds(pid) - cpu_before
    elif isinstance(tool, Strace):
        tracer_cpu = usage.ru_utime + usage.ru_stime - float(user) - float(system)
    else:
        tracer_cpu = None
    counts_after = tool.counters()
    counts = {key: counts_after[key] - counts_before.get(key, 0) for key in counts_after}
    run = Run(round_no, tool.name, workload.name, float(wall), float(user), float(system),
              tracer_cpu, counts)
    return run, counts_after


def rotate(items: list, by: int) -> list:
    by %= len(items)
    return items[by:] + items[:by]


def run_rounds(tools: list[Tool], work: list[Workload], cgroup: benchlib.TestCgroup,
               runner: str, scratch: str, reps: int, strace_reps: int) -> list[Run]:
    runs = []
    for round_no in range(reps):
        order = rotate(tools, round_no)
        if round_no % 2:
            order.reverse()
        for tool in order:
            if isinstance(tool, Strace) and round_no >= strace_reps:
                continue
            started = time.monotonic()
            try:
                tool.start()
                counts = tool.counters()
                for workload in rotate(work, round_no):
                    run, counts = measure(tool, workload, cgroup, runner, scratch, round_no,
                                          counts)
                    runs.append(run)
            finally:
                tool.stop()
            print(f"  round {round_no + 1}/{reps}: {tool.name:<16} "
                  f"{time.monotonic() - started:5.1f}s", flush=True)
    return runs


# ---------------------------------------------------------------- summary

def summarize(runs: list[Run], tools: list[Tool], work: list[Workload]) -> list[dict]:
    rows = []
    for workload in work:
        base = [r for r in runs if r.workload == workload.name and r.tool == "baseline"]
        base_wall = benchlib.median(r.wall for r in base)
        base_cpu = benchlib.median(r.cpu for r in base)
        for tool in tools:
            mine = [r for r in runs if r.workload == workload.name and r.tool == tool.name]
            if not mine:
                continue
            wall = benchlib.median(r.wall for r in mine)
            cpu = benchlib.median(r.cpu for r in mine)
            tracer = ([r.tracer_cpu for r in mine if r.tracer_cpu is not None])
            tracer_cpu = benchlib.median(tracer) if tracer else 0.0
            row = {
                "workload": workload.name, "tool": tool.name, "runs": len(mine),
                "wall_s": wall, "wall_overhead_pct": 100 * (wall - base_wall) / base_wall,
                "cpu_s": cpu, "cpu_overhead_pct": 100 * (cpu - base_cpu) / base_cpu,
                "tracer_cpu_s": tracer_cpu if tracer else None,
                "total_cpu_overhead_pct": 100 * (cpu + tracer_cpu - base_cpu) / base_cpu,
                "ops": workload.ops,
                "counts": {key: int(benchlib.median(r.counts.get(key, 0) for r in mine))
                           for key in (mine[0].counts or {})},
                "counts_max": {key: max(r.counts.get(key, 0) for r in mine)
                               for key in (mine[0].counts or {})},
            }
            if workload.ops:
                row["wall_us_per_op"] = 1e6 * (wall - base_wall) / workload.ops
                row["cpu_us_per_op"] = 1e6 * (cpu + tracer_cpu - base_cpu) / workload.ops
            rows.append(row)
    return rows


def print_targets(rows: list[dict]) -> None:
    """The lean-tracer targets that this run measures, the floor beside Snoop."""
    def row(workload: str, tool: str) -> dict | None:
        return next((r for r in rows if r["workload"] == workload and r["tool"] == tool), None)

    def ns(r: dict | None) -> float | None:
        return None if r is None or "wall_us_per_op" not in r else 1000 * r["wall_us_per_op"]

    floor = ns(row("open_same", "empty-bpf"))
    traced, neighbour = ns(row("open_same", "snoop")), ns(row("open_same", "snoop-neighbour"))
    getppid_base = row("getppid", "baseline")
    getppid = ns(row("getppid", "snoop-neighbour"))
    unique = row("open_unique", "snoop")
    lines = []
    if floor and traced is not None:
        lines.append(f"added ns per open+close of a repeated path, traced: {traced:.0f} "
                     f"= {traced / floor:.1f}x the empty program's {floor:.0f} (target <= 2x)")
    if floor and neighbour is not None:
        lines.append(f"added ns per open+close, untraced neighbour: {neighbour:.0f} "
                     f"= {neighbour / floor:.1f}x the empty program (target <= 1.3x)")
    if getppid is not None and getppid_base is not None and getppid_base["ops"]:
        per_call = 1e9 * getppid_base["wall_s"] / getppid_base["ops"]
        lines.append(f"added ns per getppid, untraced neighbour: {getppid:.0f} of {per_call:.0f}"
                     f" = {100 * getppid / per_call:.0f}% (target <= 10%)")
    if unique is not None and unique.get("tracer_cpu_s") and unique.get("counts", {}).get(
            "records"):
        per_record = 1e6 * unique["tracer_cpu_s"] / unique["counts"]["records"]
        lines.append(f"tracer CPU per unique record (open_unique): {per_record:.2f} µs "
                     "(target <= 1.5)")
    if lines:
        print("\ntargets (docs/benchmarks.md; memory figures: bench/memory.py):")
        for line in lines:
            print(f"  {line}")


def print_table(rows: list[dict], tools: list[Tool], work: list[Workload]) -> None:
    by_name = {tool.name: tool for tool in tools}
    header = (f"{'tool':<16} {'wall s':>7} {'wall+%':>7} {'cpu s':>7} {'cpu+%':>7} "
              f"{'tracer s':>8} {'total+%':>8} {'+wall':>7} {'+cpu':>7}  events (median/run)")
    for workload in work:
        print(f"\n{workload.name}: {workload.summary}"
              + (f"  [per-op columns: µs per {workload.op}]" if workload.ops else ""))
        print(header)
        for row in (r for r in rows if r["workload"] == workload.name):
            base = row["tool"] == "baseline"

            def pct(value: float, base: bool = base) -> str:
                return "" if base else f"{value:+.0f}%"

            tracer = "" if row["tracer_cpu_s"] is None else f"{row['tracer_cpu_s']:.3f}"
            per_op = ("", "") if base or "wall_us_per_op" not in row else (
                f"{row['wall_us_per_op']:+.2f}", f"{row['cpu_us_per_op']:+.2f}")
            events = by_name[row["tool"]].describe_counts(row["counts"]) if row["counts"] else ""
            if row["counts_max"] and any(row["counts_max"].get(k, 0) for k in
                                         ("lost", "dropped")):
                worst = sum(row["counts_max"].get(k, 0) for k in ("lost", "dropped"))
                events += f" (worst run: {worst:,} lost)"
            print(f"{row['tool']:<16} {row['wall_s']:>7.3f} {pct(row['wall_overhead_pct']):>7} "
                  f"{row['cpu_s']:>7.3f} {pct(row['cpu_overhead_pct']):>7} {tracer:>8} "
                  f"{pct(row['total_cpu_overhead_pct']):>8} {per_op[0]:>7} {per_op[1]:>7}  "
                  f"{events}")


def print_legend(tools: list[Tool], notes: list[str]) -> None:
    print("\ncolumns: wall s / cpu s = the workload's wall time and user+sys CPU (median);"
          " +% = against the baseline;\n  tracer s = the tracer process's own CPU for the run"
          " (until it caught up); total+% = workload + tracer CPU against the baseline's"
          " CPU;\n  +wall / +cpu = extra wall time / extra CPU (workload + tracer) per"
          " operation, in µs.\n  events: snoop's from its BPF counters (rec = records put in the"
          " ring buffer, dedup = suppressed in the kernel, lost = ring buffer full);\n"
          "  opensnoop's lost = what its perf buffer reported lost.")
    print("tools:")
    for tool in tools:
        print(f"  {tool.name:<16} {tool.scope}")
    for note in notes:
        print(f"note: {note}")


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (about a minute)")
    parser.add_argument("--reps", type=int, help="rounds (default 5, --quick 1)")
    parser.add_argument("--strace-reps", type=int,
                        help="rounds strace takes part in (default 3, --quick 1): it is slow")
    parser.add_argument("--json", metavar="OUT", help="also write every run and the summary")
    parser.add_argument("--only", help="comma-separated workloads to run (default: all)")
    parser.add_argument("--no-neighbour", action="store_true",
                        help="skip snoop tracing another cgroup (the cost to neighbours)")
    parser.add_argument("--no-install", action="store_true",
                        help="do not apt-get install bpfcc-tools, libbpf-tools or strace")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("overhead: must run as root (BPF, cgroups)", file=sys.stderr)
        return 2
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    reps = args.reps or (1 if args.quick else 5)
    strace_reps = min(reps, args.strace_reps or (1 if args.quick else 3))
    ensure_packages(not args.no_install)

    info = benchlib.machine()
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="snoop-bench-")
    cgroup = benchlib.make_test_cgroup("snoop-bench")
    neighbour: benchlib.TestCgroup | None = None
    cgroup_map: CgroupMap | None = None
    notes: list[str] = []
    try:
        helpers = benchlib.compile_helpers(scratch)
        work = workloads(sizes, helpers, scratch)
        if args.only:
            wanted = set(args.only.split(","))
            work = [w for w in work if w.name in wanted]
        try:
            cgroup_map = CgroupMap(cgroups.cgroup_id(cgroup.path), scratch)
        except (OSError, subprocess.CalledProcessError) as exc:
            notes.append(f"no pinned cgroup map for opensnoop ({exc}): it runs system-wide")
        tools: list[Tool] = [Tool(), EmptyBpf(), Snoop(cgroup)]
        if not args.no_neighbour:
            neighbour = benchlib.make_test_cgroup("snoop-bench-other")
            tools.append(Snoop(neighbour, "snoop-neighbour",
                               "another, empty cgroup (what the workload pays untraced)"))
        bcc_tool, bcc_note = opensnoop_bcc(cgroup_map, scratch)
        notes.append(f"{OPENSNOOP_BCC}: {bcc_note}")
        if bcc_tool:
            tools.append(bcc_tool)
        if os.path.exists(OPENSNOOP_LIBBPF):
            tools.append(BpfTool("opensnoop-libbpf", [OPENSNOOP_LIBBPF],
                                 "system-wide (no cgroup filter); libbpf-tools' C build",
                                 scratch))
        if shutil.which("strace"):
            tools.append(Strace())
        if info["loadavg_1m"] > 0.5 * (info["cpus"] or 1):
            notes.append(f"load average {info['loadavg_1m']:.2f} on {info['cpus']} CPUs at "
                         "the start: other work shared the machine, expect noisy figures")
        others = benchlib.bpf_program_holders()
        if others:
            notes.append("other processes held BPF programs during the run (their hooks "
                         "cost every tool alike): " + "; ".join(
                             f"{pid} {cmd[:60]} ({n} progs)" for pid, (cmd, n) in others.items()))
        print(f"{info['kernel']}, {info['cpu']} x{info['cpus']}, {info['date']}, "
              f"load {info['loadavg_1m']:.2f}")
        print(f"{reps} rounds (strace in {strace_reps}), tools: "
              f"{', '.join(t.name for t in tools)}", flush=True)
        for workload in work:  # warm the page cache and the .pyc files: not measured
            measure(Tool(), workload, cgroup, helpers["runner"], scratch, -1, {})
        runs = run_rounds(tools, work, cgroup, helpers["runner"], scratch, reps, strace_reps)
        pending_dropped = sum(t.pending_dropped for t in tools if isinstance(t, Snoop))
        notes.append(f"snoop: {pending_dropped:,} events given up by the tracer's "
                     "re-send buffer over the whole run")
    finally:
        if cgroup_map is not None:
            cgroup_map.remove()
        cgroup.remove()
        if neighbour is not None:
            neighbour.remove()
        shutil.rmtree(scratch, ignore_errors=True)

    rows = summarize(runs, tools, work)
    print_table(rows, tools, work)
    print_targets(rows)
    info["loadavg_1m_end"] = os.getloadavg()[0]
    print_legend(tools, notes)
    print(f"took {time.monotonic() - started:.0f}s; load average {info['loadavg_1m']:.2f} "
          f"at start, {info['loadavg_1m_end']:.2f} at end")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": info, "sizes": asdict(sizes), "reps": reps,
                       "strace_reps": strace_reps,
                       "tools": {t.name: t.scope for t in tools}, "notes": notes,
                       "summary": rows, "runs": [asdict(r) for r in runs]}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

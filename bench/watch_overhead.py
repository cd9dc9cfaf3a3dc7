"""What `snoop watch` costs per read, write and open, beside the floor, opensnoop and
strace, in one run on one machine (bench/overhead.py's harness, other tools and
workloads).

Tools: no tracer (the baseline); empty BPF programs on sys_enter_read, sys_enter_write
and sys_enter_openat (the floor for any tool hooking them); `snoop watch --op all` for
the workload's cgroup (read, write and close hooks compiled in), its JSON lines to
/dev/null; bcc's opensnoop (opens only: it does not see a read or a write); and
`strace -f -e trace=%file,read,write,close`.

    .venv/bin/python bench/watch_overhead.py [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib
import overhead
from overhead import EmptyBpf, Strace, Tool, ToolError, Workload

from snoop.tracer import cgroups

SNOOP = [sys.executable, "-m", "snoop.cli", "watch"]
READY = b"snoop watch: watching"


def workloads(n: int, helpers: dict[str, str], scratch: str) -> list[Workload]:
    filebench = helpers["filebench"]
    data = os.path.join(scratch, "data.bin")
    with open(data, "wb") as handle:
        handle.write(b"x" * (1 << 20))
    same = os.path.join(scratch, "same-file")
    with open(same, "w") as handle:
        handle.write("x")
    return [
        Workload("write_4k", f"{n:,} writes of 4 KiB to one file",
                 lambda tag: [filebench, "write-4k", os.path.join(scratch, f"w-{tag}"), str(n)],
                 n, "write"),
        Workload("read_4k", f"{n:,} reads of 4 KiB from one file",
                 lambda tag: [filebench, "read-4k", data, str(n)], n, "read"),
        Workload("open_same", f"open+close of one file, {n:,} times",
                 lambda tag: [filebench, "open-same", same, str(n)], n, "open"),
    ]


class EmptyIoBpf(EmptyBpf):
    """The floor: empty programs on the entries of read, write and openat."""

    name = "empty-bpf"
    scope = "empty programs on sys_enter_read, _write and _openat (bcc): the floor"

    def start(self) -> None:
        from bcc import BPF

        text = b"".join(b"TRACEPOINT_PROBE(syscalls, sys_enter_%s) { return 0; }\n" % name
                        for name in (b"read", b"write", b"openat"))
        self._bpf = BPF(text=text, cflags=["-Wno-ignored-attributes"])


class IoStrace(Strace):
    args = ["-f", "-e", "trace=%file,read,write,close", "-o", "/dev/null"]
    scope = "strace " + " ".join(args)

    def wrap(self, argv: list[str]) -> list[str]:
        return [shutil.which("strace") or "strace", *self.args, "--", *argv]


class SnoopWatch(overhead.BpfTool):
    """`snoop watch` to /dev/null; ready on its stderr line, stopped as bcc tools are."""

    def __init__(self, target: benchlib.TestCgroup, log_dir: str) -> None:
        super().__init__(
            "snoop-watch",
            [*SNOOP, "--op", "all", "--cgroup", target.rel, "--format", "json"],
            f"snoop watch --op all --cgroup {target.rel} --format json > /dev/null", log_dir)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + overhead.READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ToolError(f"snoop watch exited {self.proc.returncode}: {self._log()}")
            if READY in self._log().encode():
                self.settle()
                return
            time.sleep(0.1)
        raise ToolError(f"snoop watch not ready: {self._log()}")

    def _log(self) -> str:
        with open(self.log_path, "rb") as handle:
            return handle.read().decode(errors="replace")[-2000:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--reps", type=int, help="rounds (default 5, --quick 1)")
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("watch_overhead: must run as root (BPF, cgroups)", file=sys.stderr)
        return 2
    reps = args.reps or (1 if args.quick else 5)
    n = 20_000 if args.quick else 100_000
    overhead.ensure_packages(not args.no_install)
    info = benchlib.machine()
    scratch = tempfile.mkdtemp(prefix="snoop-bench-watch-")
    cgroup = benchlib.make_test_cgroup("snoop-bench-watch")
    cgroup_map = None
    notes: list[str] = []
    try:
        helpers = benchlib.compile_helpers(scratch)
        work = workloads(n, helpers, scratch)
        try:
            cgroup_map = overhead.CgroupMap(cgroups.cgroup_id(cgroup.path), scratch)
        except (OSError, subprocess.CalledProcessError) as exc:
            notes.append(f"no pinned cgroup map for opensnoop ({exc}): it runs system-wide")
        tools: list[Tool] = [Tool(), EmptyIoBpf(), SnoopWatch(cgroup, scratch)]
        bcc_tool, bcc_note = overhead.opensnoop_bcc(cgroup_map, scratch)
        notes.append(f"opensnoop: {bcc_note}")
        if bcc_tool:
            tools.append(bcc_tool)
        if shutil.which("strace"):
            tools.append(IoStrace())
        print(f"{info['kernel']}, {info['cpu']} x{info['cpus']}, {info['date']}, "
              f"load {info['loadavg_1m']:.2f}")
        print(f"{reps} rounds, tools: {', '.join(t.name for t in tools)}", flush=True)
        for workload in work:
            overhead.measure(Tool(), workload, cgroup, helpers["runner"], scratch, -1, {})
        runs = overhead.run_rounds(tools, work, cgroup, helpers["runner"], scratch, reps, reps)
    finally:
        if cgroup_map is not None:
            cgroup_map.remove()
        cgroup.remove()
        shutil.rmtree(scratch, ignore_errors=True)
    rows = overhead.summarize(runs, tools, work)
    overhead.print_table(rows, tools, work)
    floor = {r["workload"]: r for r in rows if r["tool"] == "empty-bpf"}
    print("\nadded ns per operation, snoop watch against the empty programs (the floor):")
    for row in rows:
        if row["tool"] == "snoop-watch" and row["workload"] in floor:
            mine = 1000 * row["wall_us_per_op"]
            base = 1000 * floor[row["workload"]]["wall_us_per_op"]
            ratio = f" = {mine / base:.1f}x" if base > 0 else ""
            print(f"  {row['workload']}: {mine:.0f} ns{ratio} the floor's {base:.0f} ns")
    overhead.print_legend(tools, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

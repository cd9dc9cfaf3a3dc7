"""Where the kernel side's time goes: run time per BPF program, from the kernel's own
statistics (kernel.bpf_stats_enabled), beside an empty program measured the same way.

A `snoop tracer` traces a test cgroup (or, with --untraced, another one), and in the
test cgroup a C helper runs open+close of one file N times (a repeated, deduplicated
path). Each program's average run time and its time per open+close are printed; tail
calls count in the program that made them. The empty program (bcc, on
sys_enter_getppid, with getppid called N times) shows what the statistics themselves
add to every run: compare against it, not against zero.

    .venv/bin/python bench/bpf_programs.py [--untraced] [N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import benchlib

from tests.tracer.harness import make_test_cgroup

EMPTY = "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }"


def program_stats() -> dict[int, tuple[str, int, int]]:
    """id -> (name, run_time_ns, run_cnt) of every loaded program."""
    shown = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True,
                           text=True, check=True)
    return {p["id"]: (p.get("name", "?"), p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(shown.stdout)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=200_000)
    parser.add_argument("--untraced", action="store_true",
                        help="trace another cgroup: what a neighbour's programs cost")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bpf_programs.py needs root", file=sys.stderr)
        return 2
    from bcc import BPF

    helpers = benchlib.compile_helpers(tempfile.mkdtemp(prefix="snoop-bench-progs-"))
    same = tempfile.NamedTemporaryFile(prefix="snoop-bench-same-")  # noqa: SIM115
    workload, other = make_test_cgroup("snoop-bench-progs"), make_test_cgroup("snoop-bench-x")
    tracer = benchlib.SnoopTracer((other if args.untraced else workload).rel)
    empty = BPF(text=EMPTY)
    try:
        tracer.pump(0.5)
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
        before = program_stats()
        workload.run([helpers["filebench"], "open-same", same.name, str(args.n)])
        workload.run([helpers["filebench"], "getppid", "-", str(args.n)])
        after = program_stats()
    finally:
        subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
        empty.cleanup()
        tracer.stop()
        tracer.close()
        workload.remove()
        other.remove()
        same.close()
    print(f"{'open+close' if not args.untraced else 'untraced open+close'} x {args.n:,}, "
          f"getppid x {args.n:,}; machine: {benchlib.machine()}")
    print(f"{'program':<48} {'runs':>9} {'ns/run':>7} {'ns/op':>7}")
    for prog_id, (name, ns, runs) in sorted(after.items()):
        _, ns0, runs0 = before.get(prog_id, (name, 0, 0))
        if runs - runs0 >= args.n // 2:
            print(f"{name:<48} {runs - runs0:>9,} {(ns - ns0) / (runs - runs0):>7.0f} "
                  f"{(ns - ns0) / args.n:>7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

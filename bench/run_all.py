"""Every bench, one after another, with all their figures on stdout (`make bench`).

    .venv/bin/python bench/run_all.py [--quick] [--json-dir DIR]

- overhead.py: what tracing costs a workload, Snoop beside opensnoop and strace (root);
- memory.py: the tracer's RSS after start and while tracing 100K unique paths (root);
- watch_overhead.py: what `snoop watch` with its read and write hooks costs per read,
  write and open, beside the empty programs, opensnoop and strace (root);
- cgroup_pickup.py: how fast a new child cgroup is listed on kernels without the
  ancestor helper (root);
- processor_memory.py: the processor's memory per unique path;
- stack.py: the whole `snoop run` stack's PSS with 100K unique files, and unique paths per
  second from the kernel to a persisted report (root);
- receiver_load.py: 1,000 reporters pushing deltas at once to two `snoop receive` on one
  PostgreSQL: deltas/s, latency, database size, and the union checked (root: it starts
  a private PostgreSQL as the postgres user).

The benches run one at a time: each measures the machine, and another bench running
beside it would be part of what it measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def benches(quick: bool, json_dir: str | None) -> list[tuple[str, list[str], bool]]:
    """(name, arguments, needs root) for each bench."""
    def json_arg(name: str) -> list[str]:
        return ["--json", os.path.join(json_dir, f"{name}.json")] if json_dir else []

    return [
        ("overhead", ["overhead.py", *(["--quick"] if quick else []), *json_arg("overhead")],
         True),
        ("memory", ["memory.py", *(["20000"] if quick else []), *json_arg("memory")], True),
        ("watch_overhead", ["watch_overhead.py", *(["--quick"] if quick else [])], True),
        ("cgroup_pickup", ["cgroup_pickup.py"], True),
        ("processor_memory", ["processor_memory.py", *(["20000"] if quick else [])], False),
        ("stack", ["stack.py", *(["--paths", "20000", "--flood", "80000"] if quick else []),
                   *json_arg("stack")], True),
        ("receiver_load", ["receiver_load.py",
                           *(["--reporters", "200", "--deltas", "5"] if quick else []),
                           *json_arg("receiver_load")], True),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized runs")
    parser.add_argument("--json-dir", help="where overhead.json and memory.json go")
    args = parser.parse_args(argv)
    if args.json_dir:
        os.makedirs(args.json_dir, exist_ok=True)
    failed = []
    for name, bench_args, needs_root in benches(args.quick, args.json_dir):
        print(f"\n=== {name} " + "=" * (60 - len(name)), flush=True)
        if needs_root and os.geteuid() != 0:
            print(f"skipped: {name} needs root (BPF and cgroups)")
            continue
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(BENCH_DIR / bench_args[0]), *bench_args[1:]],
                              cwd=BENCH_DIR.parent).returncode
        print(f"--- {name}: exit {code}, {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

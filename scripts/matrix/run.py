"""`make matrix`: Snoop's capture tests on other kernels, each booted under qemu.

    python scripts/matrix/run.py [--kernels 5.10,6.1] [--quick] [--cache DIR]

Each kernel boots the same Debian bookworm userspace (Snoop's image brings its own);
only the kernel varies. Prints one table row per kernel; exits 1 if any test failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from boot import Result, boot
from guest import ensure_guest
from kernels import KERNELS, QUICK

DEFAULT_CACHE = os.environ.get("SNOOP_MATRIX_CACHE", "/var/cache/snoop-matrix")


def log(message: str) -> None:
    print(f"matrix: {message}", file=sys.stderr, flush=True)


def table(results: list[Result]) -> str:
    head = ("kernel", "uname -r", "bcc", "event path", "cgroup filter",
            "pickup p50/p99", "passed", "failed", "time")
    rows = [head]
    for r in results:
        failed = r.failed + r.errors
        rows.append((r.name, r.krel, r.facts.get("bcc", "?"), r.event_path, r.cgroup_filter,
                     r.pickup, str(r.passed), str(failed), f"{r.seconds:.0f}s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", help="comma-separated subset of: "
                        + ",".join(k.name for k in KERNELS))
    parser.add_argument("--quick", action="store_true", help=f"only {' and '.join(QUICK)}")
    parser.add_argument("--cache", default=DEFAULT_CACHE)
    parser.add_argument("--tests", default="",
                        help="comma-separated pytest node ids instead of the usual set")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per guest")
    args = parser.parse_args(argv)
    names = QUICK if args.quick else (args.kernels.split(",") if args.kernels else
                                      [k.name for k in KERNELS])
    known = {k.name: k for k in KERNELS}
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown kernel(s) {unknown}; known: {sorted(known)}")
    os.makedirs(os.path.join(args.cache, "logs"), exist_ok=True)
    results = []
    for name in names:
        started = time.monotonic()
        guest = ensure_guest(known[name], args.cache, log)
        log(f"{name}: guest ready in {time.monotonic() - started:.0f}s; booting {guest.krel}")
        result = boot(guest, os.path.join(args.cache, "logs", f"{name}.log"), args.timeout,
                      tests=args.tests)
        results.append(result)
        log(f"{name}: {result.passed} passed, {result.failed + result.errors} failed "
            f"in {result.seconds:.0f}s (console: {result.log})")
    print(table(results))
    for r in results:
        if r.problem:
            print(f"{r.name}: {r.problem}")
        if r.tracer_error:
            print(f"{r.name}: {r.tracer_error}")
        for line in r.failures:
            print(f"{r.name}: {line}")
    bad = any(r.failed or r.errors or r.problem or not r.passed for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

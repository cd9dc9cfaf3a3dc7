"""What the tracer cannot see, and says so; and sharing it can model, which it must get right.

- io_uring: requests that name a path are counted per cgroup (coverage io_uring_ops),
  their paths are not reported; a plain openat(2) by the same program still is.
- clone(CLONE_FS) and clone(CLONE_FILES) without CLONE_THREAD: a chdir or a dirfd of one
  process is the other's too; the report matches strace.
- a thread that unshares its cwd: later relative names are counted (uncertain_paths),
  never reported under a wrong path; absolute ones are still reported.

The programs are in tests/tracer/oracle_workloads/limits/, a directory of their own:
uring.c links liburing, which the catalog's build of the directory above does not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from snoop.common.protocol import CaptureCounts, Event
from tests.support.strace_oracle import strace_paths
from tests.tracer.harness import Collected
from tests.tracer.oracle_workloads.catalog import SOURCES, Workload
from tests.tracer.test_oracle_hard import SHOWN, kept, launcher_probes, verdict

if TYPE_CHECKING:  # imported at run time, pytest would try to collect it as a test class
    from tests.tracer.harness import TestCgroup

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]

LIMITS = SOURCES / "limits"
URING_FILES = 8
# The tracer adds coverage about once a second: two periods let a late delta show.
COVERAGE_SETTLE = 2.5


@pytest.fixture(scope="module")
def bindir(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed: the capture-limit workloads are compiled with it")
    if not Path("/usr/include/liburing.h").exists():
        pytest.fail("liburing-dev is not installed (scripts/setup.sh --test installs it)")
    made = tmp_path_factory.mktemp("limits-bin")
    for source in sorted(LIMITS.glob("*.c")):
        subprocess.run(["gcc", "-O1", "-pthread", "-Wall", "-Werror", f"-I{SOURCES}",
                        "-o", str(made / source.stem), str(source), "-luring"], check=True)
    return made


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("limits")


def _files(*names: str) -> Callable[[Path, Path], None]:
    def make(here: Path, bindir: Path) -> None:
        for name in names:
            (here / name).parent.mkdir(parents=True, exist_ok=True)
            (here / name).write_text(name + "\n")
    return make


@dataclass
class Traced:
    cgroup: TestCgroup
    done: subprocess.CompletedProcess

    @property
    def said(self) -> list[tuple[str, str]]:
        """The workload's "WORD VALUE" lines."""
        return [tuple(line.split(" ", 1)) for line in self.done.stdout.decode().splitlines()]

    def said_all(self, word: str) -> list[str]:
        return [value for key, value in self.said if key == word]


def run_traced(parent: TestCgroup, name: str, argv: list[str], here: Path) -> Traced:
    """Run argv in a fresh child cgroup of parent; the caller removes it."""
    child = parent.child(f"{name}-{uuid.uuid4().hex[:6]}")
    done = child.run(argv, cwd=here, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    traced = Traced(child, done)
    if done.returncode != 0:
        child.remove()
        pytest.fail(f"{name} failed traced ({done.returncode}): {done.stderr[-2000:]!r}")
    return traced


def coverage(collected: Collected, cgroup_id: int) -> CaptureCounts:
    """What every first sending of a batch said the tracer missed for cgroup_id."""
    return reduce(CaptureCounts.__add__, (
        batch.coverage[cgroup_id] for batch in collected.batches
        if not batch.resend and cgroup_id in batch.coverage), CaptureCounts())


def reported(events: list[Event]) -> set[bytes]:
    return {e.path for e in events if e.resolved}


def naming(events: list[Event], here: Path, names: list[str]) -> list[Event]:
    """Events whose path is one of names, relative or under here, or ends with one."""
    wanted = {os.fsencode(n) for n in names}
    absolute = {os.fsencode(here / n) for n in names}
    return [e for e in events if e.path in wanted or e.path in absolute
            or any(e.path.endswith(b"/" + n) for n in wanted)]


def test_io_uring_paths_are_counted_not_reported(tracer, parent, bindir, base):
    name = "uring"
    here = base / name
    workload = Workload(("{bin}/uring", str(URING_FILES)),
                        _files(*(f"ur/f{i}" for i in range(URING_FILES)), "ur/plain"))
    workload.prepare(bindir, here)
    traced = run_traced(parent, name, workload.command(bindir, here), here)
    try:
        requests = int(traced.said_all("requests")[0])
        hidden = traced.said_all("uring")
        plain = {os.fsencode(here / p) for p in traced.said_all("plain")}
        assert requests == 2 * URING_FILES and len(hidden) == URING_FILES and plain
        cid = traced.cgroup.id

        tracer.wait_for(lambda c: plain <= reported(c.for_cgroup(cid))
                        and coverage(c, cid).io_uring_ops >= requests, timeout=20)
        tracer.pump(COVERAGE_SETTLE)
        tracer.settle()
        events = tracer.collected.for_cgroup(cid)

        counted = coverage(tracer.collected, cid).io_uring_ops
        assert counted == requests, (
            f"io_uring_ops {counted} for the cgroup, the program submitted {requests} "
            f"OPENAT and STATX requests")
        assert plain <= reported(events), (
            f"the openat(2) of {sorted(plain)} was not reported; got "
            f"{sorted(reported(events))[:SHOWN]}")
        seen = naming(events, here, hidden)
        assert not seen, (
            "paths opened only through io_uring were reported (the tracer should not see "
            f"them; update the documented limit): {[(e.path, e.resolved) for e in seen]}")
    finally:
        traced.cgroup.remove()


CLONEFS_EXPECTED = ("cf/x/parent-file", "cf/x/child-file", "cf/y/after-child", "cf/d/in-d",
                    "cf/d/missing-d", "cf/e/in-e")


def test_clone_sharing_fs_and_files_matches_strace(tracer, parent, bindir, base):
    name = "clonefs"
    here = base / name
    workload = Workload(("{bin}/clonefs",),
                        _files("cf/x/parent-file", "cf/x/child-file", "cf/y/after-child",
                               "cf/d/in-d", "cf/e/in-e"))
    argv = workload.command(bindir, here)
    workload.prepare(bindir, here)
    oracle = kept(strace_paths(argv, str(here), check=True))
    expected = {os.fsencode(here / p) for p in CLONEFS_EXPECTED}
    assert expected <= oracle, f"strace did not see {sorted(expected - oracle)}"

    workload.prepare(bindir, here)
    traced = run_traced(parent, name, argv, here)
    try:
        cid = traced.cgroup.id
        tracer.wait_for(lambda c: oracle <= kept(reported(c.for_cgroup(cid))), timeout=20)
        tracer.pump(COVERAGE_SETTLE)
        tracer.settle()
        events = tracer.collected.for_cgroup(cid)
        problem = verdict(name, oracle, events, launcher_probes(argv, str(here)))
        assert not problem, problem
        uncertain = coverage(tracer.collected, cid).uncertain_paths
        assert uncertain == 0, (
            f"{uncertain} paths counted uncertain, though sharing by clone(CLONE_FS) and "
            "clone(CLONE_FILES) is modelled and every path was reported")
    finally:
        traced.cgroup.remove()


@pytest.mark.parametrize("mode", ["fs", "fs-files"])
def test_thread_unsharing_cwd_counts_relative_names(tracer, parent, bindir, base, mode):
    name = f"unshare-{mode}"
    here = base / name
    workload = Workload(("{bin}/thread_unshare", mode, "{here}/tu/abs", "{here}/tu/abs2"),
                        _files("tu/before", "tu/main-after", "tu/abs", "tu/abs2",
                               *(f"tu/a/a{i}" for i in range(4))))
    argv = workload.command(bindir, here)
    workload.prepare(bindir, here)
    oracle = kept(strace_paths(argv, str(here), check=True))
    # Where each name really is: the oracle must have placed them right.
    truth = {here / "tu/a", *(here / f"tu/a/{n}{i}" for n in ("a", "missing") for i in range(4)),
             here / "tu/main-after", here / "tu/main-missing"}
    assert {os.fsencode(p) for p in truth} <= oracle, "strace misplaced the relative names"

    workload.prepare(bindir, here)
    traced = run_traced(parent, name, argv, here)
    try:
        relative = traced.said_all("relative")
        absolute = {os.fsencode(p) for p in traced.said_all("absolute")}
        before = os.fsencode(here / "tu/before")
        assert len(relative) == len(truth) and len(absolute) == 2
        cid = traced.cgroup.id

        def complete(collected: Collected) -> bool:
            events = collected.for_cgroup(cid)
            placed = len(reported(naming(events, here, relative)) & oracle)
            return ({before} | absolute) <= reported(events) and (
                coverage(collected, cid).uncertain_paths + placed >= len(relative))

        tracer.wait_for(complete, timeout=20)
        tracer.pump(COVERAGE_SETTLE)
        tracer.settle()
        events = tracer.collected.for_cgroup(cid)

        unresolved = sorted({e.path for e in events if not e.resolved})
        extra = sorted(kept(reported(events)) - oracle - launcher_probes(argv, str(here)))
        assert not unresolved and not extra, (
            f"after unshare({mode}): reported paths strace did not see: {extra[:SHOWN]}; "
            f"unresolved: {unresolved[:SHOWN]}")
        assert ({before} | absolute) <= reported(events), (
            f"not reported: {sorted(({before} | absolute) - reported(events))}")
        # A relative name is either reported where strace saw it or counted uncertain.
        placed = reported(naming(events, here, relative)) & oracle
        uncertain = coverage(tracer.collected, cid).uncertain_paths
        assert uncertain + len(placed) >= len(relative), (
            f"{len(relative)} relative names after unshare({mode}), {len(placed)} reported "
            f"({sorted(placed)}), only {uncertain} counted uncertain")
    finally:
        traced.cgroup.remove()

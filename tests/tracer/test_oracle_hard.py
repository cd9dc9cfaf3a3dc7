"""Hard workloads against the strace oracle: threads, vfork and posix_spawn, exec by fd,
openat2, O_PATH, fd passing, pid reuse, paths beyond PATH_MAX, magic /proc links,
repeated commands, a chroot and a few real tools (tests/tracer/oracle_workloads/).

Each runs once under strace and once in a traced cgroup, from a fresh fixture each time.
What the tracer reports must cover what strace saw (recall) and hold nothing strace did
not see (precision), besides what the test's own launcher does before the workload.

The bug classes of the capture issue, and the workloads that hold each one down:
- A, the dedup hid chdirs and opens the model needed: cd-repeat, find-repeat, rm-repeat,
  mkdir-p-repeat, rmtree-repeat, dash-logical-cd, same-dir-fds, proc-fd-bash;
- B, a leader thread's exit wiped the process: threads-main-exits, threads-exec;
- C, a resolved path over 4096 bytes lost its batch: long-paths (4839 bytes);
- D, pid reuse met a dead process's dedup key: pid-reuse (clone3 set_tid);
- E, stale fd numbers: fd-passing (SCM_RIGHTS into a reused number, dup2 over a closed
  one), same-dir-fds, chroot (a dirfd from before the chroot);
- F, openat2 RESOLVE_IN_ROOT and RESOLVE_BENEATH: openat2;
- G, /proc/self/fd and /dev/fd paths, execveat: proc-fd, proc-fd-bash,
  fexecve-execveat-execvp;
- H, exec names unreadable at entry, fexecve's empty name: fexecve-execveat-execvp,
  posix-spawnp, vfork-chain.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from snoop.common.protocol import Event
from tests.support.strace_oracle import strace_paths
from tests.tracer.oracle_workloads.catalog import WORKLOADS, build

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]

EXCLUDED = (b"/proc", b"/sys", b"/dev")
RECALL = 0.999
SHOWN = 10


@pytest.fixture(scope="module")
def bindir(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed: the hard oracle workloads are compiled with it")
    made = tmp_path_factory.mktemp("oracle-bin")
    build(made)
    return made


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("oracle-hard")


def normal(path: bytes) -> bytes:
    path = os.path.normpath(path)
    return path[1:] if path.startswith(b"//") else path


def kept(paths: set[bytes]) -> set[bytes]:
    normalized = {normal(path) for path in paths}
    return {p for p in normalized if not any(p == e or p.startswith(e + b"/") for e in EXCLUDED)}


def launcher_probes(argv: list[str], cwd: str) -> set[bytes]:
    """What TestCgroup.run's child touches before the workload's exec: its chdir to the
    cwd, and Python's exec of argv[0] in each PATH directory up to the one holding it."""
    probes = {os.fsencode(cwd)}
    if "/" not in argv[0]:
        for directory in os.get_exec_path():
            candidate = os.path.join(directory, argv[0])
            probes.add(os.fsencode(candidate))
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                break
    return kept(probes)


def verdict(name: str, oracle: set[bytes], events: list[Event], allowed: set[bytes]) -> str:
    """'' if the report matches the oracle, else what is wrong, with examples."""
    unresolved = sorted({e.path for e in events if not e.resolved})
    reported = kept({e.path for e in events if e.resolved})
    missing = sorted(oracle - reported)
    extra = sorted(reported - oracle - allowed)
    recall = 1 - len(missing) / max(len(oracle), 1)
    if recall >= RECALL and not extra and not unresolved:
        return ""
    return (f"{name}: recall {recall:.4f} ({len(missing)} of {len(oracle)} missing), "
            f"{len(extra)} extra, {len(unresolved)} unresolved\n"
            f"  missing: {missing[:SHOWN]}\n  extra: {extra[:SHOWN]}\n"
            f"  unresolved: {unresolved[:SHOWN]}")


@pytest.mark.parametrize("name", WORKLOADS)
def test_reported_paths_match_strace(name, tracer, parent, bindir, base):
    workload = WORKLOADS[name]
    here = base / name
    argv = workload.command(bindir, here)
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed: the {name} workload needs it")
    workload.prepare(bindir, here)
    oracle = kept(strace_paths(argv, str(here), check=True))
    unplaced = sorted(p for p in oracle if not p.startswith(b"/"))
    assert not unplaced, f"the oracle could not resolve: {unplaced[:SHOWN]}"

    workload.prepare(bindir, here)
    child = parent.child(f"{name}-{uuid.uuid4().hex[:6]}")
    try:
        done = child.run(argv, cwd=here, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert done.returncode == 0, f"{name} failed traced: {done.stderr[-2000:]!r}"
        cid = child.id

        def recalled(collected) -> bool:
            reported = kept({e.path for e in collected.for_cgroup(cid) if e.resolved})
            return len(oracle - reported) <= (1 - RECALL) * len(oracle)

        tracer.wait_for(recalled, timeout=20)
        tracer.settle()
        problem = verdict(name, oracle, tracer.collected.for_cgroup(cid),
                          launcher_probes(argv, str(here)))
        assert not problem, problem + f"\n  workload said: {done.stdout[-300:]!r}"
    finally:
        child.remove()

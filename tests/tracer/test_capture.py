"""The tracer against the kernel: real BPF, real processes in test cgroups.

One tracer serves this module (compiling the BPF program takes several seconds). It
targets a parent test cgroup, so every child cgroup a test makes is traced with it, and
a leaf cgroup that does not exist yet when the tracer starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from snoop.common.protocol import AccessKind
from snoop.tracer import cgroups
from snoop.tracer.features import FALLBACKS_ENV
from tests.tracer.harness import TracerHarness

pytestmark = pytest.mark.bpf

WORKLOAD = os.path.join(os.path.dirname(__file__), "workload.py")
PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def late_leaf_rel():
    return f"/snoop-leaf-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", params=["native", "forced_fallbacks"])
def harness(request, parent, late_leaf_rel):
    # forced_fallbacks: the kernel side of kernels before 5.8 and 5.14 (perf buffers,
    # descendants listed by the tracer), built here too so that every run tests it.
    tracer = TracerHarness({
        "SNOOP_TARGET_MODE": "cgroup",
        "SNOOP_TARGET_CGROUP": f"{parent.rel},{late_leaf_rel}",
        FALLBACKS_ENV: "1" if request.param == "forced_fallbacks" else "0",
    })
    try:
        yield tracer
    finally:
        tracer.close()


@pytest.fixture
def child(parent):
    cgroup = parent.child(f"w-{uuid.uuid4().hex[:8]}")
    try:
        yield cgroup
    finally:
        cgroup.remove()


def prepare_tree(base: str) -> dict[str, bytes]:
    """Files the workload touches; returns name -> the absolute path expected."""
    os.makedirs(f"{base}/sub")
    for name in ("read.txt", "stat.txt", "access.txt", "rel.txt", "rel2.txt",
                 "sub/dirfd.txt", "sub/dirfd-stat.txt", "sub/after-chdir.txt"):
        with open(f"{base}/{name}", "w") as f:
            f.write("data\n")
    os.symlink("read.txt", f"{base}/link")
    with open(f"{base}/prog.sh", "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(f"{base}/prog.sh", 0o755)
    with open(os.path.join(base.encode(), b"caf\xe9-\xff.txt"), "wb") as f:
        f.write(b"data\n")
    # A 4000-byte absolute path, built from 200-byte components.
    long_dir = base
    while len(long_dir) < 4000 - 220:
        long_dir = os.path.join(long_dir, "d" * 200)
    os.makedirs(long_dir)
    long_file = os.path.join(long_dir, "f" * (4000 - len(long_dir) - 1))
    assert len(long_file) == 4000
    with open(long_file, "w") as f:
        f.write("data\n")
    with open(f"{base}/long-path.txt", "w") as f:
        f.write(long_file)
    b = base.encode()
    return {
        "read": b + b"/read.txt",
        "write": b + b"/written.txt",
        "stat": b + b"/stat.txt",
        "lstat": b + b"/link",
        "access": b + b"/access.txt",
        "exec": b + b"/prog.sh",
        "long": long_file.encode(),
        "non-utf8": b + b"/caf\xe9-\xff.txt",
        "relative": b + b"/rel.txt",
        "relative-dotdot": b + b"/rel2.txt",
        "dirfd": b + b"/sub/dirfd.txt",
        "dirfd-stat": b + b"/sub/dirfd-stat.txt",
        "after-chdir": b + b"/sub/after-chdir.txt",
    }


@pytest.fixture
def tree(tmp_path):
    base = str(tmp_path / "tree")
    os.makedirs(base)
    return base, prepare_tree(base)


def normalized(paths: set[bytes]) -> set[bytes]:
    return {os.path.normpath(p) for p in paths}


def test_workload_paths_all_arrive_resolved(harness, child, tree):
    base, expected = tree
    result = child.run([PYTHON, WORKLOAD, base])
    assert result.returncode == 0
    cid = child.id
    assert harness.wait_for(
        lambda c: set(expected.values()) <= normalized(c.paths(cid)), timeout=15
    ), f"missing: {sorted(set(expected.values()) - normalized(harness.collected.paths(cid)))}"
    events = harness.collected.for_cgroup(cid)
    kinds = {}
    for e in events:
        kinds.setdefault(os.path.normpath(e.path), set()).add(e.kind)
    assert AccessKind.READ in kinds[expected["read"]]
    assert AccessKind.WRITE in kinds[expected["write"]]
    assert AccessKind.STAT in kinds[expected["stat"]]
    assert AccessKind.ACCESS in kinds[expected["access"]]
    assert AccessKind.READLINK in kinds[expected["lstat"]]
    assert AccessKind.EXEC in kinds[expected["exec"]]
    assert all(e.resolved for e in events if os.path.normpath(e.path) in expected.values())
    # Each event names its own process: the script ran in a child of the workload.
    reader = next(e.tgid for e in events if os.path.normpath(e.path) == expected["read"])
    script = {e.tgid for e in events
              if e.path == expected["exec"] and e.kind == AccessKind.EXEC}
    assert script and reader not in script


def test_short_lived_shell_with_cd_reports_absolute_paths(harness, child):
    result = child.run(["sh", "-c", "cd /etc && cat passwd hostname >/dev/null"])
    assert result.returncode == 0
    cid = child.id
    wanted = {b"/etc/passwd", b"/etc/hostname", b"/etc"}
    assert harness.wait_for(lambda c: wanted <= c.paths(cid)), sorted(harness.collected.paths(cid))
    cat = shutil.which("cat").encode()
    assert harness.wait_for(lambda c: any(p.endswith(b"/cat") for p in c.paths(cid)))
    assert cat in harness.collected.paths(cid) or os.path.realpath(cat) in \
        harness.collected.paths(cid)


def test_find_walking_with_dirfds_reports_right_paths(harness, child, tmp_path):
    root = tmp_path / "walk"
    for sub in ("a/b/c", "a/d", "e"):
        (root / sub).mkdir(parents=True)
        (root / sub / "leaf.txt").write_text("x")
    expected = {str(root / sub / "leaf.txt").encode() for sub in ("a/b/c", "a/d", "e")}
    result = child.run(["find", str(root), "-name", "leaf.txt", "-newer", "/etc/hostname"],
                       stdout=subprocess.DEVNULL)
    assert result.returncode == 0
    cid = child.id
    assert harness.wait_for(lambda c: expected <= normalized(c.paths(cid))), \
        sorted(p for p in harness.collected.paths(cid) if b"walk" in p)
    walk_events = [e for e in harness.collected.for_cgroup(cid) if b"walk" in e.path]
    assert all(e.path.startswith(str(root).encode()) for e in walk_events), \
        sorted({e.path for e in walk_events})


def test_process_outside_the_cgroup_and_snoop_itself_are_not_traced(harness, child, tmp_path):
    marker = tmp_path / f"outside-{uuid.uuid4().hex}"
    marker.write_text("x")
    subprocess.run(["cat", str(marker)], check=True, stdout=subprocess.DEVNULL)
    inside = tmp_path / "inside.txt"
    inside.write_text("x")
    child.run(["cat", str(inside)], stdout=subprocess.DEVNULL)
    assert harness.wait_for(lambda c: str(inside).encode() in c.paths())
    harness.settle()
    assert str(marker).encode() not in harness.collected.paths()
    assert not [e for e in harness.collected.events if e.tgid == harness.proc.pid]


def test_a_million_opens_of_one_file_cost_a_few_events(harness, child, tmp_path):
    target = tmp_path / "hot.txt"
    target.write_text("x")
    script = ("import os\n"
              f"p = {str(target)!r}\n"
              "for _ in range(1_000_000):\n"
              "    os.close(os.open(p, os.O_RDONLY))\n")
    assert child.run([PYTHON, "-c", script]).returncode == 0
    cid = child.id
    assert harness.wait_for(lambda c: str(target).encode() in c.paths(cid))
    harness.settle()
    hits = [e for e in harness.collected.for_cgroup(cid) if e.path == str(target).encode()]
    assert 1 <= len(hits) <= 3, len(hits)


def test_child_cgroup_made_after_start_is_traced_from_its_first_syscall(harness, parent,
                                                                     tmp_path):
    late = parent.child(f"late-{uuid.uuid4().hex[:8]}")
    try:
        target = tmp_path / "late.txt"
        target.write_text("x")
        cat = os.path.realpath(shutil.which("cat")).encode()
        late.run([cat, str(target)], stdout=subprocess.DEVNULL)
        cid = late.id
        assert harness.wait_for(lambda c: str(target).encode() in c.paths(cid))
        events = harness.collected.for_cgroup(cid)
        # The very first syscalls in the new cgroup: the launcher's chdir, then execve;
        # between them only its scan of /proc/self/fd to close fds where the kernel has
        # no close_range (before 5.9).
        assert events[0].kind == AccessKind.CHDIR, events[:3]
        first_exec = next(i for i, e in enumerate(events) if e.kind == AccessKind.EXEC)
        assert events[first_exec].path == cat, events[:first_exec + 1]
        assert all(e.path == b"/proc/self/fd" for e in events[1:first_exec]), \
            events[:first_exec + 1]
    finally:
        late.remove()


def test_leaf_target_created_while_running_is_traced_within_two_seconds(harness, late_leaf_rel,
                                                                        tmp_path):
    from snoop.tracer import cgroups

    root = cgroups.discover_cgroup2_root()
    path = root + late_leaf_rel
    os.makedirs(path)
    from tests.tracer.harness import TestCgroup

    leaf = TestCgroup(path, late_leaf_rel)
    try:
        time.sleep(2.0)
        target = tmp_path / "leaf.txt"
        target.write_text("x")
        leaf.run(["cat", str(target)], stdout=subprocess.DEVNULL)
        assert harness.wait_for(lambda c: str(target).encode() in c.paths(leaf.id), timeout=5)
    finally:
        leaf.remove()


def test_stats_report_attached_syscalls_and_metrics(harness):
    assert harness.wait_for(lambda c: c.stats, timeout=5)
    stats = harness.latest_stats()
    for name in ("openat", "execve", "newfstatat", "statx", "faccessat", "readlinkat",
                 "chdir", "sched_process_exec"):
        assert name in stats.attached
    metrics = harness.metrics()
    assert 'snoop_attached_syscalls{syscall="openat"} 1.0' in metrics
    assert "snoop_tracer_startup_seconds" in metrics
    assert "process_resident_memory_bytes" in metrics


def test_calls_on_an_fd_with_no_path_are_no_read_failures(harness, child, tmp_path):
    """futimens() is utimensat(fd, NULL), fstat() an empty name: nothing was lost, so the
    counter that says paths were lost must not move."""
    target = tmp_path / "timed.txt"
    target.write_text("x")
    script = ("import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
              "os.utime(fd)\nos.stat(fd)\nos.close(fd)\n")
    before = harness.latest_stats()
    result = child.run([PYTHON, "-c", script, str(target)])
    assert result.returncode == 0
    assert harness.wait_for(lambda c: str(target).encode() in c.paths(child.id))
    harness.pump(1.5)  # the next stats message
    after = harness.latest_stats()
    assert after.read_failures == (before.read_failures if before else 0)


def test_the_long_running_tracer_maps_no_llvm(harness):
    """bcc's compiler ran in a child that is gone: none of it is in the tracer."""
    with open(f"/proc/{harness.proc.pid}/maps") as handle:
        mapped = handle.read()
    assert "LLVM" not in mapped and "libclang" not in mapped and "libbcc" not in mapped
    with open(f"/proc/{harness.proc.pid}/status") as handle:
        rss_kb = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
    assert rss_kb < 80_000, f"tracer RSS {rss_kb} kB"  # LLVM alone would be 100 MB


def test_a_second_tracer_on_the_same_run_directory_refuses_in_one_line(harness):
    env = {**os.environ, "SNOOP_RUN_DIR": harness.run_dir, "SNOOP_METRICS_ADDR": "127.0.0.1:0",
           "SNOOP_TARGET_MODE": "all-but-self"}
    root = cgroups.discover_cgroup2_root()

    def own_cgroups() -> set[str]:
        return {name for name in os.listdir(root) if name.startswith("snoop-tracer-")}

    before = own_cgroups()
    done = subprocess.run([sys.executable, "-m", "snoop.cli", "tracer"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "another tracer is running with the run directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert own_cgroups() == before, "a refused tracer must leave nothing behind"


def test_each_access_says_what_it_found_and_which_process_made_it(harness, child, tmp_path):
    """A failed probe is no file that was there: the errno and the process name come
    with every path, and a path first probed missing, then found, has both outcomes."""
    present = tmp_path / "present.txt"
    present.write_text("x")
    later = tmp_path / "later.txt"
    missing = tmp_path / "missing" / "nothing.txt"
    under_file = present / "below"
    script = (f"cat {present} >/dev/null; stat {missing} 2>/dev/null; "
              f"test -e {under_file}; cat {later} 2>/dev/null; touch {later}; "
              f"cat {later} >/dev/null; exec {tmp_path}/no-such-binary")
    assert child.run(["sh", "-c", script], stderr=subprocess.DEVNULL).returncode == 127
    cid = child.id
    binary = f"{tmp_path}/no-such-binary".encode()
    wanted = {str(p).encode() for p in (present, missing, under_file, later)} | {binary}
    assert harness.wait_for(lambda c: wanted <= c.paths(cid)), sorted(harness.collected.paths(cid))
    harness.settle()
    seen: dict[bytes, set[tuple[AccessKind, int, bytes]]] = {}
    for event in harness.collected.for_cgroup(cid):
        seen.setdefault(event.path, set()).add((event.kind, event.errno, event.comm))
    assert (AccessKind.READ, 0, b"cat") in seen[str(present).encode()]
    assert {(k, e) for k, e, _ in seen[str(missing).encode()]} == {(AccessKind.STAT, 2)}
    assert {c for _, _, c in seen[str(missing).encode()]} == {b"stat"}
    # `test` is a shell builtin: sh probed it.
    assert {(k, e, c) for k, e, c in seen[str(under_file).encode()]} == \
        {(AccessKind.STAT, 20, b"sh")}
    # Failed once (ENOENT), then found: the kernel's dedup keeps the two apart.
    assert {(AccessKind.READ, 2, b"cat"), (AccessKind.READ, 0, b"cat")} <= \
        seen[str(later).encode()]
    # The exec's name is sent at entry (result not known yet), then with its errno.
    assert (AccessKind.EXEC, 2, b"sh") in seen[binary]
    assert {e for _, e, _ in seen[binary]} <= {-1, 2}
    # An exec that ran: its name is found, by the new program's name.
    cat = [e for e in harness.collected.for_cgroup(cid)
           if e.kind is AccessKind.EXEC and e.path.endswith(b"/cat")]
    assert any(e.errno == 0 and e.comm == b"cat" for e in cat), cat

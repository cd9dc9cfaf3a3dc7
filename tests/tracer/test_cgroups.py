"""cgroup v2 discovery: parsing, naming rules, the index, and the real hierarchy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from snoop.common.config import TargetMode
from snoop.common.protocol import Workload
from snoop.tracer import cgroups
from snoop.tracer.cgroups import (
    AmbiguousContainerIdError,
    CgroupIndex,
    NoCgroup2Error,
    abspath,
    cgroup_id,
    container_id_from_path,
    find_cgroup2_root,
    find_container_cgroups,
    isolate_self,
    on_node,
    pod_cgroup_of,
    relative_to_root,
    remove_cgroup,
    self_cgroup,
    workload_for,
)

C1 = "0123456789abcdef" * 4
C2 = "fedcba9876543210" * 4
C3 = "0123456789ab" + "f" * 52  # shares a 12-digit prefix with C1
POD = "8dbc5577-d0e2-4706-8787-57d52c03ddf2"
POD_SYSTEMD = POD.replace("-", "_")

# ---------------------------------------------------------------- finding the root

HYBRID_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_ONLY = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
"""


def test_root_from_proc_mounts_hybrid() -> None:
    assert find_cgroup2_root(HYBRID_MOUNTS) == "/sys/fs/cgroup/unified"


def test_root_from_mountinfo_hybrid() -> None:
    assert find_cgroup2_root(HYBRID_MOUNTINFO) == "/sys/fs/cgroup/unified"


def test_root_pure_v2() -> None:
    assert find_cgroup2_root(
        "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
    ) == "/sys/fs/cgroup"


def test_root_prefers_whole_hierarchy_over_bind_mounted_subtree() -> None:
    mountinfo = (
        "50 40 0:38 /docker/abc /host/cg rw - cgroup2 cgroup2 rw\n"
        "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert find_cgroup2_root(mountinfo) == "/sys/fs/cgroup"


def test_root_with_escaped_space() -> None:
    assert find_cgroup2_root("none /mnt/my\\040cgroup cgroup2 rw 0 0\n") == "/mnt/my cgroup"


def test_v1_only_host_raises_a_clear_error() -> None:
    with pytest.raises(NoCgroup2Error, match="no cgroup2 file system is mounted"):
        find_cgroup2_root(V1_ONLY)
    with pytest.raises(NoCgroup2Error):
        find_cgroup2_root("")


def test_root_on_this_host() -> None:
    root = cgroups.discover_cgroup2_root()
    assert os.path.exists(os.path.join(root, "cgroup.procs"))
    with open("/proc/self/mounts") as f:
        assert find_cgroup2_root(f.read()) == root


def test_self_cgroup() -> None:
    assert self_cgroup("9:name=systemd:/\n1:cpu:/\n0::/\n") == "/"
    assert self_cgroup(f"0::/docker/{C1}\n") == f"/docker/{C1}"
    assert self_cgroup("0::/system.slice/snoop.service\n") == "/system.slice/snoop.service"
    with pytest.raises(NoCgroup2Error, match="0::"):
        self_cgroup("4:memory:/x\n3:cpuset:/\n")


def test_read_self_cgroup_on_this_host() -> None:
    assert cgroups.read_self_cgroup().startswith("/")


@pytest.mark.parametrize(
    ("root", "path", "expected"),
    [
        ("/sys/fs/cgroup", "/docker/x", "/docker/x"),
        ("/sys/fs/cgroup", "/sys/fs/cgroup/docker/x", "/docker/x"),
        ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified", "/"),
        ("/sys/fs/cgroup/unified/", "/sys/fs/cgroup/unified/a//b/", "/a/b"),
        ("/sys/fs/cgroup", "/sys/fs/cgroupx/a", "/sys/fs/cgroupx/a"),
        ("/sys/fs/cgroup", "/", "/"),
    ],
)
def test_relative_to_root(root: str, path: str, expected: str) -> None:
    assert relative_to_root(root, path) == expected


def test_abspath_and_normalize() -> None:
    assert abspath("/sys/fs/cgroup", "/") == "/sys/fs/cgroup"
    assert abspath("/sys/fs/cgroup/", "/a/b") == "/sys/fs/cgroup/a/b"
    with pytest.raises(ValueError, match=r"\.\."):
        cgroups.normalize("/a/../b")


# ---------------------------------------------------------------- container and pod names


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/docker/{C1}", C1),  # docker, cgroupfs
        (f"/system.slice/docker-{C1}.scope", C1),  # docker, systemd
        (f"/kubepods/burstable/pod{POD}/{C1}", C1),  # containerd/docker via kubelet cgroupfs
        (f"/kubepods/pod{POD}/{C1}", C1),  # guaranteed QoS
        (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/"
         f"cri-containerd-{C1}.scope", C1),
        (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_SYSTEMD}.slice/"
         f"crio-{C1}.scope", C1),
        (f"/kubepods/besteffort/pod{POD}/crio-{C1}", C1),  # CRI-O, cgroupfs
        (f"/machine.slice/libpod-{C1}.scope", C1),  # podman, systemd
        (f"/machine.slice/libpod-{C1}.scope/container", C1),  # podman's split cgroup
        (f"/libpod_parent/libpod-{C1}", C1),  # podman, cgroupfs
        (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{C1}.scope", C1),
        (f"/system.slice/nerdctl-{C1}.scope", C1),
        (f"/default/{C1}", C1),  # containerd namespace "default", cgroupfs
        (f"/docker/{C1}/docker/{C2}", C2),  # docker in docker: the innermost
        (f"/docker/{C1}/init.scope", C1),
        (f"/machine.slice/libpod-conmon-{C1}.scope", None),  # the monitor, not the container
        (f"/system.slice/crio-conmon-{C1}.scope", None),
        ("/system.slice/cron.service", None),
        ("/", None),
        ("/docker", None),
        (f"/docker/{C1[:63]}", None),  # bare names must be full 64-digit ids
        (f"/docker/{C1.upper()}", None),
    ],
)
def test_container_id_from_path(path: str, expected: str | None) -> None:
    assert container_id_from_path(path) == expected


HIERARCHY = [
    "/",
    "/docker",
    f"/docker/{C1}",
    f"/docker/{C1}/sub",
    f"/docker/{C2}",
    "/system.slice",
    f"/system.slice/docker-{C3}.scope",
    "/machine.slice",
    f"/machine.slice/libpod-{C2}.scope",
    f"/machine.slice/libpod-{C2}.scope/container",
    f"/machine.slice/libpod-conmon-{C2}.scope",
]


def test_find_container_cgroups() -> None:
    assert find_container_cgroups("/x", C1, paths=HIERARCHY) == [f"/docker/{C1}"]
    assert find_container_cgroups("/x", C1[:20], paths=HIERARCHY) == [f"/docker/{C1}"]
    # One container (C2) seen through two runtimes' directories; sub-cgroups are left out.
    assert find_container_cgroups("/x", C2[:12], paths=HIERARCHY) == [
        f"/docker/{C2}", f"/machine.slice/libpod-{C2}.scope"]
    assert find_container_cgroups("/x", "abcdefabcdef", paths=HIERARCHY) == []


def test_find_container_cgroups_ambiguous_prefix() -> None:
    with pytest.raises(AmbiguousContainerIdError, match="matches 2 containers"):
        find_container_cgroups("/x", C1[:12], paths=HIERARCHY)
    assert find_container_cgroups("/x", C1[:13], paths=HIERARCHY) == [f"/docker/{C1}"]


@pytest.mark.parametrize("bad", ["", "0123456789a", "0123456789AB", "xyz" * 5, C1 + "0"])
def test_find_container_cgroups_rejects_non_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="12 to 64 lowercase hex"):
        find_container_cgroups("/x", bad, paths=HIERARCHY)


def test_find_container_cgroups_walks_a_tree(tmp_path) -> None:
    for rel in HIERARCHY[1:]:
        (tmp_path / rel.lstrip("/")).mkdir(parents=True, exist_ok=True)
    assert find_container_cgroups(str(tmp_path), C3[:16]) == [f"/system.slice/docker-{C3}.scope"]


@pytest.mark.parametrize(
    ("self_path", "expected"),
    [
        (f"/kubepods/burstable/pod{POD}/{C1}", f"/kubepods/burstable/pod{POD}"),
        (f"/kubepods/pod{POD}/{C1}", f"/kubepods/pod{POD}"),
        (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/"
         f"cri-containerd-{C1}.scope",
         f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice"),
        (f"/kubepods.slice/kubepods-pod{POD_SYSTEMD}.slice/crio-{C1}.scope",
         f"/kubepods.slice/kubepods-pod{POD_SYSTEMD}.slice"),
        # Snoop moved into a sub-cgroup of its container: still the same pod.
        (f"/kubepods/burstable/pod{POD}/{C1}/snoop", f"/kubepods/burstable/pod{POD}"),
        # compose `cgroup_parent: myapp` (cgroupfs) / `myapp.slice` (systemd): the parent.
        (f"/myapp/{C1}", "/myapp"),
        (f"/myapp.slice/docker-{C1}.scope", "/myapp.slice"),
        (f"/machine.slice/machine-libpod_pod_{C2[:20]}.slice/libpod-{C1}.scope",
         f"/machine.slice/machine-libpod_pod_{C2[:20]}.slice"),  # a podman pod
        (f"/myapp/{C1}/snoop", "/myapp"),
        # The runtime's default parent groups unrelated containers: no pod.
        (f"/docker/{C1}", None),
        (f"/system.slice/docker-{C1}.scope", None),
        (f"/machine.slice/libpod-{C1}.scope", None),
        (f"/{C1}", None),
        ("/system.slice/snoop.service", None),  # not in a container at all
        ("/", None),
    ],
)
def test_pod_cgroup_of(self_path: str, expected: str | None) -> None:
    assert pod_cgroup_of(self_path) == expected


def test_workload_for() -> None:
    assert workload_for(f"/docker/{C1}/sub", TargetMode.ALL_BUT_SELF) == Workload(
        key=C1, cgroup_path=f"/docker/{C1}/sub", container_id=C1)
    assert workload_for("/system.slice/cron.service", TargetMode.ALL_BUT_SELF) == Workload(
        key="/system.slice/cron.service", cgroup_path="/system.slice/cron.service")
    assert workload_for("/", TargetMode.ALL_BUT_SELF).key == "/"
    assert workload_for("", TargetMode.ALL_BUT_SELF).key == "/"
    targets = ("/batch", "/batch/nightly")
    assert workload_for("/batch/nightly/job-7", TargetMode.CGROUP, targets).key == "/batch/nightly"
    assert workload_for("/batch/other", TargetMode.CGROUP, targets).key == "/batch"
    assert workload_for("/batchx", TargetMode.CGROUP, targets).key == "/batchx"
    assert workload_for(f"/batch/{C2}", TargetMode.CGROUP, targets).key == C2
    assert workload_for("/a/b", TargetMode.CGROUP, ("/",)).key == "/"
    # Targets as configured: absolute under the mount point works too, given the root.
    root = "/sys/fs/cgroup/unified"
    assert workload_for("/batch/x", TargetMode.CGROUP, (f"{root}/batch",), root).key == "/batch"
    # Outside cgroup mode the targets play no part.
    assert workload_for("/batch/x", TargetMode.POD, targets).key == "/batch/x"


def test_a_node_name_keeps_host_services_of_several_nodes_apart() -> None:
    cron = workload_for("/system.slice/cron.service", TargetMode.ALL_BUT_SELF)
    assert on_node(cron, "node-a").key == "node-a:/system.slice/cron.service"
    assert on_node(cron, "node-a").cgroup_path == "/system.slice/cron.service"
    assert on_node(cron, "node-a") != on_node(cron, "node-b")
    container = workload_for(f"/docker/{C1}", TargetMode.ALL_BUT_SELF)
    assert on_node(container, "node-a") == container  # a container id is unique already
    assert on_node(cron, "") == cron  # one node: keys as they always were


# ---------------------------------------------------------------- the index (fake tree)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeIds:
    """cgroup ids for a plain directory tree: a new id each time a directory is made."""

    def __init__(self, root) -> None:
        self.root = str(root)
        self.ids: dict[str, int] = {self.root: 1}
        self.next_id = 100
        self.calls = 0

    def make(self, rel: str) -> int:
        os.makedirs(abspath(self.root, rel))
        self.next_id += 1
        self.ids[abspath(self.root, rel)] = self.next_id
        return self.next_id

    def remove(self, rel: str) -> None:
        path = abspath(self.root, rel)
        os.rmdir(path)
        del self.ids[path]

    def __call__(self, path: str) -> int:
        self.calls += 1
        if not os.path.isdir(path) or path not in self.ids:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.ids[path]


@pytest.fixture
def fake(tmp_path) -> FakeIds:
    return FakeIds(tmp_path)


def test_index_walks_and_looks_up(fake: FakeIds) -> None:
    a = fake.make("/docker")
    b = fake.make(f"/docker/{C1}")
    index = CgroupIndex(fake.root, id_of_dir=fake, by_handle=False, clock=FakeClock())
    assert index.refresh()
    assert index.paths() == {"/": 1, "/docker": a, f"/docker/{C1}": b}
    assert index.lookup(b) == f"/docker/{C1}"
    assert index.lookup(1) == "/"
    assert len(index) == 3


def test_index_rescans_on_miss_at_most_once_per_interval(fake: FakeIds) -> None:
    clock = FakeClock()
    index = CgroupIndex(fake.root, id_of_dir=fake, by_handle=False, clock=clock,
                        rescan_interval=1.0)
    index.refresh()
    new = fake.make("/late")
    clock.now += 0.5
    assert index.lookup(new) is None  # too soon after the last walk
    assert index.lookup(999) is None
    assert index.walks == 1
    clock.now += 0.6
    assert index.lookup(new) == "/late"
    assert index.walks == 2
    for _ in range(100):  # a storm of unknown ids costs no walks within the interval
        assert index.lookup(12345) is None
    assert index.walks == 2


def test_index_remembers_removed_cgroups_for_late_events(fake: FakeIds) -> None:
    clock = FakeClock()
    index = CgroupIndex(fake.root, id_of_dir=fake, by_handle=False, clock=clock,
                        keep_removed=2)
    gone = [fake.make(f"/c{i}") for i in range(3)]
    index.refresh()
    for i in range(3):
        fake.remove(f"/c{i}")
    clock.now += 5
    index.refresh()
    assert index.paths() == {"/": 1}
    assert index.lookup(gone[2]) == "/c2"
    assert index.lookup(gone[1]) == "/c1"
    assert index.lookup(gone[0]) is None  # only the last `keep_removed` are kept


def test_index_id_of_sees_a_recreated_cgroup_without_a_walk(fake: FakeIds) -> None:
    index = CgroupIndex(fake.root, id_of_dir=fake, by_handle=False, clock=FakeClock())
    old = fake.make(f"/docker/{C1}")
    index.refresh()
    fake.remove(f"/docker/{C1}")
    assert index.id_of(f"/docker/{C1}") is None
    new = fake.make(f"/docker/{C1}")
    assert index.id_of(f"/docker/{C1}") == new != old
    assert index.lookup(new) == f"/docker/{C1}"
    assert index.lookup(old) == f"/docker/{C1}"  # remembered for late events
    assert index.walks == 1


def test_index_is_bounded(fake: FakeIds) -> None:
    for i in range(20):
        fake.make(f"/c{i:02d}")
    index = CgroupIndex(fake.root, id_of_dir=fake, by_handle=False, clock=FakeClock(),
                        max_cgroups=5)
    index.refresh()
    assert len(index) == 5 and index.truncated


def test_remove_cgroup_of_missing_dir(tmp_path) -> None:
    assert remove_cgroup(str(tmp_path / "nope"))


# ---------------------------------------------------------------- the real hierarchy

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make cgroups")


@pytest.fixture
def cgroup_root() -> str:
    root = cgroups.discover_cgroup2_root()
    if not os.access(root, os.W_OK):
        pytest.skip(f"cgroup v2 root {root} is not writable")
    return root


@pytest.fixture
def test_cgroup(cgroup_root):
    """A fresh cgroup under the real root, and a way to start processes in it; at
    teardown the processes are killed and the cgroup removed, whatever happened."""
    path = os.path.join(cgroup_root, f"snoop-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    started: list[subprocess.Popen] = []

    def spawn(argv: list[str], cgroup_dir: str = path, **kwargs) -> subprocess.Popen:
        def enter() -> None:
            with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        process = subprocess.Popen(argv, preexec_fn=enter, **kwargs)
        started.append(process)
        return process

    try:
        yield path, spawn
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        assert remove_cgroup(path, timeout=5), f"could not remove {path}"


@needs_root
def test_cgroup_id_of_missing_cgroup(cgroup_root: str) -> None:
    with pytest.raises(FileNotFoundError):
        cgroup_id(os.path.join(cgroup_root, "snoop-no-such-cgroup"))


@needs_root
def test_index_on_the_real_hierarchy(cgroup_root: str, test_cgroup) -> None:
    path, _ = test_cgroup
    os.mkdir(os.path.join(path, "child"))
    rel = relative_to_root(cgroup_root, path) + "/child"
    index = CgroupIndex(cgroup_root)
    expected = cgroup_id(os.path.join(path, "child"))
    assert index.lookup(expected) == rel
    assert index.paths()[rel] == expected
    assert index.lookup(cgroup_id(cgroup_root)) == "/"


@needs_root
def test_index_finds_a_new_cgroup_by_handle_without_a_walk(cgroup_root: str,
                                                           test_cgroup) -> None:
    path, _ = test_cgroup
    index = CgroupIndex(cgroup_root)
    index.refresh()
    new = os.path.join(path, "new")
    os.mkdir(new)
    new_id = cgroup_id(new)
    assert index.lookup(new_id) == relative_to_root(cgroup_root, new)
    assert index.walks == 1
    os.rmdir(new)
    assert index.id_of(relative_to_root(cgroup_root, new)) is None
    assert index.lookup(new_id) == relative_to_root(cgroup_root, new)  # late events
    assert index.walks == 1
    # An id that never existed: one rate-limited walk, then None.
    assert index.lookup(new_id + 10**9) is None


@needs_root
@pytest.mark.bpf
def test_cgroup_id_matches_what_bpf_reports(cgroup_root: str, test_cgroup) -> None:
    bcc = pytest.importorskip("bcc")
    path, spawn = test_cgroup
    child = os.path.join(path, "inner")
    os.mkdir(child)
    program = """
    BPF_HASH(ids, u32, u64);
    TRACEPOINT_PROBE(syscalls, sys_enter_clock_nanosleep) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        u64 id = bpf_get_current_cgroup_id();
        ids.update(&tgid, &id);
        return 0;
    }
    TRACEPOINT_PROBE(syscalls, sys_enter_nanosleep) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        u64 id = bpf_get_current_cgroup_id();
        ids.update(&tgid, &id);
        return 0;
    }
    """
    bpf = bcc.BPF(text=program.encode(), cflags=["-Wno-ignored-attributes"])
    try:
        process = spawn(["sleep", "0.2"], cgroup_dir=child)
        process.wait(timeout=10)
        seen = {key.value: value.value for key, value in bpf[b"ids"].items()}
    finally:
        bpf.cleanup()
    assert process.pid in seen, "the BPF program saw no sleep from the test process"
    assert seen[process.pid] == cgroup_id(child)
    assert seen[process.pid] != cgroup_id(cgroup_root)
    assert CgroupIndex(cgroup_root).lookup(seen[process.pid]) == (
        relative_to_root(cgroup_root, child))


_ISOLATE_CHILD = textwrap.dedent("""
    import sys, time
    from snoop.tracer.cgroups import isolate_self, read_self_cgroup
    rel = isolate_self(sys.argv[1], sys.argv[2])
    print(rel, read_self_cgroup(), flush=True)
    sys.stdin.readline()
""")


@needs_root
def test_isolate_self_and_remove_cgroup(cgroup_root: str, test_cgroup) -> None:
    path, _ = test_cgroup
    # isolate_self makes `<root>/<name>`; a test's cgroup stands in for the root here.
    process = subprocess.Popen(
        [sys.executable, "-c", _ISOLATE_CHILD, path, "snoop-isolated"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    isolated = os.path.join(path, "snoop-isolated")
    try:
        line = process.stdout.readline().split()
        assert line, process.stderr.read()
        rel, seen = line
        assert rel == "/snoop-isolated"
        assert seen == relative_to_root(cgroup_root, isolated)
        with open(os.path.join(isolated, "cgroup.procs")) as f:
            assert f.read().split() == [str(process.pid)]
        # Still inside: removal waits, then gives up.
        started = time.monotonic()
        assert not remove_cgroup(isolated, timeout=0.2)
        assert time.monotonic() - started >= 0.2
        process.stdin.close()  # lets it exit; removal waits for that
        assert remove_cgroup(isolated, timeout=5)
        assert not os.path.exists(isolated)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            stream.close()
        remove_cgroup(isolated, timeout=5)


def test_isolate_self_rejects_bad_names(tmp_path) -> None:
    for name in ("", "a/b", "..", "."):
        with pytest.raises(ValueError, match="one path component"):
            isolate_self(str(tmp_path), name)

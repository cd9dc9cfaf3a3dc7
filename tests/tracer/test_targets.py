"""Target resolution for the four modes, the watcher's changes, and a real restart."""

from __future__ import annotations

import logging
import os
import time
import uuid

import pytest

from snoop.common.config import Config, TargetMode
from snoop.tracer import cgroups
from snoop.tracer.cgroups import CgroupIndex, abspath, cgroup_id, relative_to_root, remove_cgroup
from snoop.tracer.targets import (
    TargetChanges,
    TargetError,
    TargetSet,
    TargetWatcher,
    resolve_targets,
)

C1 = "0123456789abcdef" * 4
C2 = "fedcba9876543210" * 4
SNOOP = "5" * 64
POD = "8dbc5577-d0e2-4706-8787-57d52c03ddf2"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCgroups:
    """A directory tree standing in for the hierarchy: a new id whenever a cgroup is made."""

    def __init__(self, root) -> None:
        self.root = str(root)
        self.ids: dict[str, int] = {self.root: 1}
        self.next_id = 100

    def make(self, rel: str) -> int:
        parts = rel.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            path = abspath(self.root, "/" + "/".join(parts[:depth]))
            if path not in self.ids:
                os.makedirs(path)
                self.next_id += 1
                self.ids[path] = self.next_id
        return self.ids[abspath(self.root, rel)]

    def remove(self, rel: str) -> None:
        path = abspath(self.root, rel)
        os.rmdir(path)
        del self.ids[path]

    def id(self, rel: str) -> int:
        return self.ids[abspath(self.root, rel)]

    def __call__(self, path: str) -> int:
        if not os.path.isdir(path) or path not in self.ids:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.ids[path]


@pytest.fixture
def fake(tmp_path) -> FakeCgroups:
    return FakeCgroups(tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def index(fake: FakeCgroups, clock: FakeClock) -> CgroupIndex:
    return CgroupIndex(fake.root, id_of_dir=fake, by_handle=False, clock=clock)


def config(mode: TargetMode, **values) -> Config:
    return Config(target_mode=mode, **values)


# ---------------------------------------------------------------- the four modes


def test_all_but_self(fake: FakeCgroups, index: CgroupIndex) -> None:
    me = fake.make("/system.slice/snoop.service")
    fake.make(f"/docker/{C1}")
    targets = resolve_targets(config(TargetMode.ALL_BUT_SELF), fake.root, index,
                              "/system.slice/snoop.service")
    assert targets == TargetSet(include=frozenset({1}), exclude=frozenset({me}))
    assert targets.marks() == {1: True, me: False}
    assert targets.paths == {1: "/"}


def test_all_but_self_in_the_root_cgroup_is_refused(fake: FakeCgroups,
                                                    index: CgroupIndex) -> None:
    with pytest.raises(TargetError, match="isolate_self"):
        resolve_targets(config(TargetMode.ALL_BUT_SELF), fake.root, index, "/")


def test_all_but_self_after_isolating(fake: FakeCgroups, index: CgroupIndex) -> None:
    me = fake.make("/snoop-1234")
    targets = resolve_targets(config(TargetMode.ALL_BUT_SELF), fake.root, index, "/snoop-1234")
    assert targets.marks() == {1: True, me: False}


def test_cgroup_mode_relative_and_absolute_paths(fake: FakeCgroups, index: CgroupIndex) -> None:
    batch = fake.make("/batch")
    web = fake.make("/services/web")
    fake.make("/snoop")
    cfg = config(TargetMode.CGROUP,
                 target_cgroup=("/batch", f"{fake.root}/services/web", "/not/there"))
    targets = resolve_targets(cfg, fake.root, index, "/snoop")
    assert targets.include == {batch, web}
    assert targets.exclude == {fake.id("/snoop")}
    assert targets.missing == ("/not/there",)
    assert "no cgroup /not/there" in targets.reasons["/not/there"]
    assert targets.paths == {batch: "/batch", web: "/services/web"}


def test_cgroup_mode_target_containing_snoop(fake: FakeCgroups, index: CgroupIndex) -> None:
    app = fake.make("/app")
    me = fake.make("/app/snoop")
    targets = resolve_targets(config(TargetMode.CGROUP, target_cgroup=("/app",)), fake.root,
                              index, "/app/snoop")
    assert targets.marks() == {app: True, me: False}


def test_cgroup_mode_target_is_snoops_own_cgroup(fake: FakeCgroups, index: CgroupIndex) -> None:
    me = fake.make("/app")
    targets = resolve_targets(config(TargetMode.CGROUP, target_cgroup=("/app",)), fake.root,
                              index, "/app")
    assert targets.marks() == {me: False}  # Snoop never traces itself


def test_container_mode(fake: FakeCgroups, index: CgroupIndex) -> None:
    c1 = fake.make(f"/docker/{C1}")
    fake.make(f"/docker/{C1}/sub")
    c2 = fake.make(f"/system.slice/docker-{C2}.scope")
    cfg = config(TargetMode.CONTAINER, target_container_id=(C1[:12], C2, "abcabcabcabc"))
    targets = resolve_targets(cfg, fake.root, index, "/")  # Snoop in the root: fine here
    assert targets.include == {c1, c2}
    assert targets.exclude == frozenset()
    assert targets.missing == ("abcabcabcabc",)
    assert targets.paths == {c1: f"/docker/{C1}", c2: f"/system.slice/docker-{C2}.scope"}


def test_container_mode_ambiguous_prefix_is_missing(fake: FakeCgroups,
                                                    index: CgroupIndex) -> None:
    fake.make(f"/docker/{C1}")
    fake.make(f"/docker/{C1[:12]}{'e' * 52}")
    targets = resolve_targets(config(TargetMode.CONTAINER, target_container_id=(C1[:12],)),
                              fake.root, index, "/")
    assert targets.include == frozenset()
    assert targets.missing == (C1[:12],)
    assert "matches 2 containers" in targets.reasons[C1[:12]]


def test_container_mode_excludes_snoop_inside_the_container(fake: FakeCgroups,
                                                             index: CgroupIndex) -> None:
    c1 = fake.make(f"/docker/{C1}")
    me = fake.make(f"/docker/{C1}/snoop")
    targets = resolve_targets(config(TargetMode.CONTAINER, target_container_id=(C1,)),
                              fake.root, index, f"/docker/{C1}/snoop")
    assert targets.marks() == {c1: True, me: False}


def test_pod_mode_kubernetes(fake: FakeCgroups, index: CgroupIndex) -> None:
    pod = f"/kubepods/burstable/pod{POD}"
    pod_id = fake.make(pod)
    fake.make(f"{pod}/{C1}")
    fake.make(f"{pod}/{C2}")
    me = fake.make(f"{pod}/{SNOOP}")
    targets = resolve_targets(config(TargetMode.POD), fake.root, index, f"{pod}/{SNOOP}")
    assert targets.marks() == {pod_id: True, me: False}
    assert targets.paths == {pod_id: pod}


@pytest.mark.parametrize("pod", [
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice",
    f"/kubepods/besteffort/pod{POD}",
])
def test_pod_mode_in_a_private_cgroup_namespace_finds_the_pod_by_its_uid(
        fake: FakeCgroups, index: CgroupIndex, pod: str) -> None:
    """containerd and CRI-O on cgroup v2 show a sidecar its cgroup as `/`: the pod is
    found by the uid the downward API gives, and the sidecar by its own (host) pid."""
    pod_id = fake.make(pod)
    fake.make(f"{pod}/cri-containerd-{C1}.scope")
    me = fake.make(f"{pod}/cri-containerd-{SNOOP}.scope")
    with open(os.path.join(fake.root, pod.lstrip("/"), f"cri-containerd-{SNOOP}.scope",
                           "cgroup.procs"), "w") as handle:
        handle.write("41\n4242\n")
    fake.make(f"/kubepods/besteffort/pod{'0' * 8}-1111-2222-3333-444444444444")  # another pod
    targets = resolve_targets(config(TargetMode.POD, pod_uid=POD), fake.root, index, "/",
                              pid=4242)
    assert targets.marks() == {pod_id: True, me: False}
    without = resolve_targets(config(TargetMode.POD), fake.root, index, "/", pid=4242)
    assert without.missing == ("pod",)
    unknown = resolve_targets(config(TargetMode.POD, pod_uid="0" * 8 + "-9999-9999-9999-"
                                     + "9" * 12), fake.root, index, "/", pid=4242)
    assert unknown.missing == ("pod",) and "no cgroup of pod uid" in unknown.reasons["pod"]


def test_pod_mode_compose_cgroup_parent(fake: FakeCgroups, index: CgroupIndex) -> None:
    parent = fake.make("/myapp")
    me = fake.make(f"/myapp/{SNOOP}")
    targets = resolve_targets(config(TargetMode.POD), fake.root, index, f"/myapp/{SNOOP}")
    assert targets.marks() == {parent: True, me: False}


def test_pod_mode_without_a_pod(fake: FakeCgroups, index: CgroupIndex) -> None:
    me = fake.make(f"/docker/{SNOOP}")
    targets = resolve_targets(config(TargetMode.POD), fake.root, index, f"/docker/{SNOOP}")
    assert targets.include == frozenset()
    assert targets.exclude == {me}
    assert targets.missing == ("pod",)
    assert "cgroup_parent" in targets.reasons["pod"]


def test_snoops_own_cgroup_not_found(fake: FakeCgroups, index: CgroupIndex) -> None:
    targets = resolve_targets(config(TargetMode.ALL_BUT_SELF), fake.root, index, "/elsewhere")
    assert targets.missing == ("self",)
    assert "private cgroup namespace" in targets.reasons["self"]


# ---------------------------------------------------------------- the watcher


def test_watcher_first_poll_adds_everything(fake: FakeCgroups, index: CgroupIndex) -> None:
    c1 = fake.make(f"/docker/{C1}")
    me = fake.make(f"/docker/{C1}/snoop")
    watcher = TargetWatcher(config(TargetMode.CONTAINER, target_container_id=(C1,)), fake.root,
                            index, f"/docker/{C1}/snoop")
    added, removed = watcher.poll()
    assert added == {c1: True, me: False} and removed == frozenset()
    assert not watcher.poll()  # nothing changed
    assert watcher.current.include == {c1}


def test_watcher_follows_a_restarted_container(fake: FakeCgroups, index: CgroupIndex,
                                               clock: FakeClock) -> None:
    old = fake.make(f"/docker/{C1}")
    watcher = TargetWatcher(config(TargetMode.CONTAINER, target_container_id=(C1,)), fake.root,
                            index, "/")
    watcher.poll()
    walks = index.walks
    fake.remove(f"/docker/{C1}")
    new = fake.make(f"/docker/{C1}")  # restarted in place: same path, new id
    clock.now += 1
    assert watcher.poll() == TargetChanges(added={new: True}, removed=frozenset({old}))
    assert index.walks == walks  # found by its known path, no walk
    for _ in range(10):  # steady state: no walks at all
        clock.now += 1
        assert not watcher.poll()
    assert index.walks == walks


def test_watcher_finds_a_container_that_appears_later(fake: FakeCgroups, index: CgroupIndex,
                                                      clock: FakeClock) -> None:
    watcher = TargetWatcher(config(TargetMode.CONTAINER, target_container_id=(C1,)), fake.root,
                            index, "/")
    assert watcher.poll() == TargetChanges(added={}, removed=frozenset())
    assert watcher.current.missing == (C1,)
    c1 = fake.make(f"/system.slice/docker-{C1}.scope")
    clock.now += 1
    assert watcher.poll().added == {c1: True}
    assert watcher.current.missing == ()


def test_watcher_removes_a_vanished_target(fake: FakeCgroups, index: CgroupIndex,
                                    clock: FakeClock) -> None:
    app = fake.make("/app")
    fake.make("/app/inner")
    cfg = config(TargetMode.CGROUP, target_cgroup=("/app/inner",))
    watcher = TargetWatcher(cfg, fake.root, index, "/app")
    assert watcher.poll().added == {fake.id("/app/inner"): True, app: False}
    inner = fake.id("/app/inner")
    fake.remove("/app/inner")
    clock.now += 1
    assert watcher.poll() == TargetChanges(added={}, removed=frozenset({inner}))


def test_watcher_logs_missing_targets_once_per_change(fake: FakeCgroups, index: CgroupIndex,
                                                      clock: FakeClock, caplog) -> None:
    caplog.set_level(logging.INFO, logger="snoop.tracer.targets")
    watcher = TargetWatcher(config(TargetMode.CONTAINER, target_container_id=(C1, C2)),
                            fake.root, index, "/")
    for _ in range(5):
        clock.now += 1
        watcher.poll()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].missing == f"{C1},{C2}"
    assert f"no cgroup of container {C1}" in warnings[0].getMessage()
    fake.make(f"/docker/{C1}")
    for _ in range(5):
        clock.now += 1
        watcher.poll()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and warnings[1].missing == C2
    fake.make(f"/docker/{C2}")
    for _ in range(5):
        clock.now += 1
        watcher.poll()
    found = [r for r in caplog.records if r.getMessage() == "all targets found"]
    assert len(found) == 1
    changed = [r for r in caplog.records if r.getMessage() == "target cgroups changed"]
    assert len(changed) == 2  # C1 appeared, C2 appeared


# ---------------------------------------------------------------- the real hierarchy


@pytest.fixture
def real_tree():
    """A fresh sub-tree of the real cgroup v2 hierarchy, removed at teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make cgroups")
    root = cgroups.discover_cgroup2_root()
    top = os.path.join(root, f"snoop-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(top)
    try:
        yield root, top
    finally:
        assert remove_cgroup(top, timeout=5), f"could not remove {top}"


def test_real_container_restart_is_picked_up_within_two_seconds(real_tree) -> None:
    root, top = real_tree
    container = os.path.join(top, "docker", C1)
    os.makedirs(container)
    me = os.path.join(top, "snoop")
    os.mkdir(me)
    index = CgroupIndex(root)
    cfg = config(TargetMode.CONTAINER, target_container_id=(C1[:12],))
    watcher = TargetWatcher(cfg, root, index, relative_to_root(root, me))
    first = cgroup_id(container)
    assert watcher.poll().added == {first: True, cgroup_id(me): False}

    os.rmdir(container)
    os.mkdir(container)  # the runtime re-creates the cgroup for the restarted container
    second = cgroup_id(container)
    assert second != first
    started = time.monotonic()
    while True:  # the tracer polls about once a second
        changes = watcher.poll()
        if changes:
            break
        assert time.monotonic() - started < 2, "restart not picked up within 2 s"
        time.sleep(1)
    assert changes == TargetChanges(added={second: True}, removed=frozenset({first}))
    assert index.lookup(second) == relative_to_root(root, container)

    os.rmdir(container)  # stopped for good
    assert watcher.poll() == TargetChanges(added={}, removed=frozenset({second}))
    assert watcher.current.missing == (C1[:12],)

"""The newcomer gate: a launcher's work before its exec is held, and dropped when it
happened in another root."""

from snoop.common.protocol import AccessKind, Event
from snoop.tracer import records
from snoop.tracer.newcomers import NewcomerGate
from snoop.tracer.syscalls import ALL_NAMES


def record(tgid: int, kind: int, ret: int = 0, syscall: str = "openat") -> records.Record:
    return records.Record(cgroup_id=1, pid=tgid, tgid=tgid, ret=ret, dirfd=-100, kind=kind,
                          flags=0, syscall=ALL_NAMES.index(syscall), path=b"/x")


def event(tgid: int, path: bytes, kind: AccessKind = AccessKind.READ) -> Event:
    return Event(1, tgid, tgid, kind, path)


def feed(gate: NewcomerGate, tgid: int, kind: AccessKind, path: bytes, now: float = 0.0,
         syscall: str = "openat", ret: int = 0) -> list[Event]:
    return gate.passes(record(tgid, int(kind), ret, syscall), event(tgid, path, kind), now)


def test_processes_running_at_start_and_traced_forks_pass_straight_through():
    gate = NewcomerGate(preexisting={10})
    assert feed(gate, 10, AccessKind.READ, b"/a") == [event(10, b"/a")]
    assert gate.passes(record(10, records.KIND_FORK, ret=11), None, 0.0) == []
    assert feed(gate, 11, AccessKind.READ, b"/b") == [event(11, b"/b")]


def test_a_newcomer_is_held_until_its_exec_then_released_in_order():
    gate = NewcomerGate(preexisting=set())
    assert feed(gate, 20, AccessKind.CHDIR, b"/app") == []
    released = feed(gate, 20, AccessKind.EXEC, b"/app/server")
    assert [e.path for e in released] == [b"/app", b"/app/server"]
    assert feed(gate, 20, AccessKind.READ, b"/app/conf") == [event(20, b"/app/conf")]


def test_events_before_a_root_switch_are_dropped():
    gate = NewcomerGate(preexisting=set())
    feed(gate, 30, AccessKind.READ, b"/var/lib/docker/overlay2/x/merged/dev/null")
    assert feed(gate, 30, AccessKind.STAT, b"/var/lib/docker/overlay2/x/merged",
                syscall="pivot_root") == []
    feed(gate, 30, AccessKind.CHDIR, b"/app", syscall="chdir")
    released = feed(gate, 30, AccessKind.EXEC, b"/app/server", syscall="execve")
    assert [e.path for e in released] == [b"/app", b"/app/server"]
    assert gate.dropped == 2


def test_a_failed_root_switch_drops_nothing():
    gate = NewcomerGate(preexisting=set())
    feed(gate, 31, AccessKind.READ, b"/etc/hosts")
    feed(gate, 31, AccessKind.STAT, b"/nowhere", syscall="chroot", ret=-2)
    released = feed(gate, 31, AccessKind.EXEC, b"/bin/sh", syscall="execve")
    assert [e.path for e in released] == [b"/etc/hosts", b"/nowhere", b"/bin/sh"]


def test_a_newcomer_that_never_execs_is_released_after_a_while_or_at_exit():
    gate = NewcomerGate(preexisting=set(), hold_for=2.0)
    feed(gate, 40, AccessKind.READ, b"/a", now=0.0)
    feed(gate, 41, AccessKind.READ, b"/b", now=1.5)
    assert [e.path for e in gate.expired(2.5)] == [b"/a"]
    assert gate.passes(record(41, records.KIND_EXIT), None, 2.6) == [event(41, b"/b")]
    assert feed(gate, 40, AccessKind.READ, b"/c", now=3.0) == [event(40, b"/c")]


def test_held_events_are_bounded():
    gate = NewcomerGate(preexisting=set(), max_held=3)
    assert feed(gate, 50, AccessKind.READ, b"/1") == []
    assert feed(gate, 50, AccessKind.READ, b"/2") == []
    assert len(feed(gate, 50, AccessKind.READ, b"/3")) == 3


def test_children_forked_by_a_newcomer_are_newcomers_too():
    gate = NewcomerGate(preexisting=set())
    feed(gate, 60, AccessKind.READ, b"/host/a")
    gate.passes(record(60, records.KIND_FORK, ret=61), None, 0.0)
    assert feed(gate, 61, AccessKind.READ, b"/host/b") == []
    feed(gate, 61, AccessKind.STAT, b"/host/rootfs", syscall="pivot_root")
    assert [e.path for e in feed(gate, 61, AccessKind.EXEC, b"/app", syscall="execve")] == \
        [b"/app"]

"""Holds back what a process does between entering a target cgroup and its exec.

A process that joins a target from outside (its fork was not traced), and any child it
forks before it execs, is usually a launcher: a container runtime's `runc init`, which
works in the host's view of the filesystem (overlay mounts, `/var/lib/docker/...`) until
it switches root and execs the workload; or `snoop record`'s child, which execs the
command. Its events are held until it execs. If it switched root first (pivot_root,
chroot), the events before the switch named paths in another view and are dropped;
otherwise they are released with the exec. A process that never execs is released after
`hold_for` seconds or when it exits, so nothing is lost by waiting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from snoop.common.protocol import AccessKind, Event
from snoop.tracer import records
from snoop.tracer.syscalls import ALL_NAMES

_ROOT_SWITCHES = frozenset({ALL_NAMES.index("pivot_root"), ALL_NAMES.index("chroot")})
_EXEC = int(AccessKind.EXEC)


@dataclass
class _Held:
    since: float
    events: list[Event] = field(default_factory=list)


def running_processes(proc: str = "/proc") -> set[int]:
    return {int(name) for name in os.listdir(proc) if name.isdigit()}


class NewcomerGate:
    def __init__(self, preexisting: set[int], hold_for: float = 2.0,
                 max_held: int = 4096) -> None:
        self._settled = set(preexisting)  # processes whose events pass straight through
        self._held: dict[int, _Held] = {}
        self.hold_for = hold_for
        self.max_held = max_held
        self.dropped = 0  # events dropped as from before a root switch

    def passes_straight(self, record: records.Record) -> bool:
        """True when the record's event is all `passes` would return (the common case)."""
        tgid = record.tgid
        return tgid in self._settled and tgid not in self._held and \
            record.kind < records.KIND_FORK

    def passes(self, record: records.Record, event: Event | None, now: float) -> list[Event]:
        """The events to send now for this record (held ones included, in order)."""
        tgid = record.tgid
        if record.kind == records.KIND_FORK:
            # A child takes its parent's standing: runc init forks its final stage, which
            # does the mounts and pivot_root, before anything execs.
            if tgid in self._settled:
                self._settled.add(record.ret)
            else:
                self._held.setdefault(tgid, _Held(now))
                self._held[record.ret] = _Held(now)
            return []
        held = self._held.get(tgid)
        if held is None:
            if tgid in self._settled:
                if record.kind == records.KIND_EXIT:
                    self._settled.discard(tgid)
                return [event] if event is not None else []
            held = self._held[tgid] = _Held(now)
        if record.kind == records.KIND_EXIT:
            return self._release(tgid, forget=True)
        if record.ret == 0 and record.syscall in _ROOT_SWITCHES:
            self.dropped += len(held.events) + (event is not None)
            held.events.clear()
            return []
        if event is not None:
            held.events.append(event)
            if event.kind == _EXEC or len(held.events) >= self.max_held:
                return self._release(tgid)
        return []

    def expired(self, now: float) -> list[Event]:
        """Release processes held longer than `hold_for` (they may never exec)."""
        released: list[Event] = []
        for tgid in [t for t, h in self._held.items() if now - h.since >= self.hold_for]:
            released.extend(self._release(tgid))
        return released

    def release_all(self) -> list[Event]:
        released: list[Event] = []
        for tgid in list(self._held):
            released.extend(self._release(tgid))
        return released

    def _release(self, tgid: int, forget: bool = False) -> list[Event]:
        held = self._held.pop(tgid)
        if not forget:
            self._settled.add(tgid)
        return held.events

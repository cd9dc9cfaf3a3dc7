"""Per-workload deduplication in bounded memory.

For each workload key we keep a dict from the normalized path (bytes) to one packed int:
`facts << 32 | last_forwarded_second`, where `facts` is a bit mask of what is known of
the path (see `facts()`: access kinds, outcomes, process names by their index in the
workload's name table). A bytes key plus a small int is about 180 bytes per path with
the dict's own slot, so 100K paths stay well under 30 MB (see
`bench/processor_memory.py`). We keep no first-seen time: the reporter folds sightings
with min/max, so the processor only needs to know what it already forwarded.

A sighting is forwarded when the path is new to the workload, when it brings a new
fact (an access kind, an outcome, a process name), when it comes from a re-sent batch
(`force`: the reporter may have lost it), or when the path was last forwarded
`refresh_interval` seconds ago or more (so last_seen moves at most once per report
interval). Past `max_unique_files` paths for a workload,
new paths are still forwarded (the report must stay complete) but not remembered, and
each one counts as a cap hit.
"""

from __future__ import annotations

from dataclasses import dataclass

from snoop.common.outcomes import OUTCOME_BITS, outcome_bit

_SECONDS = (1 << 32) - 1
KINDS_MASK = (1 << 32) - 1
OUTCOMES_AT = 32
_COMMS_AT = OUTCOMES_AT + OUTCOME_BITS
COMMS_PER_WORKLOAD = 64  # process names a workload's table tracks; more go untracked


def facts(kind: int, errno: int, comm_index: int) -> int:
    """The fact mask of one sighting: its access kind, its outcome, its process name."""
    mask = (1 << kind) | (outcome_bit(errno) << OUTCOMES_AT)
    if comm_index >= 0:
        mask |= 1 << (_COMMS_AT + comm_index)
    return mask


@dataclass
class DedupCounts:
    new: int = 0  # paths never seen before for their workload
    widened: int = 0  # known paths with a new access kind
    refreshed: int = 0  # known paths forwarded again only to move last_seen
    forced: int = 0  # sightings forwarded because their batch was re-sent
    suppressed: int = 0  # sightings that brought nothing new
    cap_hits: int = 0  # new paths forwarded but not remembered (workload at its cap)


class Dedup:
    def __init__(self, max_unique_files: int, refresh_interval: float) -> None:
        self.max_unique_files = max_unique_files
        # Times are kept in whole seconds; below one second dedup would switch itself off.
        self.refresh_interval = max(1, int(refresh_interval))
        self._paths: dict[str, dict[bytes, int]] = {}
        self._comms: dict[str, dict[bytes, int]] = {}  # key -> process name -> index
        self.counts = DedupCounts()
        self.capped: set[str] = set()  # workloads that reached the cap

    def comm_index(self, key: str, comm: bytes) -> int:
        """The index of a process name in the workload's table; -1 once it is full (and
        for no name: an older tracer sends none)."""
        if not comm:
            return -1
        table = self._comms.get(key)
        if table is None:
            table = self._comms[key] = {}
        index = table.get(comm)
        if index is None:
            if len(table) >= COMMS_PER_WORKLOAD:
                return -1
            index = table[comm] = len(table)
        return index

    def observe(self, key: str, path: bytes, kinds: int, when: float,
                force: bool = False) -> int:
        """One sighting of `kinds`, a fact mask (see `facts()`); returns the facts known of
        the path to forward, or 0 for nothing."""
        paths = self._paths.get(key)
        if paths is None:
            paths = self._paths[key] = {}
        now = int(when) & _SECONDS
        packed = paths.get(path)
        if packed is None:
            if len(paths) >= self.max_unique_files:
                self.counts.cap_hits += 1
                self.capped.add(key)
                return kinds
            paths[path] = (kinds << 32) | now
            self.counts.new += 1
            return kinds
        known = packed >> 32
        merged = known | kinds
        if merged != known:
            self.counts.widened += 1
        elif force:
            self.counts.forced += 1
        elif now - (packed & _SECONDS) >= self.refresh_interval:
            self.counts.refreshed += 1
        else:
            self.counts.suppressed += 1
            return 0
        paths[path] = (merged << 32) | now
        return merged

    def unique_files(self) -> dict[str, int]:
        return {key: len(paths) for key, paths in self._paths.items()}

    def __len__(self) -> int:
        return sum(len(paths) for paths in self._paths.values())

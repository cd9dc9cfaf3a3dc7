"""What the processor owes the reporter, packed into FileUpdates messages.

Content is gathered in *units*. A unit holds the forwarded files of whole tracer
messages and `covers` exactly those messages, so a FileUpdates built from one unit may
honestly say "the content of these seqs is in this or an earlier message": a batch whose
paths were all deduplicated carries nothing, but the earlier batch that first brought
those paths has its own cover, and the tracer re-sends it until it is persisted.

The last unit is open: new content merges into it (a path seen twice is one entry)
until it is full, then a new one opens. Units go out in order, one per message. When
the reporter is slow or away, sends fail and units wait.

The outbox never drops anything. It is bounded by flow control instead: `full()` says
it holds `max_pending_files` files or more than `max_pending_units` units, and the
processor then takes in no tracer message until a send makes room (processor/flow.py).
A tracer message adds at most one unit and MAX_BATCH_EVENTS files, so the outbox never
holds more than `max_pending_files + MAX_BATCH_EVENTS - 1` files or
`max_pending_units + 1` units (`peak_files`, `peak_units` record the most it held).

Tracer stats, seq gaps and the invalid-message count are not tied to units (they are
cumulative or counts); they ride on the next message that goes out. Counts saturate at
COUNT_MAX (int64), so every message the outbox builds is encodable.

Size: a unit takes at most `max_files_per_message` files, or one whole batch when it is
empty. With the default, MAX_BATCH_EVENTS, a message holds no more paths than the
largest valid EventBatch, which MAX_MESSAGE_BYTES admits even when every path is
MAX_PATH_BYTES long.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from snoop.common.protocol import (
    COUNT_MAX,
    MAX_BATCH_EVENTS,
    MAX_COMMS,
    MAX_MAP_ENTRIES,
    CaptureCounts,
    FileSeen,
    FileUpdates,
    Header,
    TracerStats,
    Workload,
    WorkloadUpdate,
)
from snoop.common.ranges import RangeSet
from snoop.processor.tracers import supersedes

MAX_FILES_PER_MESSAGE = MAX_BATCH_EVENTS
# Flow-control bounds: about 8 full messages, a few MiB, enough to keep the reporter's
# link busy between two turns of the loop.
MAX_PENDING_FILES = 32_768
MAX_PENDING_UNITS = 16
MAX_RANGES_PER_UNIT = 1024
MAX_TRACERS = 4096


@dataclass
class _Part:
    """One workload's share of a unit."""

    workload: Workload
    # path -> [kinds, first, last, outcomes, process names]
    files: dict[bytes, list] = field(default_factory=dict)
    total_events: int = 0
    unresolved: int = 0
    capture: CaptureCounts = field(default_factory=CaptureCounts)


class _Unit:
    __slots__ = ("parts", "covers", "files")

    def __init__(self) -> None:
        self.parts: dict[str, _Part] = {}
        self.covers: dict[str, RangeSet] = {}
        self.files = 0

    def empty(self) -> bool:
        return not self.covers and not self.parts


class Outbox:
    def __init__(self, *, max_files_per_message: int = MAX_FILES_PER_MESSAGE,
                 max_pending_files: int = MAX_PENDING_FILES,
                 max_pending_units: int = MAX_PENDING_UNITS) -> None:
        self.max_files_per_message = max_files_per_message
        self.max_pending_files = max_pending_files
        self.max_pending_units = max_pending_units
        self._units: deque[_Unit] = deque([_Unit()])
        self._stats: dict[str, TracerStats] = {}
        self._stats_covers: dict[str, RangeSet] = {}
        self._gaps = 0
        self._invalid = 0
        self.pending_files = 0
        self.peak_files = 0
        self.peak_units = 1
        # Bumped by every change a message could show; a refused send is retried often
        # and `peek()` rebuilds the message only when this moved.
        self._changes = 0
        self._peeked: tuple[int, Header, FileUpdates] | None = None

    # ------------------------------------------------------------ filling

    def full(self) -> bool:
        """Holding as much as it should: take in nothing until a send makes room."""
        return (self.pending_files >= self.max_pending_files
                or len(self._units) > self.max_pending_units)

    def pending_units(self) -> int:
        return len(self._units) if not self._units[0].empty() else 0

    def reserve(self, files: int, workloads: int) -> None:
        """Make room in the open unit for one tracer message of this size."""
        unit = self._units[-1]
        if unit.empty():
            return
        if (unit.files + files > self.max_files_per_message
                or len(unit.parts) + workloads > MAX_MAP_ENTRIES
                or len(unit.covers) >= MAX_MAP_ENTRIES
                or any(len(r) >= MAX_RANGES_PER_UNIT for r in unit.covers.values())):
            self._units.append(_Unit())

    def _part(self, workload: Workload) -> _Part:
        unit = self._units[-1]
        part = unit.parts.get(workload.key)
        if part is None:
            part = unit.parts[workload.key] = _Part(workload)
        return part

    def add_file(self, workload: Workload, path: bytes, kinds: int, seen: float,
                 outcomes: int = 0, comm: bytes = b"") -> None:
        part = self._part(workload)
        entry = part.files.get(path)
        if entry is None:
            part.files[path] = [kinds, seen, seen, outcomes, (comm,) if comm else ()]
            self._units[-1].files += 1
            self.pending_files += 1
        else:
            entry[0] |= kinds
            entry[1] = min(entry[1], seen)
            entry[2] = max(entry[2], seen)
            entry[3] |= outcomes
            if comm and comm not in entry[4] and len(entry[4]) < MAX_COMMS:
                entry[4] += (comm,)

    def add_counts(self, workload: Workload, events: int, unresolved: int) -> None:
        part = self._part(workload)
        part.total_events = min(COUNT_MAX, part.total_events + events)
        part.unresolved = min(COUNT_MAX, part.unresolved + unresolved)

    def add_capture(self, workload: Workload, capture: CaptureCounts) -> None:
        part = self._part(workload)
        part.capture = part.capture + capture

    def cover(self, sender: str, seq: int) -> None:
        """The content of tracer message (sender, seq) is now in the open unit."""
        self._units[-1].covers.setdefault(sender, RangeSet()).add(seq)
        self._changes += 1
        # Files only grow while one tracer message is handled, and each ends here.
        if self.pending_files > self.peak_files:
            self.peak_files = self.pending_files
        if len(self._units) > self.peak_units:
            self.peak_units = len(self._units)

    def add_stats(self, stats: TracerStats) -> None:
        sender = stats.header.sender
        current = self._stats.get(sender)
        if current is None or supersedes(stats.header.seq, current.header.seq):
            if current is None and len(self._stats) >= MAX_TRACERS:
                return  # absurd fan-in; its seq stays uncovered so nothing is claimed
            self._stats[sender] = stats
        self._stats_covers.setdefault(sender, RangeSet()).add(stats.header.seq)
        self._changes += 1

    def add_gaps(self, gaps: int) -> None:
        if gaps:
            self._gaps = min(COUNT_MAX, self._gaps + gaps)
            self._changes += 1

    def add_invalid(self, invalid: int) -> None:
        if invalid:
            self._invalid = min(COUNT_MAX, self._invalid + invalid)
            self._changes += 1

    # ------------------------------------------------------------ draining

    def empty(self) -> bool:
        return (len(self._units) == 1 and self._units[0].empty() and not self._stats
                and not self._stats_covers and not self._gaps and not self._invalid)

    def waiting_units(self) -> int:
        """Units that are full and wait only for a send."""
        return len(self._units) - 1

    def peek(self, header: Header) -> FileUpdates | None:
        """The next message to send, or None; nothing changes until `commit()`."""
        if self.empty():
            return None
        if self._peeked is not None and self._peeked[:2] == (self._changes, header):
            return self._peeked[2]
        unit = self._units[0]
        covers = {s: r.ranges() for s, r in unit.covers.items()}
        for sender, ranges in self._stats_covers.items():
            if sender in covers:
                merged = RangeSet(covers[sender])
                merged.update(ranges)
                covers[sender] = merged.ranges()
            elif len(covers) < MAX_MAP_ENTRIES:
                covers[sender] = ranges.ranges()
        message = FileUpdates(
            header=header,
            updates=tuple(
                WorkloadUpdate(
                    workload=part.workload,
                    files=tuple(FileSeen(path, kinds, first, last, outcomes, comms)
                                for path, (kinds, first, last, outcomes, comms)
                                in part.files.items()),
                    total_events=part.total_events,
                    unresolved=part.unresolved,
                    capture=part.capture,
                )
                for part in unit.parts.values()
            ),
            covers=covers,
            tracer_stats=tuple(self._stats.values()),
            gaps=self._gaps,
            invalid_messages=self._invalid,
        )
        self._peeked = (self._changes, header, message)
        return message

    def commit(self, sent: FileUpdates) -> None:
        """`sent` (the last `peek()`) went out: forget what it carried."""
        unit = self._units.popleft()
        self.pending_files -= unit.files
        if not self._units:
            self._units.append(_Unit())
        for sender in list(self._stats_covers):
            if sender in sent.covers:
                del self._stats_covers[sender]
        self._stats.clear()
        self._gaps -= sent.gaps
        self._invalid -= sent.invalid_messages
        self._changes += 1
        self._peeked = None

"""What the processor knows about each tracer sender: its seq (for gaps) and its stats.

Both tables are bounded: a tracer incarnation silent for long is forgotten, oldest
first. Forgetting a tracer folds its cumulative counters into a retired total, so the
sums exported as Prometheus counters never go backwards.

Gap rule (per sender; docs/processor.md says the same for operators):
- The first message seen from a sender sets its baseline: a restarted processor must not
  count what the previous one received.
- Seqs skipped by a message (highest + 1 < seq) become an open *hole*. A message whose
  seq is inside a hole arrived late (a tracer retries a refused send with the seq it
  first gave it, after newer messages went out): it leaves the hole and is never counted.
- A hole is counted as lost when it closes: once the sender's highest seq is more than
  REORDER_WINDOW past it, when the sender has more than MAX_HOLES open holes (the oldest
  closes), when the sender's numbering restarts, or when the sender is forgotten.
- A jump of more than MAX_SEQ_GAP either way is no loss (no sender loses millions of
  messages while the processor keeps hearing from it): the sender restarted its
  numbering or sent a corrupt seq. Its numbering restarts at the new seq and nothing
  is counted for the jump.
- Anything else at or below the highest seq (a repeat, an old message) counts nothing.
Every count saturates at COUNT_MAX (int64), so whatever the processor forwards stays
encodable. Unlike `protocol.seq_gap()`, which keeps the old baseline after a jump, the
numbering restarts at the new seq: a sender that really restarted its numbering (up or
down) is then counted again, and one corrupt seq costs two restarts and no gap.
"""

from __future__ import annotations

from collections import Counter

from snoop.common.protocol import COUNT_MAX, MAX_SEQ_GAP, TracerStats

MAX_TRACERS = 4096
# Messages may arrive out of order by this many seqs (a refused send retried later).
REORDER_WINDOW = 256
MAX_HOLES = 16


def supersedes(seq: int, current: int) -> bool:
    """Whether a cumulative message numbered `seq` replaces one numbered `current` from
    the same sender: it is newer, or so much older that the sender restarted its seq."""
    return seq >= current or current - seq > MAX_SEQ_GAP


class _Numbering:
    """One sender's highest seq and its open holes (sorted, disjoint [lo, hi] below it)."""

    __slots__ = ("highest", "holes", "gaps")

    def __init__(self, seq: int) -> None:
        self.highest = seq
        self.holes: list[list[int]] = []
        self.gaps = 0  # this sender's closed holes, counted

    def open_seqs(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.holes)


class GapCounter:
    """Counts tracer messages lost on the way, per sender, by the rule above."""

    def __init__(self, max_senders: int = MAX_TRACERS) -> None:
        self.max_senders = max_senders
        self._senders: dict[str, _Numbering] = {}
        self.total = 0  # gaps counted, over all senders (saturating)
        self.late = 0  # messages that arrived after newer ones and filled a hole
        self.restarts = 0  # jumps over MAX_SEQ_GAP: numbering restarted, nothing counted

    def observe(self, sender: str, seq: int) -> int:
        """One message's seq (never a re-sent batch's); returns the gaps counted now."""
        state = self._senders.pop(sender, None)  # re-inserted below: dict order is recency
        if state is None:
            closed = 0
            if len(self._senders) >= self.max_senders:
                closed = self._forget_oldest()
            self._senders[sender] = _Numbering(seq)
            return self._count(closed)
        self._senders[sender] = state
        highest = state.highest
        if seq == highest + 1:
            state.highest = seq
            closed = self._close_old(state) if state.holes else 0
        elif seq > highest:
            if seq - highest - 1 > MAX_SEQ_GAP:
                closed = self._restart(state, seq)
            else:
                state.holes.append([highest + 1, seq - 1])
                state.highest = seq
                closed = self._close_old(state)
        elif highest - seq > MAX_SEQ_GAP:
            closed = self._restart(state, seq)
        else:
            if state.holes and self._fill(state, seq):
                self.late += 1
            return 0
        state.gaps = min(COUNT_MAX, state.gaps + closed)
        return self._count(closed)

    def open_seqs(self) -> int:
        """Seqs missing now but not yet counted (they may still come)."""
        return sum(state.open_seqs() for state in self._senders.values())

    def gaps_of(self, sender: str) -> int:
        state = self._senders.get(sender)
        return state.gaps if state is not None else 0

    def __len__(self) -> int:
        return len(self._senders)

    def _count(self, closed: int) -> int:
        self.total = min(COUNT_MAX, self.total + closed)
        return closed

    def _close_old(self, state: _Numbering) -> int:
        holes = state.holes
        closed = 0
        while holes and (len(holes) > MAX_HOLES
                         or state.highest - holes[0][1] > REORDER_WINDOW):
            lo, hi = holes.pop(0)
            closed += hi - lo + 1
        return closed

    def _restart(self, state: _Numbering, seq: int) -> int:
        self.restarts += 1
        closed = state.open_seqs()
        state.holes.clear()
        state.highest = seq
        return closed

    @staticmethod
    def _fill(state: _Numbering, seq: int) -> bool:
        for i, (lo, hi) in enumerate(state.holes):
            if seq < lo:
                return False
            if seq <= hi:
                pieces = [r for r in ([lo, seq - 1], [seq + 1, hi]) if r[0] <= r[1]]
                state.holes[i:i + 1] = pieces
                return True
        return False

    def _forget_oldest(self) -> int:
        oldest = next(iter(self._senders))
        return self._senders.pop(oldest).open_seqs()


class TracerTable:
    """Latest stats per tracer sender, summed for metrics."""

    def __init__(self, max_senders: int = MAX_TRACERS) -> None:
        self.max_senders = max_senders
        self._latest: dict[str, TracerStats] = {}
        self._retired_syscalls: Counter[str] = Counter()
        self._retired_drops: Counter[str] = Counter()

    def update(self, stats: TracerStats) -> None:
        sender = stats.header.sender
        current = self._latest.pop(sender, None)
        if current is not None and not supersedes(stats.header.seq, current.header.seq):
            stats = current  # stats are cumulative: an older message says less
        elif current is None and len(self._latest) >= self.max_senders:
            oldest = next(iter(self._latest))
            self._retire(self._latest.pop(oldest))
        self._latest[sender] = stats

    def _retire(self, stats: TracerStats) -> None:
        self._retired_syscalls.update(stats.events_by_syscall)
        self._retired_drops.update(_drops(stats))

    def events_by_syscall(self) -> dict[str, int]:
        total = Counter(self._retired_syscalls)
        for stats in list(self._latest.values()):
            total.update(stats.events_by_syscall)
        return dict(total)

    def dropped(self) -> dict[str, int]:
        total = Counter({"kernel": 0, "read_failure": 0, "pending": 0})
        total.update(self._retired_drops)
        for stats in list(self._latest.values()):
            total.update(_drops(stats))
        return dict(total)

    def __len__(self) -> int:
        return len(self._latest)


def _drops(stats: TracerStats) -> dict[str, int]:
    return {"kernel": stats.kernel_dropped, "read_failure": stats.read_failures,
            "pending": stats.pending_dropped}

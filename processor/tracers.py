"""What the processor knows about each tracer sender: its seq (for gaps) and its stats.

Both tables are bounded: a tracer incarnation silent for long is forgotten, oldest
first. Forgetting a tracer folds its cumulative counters into a retired total, so the
sums exported as Prometheus counters never go backwards.
"""

from __future__ import annotations

from collections import Counter

from snoop.common.protocol import TracerStats

MAX_TRACERS = 4096


class GapCounter:
    """Per tracer sender: a seq above last+1 counts the messages in between as lost.

    The first message seen from a sender sets its baseline (a restarted processor must
    not count what the previous one received). Re-sent batches neither count nor move it.
    """

    def __init__(self, max_senders: int = MAX_TRACERS) -> None:
        self.max_senders = max_senders
        self._last: dict[str, int] = {}
        self.total = 0

    def observe(self, sender: str, seq: int, resend: bool = False) -> int:
        if resend:
            return 0
        last = self._last.pop(sender, None)  # re-inserted below: dict order is recency
        gap = 0
        if last is None:
            if len(self._last) >= self.max_senders:
                del self._last[next(iter(self._last))]
            self._last[sender] = seq
            return 0
        if seq > last + 1:
            gap = seq - last - 1
            self.total += gap
        self._last[sender] = max(last, seq)
        return gap


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
        if current is not None and current.header.seq > stats.header.seq:
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

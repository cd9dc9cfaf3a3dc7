"""A fake tracer for integration tests: real sockets, real messages, no BPF.

It numbers EventBatch and TracerStats from one counter starting at 1, keeps every batch
until a Checkpoint from the reporter names its seq, and re-sends the rest on demand with
`resend=True`, as the real tracer does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from snoop.common.protocol import (
    AccessKind,
    Checkpoint,
    Event,
    EventBatch,
    Header,
    MessageType,
    TracerStats,
    Workload,
)
from snoop.common.ranges import RangeSet
from snoop.common.transport import Receiver, Sender, new_context

WORKLOAD = Workload(key="c0ffee" * 2, cgroup_path="/docker/" + "c0ffee" * 2,
                    container_id="c0ffee" * 2)


class FakeTracer:
    def __init__(self, events_endpoint: str, checkpoint_endpoint: str,
                 sender: str = "fake-tracer/1") -> None:
        self.sender_id = sender
        self.context = new_context()
        self.sender = Sender(self.context, events_endpoint)
        self.checkpoints = Receiver(self.context, checkpoint_endpoint,
                                    (MessageType.CHECKPOINT,), bind=False, subscribe=True)
        self.seq = 0
        self.unconfirmed: dict[int, EventBatch] = {}
        self.persisted = RangeSet()
        self.reporters: set[str] = set()  # checkpoint senders seen (one per reporter start)

    def _send(self, message, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.sender.send(message):
            if time.monotonic() > deadline:
                raise TimeoutError("processor did not take the message")
            time.sleep(0.01)

    def send_batch(self, paths: Iterable[bytes], *, workload: Workload = WORKLOAD,
                   kind: AccessKind = AccessKind.READ, resolved: bool = True) -> int:
        self.seq += 1
        events = tuple(Event(1, 42, 42, kind, p, resolved) for p in paths)
        batch = EventBatch(Header(self.sender_id, self.seq), events, {1: workload},
                           sent_at=time.time())
        self.unconfirmed[self.seq] = batch
        self._send(batch)
        return self.seq

    def send_stats(self, kernel_dropped: int = 0) -> int:
        self.seq += 1
        self._send(TracerStats(Header(self.sender_id, self.seq), started_at=time.time(),
                               kernel_dropped=kernel_dropped, read_failures=0, unresolved=0,
                               events_by_syscall={"openat": self.seq}))
        return self.seq

    def resend_unconfirmed(self) -> int:
        for _seq, batch in sorted(self.unconfirmed.items()):
            self._send(EventBatch(batch.header, batch.events, batch.workloads, batch.sent_at,
                                  resend=True))
        return len(self.unconfirmed)

    def poll(self, timeout: float = 0.1) -> None:
        message = self.checkpoints.recv(timeout)
        while message is not None:
            if isinstance(message, Checkpoint):
                self.reporters.add(message.header.sender)
                for lo, hi in message.persisted.get(self.sender_id, ()):
                    self.persisted.add(lo, hi)
                for seq in [s for s in self.unconfirmed if s in self.persisted]:
                    del self.unconfirmed[seq]
            message = self.checkpoints.recv(0)

    def wait_persisted(self, seqs: Iterable[int], timeout: float = 15.0,
                       resend_every: float | None = None) -> None:
        wanted = set(seqs)
        deadline = time.monotonic() + timeout
        last_resend = time.monotonic()
        while not all(s in self.persisted for s in wanted):
            if time.monotonic() > deadline:
                missing = sorted(s for s in wanted if s not in self.persisted)
                raise TimeoutError(f"seqs never checkpointed: {missing}; have {self.persisted}")
            self.poll(0.1)
            if resend_every is not None and time.monotonic() - last_resend > resend_every:
                self.resend_unconfirmed()
                last_resend = time.monotonic()

    def close(self) -> None:
        self.sender.close(linger=0)
        self.checkpoints.close(linger=0)
        self.context.term()

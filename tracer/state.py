"""What a tracer incarnation leaves for the next one in its run directory.

- `TracerState` (tracer-state.json): until when capture was observed, and the kernel
  counters as last reported under this incarnation's sender, so that an incarnation
  that adopts the same kernel side reports only what came after (each sender's counters
  are summed downstream).
- `BasesLog` (tracer-bases.log): serial -> path of the base records the resolver
  learned, replayed by an incarnation that adopts the kernel side, whose records still
  name those serials.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from dataclasses import asdict, dataclass, field

_ENTRY = struct.Struct("<QI")


@dataclass
class TracerState:
    observed_until: float = 0.0  # last time a tracer was attached and draining
    digest: str = ""  # of the kernel side it drained
    kernel_reported: dict[str, int] = field(default_factory=dict)  # slot -> value sent

    @classmethod
    def load(cls, path: str) -> TracerState:
        try:
            with open(path) as handle:
                raw = json.load(handle)
            return cls(float(raw.get("observed_until", 0.0)), str(raw.get("digest", "")),
                       {str(k): int(v) for k, v in raw.get("kernel_reported", {}).items()})
        except (OSError, ValueError, TypeError, AttributeError):
            return cls()

    def save(self, path: str) -> None:
        temp = path + ".tmp"
        with open(temp, "w") as handle:
            json.dump(asdict(self), handle)
        os.replace(temp, path)


class BasesLog:
    """Append-only: (serial, length, path) entries; rewritten when it grows stale."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle = open(path, "ab")  # noqa: SIM115 (lives as long as the tracer)
        self._entries = 0

    def replay(self) -> list[tuple[int, bytes]]:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except OSError:
            return []
        entries, offset = [], 0
        while offset + _ENTRY.size <= len(data):
            serial, length = _ENTRY.unpack_from(data, offset)
            end = offset + _ENTRY.size + length
            if end > len(data):
                break  # a torn last entry
            entries.append((serial, data[offset + _ENTRY.size:end]))
            offset = end
        self._entries = len(entries)
        return entries

    def append(self, serial: int, path: bytes) -> None:
        self._handle.write(_ENTRY.pack(serial, len(path)) + path)
        self._entries += 1

    def flush(self) -> None:
        self._handle.flush()

    @property
    def entries(self) -> int:
        return self._entries

    def rewrite(self, live: list[tuple[int, bytes]]) -> None:
        temp = self.path + ".tmp"
        with open(temp, "wb") as handle:
            for serial, path in live:
                handle.write(_ENTRY.pack(serial, len(path)) + path)
        os.replace(temp, self.path)
        self._handle.close()
        self._handle = open(self.path, "ab")  # noqa: SIM115
        self._entries = len(live)

    def discard(self) -> None:
        """The kernel side these serials belong to is gone."""
        self._handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self._handle = open(self.path, "ab")  # noqa: SIM115
        self._entries = 0

    def close(self) -> None:
        self._handle.close()

"""Unconfirmed batches on disk, one file each, so a tracer killed before a reporter
confirmed them sends them again when it is restarted.

A file is written (temp + rename) before the batch is sent, and removed once a
checkpoint covers it. A SIGKILL loses nothing written: the page cache outlives the
process. (A machine crash may; then nothing downstream survived either.)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os

from snoop.common import protocol
from snoop.common.protocol import EventBatch, MessageType

log = logging.getLogger(__name__)
_SUFFIX = ".batch"


class Spool:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, sender: str, seq: int) -> str:
        tag = hashlib.sha1(sender.encode()).hexdigest()[:16]
        return os.path.join(self.directory, f"{tag}-{seq:020d}{_SUFFIX}")

    def put(self, sender: str, seq: int, encoded: bytes) -> None:
        """`encoded`: the EventBatch as protocol.encode made it."""
        path = self._path(sender, seq)
        temp = path + ".tmp"
        with open(temp, "wb") as handle:
            handle.write(encoded)
        os.replace(temp, path)

    def remove(self, sender: str, seq: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(sender, seq))

    def load(self) -> list[tuple[EventBatch, bytes]]:
        """Every batch left by earlier incarnations (decoded, and as stored), oldest
        first; unreadable files (a temp file a kill cut short) are removed with one log
        line each."""
        batches = []
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if not name.endswith(_SUFFIX):
                _remove(path)
                continue
            try:
                with open(path, "rb") as handle:
                    encoded = handle.read()
                message = protocol.decode(encoded, frozenset({MessageType.EVENT_BATCH}))
            except (OSError, protocol.ProtocolError) as exc:
                log.warning("unreadable spooled batch removed",
                            extra={"file": path, "error": str(exc)})
                _remove(path)
                continue
            batches.append((message, encoded))
        batches.sort(key=lambda pair: pair[0].sent_at)
        return batches


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

"""Which version of each report the API endpoint has: persisted, so a restart pushes only
what was never delivered.

A version is named by its idempotency key, the SHA-256 of the report's push name and its
JSON text (`version_key`); the same key goes out as the `Idempotency-Key` header, so a
receiver can drop a second copy of one version (a push that timed out after the
receiver took it, or one repeated after a restart). The file maps push name -> key of
the last version delivered, written atomically after every delivery.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable

from snoop.common.report import write_atomically

log = logging.getLogger("snoop.reporter")


def version_key(name: str, body: bytes) -> str:
    digest = hashlib.sha256(b"snoop-report\0")
    digest.update(name.encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


class DeliveryLog:
    """Last delivered version per report; in memory only when `path` is empty."""

    def __init__(self, path: str = "", *,
                 write: Callable[[str, str], None] = write_atomically) -> None:
        self.path = path
        self._write = write
        self._delivered: dict[str, str] = {}
        self._lock = threading.Lock()
        self.write_errors = 0
        self._failing = False

    def load(self) -> DeliveryLog:
        """Read the file; a missing or unreadable one means nothing is known delivered."""
        if not self.path:
            return self
        try:
            with open(self.path, "rb") as handle:
                data = json.loads(handle.read())
        except FileNotFoundError:
            return self
        except (OSError, ValueError) as exc:
            log.warning("delivery state unreadable; every report will be pushed again "
                        "(the idempotency key lets the receiver drop repeats)",
                        extra={"path": self.path, "error": str(exc)})
            return self
        if isinstance(data, dict) and isinstance(data.get("delivered"), dict):
            self._delivered = {str(k): v for k, v in data["delivered"].items()
                               if isinstance(v, str)}
        return self

    def delivered(self, name: str, key: str) -> bool:
        with self._lock:
            return self._delivered.get(name) == key

    def mark(self, name: str, key: str) -> None:
        """Version `key` of report `name` is delivered; persisted before returning."""
        with self._lock:
            self._delivered[name] = key
            if not self.path:
                return
            text = json.dumps({"delivered": self._delivered}, indent=1, sort_keys=True) + "\n"
            try:
                self._write(self.path, text)
            except OSError as exc:
                self.write_errors += 1
                if not self._failing:
                    log.error("delivery state not written; after a restart these reports "
                              "are pushed again", extra={"path": self.path,
                                                         "error": str(exc)})
                self._failing = True
                return
            self._failing = False

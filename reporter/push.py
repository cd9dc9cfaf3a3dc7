"""Remote push: POST each written report to `SNOOP_API_ENDPOINT`, off the write loop.

`submit()` never blocks: it replaces any older version of the same report still waiting
(only the newest matters). A background thread POSTs with retries and exponential
backoff; a report that still fails is dropped until the next write submits it again.
Every failed attempt is counted and logged.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("snoop.reporter")

ATTEMPTS = 4
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
TIMEOUT = 10.0


@dataclass
class PushCounts:
    pushed: int = 0
    errors: int = 0  # failed attempts
    given_up: int = 0  # reports dropped after every attempt failed


def post_json(url: str, body: bytes, token: str, timeout: float) -> None:
    """One POST; raises OSError (urllib's errors are OSErrors) on any failure."""
    headers = {"Content-Type": "application/json", "User-Agent": "snoop-reporter"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


class Pusher:
    def __init__(self, url: str, token: str = "", *,
                 post: Callable[[str, bytes, str, float], None] = post_json,
                 attempts: int = ATTEMPTS, first_backoff: float = FIRST_BACKOFF,
                 max_backoff: float = MAX_BACKOFF, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.token = token
        self._post = post
        self.attempts = attempts
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.counts = PushCounts()
        self._waiting: dict[str, str] = {}  # report key -> newest JSON text
        self._busy = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push", daemon=True)

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def submit(self, key: str, text: str) -> None:
        with self._lock:
            self._waiting[key] = text
        self._wake.set()

    def idle(self) -> bool:
        with self._lock:
            return not self._waiting and not self._busy

    def stop(self, timeout: float) -> None:
        """Let waiting reports go out for up to `timeout` seconds, then stop retrying."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _take(self) -> tuple[str, str] | None:
        with self._lock:
            if not self._waiting:
                self._busy = False
                return None
            key = next(iter(self._waiting))
            self._busy = True
            return key, self._waiting.pop(key)

    def _run(self) -> None:
        while True:
            item = self._take()
            if item is None:
                if self._stop.is_set():
                    return
                self._wake.wait()
                self._wake.clear()
                continue
            self._push(*item)

    def _push(self, key: str, text: str) -> None:
        body = text.encode("utf-8")
        backoff = self.first_backoff
        for attempt in range(1, self.attempts + 1):
            try:
                self._post(self.url, body, self.token, self.timeout)
            except (OSError, ValueError) as exc:
                self.counts.errors += 1
                log.warning("report push failed", extra={"url": self.url, "workload": key,
                                                         "attempt": attempt, "error": str(exc)})
            else:
                self.counts.pushed += 1
                return
            with self._lock:
                if key in self._waiting:
                    return  # a newer version is queued; it replaces this one
            if attempt == self.attempts or self._stop.wait(backoff):
                break
            backoff = min(self.max_backoff, backoff * 2)
        self.counts.given_up += 1

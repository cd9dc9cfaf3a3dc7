"""Remote push: POST each report version to `SNOOP_API_ENDPOINT`, off the write loop, until
it is delivered.

`submit()` never blocks: it replaces any older version of the same report still waiting
(only the newest matters). A background thread POSTs one report at a time:
- 2xx: delivered. The version is recorded in the delivery log (delivery.py), which a
  restarted reporter reads to push only what was never delivered.
- connection errors, timeouts, 408, 429 and 5xx: the report waits, and the whole pusher
  backs off (1 s, doubling, at most 60 s; all reports go to one endpoint) before it tries
  again, for as long as it takes: nothing new has to arrive for a retry. 429 and 503
  honour `Retry-After` (seconds or an HTTP date), bounded to 10 minutes.
- any other status (3xx, 4xx): the endpoint refuses this version, and asking again
  cannot change that. It is dropped, counted and logged; the next version is tried.
  413 gets its own counter and an error naming the size: the report is too big for the
  endpoint.
Every POST carries `Idempotency-Key` (the version's key), so a receiver can drop a copy
it already has: a POST that timed out after the receiver took it is sent again.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from snoop.reporter.delivery import DeliveryLog, version_key

log = logging.getLogger("snoop.reporter")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
MAX_RETRY_AFTER = 600.0
MIN_DELAY = 0.1  # even after `Retry-After: 0`, so a failing endpoint is never spun on
# Per socket operation (connect, send, each read); the reply body is read only up to
# REPLY_LIMIT, so one attempt takes a few timeouts at most.
TIMEOUT = 10.0
REPLY_LIMIT = 64 * 1024
RETRY_STATUSES = frozenset({408, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None = None  # the Retry-After header, as sent


@dataclass
class PushCounts:
    pushed: int = 0  # versions delivered
    errors: int = 0  # failed attempts that will be retried
    rejected: int = 0  # versions the endpoint refused (3xx, 4xx but 408/429), not retried
    too_large: int = 0  # of those, refused with 413
    already_delivered: int = 0  # submitted versions the endpoint already had


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the report, and count the
    # GET's 200 as delivery.
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
    """One POST; the status it got. Raises OSError when no HTTP reply came back."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(REPLY_LIMIT)
            return Reply(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.headers.get("Retry-After") if exc.headers else None)


def retry_after_seconds(value: str | None, now: float,
                        bound: float = MAX_RETRY_AFTER) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP date), within
    [0, bound]; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), bound)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return min(max(0.0, when.timestamp() - now), bound)


class Pusher:
    def __init__(self, url: str, token: str = "", *,
                 post: Callable[[str, bytes, Mapping[str, str], float], Reply] = post_json,
                 delivered: DeliveryLog | None = None,
                 first_backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 max_retry_after: float = MAX_RETRY_AFTER, timeout: float = TIMEOUT,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.url = url
        self.token = token
        self._post = post
        self.delivered = delivered or DeliveryLog()
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self._clock = clock
        self._wall = wall
        self.counts = PushCounts()
        self._waiting: dict[str, str] = {}  # report name -> newest JSON text
        self._busy = False
        self._backoff = first_backoff
        self._not_before = 0.0  # no attempt before this (clock): backing off
        self._failing = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push", daemon=True)

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def submit(self, name: str, text: str) -> None:
        with self._lock:
            self._waiting[name] = text
        self._wake.set()

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting) + self._busy

    def idle(self) -> bool:
        return self.waiting() == 0

    def stop(self, timeout: float) -> None:
        """Let waiting reports go out for up to `timeout` seconds, unless the endpoint is
        being backed off from; what is not delivered then is pushed after a restart."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _take(self) -> tuple[tuple[str, str] | None, float | None]:
        """The next report to push, or how long to wait (None: until woken)."""
        with self._lock:
            self._busy = False
            if not self._waiting:
                return None, None
            delay = self._not_before - self._clock()
            if delay > 0:
                return None, delay
            name = next(iter(self._waiting))
            self._busy = True
            return (name, self._waiting.pop(name)), 0.0

    def _run(self) -> None:
        while True:
            item, delay = self._take()
            if item is not None:
                self._push(*item)
                continue
            if self._stop.is_set():
                return  # nothing waiting, or backing off: stop now, not after the backoff
            self._wake.wait(delay)
            self._wake.clear()

    def _push(self, name: str, text: str) -> None:
        body = text.encode("utf-8")
        key = version_key(name, body)
        if self.delivered.delivered(name, key):
            self.counts.already_delivered += 1
            return
        headers = {"Content-Type": "application/json", "User-Agent": "snoop-reporter",
                   "Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            reply = self._post(self.url, body, headers, self.timeout)
        except (OSError, ValueError) as exc:
            self._retry(name, text, str(exc), None)
            return
        status = reply.status
        if 200 <= status < 300:
            self.counts.pushed += 1
            self.delivered.mark(name, key)
            self._endpoint_answered()
        elif status in RETRY_STATUSES or 500 <= status < 600:
            wait = None
            if status in RETRY_AFTER_STATUSES:
                wait = retry_after_seconds(reply.retry_after, self._wall(), self.max_retry_after)
            self._retry(name, text, f"HTTP {status}", wait)
        elif status == 413:
            self.counts.rejected += 1
            self.counts.too_large += 1
            self._endpoint_answered()
            log.error("report too large for the API endpoint (HTTP 413 Payload Too Large): "
                      "this version is not retried; raise the endpoint's body limit or "
                      "shrink the report (SNOOP_MAX_UNIQUE_FILES, exclusions)",
                      extra={"url": self.url, "workload": name, "bytes": len(body)})
        else:
            self.counts.rejected += 1
            self._endpoint_answered()
            log.error("API endpoint refused the report; this version is not retried",
                      extra={"url": self.url, "workload": name, "status": status})

    def _endpoint_answered(self) -> None:
        self._backoff = self.first_backoff
        if self._failing:
            log.info("report pushes reach the API endpoint again", extra={"url": self.url})
        self._failing = False

    def _retry(self, name: str, text: str, error: str, wait: float | None) -> None:
        self.counts.errors += 1
        delay = max(MIN_DELAY, self._backoff if wait is None else wait)
        self._backoff = min(self.max_backoff, self._backoff * 2)
        with self._lock:
            self._waiting.setdefault(name, text)  # unless a newer version came meanwhile
            self._not_before = self._clock() + delay
        self._failing = True
        log.warning("report push failed; retrying", extra={
            "url": self.url, "workload": name, "error": error, "retry_in": round(delay, 3),
            "retry_after": wait is not None})

"""Remote push: deliver the spooled deltas (reporter/spool.py) to `SNOOP_API_ENDPOINT`,
oldest first, off the write loop, over httpx.

Each POST sends one delta's gzip body as it lies in the spool (`Content-Encoding:
gzip`), its `Idempotency-Key` and the bearer token; TLS certificates are verified
unless switched off. By the reply:
- 2xx: delivered; the delta leaves the spool.
- no reply (connection refused, timeout, TLS failure), 408, 429, 5xx: kept, and the
  pusher waits before trying again: exponential backoff with jitter (1 s doubling to
  60 s, each wait drawn from its upper half); 429 and 503 honour `Retry-After`
  (seconds or an HTTP date, at most 10 minutes).
- 413: the delta is split in two and both halves take its place; a delta of one file
  that is still too large is set aside (below).
- 3xx, 401, 403, 404, 405, 421: the endpoint refuses every delta, not this one (a wrong
  token, a wrong URL, a redirect a POST must not follow): kept; logged once and counted,
  then tried again every 5 minutes, not in a loop, so a fix on either side lets the
  spool drain.
- any other 4xx (400, 409, 415, 422 …): the endpoint will never take this delta. It is
  set aside, gzip as sent, in `<spool>/rejected/` (the newest 100 are kept), counted and
  logged with the endpoint's error, and its workload is sent in full again later (the
  spool forgets it), so its files are not lost with it; a refused snapshot is not
  sent again. The next delta is tried.
- anything else going wrong in the pusher itself is logged, counted as an error and
  backed off from: the thread never dies.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import logging
import os
import random
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from snoop.common.delta import DeltaError, decode_delta
from snoop.common.report import write_atomically
from snoop.reporter.spool import Prepared, Spool, SpoolRecord

log = logging.getLogger("snoop.reporter")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
AUTH_RETRY = 300.0
MAX_RETRY_AFTER = 600.0
MIN_DELAY = 0.1  # even after `Retry-After: 0`, so a failing endpoint is never spun on
TIMEOUT = 10.0
KEEP_REJECTED = 100
RETRY_STATUSES = frozenset({408, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
ENDPOINT_REFUSALS = frozenset({401, 403, 404, 405, 421})
DELTAS_PATH = "/v1/deltas"


def delta_url(endpoint: str) -> str:
    """The URL deltas go to: the endpoint as given, or its /v1/deltas when it names only
    a host."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        parts = parts._replace(path=DELTAS_PATH)
    return urlunsplit(parts)


@dataclass
class PushCounts:
    pushed: int = 0  # deltas delivered
    errors: int = 0  # failed attempts that will be retried
    refusals: int = 0  # attempts the endpoint refused as a whole (retried slowly)
    splits: int = 0  # deltas split in two after a 413
    rejected: int = 0  # deltas the endpoint refused for good, set aside
    too_large: int = 0  # of those, single files still refused with 413


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


def new_client(verify: bool | str = True, timeout: float = TIMEOUT) -> httpx.Client:
    """`verify`: True (the system's CAs), False (no check), or a CA bundle file."""
    if isinstance(verify, str):
        verify = ssl.create_default_context(cafile=verify)
    # Redirects are not followed: a redirected POST would turn into a GET without the
    # delta, and its 200 would count as delivery.
    return httpx.Client(verify=verify, timeout=timeout, follow_redirects=False,
                        headers={"User-Agent": "snoop-reporter"})


class Pusher:
    def __init__(self, url: str, token: str, spool: Spool, *,
                 client: httpx.Client | None = None,
                 first_backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 auth_retry: float = AUTH_RETRY, max_retry_after: float = MAX_RETRY_AFTER,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random) -> None:
        self.url = delta_url(url)
        self.token = token
        self.spool = spool
        self._client = client or new_client()
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.auth_retry = auth_retry
        self.max_retry_after = max_retry_after
        self._clock = clock
        self._wall = wall
        self._jitter = jitter
        self.counts = PushCounts()
        self._backoff = first_backoff
        self._not_before = 0.0  # no attempt before this (clock): backing off
        self._failing = ""  # why the endpoint fails, while it does: logged once
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push", daemon=True)

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def wake(self) -> None:
        """New deltas are in the spool."""
        self._wake.set()

    def waiting(self) -> int:
        return self.spool.records()

    def idle(self) -> bool:
        return self.waiting() == 0

    def stop(self, timeout: float) -> None:
        """Let spooled deltas go out for up to `timeout` seconds, unless the endpoint is
        being backed off from; the rest stay spooled for the next start."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._client.close()

    def _run(self) -> None:
        while True:
            delay = self._not_before - self._clock()
            record = self.spool.peek() if delay <= 0 else None
            if record is not None:
                try:
                    self._push(record)
                except Exception as exc:  # noqa: BLE001  (the thread must not die)
                    log.exception("push failed unexpectedly; retrying")
                    self._retry(f"{exc.__class__.__name__}: {exc}", None)
                continue
            if self._stop.is_set():
                return  # nothing waiting, or backing off: stop now, not after the backoff
            self._wake.wait(delay if delay > 0 else None)
            self._wake.clear()

    def _push(self, record: SpoolRecord) -> None:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                   "Idempotency-Key": record.key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            reply = self._client.post(self.url, content=record.body, headers=headers)
        except httpx.HTTPError as exc:
            self._retry(f"{exc.__class__.__name__}: {exc}", None)
            return
        status = reply.status_code
        if 200 <= status < 300:
            self.counts.pushed += 1
            self.spool.done(record)
            self._answered()
        elif status in RETRY_STATUSES or 500 <= status < 600:
            wait = None
            if status in RETRY_AFTER_STATUSES:
                wait = retry_after_seconds(reply.headers.get("Retry-After"), self._wall(),
                                           self.max_retry_after)
            self._retry(f"HTTP {status}", wait)
        elif status in ENDPOINT_REFUSALS or 300 <= status < 400:
            self.counts.refusals += 1
            self._not_before = self._clock() + self.auth_retry
            why = f"HTTP {status}"
            if self._failing != why:
                log.error("API endpoint refuses every delta: check SNOOP_API_TOKEN (401, "
                          "403) or SNOOP_API_ENDPOINT (3xx, 404, 405, 421); deltas stay "
                          "spooled and are tried again every few minutes",
                          extra={"url": self.url, "status": status,
                                 "location": reply.headers.get("Location", ""),
                                 "retry_in": self.auth_retry})
            self._failing = why
        elif status == 413:
            self._answered()
            self._split(record, reply)
        else:
            self._answered()
            self._set_aside(record, status, reply)

    def _answered(self) -> None:
        self._backoff = self.first_backoff
        if self._failing:
            log.info("deltas reach the API endpoint again", extra={"url": self.url})
        self._failing = ""

    def _retry(self, error: str, wait: float | None) -> None:
        self.counts.errors += 1
        if wait is None:
            wait = self._backoff * (0.5 + self._jitter() / 2)
            self._backoff = min(self.max_backoff, self._backoff * 2)
        wait = max(MIN_DELAY, wait)
        self._not_before = self._clock() + wait
        if not self._failing:
            log.warning("API endpoint unreachable; deltas stay spooled and are retried",
                        extra={"url": self.url, "error": error, "retry_in": round(wait, 3),
                               "spooled": self.spool.records()})
        self._failing = error

    def _split(self, record: SpoolRecord, reply: httpx.Response) -> None:
        try:
            delta = decode_delta(gzip.decompress(record.body))
        except (DeltaError, OSError, EOFError, zlib.error) as exc:
            log.error("spooled delta unreadable; set aside", extra={"error": str(exc)})
            self._set_aside(record, reply.status_code, reply)
            return
        if len(delta.report.files) < 2:
            self.counts.too_large += 1
            self._set_aside(record, reply.status_code, reply)
            return
        first, second = delta.split()
        try:
            # The halves of a snapshot still count as one: a part of it refused for good
            # is not followed by another snapshot, which the same part would fail again.
            self.spool.replace(record, [
                Prepared.of(delta.workload_id, first.encode(), record.full),
                Prepared.of(delta.workload_id, second.encode(), record.full)])
        except OSError as exc:
            self._retry(f"cannot spool the halves of a delta too large: {exc}", None)
            return
        self.counts.splits += 1

    def _set_aside(self, record: SpoolRecord, status: int, reply: httpx.Response) -> None:
        directory = os.path.join(self.spool.directory, "rejected")
        kept = os.path.join(directory, f"{record.key}.json.gz")
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            with open(kept, "wb") as handle:
                handle.write(record.body)
            write_atomically(f"{kept}.reply", f"HTTP {status}\n{reply.text[:4096]}\n")
            _keep_newest(directory, KEEP_REJECTED)
        except OSError as exc:
            kept = f"(not kept: {exc.strerror or exc})"
        log.error("API endpoint refused a delta for good; set aside, not retried",
                  extra={"url": self.url, "workload": record.workload_id, "status": status,
                         "error": reply.text[:200], "kept_as": kept,
                         "resent_in_full": not record.full})
        if not record.full:
            self.spool.forget(record.workload_id)
        self.spool.done(record)
        self.counts.rejected += 1  # last: what it counts is on disk and in the spool


def _keep_newest(directory: str, keep: int) -> None:
    entries = sorted((e for e in os.scandir(directory) if e.name.endswith(".json.gz")),
                     key=lambda e: e.stat().st_mtime)
    for entry in entries[:-keep] if len(entries) > keep else []:
        for path in (entry.path, f"{entry.path}.reply"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

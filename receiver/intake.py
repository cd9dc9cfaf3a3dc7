"""A pushed delta's envelope, checked before anything is stored: its idempotency key,
its encoding, its size as sent and once decoded.

Each refusal is an IntakeError with the HTTP status and the rejection reason the
metrics count; the message is the one line the client gets back.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from collections.abc import AsyncIterator

from snoop.common.delta import Delta, DeltaError, decode_delta
from snoop.receiver.metrics import Rejection

log = logging.getLogger("snoop.receiver")
_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
GZIP_WBITS = 16 + zlib.MAX_WBITS
CLOCK_SLACK = 86400.0  # seconds a reporter's clock may be ahead of the receiver's


class IntakeError(ValueError):
    def __init__(self, status: int, reason: Rejection, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def idempotency_key(value: str | None) -> str:
    if value is None:
        raise IntakeError(400, Rejection.INVALID, "Idempotency-Key: required")
    if not _KEY.match(value):
        raise IntakeError(400, Rejection.INVALID, "Idempotency-Key: expected 1 to 128 "
                          "characters of A-Z a-z 0-9 _ . -")
    return value


def content_encoding(value: str | None) -> str:
    """'gzip' or 'identity'."""
    encoding = (value or "identity").strip().lower()
    if encoding not in ("gzip", "identity"):
        raise IntakeError(415, Rejection.ENCODING, f"Content-Encoding: {value[:40]!r} is not "
                          "supported, expected gzip or identity")
    return encoding


def content_type(value: str | None) -> None:
    """A delta is JSON: a Content-Type, when there is one, must say so."""
    if value is None:
        return
    media_type = value.partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise IntakeError(415, Rejection.ENCODING, f"Content-Type: {value[:60]!r} is not "
                          "supported, expected application/json")


def too_large(limit: int, what: str) -> IntakeError:
    return IntakeError(413, Rejection.TOO_LARGE, f"body: larger than {limit} bytes {what}")


def declared_length(value: str | None, limit: int) -> None:
    """Refuse a body by its Content-Length, before reading it."""
    if value is not None and value.strip().isdigit() and int(value) > limit:
        raise too_large(limit, "as sent")


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large(limit, "as sent")
    return bytes(body)


def gunzip(data: bytes, limit: int) -> bytes:
    """The decompressed body, one bounded step at a time: a small body that inflates to
    gigabytes (a gzip bomb) is refused once past `limit`, without inflating the rest."""
    out = bytearray()
    rest = data
    try:
        while True:  # one gzip member per round; a body may hold several
            inflate = zlib.decompressobj(wbits=GZIP_WBITS)
            pending = rest
            while not inflate.eof:
                # max_length stays >= 1: 0 would mean no limit at all.
                chunk = inflate.decompress(pending, limit + 1 - len(out))
                out += chunk
                if len(out) > limit:
                    raise too_large(limit, "after gunzip")
                pending = inflate.unconsumed_tail
                if not chunk and not pending:
                    raise IntakeError(400, Rejection.INVALID, "body: truncated gzip data")
            rest = inflate.unused_data
            if not rest:
                return bytes(out)
    except zlib.error as exc:
        raise IntakeError(400, Rejection.INVALID, f"body: not valid gzip ({exc})") from None


def decoded_body(raw: bytes, encoding: str, limit: int) -> bytes:
    return gunzip(raw, limit) if encoding == "gzip" else raw


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def parse_delta(body: bytes, now: float) -> Delta:
    """The delta in `body`; its times may be up to CLOCK_SLACK later than `now`."""
    try:
        return decode_delta(body, latest=now + CLOCK_SLACK)
    except DeltaError as exc:
        raise IntakeError(400, Rejection.INVALID, " ".join(str(exc).split())) from None
    except MemoryError:
        raise  # the receiver's trouble, not the delta's: a 500, which reporters retry
    except Exception as exc:
        # A body the decoder did not foresee is still the body's fault: a 400 in one
        # line, never a 500 with a traceback; the traceback goes to the log.
        log.exception("delta unreadable")
        raise IntakeError(400, Rejection.INVALID,
                          f"body: not a readable delta ({exc.__class__.__name__})") from None

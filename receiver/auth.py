"""Bearer tokens: who may push and read. The allow list comes from the tokens file."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

# RFC 6750's b64token.
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None if missing or malformed."""
    match = _BEARER.match(header or "")
    return match.group(1) if match else None


class Tokens:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(token.encode("ascii") for token in tokens)

    def allows(self, token: str) -> bool:
        """Compared with every allowed token in constant time, so a timing tells nothing."""
        given = token.encode("ascii")
        allowed = False
        for known in self._tokens:
            allowed |= hmac.compare_digest(given, known)
        return allowed

"""The receiver's Prometheus counters, on a registry the caller owns (one per app)."""

from __future__ import annotations

import enum

from prometheus_client import CollectorRegistry, Counter


class Rejection(enum.StrEnum):
    AUTH = "auth"  # 401: no bearer token, or a malformed one
    FORBIDDEN = "forbidden"  # 403: a token not in the allow list
    TOO_LARGE = "too_large"  # 413
    INVALID = "invalid"  # 400: a bad delta, key or query
    ENCODING = "encoding"  # 415: a Content-Encoding or Content-Type it does not take
    CONFLICT = "conflict"  # 422: a key used before with another body
    BUSY = "busy"  # 503: --max-concurrent-deltas were being taken in


class ReceiverMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.deltas_stored = Counter("snoop_receiver_deltas_stored",
                                     "Deltas stored", registry=registry)
        self.deltas_duplicate = Counter("snoop_receiver_deltas_duplicate",
                                        "Deltas received again (same key, same body): "
                                        "nothing changed", registry=registry)
        self.rejected = Counter("snoop_receiver_requests_rejected",
                                "Requests refused, by reason", ["reason"], registry=registry)
        self.files_stored = Counter("snoop_receiver_files_stored",
                                    "File entries of stored deltas", registry=registry)
        self.keys_pruned = Counter("snoop_receiver_keys_pruned",
                                   "Idempotency keys older than --key-ttl, forgotten",
                                   registry=registry)
        for reason in Rejection:
            self.rejected.labels(reason=reason.value)

    def reject(self, reason: Rejection) -> None:
        self.rejected.labels(reason=reason.value).inc()

"""The receiver's HTTP API (receiver/openapi.yaml), as a Starlette app.

`create_app(config, store=...)` builds one app around a store and a metrics registry
of its own: no module-level state, so a test can run two receivers side by side. The
POST route reads its body on the event loop (bounded), then decodes and stores it in
the thread pool, as the read routes do, since the stores are synchronous.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import yaml
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from snoop.receiver import intake, views
from snoop.receiver.auth import Tokens, bearer_token
from snoop.receiver.config import ReceiverConfig
from snoop.receiver.intake import IntakeError
from snoop.receiver.metrics import ReceiverMetrics, Rejection
from snoop.receiver.store import Outcome, Store, StoreError

log = logging.getLogger("snoop.receiver")
RETRY_AFTER = "5"  # seconds, when the database does not answer: reporters back off
BUSY_RETRY_AFTER = "2"  # seconds, when --max-concurrent-deltas are being taken in
PRUNE_EVERY = 60.0  # seconds between two prunings of old keys, over every receiver
PRUNE_BATCH = 50_000  # keys a pruning deletes at most: a short write lock, not a long one


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # ensure_ascii: a path's surrogate-escaped bytes go out as \udcHH, valid UTF-8.
    body = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return Response(body, status, headers, media_type="application/json")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def load_spec() -> str:
    return resources.files("snoop.receiver").joinpath("openapi.yaml").read_text("utf-8")


class _Receiver:
    def __init__(self, config: ReceiverConfig, store: Store, metrics: ReceiverMetrics,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.tokens = Tokens(config.tokens)
        self.spec_yaml = load_spec()
        self.spec_json = json.dumps(yaml.safe_load(self.spec_yaml), indent=1)
        self.intakes = 0  # deltas being taken in; read and written on the event loop only
        self._prune_lock = threading.Lock()
        self._next_prune = 0.0  # this receiver's own clock: it asks the database then

    def authorize(self, request: Request) -> None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise IntakeError(401, Rejection.AUTH, "Authorization: expected Bearer <token>")
        if not self.tokens.allows(token):
            raise IntakeError(403, Rejection.FORBIDDEN, "token not allowed")

    def image_param(self, request: Request, name: str = "image") -> str:
        # Percent-escaped bytes that are not UTF-8 read as U+DCHH, as in report JSON.
        query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"),
                         encoding="utf-8", errors="surrogateescape")
        value = query.get(name, [""])[-1]
        if not value:
            raise IntakeError(400, Rejection.INVALID,
                              f"{name}: required, an image_ref or image_digest")
        return value

    # ------------------------------------------------------------ /v1/deltas

    async def post_delta(self, request: Request) -> Response:
        self.authorize(request)
        key = intake.idempotency_key(request.headers.get("idempotency-key"))
        intake.content_type(request.headers.get("content-type"))
        encoding = intake.content_encoding(request.headers.get("content-encoding"))
        limit = self.config.max_body_bytes
        intake.declared_length(request.headers.get("content-length"), limit)
        if self.intakes >= self.config.max_concurrent_deltas:
            # Refused before its body is read: the reporter sends it again later.
            raise IntakeError(503, Rejection.BUSY, "busy: "
                              f"{self.config.max_concurrent_deltas} deltas are being taken in",
                              {"Retry-After": BUSY_RETRY_AFTER})
        self.intakes += 1
        try:
            raw = await intake.read_limited(request.stream(), limit)
            return await run_in_threadpool(self._store, key, encoding, raw)
        finally:
            self.intakes -= 1

    def _store(self, key: str, encoding: str, raw: bytes) -> Response:
        body = intake.decoded_body(raw, encoding, self.config.max_body_bytes)
        now = self.clock()
        delta = intake.parse_delta(body, now)
        stored = self.store.store_delta(delta, key, intake.body_sha256(body), now)
        self._prune_keys(now)
        if stored.outcome is Outcome.CONFLICT:
            raise IntakeError(422, Rejection.CONFLICT,
                              "Idempotency-Key: already used for another body")
        if stored.outcome is Outcome.DUPLICATE:
            self.metrics.deltas_duplicate.inc()
            return json_response({"status": "duplicate"})
        self.metrics.deltas_stored.inc()
        self.metrics.files_stored.inc(stored.files)
        log.debug("delta stored", extra={"origin": delta.origin, "workload_id": delta.workload_id,
                                         "files": stored.files})
        return json_response({"status": "stored", "files": stored.files})

    def _prune_keys(self, now: float) -> None:
        """Forget keys older than --key-ttl: a repeat of such an old delta is stored again,
        which changes nothing but its workload's last_received (merges are joins)."""
        with self._prune_lock:
            if now < self._next_prune:
                return
            self._next_prune = now + PRUNE_EVERY
        try:
            pruned = self.store.prune_keys(now - self.config.key_ttl, now=now,
                                           every=PRUNE_EVERY, limit=PRUNE_BATCH)
        except StoreError as exc:  # the delta is stored: its answer stands
            log.warning("cannot prune old keys", extra={"error": str(exc)})
            return
        self.metrics.keys_pruned.inc(pruned)
        if pruned:
            log.info("old keys pruned", extra={"keys": pruned})

    # ------------------------------------------------------------ reads

    def images(self, request: Request) -> Response:
        self.authorize(request)
        return json_response(views.images_json(self.store.images()))

    def report(self, request: Request) -> Response:
        self.authorize(request)
        image = self.image_param(request)
        workloads = self.store.workloads(image)
        if not workloads:
            return self.unknown(image)
        return json_response(views.image_report(image, workloads, self.store.image_union(image)))

    def workloads(self, request: Request) -> Response:
        self.authorize(request)
        image = self.image_param(request)
        workloads = self.store.workloads(image)
        if not workloads:
            return self.unknown(image)
        return json_response(views.workloads_json(image, workloads))

    def diff(self, request: Request) -> Response:
        self.authorize(request)
        old, new = self.image_param(request, "from"), self.image_param(request, "to")
        old_paths, new_paths = self.store.image_paths(old), self.store.image_paths(new)
        for image, paths in ((old, old_paths), (new, new_paths)):
            if paths is None:
                return self.unknown(image)
        return json_response(views.diff_json(old, new, old_paths, new_paths))

    @staticmethod
    def unknown(image: str) -> Response:
        return error(404, f"image {image[:200]!r}: no workload has it")

    # ------------------------------------------------------------ unauthenticated

    def healthz(self, request: Request) -> Response:
        self.store.ping()
        return json_response({"status": "ok"})

    def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi_yaml(self, request: Request) -> Response:
        return Response(self.spec_yaml, media_type="application/yaml")

    def openapi_json(self, request: Request) -> Response:
        return Response(self.spec_json, media_type="application/json")

    # ------------------------------------------------------------ errors

    def refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IntakeError)
        self.metrics.reject(exc.reason)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return error(exc.status, str(exc), {**headers, **exc.headers})

    def unavailable(self, request: Request, exc: Exception) -> Response:
        log.error("database unavailable", extra={"error": str(exc), "path": request.url.path})
        return error(503, "database unavailable", {"Retry-After": RETRY_AFTER})

    @staticmethod
    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, exc.detail, dict(exc.headers or {}))

    @staticmethod
    def server_error(request: Request, exc: Exception) -> Response:
        # Called after the failed handler's `except` has ended: exc_info must be explicit.
        log.error("request failed", exc_info=exc, extra={"path": request.url.path})
        return error(500, "internal error")


def create_app(config: ReceiverConfig, *, store: Store,
               registry: CollectorRegistry | None = None,
               clock: Callable[[], float] = time.time) -> Starlette:
    """The receiver's app; the caller owns `store` (and closes it after the app stops)."""
    receiver = _Receiver(config, store, ReceiverMetrics(registry or CollectorRegistry()), clock)
    routes = [
        Route("/v1/deltas", receiver.post_delta, methods=["POST"]),
        Route("/v1/images", receiver.images, methods=["GET"]),
        Route("/v1/report", receiver.report, methods=["GET"]),
        Route("/v1/workloads", receiver.workloads, methods=["GET"]),
        Route("/v1/diff", receiver.diff, methods=["GET"]),
        Route("/healthz", receiver.healthz, methods=["GET"]),
        Route("/metrics", receiver.prometheus, methods=["GET"]),
        Route("/openapi.yaml", receiver.openapi_yaml, methods=["GET"]),
        Route("/openapi.json", receiver.openapi_json, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        IntakeError: receiver.refused,
        StoreError: receiver.unavailable,
        HTTPException: receiver.http_error,
        Exception: receiver.server_error,
    })
    return app

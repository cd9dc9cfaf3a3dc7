"""All ZeroMQ socket setup: endpoints, high-water marks, linger, reconnect and CURVE.

Process code gets a `Sender` or a `Receiver` and only sends and receives typed
messages; nothing outside this module touches zmq, and nothing outside `protocol`
touches msgpack.

Who binds: the side that many peers reach. The processor binds the events link (many
tracers fan in), the reporter binds the updates link and the checkpoint link (a PUB
socket every tracer subscribes to).

Security: `ipc://` relies on file permissions of the socket's directory. `tcp://`
beyond loopback needs CurveZMQ keys (the binding side allow-lists client public keys)
unless `insecure_tcp` is set explicitly. One ZAP handler per context (ZeroMQ allows no
more) checks every CURVE socket bound in it, each against its own allow-list; a client
whose key is not listed is refused, counted (`auth_rejected`) and logged. tcp:// sockets
take IPv6 addresses too (`tcp://[::1]:5555`).

Logging: a peer that keeps sending garbage must not flood the log, so warnings about
invalid messages and refused clients are rate-limited per reason (`LogLimiter`); the
counters stay exact.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import socket as socketlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from zmq.auth.thread import ThreadAuthenticator

from snoop.common.protocol import Message, MessageType, ProtocolError, decode, encode

SEND_HWM = 2000
RECV_HWM = 2000
# The data links queue little, so a stage that cannot hand on pushes back at once (the
# tracer then holds its records in the ring buffer) instead of piling up messages here:
# event batches from tracers to the processor, file updates to the reporter.
EVENTS_HWM = 16
UPDATES_HWM = 4
MAX_INVALID_PER_CALL = 64
LINGER_MS = 2000
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2000
LOG_EVERY = 1.0  # seconds between two warnings of one reason
MAX_LOG_REASONS = 64

log = logging.getLogger(__name__)


class LogLimiter:
    """At most one warning per reason every `every` seconds.

    Warnings in between are not logged but counted, and the next line of that reason
    says how many were left out (`suppressed`). Reasons past `max_reasons` share one.
    """

    def __init__(self, logger: logging.Logger, *, every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic,
                 max_reasons: int = MAX_LOG_REASONS) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self.max_reasons = max_reasons
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()  # the ZAP handler warns from its own thread

    def warning(self, reason: str, message: str, **fields: object) -> bool:
        """Log `message` unless this reason was logged less than `every` ago; True if logged."""
        with self._lock:
            if reason not in self._last and len(self._last) >= self.max_reasons:
                reason = "other"
            now = self.clock()
            last = self._last.get(reason)
            if last is not None and 0 <= now - last < self.every:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return False
            self._last[reason] = now
            suppressed = self._suppressed.pop(reason, 0)
        self.logger.warning(message, extra={**fields, "reason": reason,
                                            "suppressed": suppressed})
        return True


class TransportError(RuntimeError):
    """An endpoint or key setup that cannot work; the message names the setting."""


@dataclass(frozen=True)
class Security:
    secret_key_file: str = ""  # this side's key pair (the *.key_secret file)
    server_key_file: str = ""  # for clients: the server's public key file
    allowed_keys_dir: str = ""  # for servers: directory of allowed client public keys
    insecure_tcp: bool = False


def _is_loopback_tcp(endpoint: str) -> bool:
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", "*"):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socketlib.gethostbyname(host)).is_loopback
        except OSError:
            return False


class Context(zmq.Context):
    """A zmq context that also owns the one ZAP handler its CURVE servers share."""

    # Declared on the class: pyzmq refuses instance attributes it does not know.
    gatekeeper: _Gatekeeper | None = None


class _AllowList:
    """The client keys one bound CURVE socket accepts; refusals are counted and logged."""

    def __init__(self, endpoint: str, directory: str, limiter: LogLimiter) -> None:
        self.endpoint = endpoint
        self.directory = directory
        self.keys = frozenset(zmq.auth.load_certificates(directory))
        self.limiter = limiter
        self.rejected = 0

    def callback(self, domain: str, client_key: bytes) -> bool:
        """Called by the ZAP handler's thread for each CURVE handshake (z85 key)."""
        if client_key in self.keys:
            return True
        self.rejected += 1
        self.limiter.warning(
            f"curve:{self.endpoint}", "refused a CurveZMQ client whose key is not allowed",
            endpoint=self.endpoint, client_key=client_key.decode("ascii", "replace"),
            allowed_keys=self.directory, rejected=self.rejected)
        return False


class _Gatekeeper:
    """The context's ZAP handler, started with its first CURVE server, stopped with its last."""

    def __init__(self, context: zmq.Context) -> None:
        self.authenticator = ThreadAuthenticator(context)
        self.authenticator.start()
        self.users = 0

    def add(self, domain: str, allow: _AllowList) -> None:
        self.authenticator.configure_curve_callback(domain=domain, credentials_provider=allow)
        self.users += 1

    def remove(self, domain: str) -> bool:
        """Forget `domain`; True when no socket uses the handler any more (it stopped)."""
        self.authenticator.credentials_providers.pop(domain, None)
        self.users -= 1
        if self.users:
            return False
        self.authenticator.stop()
        return True


def _load_keypair(path: str, setting: str) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise TransportError(f"{setting}={path!r}: cannot load CurveZMQ key: {exc}") from None
    if secret is None:
        raise TransportError(f"{setting}={path!r}: expected a secret key file (*.key_secret)")
    return public, secret


def _prepare_ipc(endpoint: str) -> None:
    directory = os.path.dirname(endpoint[len("ipc://"):])
    if directory:
        os.makedirs(directory, mode=0o770, exist_ok=True)


class _Endpoint:
    """Shared socket life cycle for Sender and Receiver."""

    def __init__(self, context: zmq.Context, kind: int, endpoint: str, bind: bool,
                 security: Security, clock: Callable[[], float],
                 hwm: int | None = None) -> None:
        self.endpoint = endpoint
        self.limiter = LogLimiter(log, clock=clock)
        self._context = context
        self._allow: _AllowList | None = None
        self.socket = context.socket(kind)
        if kind == zmq.PUSH:
            # Queue nothing for peers that are not connected: a full or absent downstream
            # shows up as a failed send, which the caller keeps and retries.
            self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.LINGER, LINGER_MS)
        # Randomized per socket: a thousand tracers that lost their processor at once do
        # not all knock again in the same millisecond.
        self.reconnect_ms = (RECONNECT_IVL_MS + random.randrange(RECONNECT_IVL_MS),
                             RECONNECT_IVL_MAX_MS + random.randrange(RECONNECT_IVL_MAX_MS // 2))
        self.socket.setsockopt(zmq.RECONNECT_IVL, self.reconnect_ms[0])
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, self.reconnect_ms[1])
        # Before bind/connect: ZeroMQ copies the marks into each pipe it makes then.
        self.socket.setsockopt(zmq.SNDHWM, SEND_HWM if hwm is None else hwm)
        self.socket.setsockopt(zmq.RCVHWM, RECV_HWM if hwm is None else hwm)
        try:
            if endpoint.startswith("tcp://"):
                self.socket.setsockopt(zmq.IPV6, 1)  # tcp://[::1]:P; IPv4 still works
                self._secure(bind, security)
            elif endpoint.startswith("ipc://") and bind:
                _prepare_ipc(endpoint)
            if bind:
                self.socket.bind(endpoint)
            else:
                self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close(linger=0)
            raise TransportError(f"{endpoint}: cannot {'bind' if bind else 'connect'}: {exc}") \
                from None
        except TransportError:
            self.close(linger=0)
            raise

    @property
    def auth_rejected(self) -> int:
        """CurveZMQ clients refused because their key is not in the allow-list."""
        return self._allow.rejected if self._allow is not None else 0

    def _secure(self, bind: bool, security: Security) -> None:
        if not security.secret_key_file:
            if _is_loopback_tcp(self.endpoint):
                return
            if security.insecure_tcp:
                log.warning("plain tcp beyond loopback (SNOOP_INSECURE_TCP): anyone who can "
                            "reach it can send forged data or read it", extra={
                                "endpoint": self.endpoint})
                return
            raise TransportError(
                f"{self.endpoint}: tcp beyond loopback needs SNOOP_CURVE_SECRET_KEY "
                "(or SNOOP_INSECURE_TCP=true to accept an unauthenticated link)"
            )
        public, secret = _load_keypair(security.secret_key_file, "SNOOP_CURVE_SECRET_KEY")
        self.socket.curve_publickey = public
        self.socket.curve_secretkey = secret
        if bind:
            self._allow_clients(security.allowed_keys_dir)
            self.socket.curve_server = True
        else:
            if not security.server_key_file:
                raise TransportError(
                    f"{self.endpoint}: SNOOP_CURVE_SERVER_KEY is needed to reach a CURVE server"
                )
            try:
                server_public, _ = zmq.auth.load_certificate(security.server_key_file)
            except (OSError, ValueError) as exc:
                raise TransportError(
                    f"SNOOP_CURVE_SERVER_KEY={security.server_key_file!r}: {exc}"
                ) from None
            self.socket.curve_serverkey = server_public

    def _allow_clients(self, directory: str) -> None:
        if not directory or not Path(directory).is_dir():
            raise TransportError(
                f"SNOOP_CURVE_ALLOWED_KEYS={directory!r}: expected a directory of allowed "
                "client public keys"
            )
        if not isinstance(self._context, Context):
            raise TransportError(f"{self.endpoint}: a CURVE server needs a context from "
                                 "transport.new_context()")
        try:
            allow = _AllowList(self.endpoint, directory, self.limiter)
        except (OSError, ValueError) as exc:
            raise TransportError(f"SNOOP_CURVE_ALLOWED_KEYS={directory!r}: {exc}") from None
        if self._context.gatekeeper is None:
            self._context.gatekeeper = _Gatekeeper(self._context)
        # The ZAP domain tells the shared handler which socket's allow-list applies.
        self.socket.zap_domain = self.endpoint.encode()
        self._context.gatekeeper.add(self.endpoint, allow)
        self._allow = allow

    def close(self, linger: int | None = None) -> None:
        self.socket.close(linger=LINGER_MS if linger is None else linger)
        gatekeeper = getattr(self._context, "gatekeeper", None)
        if self._allow is not None and gatekeeper is not None \
                and gatekeeper.remove(self.endpoint):
            self._context.gatekeeper = None
        self._allow = None


class Sender(_Endpoint):
    """PUSH (or PUB) side. `send()` never blocks: False means 'not sent, keep it'."""

    def __init__(self, context: zmq.Context, endpoint: str, *, bind: bool = False,
                 publish: bool = False, security: Security = Security(),
                 clock: Callable[[], float] = time.monotonic, hwm: int | None = None) -> None:
        super().__init__(context, zmq.PUB if publish else zmq.PUSH, endpoint, bind, security,
                         clock, hwm)
        self.sent = 0
        self.blocked = 0

    def wait_writable(self, timeout: float) -> bool:
        """True once a connected peer has room (PUSH with IMMEDIATE), within `timeout` s."""
        return bool(self.socket.poll(int(timeout * 1000), zmq.POLLOUT))

    def send(self, message: Message) -> bool:
        return self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> bool:
        """A message protocol.encode already made (a tracer keeps what it may re-send so)."""
        try:
            self.socket.send(data, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.blocked += 1
            return False
        self.sent += 1
        return True


class Receiver(_Endpoint):
    """PULL (or SUB) side. Invalid messages are counted, logged (rate-limited) and dropped.

    `clock` is the receiver's wall clock: it bounds message timestamps (protocol.decode's
    `now`) and paces the warnings.
    """

    def __init__(self, context: zmq.Context, endpoint: str, accepts: Iterable[MessageType], *,
                 bind: bool = True, subscribe: bool = False,
                 security: Security = Security(),
                 clock: Callable[[], float] = time.time, hwm: int | None = None) -> None:
        super().__init__(context, zmq.SUB if subscribe else zmq.PULL, endpoint, bind, security,
                         clock, hwm)
        if subscribe:
            self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.accepts = frozenset(accepts)
        self.clock = clock
        self.received = 0
        self.invalid = 0

    def recv(self, timeout: float = 0.0) -> Message | None:
        """One valid message, or None if none arrived within `timeout` seconds (or only
        invalid ones: a peer sending garbage cannot keep one call from returning)."""
        received = self.recv_encoded(timeout)
        return None if received is None else received[0]

    def recv_encoded(self, timeout: float = 0.0) -> tuple[Message, bytes] | None:
        """recv(), with the bytes the message came as (valid: they decoded to it)."""
        deadline_ms = int(timeout * 1000)
        for _ in range(MAX_INVALID_PER_CALL):
            if not self.socket.poll(deadline_ms, zmq.POLLIN):
                return None
            data = self.socket.recv(flags=zmq.NOBLOCK)
            try:
                message = decode(data, self.accepts, now=self.clock())
            except ProtocolError as exc:
                self.invalid += 1
                self.limiter.warning(exc.reason, "dropped invalid message",
                                     endpoint=self.endpoint, error=str(exc)[:500],
                                     invalid=self.invalid)
                deadline_ms = 0
                continue
            self.received += 1
            return message, data
        return None

    def recv_all(self, limit: int = 10_000) -> list[Message]:
        """Every message already waiting, up to `limit`, without blocking."""
        return [message for message, _ in self.recv_all_encoded(limit)]

    def recv_all_encoded(self, limit: int = 10_000) -> list[tuple[Message, bytes]]:
        received = []
        while len(received) < limit:
            one = self.recv_encoded(0)
            if one is None:
                break
            received.append(one)
        return received


class SocketCollector(Collector):
    """Prometheus view of what sockets refused: register it with a process's registry.

    `snoop_curve_clients_rejected_total{endpoint}`: CurveZMQ clients whose key is not in
    the bound socket's allow-list (0 for sockets without CURVE).
    """

    def __init__(self, sockets: Iterable[Sender | Receiver]) -> None:
        self.sockets = tuple(sockets)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "snoop_curve_clients_rejected",
            "CurveZMQ clients refused: their key is not in SNOOP_CURVE_ALLOWED_KEYS",
            labels=["endpoint"])
        for sock in self.sockets:
            family.add_metric([sock.endpoint], sock.auth_rejected)
        yield family


def new_context() -> Context:
    return Context()


def generate_keypair(directory: str, name: str) -> tuple[str, str]:
    """Write NAME.key (public) and NAME.key_secret (0600); returns both paths."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # The secret file is created private, not made so after it was written.
    old = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret

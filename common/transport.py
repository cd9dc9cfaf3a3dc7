"""All ZeroMQ socket setup: endpoints, high-water marks, linger, reconnect and CURVE.

Process code gets a `Sender` or a `Receiver` and only sends and receives typed
messages; nothing outside this module touches zmq, and nothing outside `protocol`
touches msgpack.

Who binds: the side that many peers reach. The processor binds the events link (many
tracers fan in), the reporter binds the updates link and the checkpoint link (a PUB
socket every tracer subscribes to).

Security: `ipc://` relies on file permissions of the socket's directory. `tcp://`
beyond loopback needs CurveZMQ keys (the binding side allow-lists client public keys)
unless `insecure_tcp` is set explicitly.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket as socketlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from snoop.common.protocol import Message, MessageType, ProtocolError, decode, encode

SEND_HWM = 2000
RECV_HWM = 2000
LINGER_MS = 2000
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2000

log = logging.getLogger(__name__)


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
                 security: Security) -> None:
        self.endpoint = endpoint
        self._authenticator: ThreadAuthenticator | None = None
        self.socket = context.socket(kind)
        if kind == zmq.PUSH:
            # Queue nothing for peers that are not connected: a full or absent downstream
            # shows up as a failed send, which the caller keeps and retries.
            self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.LINGER, LINGER_MS)
        self.socket.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        self.socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        self.socket.setsockopt(zmq.RCVHWM, RECV_HWM)
        try:
            if endpoint.startswith("tcp://"):
                self._secure(context, bind, security)
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

    def _secure(self, context: zmq.Context, bind: bool, security: Security) -> None:
        if not security.secret_key_file:
            if security.insecure_tcp or _is_loopback_tcp(self.endpoint):
                return
            raise TransportError(
                f"{self.endpoint}: tcp beyond loopback needs SNOOP_CURVE_SECRET_KEY "
                "(or SNOOP_INSECURE_TCP=true to accept an unauthenticated link)"
            )
        public, secret = _load_keypair(security.secret_key_file, "SNOOP_CURVE_SECRET_KEY")
        self.socket.curve_publickey = public
        self.socket.curve_secretkey = secret
        if bind:
            if not security.allowed_keys_dir or not Path(security.allowed_keys_dir).is_dir():
                raise TransportError(
                    f"SNOOP_CURVE_ALLOWED_KEYS={security.allowed_keys_dir!r}: expected a "
                    "directory of allowed client public keys"
                )
            self._authenticator = ThreadAuthenticator(context)
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=security.allowed_keys_dir)
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

    def close(self, linger: int | None = None) -> None:
        self.socket.close(linger=LINGER_MS if linger is None else linger)
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None


class Sender(_Endpoint):
    """PUSH (or PUB) side. `send()` never blocks: False means 'not sent, keep it'."""

    def __init__(self, context: zmq.Context, endpoint: str, *, bind: bool = False,
                 publish: bool = False, security: Security = Security()) -> None:
        super().__init__(context, zmq.PUB if publish else zmq.PUSH, endpoint, bind, security)
        self.sent = 0
        self.blocked = 0

    def send(self, message: Message) -> bool:
        try:
            self.socket.send(encode(message), flags=zmq.NOBLOCK)
        except zmq.Again:
            self.blocked += 1
            return False
        self.sent += 1
        return True


class Receiver(_Endpoint):
    """PULL (or SUB) side. Invalid messages are counted, logged and dropped."""

    def __init__(self, context: zmq.Context, endpoint: str, accepts: Iterable[MessageType], *,
                 bind: bool = True, subscribe: bool = False,
                 security: Security = Security()) -> None:
        super().__init__(context, zmq.SUB if subscribe else zmq.PULL, endpoint, bind, security)
        if subscribe:
            self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.accepts = frozenset(accepts)
        self.received = 0
        self.invalid = 0

    def recv(self, timeout: float = 0.0) -> Message | None:
        """One valid message, or None if none arrived within `timeout` seconds."""
        deadline_ms = int(timeout * 1000)
        while True:
            if not self.socket.poll(deadline_ms, zmq.POLLIN):
                return None
            data = self.socket.recv(flags=zmq.NOBLOCK)
            try:
                message = decode(data, self.accepts)
            except ProtocolError as exc:
                self.invalid += 1
                log.warning("dropped invalid message", extra={"endpoint": self.endpoint,
                                                               "error": str(exc)})
                deadline_ms = 0
                continue
            self.received += 1
            return message

    def recv_all(self, limit: int = 10_000) -> list[Message]:
        """Every message already waiting, up to `limit`, without blocking."""
        messages = []
        while len(messages) < limit:
            message = self.recv(0)
            if message is None:
                break
            messages.append(message)
        return messages


def new_context() -> zmq.Context:
    return zmq.Context()


def generate_keypair(directory: str, name: str) -> tuple[str, str]:
    """Write NAME.key (public) and NAME.key_secret; returns both paths."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return public, secret

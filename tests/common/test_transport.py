"""Sockets: typed messages over ipc:// and tcp://, CURVE allow-lists, invalid input."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import zmq

from snoop.common.protocol import Checkpoint, Header, MessageType
from snoop.common.transport import (
    Receiver,
    Security,
    Sender,
    TransportError,
    generate_keypair,
    new_context,
)

CHECKPOINTS = {MessageType.CHECKPOINT}


@pytest.fixture
def context():
    ctx = new_context()
    yield ctx
    ctx.destroy(linger=0)


def send_until_received(sender: Sender, receiver: Receiver, seq: int = 1):
    message = Checkpoint(Header("reporter", seq), {"t": ((1, seq),)})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sender.send(message)
        got = receiver.recv(timeout=0.1)
        if got is not None:
            return got
    return None


def test_ipc_push_pull_round_trip(context, tmp_path):
    endpoint = f"ipc://{tmp_path}/sub/dir/link.sock"
    receiver = Receiver(context, endpoint, CHECKPOINTS)
    sender = Sender(context, endpoint)
    got = send_until_received(sender, receiver)
    assert got == Checkpoint(Header("reporter", 1), {"t": ((1, 1),)})


def test_send_without_a_peer_reports_not_sent(context, tmp_path):
    sender = Sender(context, f"ipc://{tmp_path}/nobody.sock")
    assert sender.send(Checkpoint(Header("r", 1), {})) is False
    assert sender.blocked == 1


def test_invalid_messages_are_counted_and_dropped(context, tmp_path):
    endpoint = f"ipc://{tmp_path}/link.sock"
    receiver = Receiver(context, endpoint, CHECKPOINTS)
    raw = context.socket(zmq.PUSH)
    raw.connect(endpoint)
    raw.send(b"\x93garbage")
    raw.send(b"")
    good = Sender(context, endpoint)
    assert send_until_received(good, receiver) is not None
    assert receiver.invalid == 2
    raw.close(linger=0)


def test_plain_tcp_beyond_loopback_is_refused_without_keys(context):
    with pytest.raises(TransportError, match="SNOOP_CURVE_SECRET_KEY"):
        Sender(context, "tcp://192.0.2.1:5555")


def test_curve_allows_listed_clients_only(context, tmp_path):
    keys = tmp_path / "keys"
    allowed = tmp_path / "allowed"
    server_public, server_secret = generate_keypair(str(keys), "server")
    client_public, client_secret = generate_keypair(str(keys), "client")
    _, stranger_secret = generate_keypair(str(keys), "stranger")
    allowed.mkdir()
    (allowed / "client.key").write_bytes(Path(client_public).read_bytes())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    receiver = Receiver(context, endpoint, CHECKPOINTS, security=Security(
        secret_key_file=server_secret, allowed_keys_dir=str(allowed)))
    try:
        friend = Sender(context, endpoint, security=Security(
            secret_key_file=client_secret, server_key_file=server_public))
        assert send_until_received(friend, receiver) is not None
        friend.close(linger=0)
        stranger = Sender(context, endpoint, security=Security(
            secret_key_file=stranger_secret, server_key_file=server_public))
        assert send_until_received(stranger, receiver, seq=2) is None
        stranger.close(linger=0)
    finally:
        receiver.close(linger=0)


def test_curve_server_needs_an_allow_list(context, tmp_path):
    _, secret = generate_keypair(str(tmp_path), "server")
    with pytest.raises(TransportError, match="SNOOP_CURVE_ALLOWED_KEYS"):
        Receiver(context, "tcp://127.0.0.1:0", CHECKPOINTS,
                 security=Security(secret_key_file=secret))

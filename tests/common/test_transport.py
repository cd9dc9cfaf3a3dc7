"""Sockets: typed messages over ipc:// and tcp://, CURVE allow-lists, invalid input."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
import zmq
from prometheus_client import CollectorRegistry

from snoop.common.protocol import (
    TIME_MAX_AHEAD,
    Checkpoint,
    EventBatch,
    Header,
    MessageType,
    encode,
)
from snoop.common.transport import (
    LogLimiter,
    Receiver,
    Security,
    Sender,
    SocketCollector,
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


def test_plain_tcp_beyond_loopback_with_the_insecure_flag_warns(context, caplog):
    sender = Sender(context, "tcp://192.0.2.1:5555", security=Security(insecure_tcp=True))
    sender.close(linger=0)
    assert "plain tcp beyond loopback" in caplog.text
    caplog.clear()
    Sender(context, f"tcp://127.0.0.1:{free_port()}").close(linger=0)
    assert "plain tcp" not in caplog.text  # loopback needs no keys and gets no warning


def test_reconnect_intervals_are_spread_across_sockets(context):
    sockets = [Sender(context, f"tcp://127.0.0.1:{free_port()}") for _ in range(20)]
    intervals = {s.reconnect_ms for s in sockets}
    for s in sockets:
        s.close(linger=0)
    assert len(intervals) > 1
    assert all(100 <= first < 200 and 2000 <= most < 3000 for first, most in intervals)


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@pytest.fixture
def curve_keys(tmp_path):
    """Server, an allowed client and a stranger; returns their key files and the allow-list."""
    keys = tmp_path / "keys"
    allowed = tmp_path / "allowed"
    server_public, server_secret = generate_keypair(str(keys), "server")
    client_public, client_secret = generate_keypair(str(keys), "client")
    _, stranger_secret = generate_keypair(str(keys), "stranger")
    allowed.mkdir()
    (allowed / "client.key").write_bytes(Path(client_public).read_bytes())
    return {"server_public": server_public, "server_secret": server_secret,
            "client_secret": client_secret, "stranger_secret": stranger_secret,
            "allowed": str(allowed)}


def curve_server(keys: dict) -> Security:
    return Security(secret_key_file=keys["server_secret"], allowed_keys_dir=keys["allowed"])


def curve_client(keys: dict, who: str) -> Security:
    return Security(secret_key_file=keys[f"{who}_secret"], server_key_file=keys["server_public"])


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_curve_allows_listed_clients_only(context, curve_keys, caplog):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    receiver = Receiver(context, endpoint, CHECKPOINTS,
                        security=curve_server(curve_keys))
    try:
        friend = Sender(context, endpoint, security=curve_client(curve_keys, "client"))
        assert send_until_received(friend, receiver) is not None
        friend.close(linger=0)
        assert receiver.auth_rejected == 0
        with caplog.at_level(logging.WARNING, logger="snoop.common.transport"):
            stranger = Sender(context, endpoint, security=curve_client(curve_keys, "stranger"))
            stranger.send(Checkpoint(Header("reporter", 2), {}))
            assert wait_for(lambda: receiver.auth_rejected >= 1)
            assert receiver.recv(timeout=0.2) is None
            stranger.close(linger=0)
        refused = [r for r in caplog.records if "refused a CurveZMQ client" in r.getMessage()]
        assert len(refused) == 1
        assert refused[0].endpoint == endpoint and refused[0].client_key
        registry = CollectorRegistry()
        registry.register(SocketCollector([receiver]))
        assert registry.get_sample_value("snoop_curve_clients_rejected_total",
                                         {"endpoint": endpoint}) == receiver.auth_rejected
    finally:
        receiver.close(linger=0)


def test_two_curve_servers_share_one_context(context, curve_keys):
    """The reporter binds its updates and checkpoint links in one context: ZeroMQ has one
    ZAP handler per context, so both sockets must share it."""
    updates = f"tcp://127.0.0.1:{free_port()}"
    checkpoints = f"tcp://127.0.0.1:{free_port()}"
    server = curve_server(curve_keys)
    receiver = Receiver(context, updates, CHECKPOINTS, security=server)
    publisher = Sender(context, checkpoints, bind=True, publish=True, security=server)
    try:
        friend = Sender(context, updates, security=curve_client(curve_keys, "client"))
        assert send_until_received(friend, receiver) is not None
        friend.close(linger=0)
        stranger = Receiver(context, checkpoints, CHECKPOINTS, bind=False, subscribe=True,
                            security=curve_client(curve_keys, "stranger"))
        assert wait_for(lambda: publisher.auth_rejected == 1)
        assert receiver.auth_rejected == 0  # each socket counts its own
        stranger.close(linger=0)
    finally:
        publisher.close(linger=0)
        assert context.gatekeeper is not None  # still serving the receiver
        receiver.close(linger=0)
        assert context.gatekeeper is None  # stopped with the last CURVE server


def test_ipv6_endpoints_work(context):
    endpoint = f"tcp://[::1]:{free_port('::1')}"
    receiver = Receiver(context, endpoint, CHECKPOINTS)
    sender = Sender(context, endpoint)
    try:
        assert send_until_received(sender, receiver) is not None
    finally:
        sender.close(linger=0)
        receiver.close(linger=0)


def test_curve_server_needs_an_allow_list(context, tmp_path):
    _, secret = generate_keypair(str(tmp_path), "server")
    with pytest.raises(TransportError, match="SNOOP_CURVE_ALLOWED_KEYS"):
        Receiver(context, "tcp://127.0.0.1:0", CHECKPOINTS,
                 security=Security(secret_key_file=secret))


def test_invalid_messages_are_logged_at_most_once_a_second_per_reason(context, tmp_path, caplog):
    now = [1000.0]
    endpoint = f"ipc://{tmp_path}/link.sock"
    receiver = Receiver(context, endpoint, CHECKPOINTS, clock=lambda: now[0])
    raw = context.socket(zmq.PUSH)  # one pipe: messages arrive in the order sent
    raw.connect(endpoint)

    def send_garbage_then_one_good(garbage: int) -> None:
        for _ in range(garbage):
            raw.send(b"\x93garbage")
        raw.send(encode(Checkpoint(Header("reporter", 1), {})))
        assert wait_for(lambda: receiver.recv(timeout=0.05) is not None)

    def lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "dropped invalid message"]

    with caplog.at_level(logging.WARNING, logger="snoop.common.transport"):
        send_garbage_then_one_good(200)
        assert receiver.invalid == 200  # the count stays exact
        assert len(lines()) == 1 and lines()[0].reason == "not valid msgpack"
        now[0] += 1.0
        send_garbage_then_one_good(1)
    assert receiver.invalid == 201
    assert len(lines()) == 2 and lines()[1].suppressed == 199
    raw.close(linger=0)


def test_message_timestamps_are_bounded_by_the_receivers_clock(context, tmp_path):
    endpoint = f"ipc://{tmp_path}/events.sock"
    now = 1_800_000_000.0
    receiver = Receiver(context, endpoint, {MessageType.EVENT_BATCH}, clock=lambda: now)
    sender = Sender(context, endpoint)
    ahead = EventBatch(Header("t", 1), (), {}, sent_at=now + TIME_MAX_AHEAD + 60)
    assert wait_for(lambda: sender.send(ahead))
    assert wait_for(lambda: receiver.recv(timeout=0.05) is not None or receiver.invalid == 1)
    assert receiver.invalid == 1
    sender.close(linger=0)


def test_log_limiter_counts_what_it_leaves_out(caplog):
    now = [0.0]
    limiter = LogLimiter(logging.getLogger("test.limiter"), every=1.0, clock=lambda: now[0],
                         max_reasons=2)
    with caplog.at_level(logging.WARNING, logger="test.limiter"):
        assert limiter.warning("a", "msg a")
        assert not limiter.warning("a", "msg a")
        assert limiter.warning("b", "msg b")  # another reason has its own pace
        assert limiter.warning("c", "msg c")  # past max_reasons: shares "other"
        assert not limiter.warning("d", "msg d")
        now[0] = 1.0
        assert limiter.warning("a", "msg a")
    assert [(r.reason, r.suppressed) for r in caplog.records] == [
        ("a", 0), ("b", 0), ("other", 0), ("a", 1)]


def test_a_peer_sending_only_garbage_cannot_hold_one_recv_call(tmp_path):
    from snoop.common import transport

    context = new_context()
    endpoint = f"ipc://{tmp_path}/garbage.sock"
    receiver = Receiver(context, endpoint, {MessageType.CHECKPOINT})
    raw = context.socket(zmq.PUSH)
    raw.connect(endpoint)
    try:
        for _ in range(transport.MAX_INVALID_PER_CALL + 10):
            raw.send(b"not msgpack")
        time.sleep(0.3)
        assert receiver.recv(timeout=1.0) is None
        assert receiver.invalid == transport.MAX_INVALID_PER_CALL
    finally:
        raw.close(linger=0)
        receiver.close(linger=0)
        context.term()

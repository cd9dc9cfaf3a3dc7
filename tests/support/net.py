"""Loopback ports and readiness probes for tests that start Snoop's processes."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_block(count: int = 3) -> int:
    """A base port with `count` free consecutive ports on 127.0.0.1."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        held = []
        try:
            for offset in range(count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no block of free ports")


def is_ready(port: int, host: str = "127.0.0.1") -> bool:
    """Whether the process serving metrics on host:port answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_healthy(base_url: str, child: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until the server `child` runs answers GET /healthz with 200; AssertionError (with
    its stderr when captured) if it exits or does not answer in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if child.poll() is not None:
            err = child.stderr.read() if child.stderr else ""
            raise AssertionError(f"the server exited with {child.returncode}: {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{base_url} did not answer /healthz in {timeout:.0f} s")
        time.sleep(0.1)

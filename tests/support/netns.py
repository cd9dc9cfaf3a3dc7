"""Network namespaces joined to the host by a veth pair: several "hosts" on one machine.

Each namespace gets `10.<net>.<n>.2` on its end and the host `10.<net>.<n>.1` on the
other, so a process run in it (`command()`: nsenter, network namespace only, so /sys
and its cgroup, tracefs and bpffs mounts stay the host's) reaches the host over a real
network path, not loopback. Everything made is removed by `remove()`, even half made.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from dataclasses import dataclass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


@dataclass
class NetNamespace:
    name: str
    host_if: str
    host_address: str  # the host's end: what processes in the namespace connect to
    address: str  # the namespace's end

    @classmethod
    def create(cls, net: int, number: int) -> NetNamespace:
        tag = uuid.uuid4().hex[:6]
        made = cls(f"snoop-{tag}-{number}", f"sv{tag}{number}", f"10.{net}.{number}.1",
                   f"10.{net}.{number}.2")
        peer = f"sp{tag}{number}"
        try:
            _ip("netns", "add", made.name)
            _ip("link", "add", made.host_if, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", made.name)
            _ip("addr", "add", f"{made.host_address}/24", "dev", made.host_if)
            _ip("link", "set", made.host_if, "up")
            for args in (("addr", "add", f"{made.address}/24", "dev", peer),
                         ("link", "set", peer, "up"), ("link", "set", "lo", "up")):
                _ip("-n", made.name, *args)
        except subprocess.CalledProcessError as exc:
            made.remove()
            raise RuntimeError(f"cannot make network namespace {made.name}: "
                               f"{exc.stderr.strip()}") from None
        return made

    def command(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.name}", "--", *argv]

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _ip("netns", "delete", self.name, check=False)  # takes its veth end along
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _ip("link", "delete", self.host_if, check=False)

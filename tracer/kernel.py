"""The kernel side as the long-running tracer holds it: link and map fds, no bcc.

`KernelSide.open()` adopts a kernel side an earlier tracer pinned, when it is the one
this tracer would build (same source, settings and kernel); otherwise it runs the
compile step (tracer/compiler.py) in a child process, receives the fds, and pins them.
Pinned (in bpffs, under /sys/fs/bpf/snoop/<instance>), the programs stay attached and
the ring buffer keeps filling while no tracer runs: a tracer killed and restarted picks
up where it stopped, and the kernel's counters go on counting what did not fit.
Without bpffs the fds live as long as this process, and a restart starts afresh.

A clean stop (`close(detach=True)`) pauses the programs, lets the caller drain, then
removes the pins and closes everything: the programs go with the last reference.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from snoop.tracer import cgroups, maps
from snoop.tracer.bpfsys import Bpf
from snoop.tracer.build import BuildPlan, LoadError
from snoop.tracer.compiler import MAX_MESSAGE, plan_argument
from snoop.tracer.perfbuf import PerfReader
from snoop.tracer.ringbuf import RingReader

INCLUDE = 1
EXCLUDE = 2
BPFFS = "/sys/fs/bpf"
MANIFEST = "kernel.json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Map:
    fd: int
    layout: maps.MapLayout | None
    value_size: int



def instance_of(run_dir: str) -> str:
    """One kernel side per run directory: sidecars on one node each have their own."""
    return hashlib.sha256(os.path.abspath(run_dir).encode()).hexdigest()[:16]


def pin_dir_of(run_dir: str) -> str:
    return os.path.join(BPFFS, "snoop", instance_of(run_dir))


def bpffs_available(root: str = BPFFS) -> bool:
    """bpffs is mounted at root, or can be (root only)."""
    try:
        with open("/proc/self/mounts") as handle:
            if any(line.split()[1:3] == [root, "bpf"] for line in handle):
                return True
    except OSError:
        return False
    if not os.path.isdir(root):
        return False
    result = subprocess.run(["mount", "-t", "bpf", "bpf", root], capture_output=True)
    return result.returncode == 0


class KernelSide:
    def __init__(self, manifest: dict, fds: dict[str, int], pin_dir: str | None,
                 adopted: bool) -> None:
        self.manifest = manifest
        self.pin_dir = pin_dir  # None: not pinned
        self.adopted = adopted  # True: an earlier tracer's kernel side, still attached
        self._bpf = Bpf()
        self._fds = fds
        self._maps: dict[str, _Map] = {}
        for name in maps.ALL:
            fd = fds[f"map-{name}"]
            info = self._bpf.map_info(fd)
            layout = maps.LAYOUTS.get(name)
            if layout is not None and (info.key_size != layout.key.size or
                                       info.value_size != layout.value.size):
                raise LoadError(f"BPF map {name} is {info.key_size}/{info.value_size} bytes "
                                f"(key/value), tracer/maps.py says "
                                f"{layout.key.size}/{layout.value.size}")
            self._maps[name] = _Map(fd, layout, info.value_size)
        if manifest.get("event_path", "ring buffer") == "ring buffer":
            self.ring: RingReader | PerfReader = RingReader(self._maps["events"].fd,
                                                            manifest["ringbuf_bytes"])
        else:
            self.ring = PerfReader(self._maps["events"].fd, manifest["ringbuf_bytes"],
                                   self._bpf, manifest.get("wakeup_every", 64))
        self._closed = False

    # ------------------------------------------------------------ building or adopting

    @classmethod
    def open(cls, plan: BuildPlan, run_dir: str) -> KernelSide:
        pin_dir = pin_dir_of(run_dir) if bpffs_available() else None
        manifest_path = os.path.join(run_dir, MANIFEST)
        if pin_dir is not None:
            adopted = cls._adopt(plan, pin_dir, manifest_path)
            if adopted is not None:
                return adopted
            remove_pins(pin_dir)
        manifest, fds = compile_in_child(plan)
        side = cls(manifest, fds, None, adopted=False)
        if pin_dir is not None and not manifest.get("pinnable", True):
            log.warning("the kernel side cannot outlive this tracer (BPF perf links need "
                        "5.15, ring buffers 5.8): a restart is a counted gap",
                    extra={"event_path": manifest.get("event_path", "")})
        elif pin_dir is not None:
            side._pin(pin_dir)
            write_manifest(manifest_path, manifest)
        return side

    @classmethod
    def _adopt(cls, plan: BuildPlan, pin_dir: str, manifest_path: str) -> KernelSide | None:
        try:
            with open(manifest_path) as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            return None
        if manifest.get("digest") != plan.digest or not os.path.isdir(pin_dir):
            return None
        bpf = Bpf()
        fds: dict[str, int] = {}
        try:
            for name in sorted(os.listdir(pin_dir)):
                fds[name] = bpf.get_pinned(os.path.join(pin_dir, name))
            if any(f"map-{name}" not in fds for name in maps.ALL):
                raise LoadError("pinned kernel side incomplete")
            return cls(manifest, fds, pin_dir, adopted=True)
        except (OSError, LoadError) as exc:
            log.warning("cannot adopt the pinned kernel side; building anew",
                        extra={"pins": pin_dir, "error": str(exc)})
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            return None

    def _pin(self, pin_dir: str) -> None:
        os.makedirs(pin_dir, exist_ok=True)
        for name, fd in self._fds.items():
            self._bpf.pin(fd, os.path.join(pin_dir, name))
        self.pin_dir = pin_dir

    # ------------------------------------------------------------ what it says

    @property
    def attached(self) -> tuple[str, ...]:
        return tuple(self.manifest["attached"])

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(self.manifest["missing"])

    @property
    def skipped(self) -> tuple[str, ...]:
        """Optional hooks this kernel refused, each with why ("io_uring:event: reason")."""
        return tuple(self.manifest.get("skipped", ()))

    @property
    def compile_seconds(self) -> float:
        return float(self.manifest.get("compile_seconds", 0.0))

    # ------------------------------------------------------------ map access

    def _lookup(self, name: str, *key) -> tuple | None:
        m = self._maps[name]
        raw = self._bpf.lookup(m.fd, m.layout.key.pack(*key), m.value_size)
        return None if raw is None else m.layout.value.unpack_from(raw)

    def _update(self, name: str, key: tuple, value: tuple) -> None:
        m = self._maps[name]
        self._bpf.update(m.fd, m.layout.key.pack(*key), m.layout.value.pack(*value))

    def set_targets(self, include: Iterable[int], exclude: Iterable[int]) -> None:
        """Replace the target set; the kernel sees the change at once."""
        wanted = {int(i): INCLUDE for i in include}
        wanted.update({int(i): EXCLUDE for i in exclude})
        targets = self._maps["targets"]
        for key in self._bpf.keys(targets.fd, 8):
            if maps.U64.unpack(key)[0] not in wanted:
                self._bpf.delete(targets.fd, key)
        for cgroup_id, mark in wanted.items():
            self._update("targets", (cgroup_id,), (mark,))
        self._new_generation()

    def update_targets(self, added: Mapping[int, bool], removed: Iterable[int]) -> None:
        """Add and remove single ids (the descendants the tracer lists itself)."""
        targets = self._maps["targets"]
        for cgroup_id in removed:
            self._bpf.delete(targets.fd, maps.U64.pack(cgroup_id))
        for cgroup_id, traced in added.items():
            self._update("targets", (cgroup_id,), (INCLUDE if traced else EXCLUDE,))
        self._new_generation()

    def set_watch_comms(self, names: Iterable[bytes]) -> None:
        """`snoop watch --comm`: the process names its kernel side lets through."""
        for name in names:
            self._update("watch_comms", (name[:15],), (1,))

    def ran_untraced(self, cgroup_id: int) -> bool:
        """A hook ran for a process of this cgroup, and found it untraced, before the
        last change of the target set (call it right after `update_targets`)."""
        value = self._lookup("verdicts", cgroup_id)
        generation = self._lookup("generation", 0)
        if value is None or generation is None:
            return False
        # Cached before the target set changed (an older generation), and not traced.
        return value[0] >> 8 < generation[0] and value[0] & 0xFF != INCLUDE

    @property
    def has_ancestor_helper(self) -> bool:
        """The kernel side finds a cgroup's ancestors itself; else the tracer lists them."""
        return self.manifest.get("ancestor_helper", True)

    def entries(self, name: str) -> int:
        """How many entries map `name` holds now (a walk of its keys)."""
        m = self._maps[name]
        return len(self._bpf.keys(m.fd, m.layout.key.size))

    def exclude_process(self, tgid: int) -> None:
        self._update("excluded_tgids", (tgid,), (1,))
        self._new_generation()

    def _new_generation(self) -> None:
        """Cached verdicts carry the generation they were computed in: stale ones go."""
        generation = self._lookup("generation", 0)
        self._update("generation", (0,), ((generation[0] if generation else 0) + 1,))

    def counters(self) -> dict[int, int]:
        """Per-CPU counter slots, summed over CPUs."""
        m = self._maps["counters"]
        cpus = self._bpf.possible_cpus
        totals = {}
        for slot in range(8):
            raw = self._bpf.lookup(m.fd, maps.U32.pack(slot), 8 * cpus)
            totals[slot] = sum(maps.U64.unpack_from(raw, 8 * i)[0] for i in range(cpus)) \
                if raw else 0
        return totals

    def contexts(self, tgid: int) -> tuple[int, int] | None:
        """(fs context, fd table) the kernel holds for a process, None if none."""
        value = self._lookup("procs", tgid)
        return (value[0], value[1]) if value is not None else None

    def cwd_base(self, fs_context: int) -> int:
        value = self._lookup("cwds", fs_context)
        return value[0] if value is not None else 0

    def fd_base(self, files_context: int, fd: int) -> int:
        value = self._lookup("fds", files_context, fd, 0)
        return value[0] if value is not None else 0

    def io_uring_path_ops(self) -> dict[int, int]:
        """cgroup id -> io_uring requests that named a path, since the program loaded."""
        m = self._maps["uring_path_ops"]
        totals = {}
        for key in self._bpf.keys(m.fd, 8):
            value = self._bpf.lookup(m.fd, key, 8)
            if value is not None:
                totals[maps.U64.unpack(key)[0]] = maps.U64.unpack(value)[0]
        return totals

    # ------------------------------------------------------------ life cycle

    def pause(self) -> None:
        """Stop new events at once (programs stay attached but return immediately)."""
        self._update("control", (0,), (1,))

    def resume(self) -> None:
        self._update("control", (0,), (0,))

    def close(self, detach: bool, move_to: str | None = None) -> None:
        """detach=True: remove the pins too, so the programs go (a clean stop).
        detach=False: leave the pins, so capture goes on for the next tracer.
        move_to: a cgroup directory for the process that detaches, when the one the
        tracer is in is about to be removed."""
        if self._closed:
            return
        self._closed = True
        self.ring.close()
        if detach and self.pin_dir is not None:
            remove_pins(self.pin_dir)
        fds = list(self._fds.values())
        if detach or self.pin_dir is None:
            _release_in_background(fds, move_to)
        else:
            for fd in fds:
                _close_quietly(fd)  # the pins keep everything: nothing is detached


def _release_in_background(fds: list[int], move_to: str | None) -> None:
    """Close the last references to the links, detaching the programs, in a grandchild.

    The kernel detaches one syscall tracepoint at a time, each after an RCU grace period
    under one mutex: ~40 ms each, seconds for them all. The programs are paused and the
    final drain is done by now, so nobody needs to wait for that: the grandchild does,
    and the tracer's stop stays instant."""
    parent_done_r, parent_done_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            if os.fork() == 0:
                keep = {*fds, parent_done_r}  # not the run-dir lock, not a socket
                for name in os.listdir("/proc/self/fd"):
                    if int(name) not in keep:
                        _close_quietly(int(name))
                if move_to:
                    with contextlib.suppress(cgroups.CgroupError):
                        cgroups.move_process(move_to, os.getpid())
                os.read(parent_done_r, 1)  # EOF once the tracer closed its copies
                for fd in fds:
                    _close_quietly(fd)
        finally:
            os._exit(0)
    for fd in fds:
        _close_quietly(fd)  # not the last reference: cheap
    os.close(parent_done_w)
    os.close(parent_done_r)
    os.waitpid(child, 0)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def remove_pins(pin_dir: str) -> None:
    if not os.path.isdir(pin_dir):
        return
    names = os.listdir(pin_dir)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: _unlink_quietly(os.path.join(pin_dir, n)), names))
    with contextlib.suppress(OSError):
        os.rmdir(pin_dir)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_manifest(path: str, manifest: dict) -> None:
    temp = path + ".tmp"
    with open(temp, "w") as handle:
        json.dump(manifest, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def compile_in_child(plan: BuildPlan) -> tuple[dict, dict[str, int]]:
    """Run tracer/compiler.py in a child process; receive the manifest and the fds."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "snoop.tracer.compiler", str(theirs.fileno()),
             plan_argument(plan)],
            pass_fds=[theirs.fileno()], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        theirs.close()
        try:
            message, fds, _, _ = socket.recv_fds(ours, MAX_MESSAGE, 255)
        finally:
            _, stderr = child.communicate(timeout=300)
    finally:
        ours.close()
        with contextlib.suppress(OSError):
            theirs.close()
    if not message:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
        raise LoadError(f"the BPF compile step exited {child.returncode} "
                        f"without an answer{': ' + tail[0] if tail else ''}")
    reply = json.loads(message)
    if "error" in reply:
        raise LoadError(reply["error"])
    return reply["manifest"], dict(zip(reply["fds"], fds, strict=True))


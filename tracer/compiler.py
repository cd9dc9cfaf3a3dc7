"""The short-lived compile step: the only code that imports bcc, and so LLVM.

`python -m snoop.tracer.compiler SOCKET_FD PLAN_JSON` compiles the BPF program with bcc,
loads it, attaches every program as a BPF link, fills the tail-call program arrays, and
hands the link and map fds to the tracer over a Unix socket (SCM_RIGHTS) with a JSON
manifest. Then it exits, and with it 100 MB of compiler. The tracer holds the fds (and
pins them where bpffs allows), so no LLVM page is ever mapped in the process that lives
for weeks.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import time
from dataclasses import asdict

from snoop.tracer import maps
from snoop.tracer.bpfsys import Bpf, BpfError
from snoop.tracer.build import (
    BPF_SOURCE,
    PAGE_SIZE,
    BuildPlan,
    KernelSettings,
    LoadError,
    ringbuf_pages,
)

# Tail-call stages, in index order (STAGE_* in the BPF source).
STAGES = ("exit_stage", "magic_stage", "finish_stage", "stage_path2", "stage_model",
          "enter_stage")
MAX_MESSAGE = 1 << 20


def _bcc():
    try:
        import bcc
    except ImportError:
        raise LoadError("python module bcc missing: install Debian's python3-bpfcc") from None
    return bcc


def build(plan: BuildPlan) -> tuple[dict, dict[str, int]]:
    """Compile, load and attach; (manifest, name -> fd) of every link and held map."""
    bcc = _bcc()
    headers = f"/lib/modules/{platform.release()}/build"
    if not os.path.isdir(os.path.join(headers, "include")):
        raise LoadError(f"no kernel headers at {headers}: bcc cannot compile "
                        "(run scripts/setup.sh)")

    class Loader(bcc.BPF):
        def _trace_autoload(self) -> None:  # attached below, as links that can be pinned
            pass

    started = time.monotonic()
    stderr_fd = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        # bcc's clang prints pages of header warnings on stderr; keep the log clean.
        os.dup2(devnull, 2)
        program = Loader(src_file=str(BPF_SOURCE).encode(), cflags=plan.cflags)
    except Exception as exc:
        raise LoadError(f"BPF program failed to load: {exc}") from None
    finally:
        os.dup2(stderr_fd, 2)
        os.close(stderr_fd)
        os.close(devnull)
    bpf = Bpf()
    fds: dict[str, int] = {}
    attached: list[str] = []
    try:
        for index in range(bcc.lib.bpf_num_functions(program.module)):
            name = bcc.lib.bpf_function_name(program.module, index).decode()
            if name.startswith("tracepoint__"):
                category, event = name[len("tracepoint__"):].split("__", 1)
                fn = program.load_func(name.encode(), bcc.BPF.TRACEPOINT)
                fds[f"link-{event}"] = bpf.tracepoint_link(plan.tracefs, category, event, fn.fd)
                if not event.startswith("sys_exit_"):
                    attached.append(event.removeprefix("sys_enter_"))
        table = program[b"stage_progs"]
        for index, name in enumerate(STAGES):
            fn = program.load_func(name.encode(), bcc.BPF.TRACEPOINT)
            table[table.Key(index)] = table.Leaf(fn.fd)
        for name in maps.ALL:
            fds[f"map-{name}"] = os.dup(program[name.encode()].map_fd)
    except (BpfError, Exception) as exc:
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        raise LoadError(f"BPF program failed to attach: {exc}") from None
    manifest = {
        "digest": plan.digest,
        "attached": attached,
        "missing": list(plan.missing),
        "compile_seconds": round(time.monotonic() - started, 3),
        "ringbuf_bytes": ringbuf_pages(plan.settings.ringbuf_bytes) * PAGE_SIZE,
    }
    return manifest, fds


def compiled_layouts(plan: BuildPlan) -> dict[str, object]:
    """For tests: bcc's own view of the record header and of every map the tracer
    reads: {"header": [(field, offset, size)], map name: (key size, value size)}."""
    import ctypes

    bcc = _bcc()

    class Loader(bcc.BPF):
        def _trace_autoload(self) -> None:
            pass

    program = Loader(src_file=str(BPF_SOURCE).encode(), cflags=plan.cflags)
    try:
        leaf = program[b"event_layout"].Leaf
        found: dict[str, object] = {"header": [
            (name, getattr(leaf, name).offset, getattr(leaf, name).size)
            for name, _ in leaf._fields_]}
        for name in maps.LAYOUTS:
            table = program[name.encode()]
            leaf = getattr(table, "sLeaf", table.Leaf)  # per-CPU maps: one CPU's value
            found[name] = (ctypes.sizeof(table.Key), ctypes.sizeof(leaf))
        return found
    finally:
        program.cleanup()


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    raw = json.loads(argv[1])
    plan = BuildPlan(KernelSettings(**raw["settings"]), raw["tracefs"],
                     tuple(raw["present"]), tuple(raw["missing"]), tuple(raw["features"]))
    try:
        manifest, fds = build(plan)
    except LoadError as exc:
        sock.sendall(json.dumps({"error": str(exc)}).encode())
        return 1
    names = list(fds)
    message = json.dumps({"manifest": manifest, "fds": names}).encode()
    socket.send_fds(sock, [message], [fds[name] for name in names])
    return 0


def plan_argument(plan: BuildPlan) -> str:
    return json.dumps({"settings": asdict(plan.settings), "tracefs": plan.tracefs,
                       "present": list(plan.present), "missing": list(plan.missing),
                       "features": list(plan.features)})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

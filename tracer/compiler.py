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
import tempfile
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
# Hooks whose programs may fail to load on some kernels without stopping the tracer: the
# manifest lists them and the tracer says what it then cannot see.
OPTIONAL_CATEGORIES = ("io_uring",)


def _bcc():
    try:
        import bcc
    except ImportError:
        raise LoadError("python module bcc missing: install Debian's python3-bpfcc") from None
    return bcc


@contextlib.contextmanager
def _captured_stderr():
    """fd 2 into a temporary file for the block; yields a function returning its text."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        def text() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace")
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _why(output: str) -> str:
    """The lines of clang's or the verifier's output that say what went wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    chosen = errors[:3] if errors else lines[-3:]
    return (": " + " | ".join(chosen))[:2000] if chosen else ""


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
    # bcc's clang prints pages of header warnings on stderr: kept out of the log, but a
    # failure's own lines (clang's errors, the verifier's verdict) go into its message.
    with _captured_stderr() as captured:
        try:
            program = Loader(src_file=str(BPF_SOURCE).encode(), cflags=plan.cflags)
        except Exception as exc:
            raise LoadError(f"BPF program failed to load: {exc}{_why(captured())}") from None
    bpf = Bpf()
    fds: dict[str, int] = {}
    attached: list[str] = []
    skipped: list[str] = []
    all_pinnable = True
    try:
        for index in range(bcc.lib.bpf_num_functions(program.module)):
            name = bcc.lib.bpf_function_name(program.module, index).decode()
            if name.startswith("tracepoint__"):
                category, event = name[len("tracepoint__"):].split("__", 1)
                with _captured_stderr() as captured:
                    try:
                        fn = program.load_func(name.encode(), bcc.BPF.TRACEPOINT)
                    except Exception as exc:
                        if category not in OPTIONAL_CATEGORIES:
                            raise RuntimeError(f"{exc}{_why(captured())}") from None
                        skipped.append(f"{category}:{event}: {exc}{_why(captured())}")
                        continue
                fds[f"link-{event}"], pinnable = bpf.tracepoint_link(
                    plan.tracefs, category, event, fn.fd)
                all_pinnable = all_pinnable and pinnable
                if not event.startswith("sys_exit_"):
                    attached.append(event.removeprefix("sys_enter_"))
        table = program[b"stage_progs"]
        for index, name in enumerate(STAGES):
            with _captured_stderr() as captured:
                try:
                    fn = program.load_func(name.encode(), bcc.BPF.TRACEPOINT)
                except Exception as exc:
                    raise RuntimeError(f"{exc}{_why(captured())}") from None
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
        "skipped": skipped,
        # Perf-event attachments (before 5.15) cannot be pinned: none is, then. Nor with
        # perf buffers: they live in the tracer, and what one held would die with it.
        "pinnable": all_pinnable and plan.ringbuf,
        "compile_seconds": round(time.monotonic() - started, 3),
        "event_path": "ring buffer" if plan.ringbuf else "perf buffer",
        "ancestor_helper": "-DHAVE_ANCESTOR_CGROUP_HELPER" in plan.features,
        # The ring buffer's size; or each CPU's perf buffer's, about as much in all.
        "ringbuf_bytes": ringbuf_pages(plan.settings.ringbuf_bytes if plan.ringbuf else
                                       plan.settings.ringbuf_bytes // bpf.possible_cpus
                                       ) * PAGE_SIZE,
        "wakeup_every": plan.settings.wakeup_every,
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

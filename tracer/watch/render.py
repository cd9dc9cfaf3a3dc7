"""`snoop watch` output: a table, or one JSON object per line; and the closing summary."""

from __future__ import annotations

import json
import time
from typing import TextIO

from snoop.tracer.watch.aggregate import Summary
from snoop.tracer.watch.events import WatchEvent, display_path

HEADER = f"{'TIME':<12} {'PID':>7} {'COMM':<15} {'OP':<8} {'FD':>4} {'BYTES':>10} " \
         f"{'RESULT':<16} PATH"
TOP_FILES = 5


class Renderer:
    def __init__(self, out: TextIO, output_format: str) -> None:
        self._out = out
        self._json = output_format == "json"
        self._header_done = False

    def events(self, events: list[WatchEvent]) -> None:
        if not events:
            return
        write = self._out.write
        if self._json:
            for event in events:
                write(json.dumps(event.as_json(), separators=(",", ":")) + "\n")
        else:
            if not self._header_done:
                write(HEADER + "\n")
                self._header_done = True
            for event in events:
                write(_row(event) + "\n")
        self._out.flush()

    def summary(self, summary: Summary, kernel: dict[str, int], seconds: float) -> None:
        if self._json:
            self._out.write(json.dumps({
                "type": "summary", "seconds": round(seconds, 3),
                "calls_by_op": dict(summary.calls_by_op),
                "top_written": _top(summary.written), "top_read": _top(summary.read),
                "unresolved_fds": summary.unresolved_fds, **kernel,
            }, separators=(",", ":")) + "\n")
            self._out.flush()
            return
        lines = [f"--- snoop watch: {seconds:.1f} s"]
        ops = ", ".join(f"{op} {n:,}" for op, n in summary.calls_by_op.most_common())
        lines.append(f"calls by op: {ops or 'none'}")
        for title, counter in (("written", summary.written), ("read", summary.read)):
            for path, n in counter.most_common(TOP_FILES):
                lines.append(f"top {title}: {n:>12,} bytes  {display_path(path)}")
        lines.append(
            f"dropped (no room in the ring buffer): {kernel['dropped_io']:,} read/write/close, "
            f"{kernel['dropped_paths']:,} path records, {kernel['dropped_notes']:,} "
            f"bookkeeping notes; fds resolved from /proc: {kernel['primed']:,}; fds whose "
            f"path was not found: {summary.unresolved_fds:,}")
        full = kernel["fd_map_entries"] >= kernel["fd_map_capacity"]
        lines.append(f"fd map: {kernel['fd_map_entries']:,} of {kernel['fd_map_capacity']:,} "
                     "entries" + (" (full: its oldest fds were forgotten, and asked of /proc "
                                  "again when used)" if full else ""))
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()


def _row(event: WatchEvent) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.time)) + \
        f".{int(event.time * 1000) % 1000:03d}"
    fd = "" if event.fd is None else str(event.fd)
    count = "" if event.bytes is None else f"{event.bytes:,}"
    op = event.op + (f"({event.mode})" if event.mode else "")
    comm = event.comm.decode("utf-8", errors="replace")
    return (f"{stamp:<12} {event.pid:>7} {comm:<15.15} {op:<8} {fd:>4} {count:>10} "
            f"{event.result:<16} {display_path(event.path)}")


def _top(counter) -> list[dict]:
    return [{"path": display_path(path), "bytes": n} for path, n in counter.most_common(TOP_FILES)]

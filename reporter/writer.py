"""Reports on disk: where each one lives, loading them at start, writing them atomically.

Layout:
- sidecar mode (`SNOOP_REPORT_DIR` empty): one report at `SNOOP_REPORT_PATH`, and beside
  it the state file `.NAME.state.json`, the journal `.NAME.journal` and the push spool
  directory `.NAME.spool/`;
- node mode (`SNOOP_REPORT_DIR` set): one `<name>.json` per workload in that directory,
  and `.snoop-reporter-state.json`, `.snoop-reporter.journal` and
  `.snoop-reporter-spool/`. `<name>` comes from what the workload is called
  (`report_filename`): its readable name when the tracer learnt one (`shop/web`,
  `prod/web-7d9f/app`, a container name), with every character outside `A-Za-z0-9._-`
  replaced by `_`, then `-` and the container's short id (or 12 hex digits of the key's
  SHA-256): `shop_web-4f3c2a1b9e8d.json`. Without a name, it is the key itself when the
  key is made only of those characters, does not start with `.` and is at most 128 long
  (a container id), or else the key made safe the same way with its hash
  (`/system.slice/cron.service` -> `system.slice_cron.service-<hash>.json`; the root
  cgroup `/` -> `root-cgroup-<hash>.json`). A report keeps the file it was first written
  to (or loaded from), so a name learnt later does not leave a second file behind. The
  key itself is inside the report (`workload_key`; `workload` in older reports), which is
  what loading trusts.

A report that cannot be read at all at start (not JSON, not a report) stops the
reporter with one line naming it, untouched: its state may say batches are persisted
whose files only that report holds, so starting without it would lose them silently.
(A report read in part keeps every readable path; see reporter/core.py.) A state file
that cannot be parsed is renamed `NAME.corrupt-<UTC time>` (never deleted); tracers then
re-send what they hold unconfirmed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from snoop.common.report import Report, ReportError, load_report, write_atomically

log = logging.getLogger("snoop.reporter")

class UnreadableReport(RuntimeError):
    """A report on disk that cannot be read; the message names it and says what to do."""


DIR_STATE_NAME = ".snoop-reporter-state.json"
DIR_JOURNAL_NAME = ".snoop-reporter.journal"
DIR_SPOOL_NAME = ".snoop-reporter-spool"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


_CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")


def report_filename(key: str, name: str = "") -> str:
    """A filesystem-safe, collision-resistant file name for a workload key and its
    readable name (none when it is the key itself)."""
    if name and name != key:
        short = key[:12] if _CONTAINER_ID.match(key) else _digest(key)
        safe = _UNSAFE.sub("_", name).strip("._")[:100] or "workload"
        return f"{safe}-{short}.json"
    if key and not _UNSAFE.search(key) and not key.startswith(".") and len(key) <= 128:
        return f"{key}.json"
    safe = _UNSAFE.sub("_", key).strip("._")[:100] or ("root-cgroup" if key == "/" else
                                                        "workload")
    return f"{safe}-{_digest(key)}.json"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]


class ReportFiles:
    def __init__(self, report_path: str, report_dir: str = "", *,
                 write: Callable[[str, str], None] = write_atomically,
                 wall: Callable[[], float] = time.time) -> None:
        self.sidecar = not report_dir
        self.report_path = report_path
        self.report_dir = report_dir
        self._write = write
        self._wall = wall
        if self.sidecar:
            directory, name = os.path.split(os.path.abspath(report_path))
            self.directory = directory
            self.state_path = os.path.join(directory, f".{name}.state.json")
            self.journal_path = os.path.join(directory, f".{name}.journal")
            self.spool_dir = os.path.join(directory, f".{name}.spool")
        else:
            self.directory = report_dir
            self.state_path = os.path.join(report_dir, DIR_STATE_NAME)
            self.journal_path = os.path.join(report_dir, DIR_JOURNAL_NAME)
            self.spool_dir = os.path.join(report_dir, DIR_SPOOL_NAME)
        self.corrupt_moved = 0
        self._paths: dict[str, str] = {}  # node mode: key -> its report's file
        # Other modules' sections of the state file, each built when the state is written
        # (under the reporter's lock, so it agrees with the reports of the same round).
        self.state_sections: dict[str, Callable[[], Any]] = {}
        # The state file as loaded at start; None when absent or moved aside as corrupt.
        self.loaded_state: dict | None = None

    def path_for(self, key: str, name: str = "") -> str:
        """Where the report of `key` lives: the file it was first written to or loaded
        from, else the one its name gives."""
        if self.sidecar:
            return self.report_path
        path = self._paths.get(key)
        if path is None:
            path = os.path.join(self.report_dir, report_filename(key, name))
        return path

    def prepare(self) -> None:
        os.makedirs(self.directory, exist_ok=True)

    def write_report(self, key: str, text: str, name: str = "") -> None:
        path = self.path_for(key, name)
        self._write(path, text)
        if not self.sidecar:
            self._paths[key] = path

    def write_state(self, state: dict) -> None:
        state = {**state, **{name: build() for name, build in self.state_sections.items()}}
        self._write(self.state_path, json.dumps(state, indent=1, sort_keys=True) + "\n")

    # ------------------------------------------------------------ loading

    def load_reports(self) -> list[tuple[str, Report]]:
        """(key, report) for every report on disk; UnreadableReport if one cannot be."""
        if self.sidecar:
            paths = [self.report_path] if os.path.exists(self.report_path) else []
        else:
            try:
                names = sorted(os.listdir(self.report_dir))
            except FileNotFoundError:
                names = []
            paths = [os.path.join(self.report_dir, n) for n in names
                     if n.endswith(".json") and not n.startswith(".")]
        loaded = []
        for path in paths:
            try:
                report = load_report(path)
            except ReportError as exc:
                raise UnreadableReport(
                    f"report {path} cannot be read ({exc}); it is left as it is: move it "
                    "away (or repair it) and start again") from None
            if self.sidecar:
                key = ""
            else:
                key = (report.workload_key or report.workload
                       or os.path.basename(path)[: -len(".json")])
                report.workload_key = key
                report.workload = report.workload or key
                # Two files of one key (copied in by hand) are merged into the first.
                self._paths.setdefault(key, path)
            loaded.append((key, report))
        return loaded

    def load_state(self) -> dict | None:
        try:
            with open(self.state_path, "rb") as handle:
                data = json.loads(handle.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._move_aside(self.state_path, f"unreadable state file: {exc}")
            return None
        if not isinstance(data, dict):
            self._move_aside(self.state_path, "state file is not a JSON object")
            return None
        self.loaded_state = data
        return data

    def move_state_aside(self, reason: str) -> None:
        self.loaded_state = None
        self._move_aside(self.state_path, reason)

    def aside_path(self, path: str) -> str:
        """A free `PATH.corrupt-<UTC time>` name to keep a damaged file (or part of one)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._wall()))
        target = f"{path}.corrupt-{stamp}"
        n = 0
        while os.path.exists(target):
            n += 1
            target = f"{path}.corrupt-{stamp}-{n}"
        return target

    def _move_aside(self, path: str, reason: str) -> None:
        target = self.aside_path(path)
        try:
            os.rename(path, target)
        except OSError as exc:
            log.error("corrupt file could not be moved aside; leaving it and starting fresh",
                      extra={"path": path, "reason": reason, "error": str(exc)})
            return
        self.corrupt_moved += 1
        log.error("corrupt file moved aside; starting fresh for it",
                  extra={"path": path, "moved_to": target, "reason": reason})

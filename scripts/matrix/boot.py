"""Boot one guest under qemu (TCG), collect its MATRIX lines, parse the results."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field

from guest import Guest

# The tree the guest mounts at /work/main (its .venv included): this repository, or a
# snapshot of it (SNOOP_MATRIX_REPO), so that editing here cannot change a run midway.
REPO = os.environ.get("SNOOP_MATRIX_REPO") or \
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CMDLINE = "console=ttyS0 root=/dev/vda rw rootfstype=ext4 init=/matrix-init panic=-1 quiet"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|skipped)")
_SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|errors?|skipped).* in [\d.]+s.*?)=*$")


@dataclass
class Result:
    name: str
    krel: str
    facts: dict[str, str] = field(default_factory=dict)
    passed: int = 0
    failed: int = 0
    errors: int = 0
    failures: list[str] = field(default_factory=list)  # the short summary lines
    tracer_error: str = ""
    seconds: float = 0.0
    log: str = ""
    problem: str = ""  # no result at all: timeout, no boot

    @property
    def event_path(self) -> str:
        """As the tracer's own probes found it in the guest."""
        return self.facts.get("event_path", "?")

    @property
    def cgroup_filter(self) -> str:
        helper = self.facts.get("ancestor_cgroup_helper")
        return {"yes": "ancestor helper", "no": "tracer lists descendants"}.get(helper, "?")

    @property
    def pickup(self) -> str:
        """p50/p99 of a new child cgroup's pickup, where the tracer lists descendants."""
        if self.facts.get("ancestor_cgroup_helper") != "no":
            return "-"  # the kernel finds descendants itself: nothing to pick up
        found = re.search(r"p50 (\d+) us, p99 (\d+) us", self.facts.get("pickup", ""))
        return f"{found.group(1)}/{found.group(2)} us" if found else "-"


def qemu_argv(guest: Guest, memory: str, cpus: int, tests: str = "") -> list[str]:
    # The kernel hands unknown key=value parameters to init as its environment.
    cmdline = CMDLINE + f" MATRIX_REPO={REPO}" + (f" MATRIX_TESTS={tests}" if tests else "")
    return ["qemu-system-x86_64", "-accel", "tcg", "-m", memory, "-smp", str(cpus),
            "-nographic", "-no-reboot", "-kernel", guest.kernel, "-initrd", guest.initrd,
            "-append", cmdline,
            "-drive", f"file={guest.disk},format=raw,if=virtio,snapshot=on",
            "-virtfs", f"local,path={REPO},mount_tag=snoop,security_model=none,readonly=on",
            "-nic", "none"]


def boot(guest: Guest, log_path: str, timeout: float, memory: str = "3G",
         cpus: int = 2, tests: str = "") -> Result:
    """Run the guest to power-off or `timeout`, whichever is first (then kill it)."""
    result = Result(guest.name, guest.krel, log=log_path)
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(qemu_argv(guest, memory, cpus, tests), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            result.problem = f"timed out after {timeout:.0f}s"
        finally:
            if proc.poll() is None:
                proc.kill()  # our own qemu, by its PID
                proc.wait()
    result.seconds = time.monotonic() - start
    with open(log_path, "rb") as handle:
        parse(handle.read().decode(errors="replace"), result)
    return result


def parse(console: str, result: Result) -> None:
    lines = [_ANSI.sub("", line).rstrip("\r") for line in console.splitlines()]
    for line in lines:
        if line.startswith("MATRIX ") and "=" in line:
            key, _, value = line[len("MATRIX "):].partition("=")
            result.facts[key] = value
        match = _SUMMARY.match(line.strip())
        if match:
            for count, kind in _OUTCOME.findall(match.group(1)):
                if kind == "passed":
                    result.passed = int(count)
                elif kind == "failed":
                    result.failed = int(count)
                elif kind.startswith("error"):
                    result.errors = int(count)
        if line.startswith(("FAILED ", "ERROR ")):
            result.failures.append(line)
        if not result.tracer_error:
            found = re.search(r"snoop tracer: .*", line)
            if found:
                result.tracer_error = found.group(0)
    if "done" not in console and not result.problem:
        result.problem = "the guest stopped before the tests finished (see its log)"

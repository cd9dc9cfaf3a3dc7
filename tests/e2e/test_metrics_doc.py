"""docs/metrics.md is the one table of every metric: a real `snoop run` exposes exactly
what it lists, per process, with the type it says, and no `*_created` series."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bpf, pytest.mark.e2e]

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
PROCESSES = ("tracer", "processor", "reporter")
ROW = re.compile(r"^\| `([a-z_]+)(?:\{[a-z_]+\})?` \| (counter|gauge) \| ([^|]+) \|", re.M)


def documented() -> dict[str, dict[str, str]]:
    """process -> {metric: type}; rows only present with an API endpoint left out."""
    table: dict[str, dict[str, str]] = {p: {} for p in PROCESSES}
    for name, kind, where in ROW.findall(DOC.read_text()):
        if "SNOOP_API_ENDPOINT" in where:
            continue
        for process in where.split(","):
            table[process.strip()][name] = kind
    return table


def exposed(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def test_the_metrics_table_is_what_each_process_exposes(snoop_run):
    table = documented()
    for offset, process in enumerate(PROCESSES):
        families = exposed(snoop_run.port + offset)
        assert not [n for n in families if n.endswith("_created")], process
        assert all(n.endswith("_total") for n, kind in families.items() if kind == "counter")
        assert families == table[process], (process, set(families) ^ set(table[process]))


def test_map_sizes_are_exported_for_the_maps_the_plan_names(snoop_run):
    with urllib.request.urlopen(f"http://127.0.0.1:{snoop_run.port}/metrics",
                                timeout=10) as response:
        text = response.read().decode()
    sizes = {name: float(value) for name, value in
             re.findall(r'^snoop_ebpf_map_size\{map="([a-z_]+)"\} (\S+)$', text, re.M)}
    # The dedup, targets and stash maps (the stash is `inflight`), as docs/metrics.md says.
    assert set(sizes) == {"dedup", "targets", "inflight"}
    assert all(value >= 0 for value in sizes.values())
    assert sizes["targets"] >= 1  # the workload's cgroup is in the target set

"""Fixtures of the end-to-end tests: `snoop run` started, and stopped whatever happened."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from tests.e2e.test_pipeline import SnoopRun


@pytest.fixture
def start_snoop_run(tmp_path, cgroup):
    """start(extra_env=None) -> a running `snoop run` tracing `cgroup`; all are stopped
    (SIGTERM, then killed) at teardown."""
    started: list[SnoopRun] = []

    def start(extra_env: dict[str, str] | None = None) -> SnoopRun:
        running = SnoopRun(tmp_path, cgroup.rel, extra_env)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            if running.proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    running.stop(timeout=120)
            running.close()


@pytest.fixture
def snoop_run(start_snoop_run):
    return start_snoop_run()

"""Fixtures shared by the tests that run workloads in cgroups of their own."""

import pytest

from tests.tracer.harness import TracerHarness, make_test_cgroup


@pytest.fixture
def cgroup():
    """A fresh test cgroup, removed (its processes killed) afterwards, even on failure."""
    made = make_test_cgroup()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture(scope="module")
def parent():
    """A test cgroup shared by a module: each test traces a child cgroup of it."""
    made = make_test_cgroup()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture(scope="module")
def tracer(parent):
    """A real `snoop tracer` (with a stand-in processor) tracing the module's `parent`."""
    harness = TracerHarness({"SNOOP_TARGET_MODE": "cgroup", "SNOOP_TARGET_CGROUP": parent.rel})
    try:
        yield harness
    finally:
        harness.close()

"""The kernel feature probes agree with bpftool's, and the fallbacks can be forced."""

from __future__ import annotations

import subprocess

import pytest

from snoop.tracer import features


@pytest.fixture(scope="module")
def bpftool_probe() -> str:
    return subprocess.run(["bpftool", "feature", "probe", "kernel"], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.bpf
def test_ring_buffer_probe_agrees_with_bpftool(bpftool_probe):
    assert features.has_ringbuf(features.Bpf()) == (
        "map_type ringbuf is available" in bpftool_probe)


@pytest.mark.bpf
def test_ancestor_helper_probe_agrees_with_bpftool(bpftool_probe):
    section = bpftool_probe.split("helpers supported for program type tracepoint", 1)[1]
    section = section.split("helpers supported for program type", 1)[0]
    assert features.tracing_has_helper(
        features.Bpf(), features.HELPER_GET_CURRENT_ANCESTOR_CGROUP_ID) == (
        "bpf_get_current_ancestor_cgroup_id" in section)


@pytest.mark.bpf
@pytest.mark.parametrize("forced, ringbuf, helper", [
    ("1", False, False), ("perf-buffer", False, None), ("cgroup-walk", None, False)])
def test_fallbacks_can_be_forced(forced, ringbuf, helper):
    native = features.probe(environ={})
    found = features.probe(environ={features.FALLBACKS_ENV: forced})
    assert found.ringbuf == (native.ringbuf if ringbuf is None else ringbuf)
    assert found.ancestor_cgroup_helper == (native.ancestor_cgroup_helper if helper is None
                                            else helper)
    assert ("-DHAVE_RINGBUF" in found.defines) == found.ringbuf

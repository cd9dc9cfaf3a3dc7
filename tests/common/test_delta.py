"""decode_delta against hostile bodies: each is a DeltaError naming the field, quickly."""

from __future__ import annotations

import json
import time

import pytest

from snoop.common.delta import DeltaError, decode_delta
from snoop.common.report import MAX_INTERVALS


def _body(**report) -> bytes:
    return json.dumps({"delta_schema": 1, "full": False, "origin": "node-a",
                       "workload_id": "w1", "report": {"files": [], **report}}).encode()


def _intervals(count: int) -> list[list[str]]:
    return [[f"2026-01-01T00:00:{i % 60:02d}.{i // 60:03d}Z",
             f"2026-01-01T00:00:{i % 60:02d}.{i // 60:03d}Z"] for i in range(count)]


def test_at_most_max_intervals_unobserved():
    delta = decode_delta(_body(coverage={"unobserved": _intervals(MAX_INTERVALS)}))
    assert len(delta.report.coverage.unobserved) <= MAX_INTERVALS
    start = time.monotonic()
    with pytest.raises(DeltaError, match=r"report\.coverage\.unobserved: 20000 intervals"):
        decode_delta(_body(coverage={"unobserved": _intervals(20_000)}))
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("depth", [990, 100_000])
def test_deep_nesting_is_a_delta_error(depth):
    nested = "[" * depth + "]" * depth
    for body in (_body().replace(b'"files": []', f'"files": {nested}'.encode()),
                 _body().replace(b'"files": []', f'"files": [], "coverage": {{"unobserved": '
                                 f'[{nested}]}}'.encode()),
                 nested.encode()):
        with pytest.raises(DeltaError):
            decode_delta(body)

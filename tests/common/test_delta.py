"""decode_delta against hostile bodies: each is a DeltaError naming the field, quickly."""

from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize(("report", "field"), [
    ({"started_at": "2026-01-02T03:04:05"}, "report.started_at"),
    ({"last_updated_at": "2026-01-02T03:04:05.678"}, "report.last_updated_at"),
    ({"last_updated_at": "2026-01-02"}, "report.last_updated_at"),
    ({"files": ["/a"], "file_details": {"/a": {"first_seen": "2026-01-02T03:04:05"}}},
     "report.file_details['/a'].first_seen"),
    ({"files": ["/a"], "file_details": {"/a": {"last_seen": "2026-01-02T03:04:05"}}},
     "report.file_details['/a'].last_seen"),
    ({"coverage": {"unobserved": [["2026-01-02T03:04:05Z", "2026-01-02T03:04:06"]]}},
     "report.coverage.unobserved"),
])
def test_a_time_without_a_utc_offset_is_refused(report, field):
    with pytest.raises(DeltaError, match=re.escape(field) + ".*no UTC offset"):
        decode_delta(_body(**report))


def test_times_with_z_or_an_offset_are_read():
    delta = decode_delta(_body(started_at="2026-01-02T03:04:05Z",
                               last_updated_at="2026-01-02T05:04:05.000+02:00"))
    assert delta.report.started_at == delta.report.last_updated_at

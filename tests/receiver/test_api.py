"""The receiver's API on both back ends: storing, merging, the per-image views, and every
refusal with its status, its one-line error and its counter."""

from __future__ import annotations

import gzip
import json
import random
import zlib

import pytest

from snoop.common.delta import Delta
from snoop.common.report import Coverage, Report, parse_iso_time, path_from_json
from tests.receiver.harness import (
    ENOENT_BIT,
    EXEC,
    FOUND,
    OTHER_TOKEN,
    READ,
    STAT,
    file,
    make_delta,
)

T0 = 1_700_000_000.0
DAY = 86400.0


def report_of(api, image: str) -> Report:
    return Report.from_json(api.json("/v1/report", image=image))


def test_store_then_repeat_is_a_duplicate_that_changes_nothing(api):
    delta = make_delta({"/bin/sh": file(EXEC), "/etc/hosts": file(READ)})
    first = api.post(delta, "key-1")
    assert first.status_code == 200
    assert first.json() == {"status": "stored", "files": 2}
    before = (api.json("/v1/report", image="app:1"), api.json("/v1/workloads", image="app:1"))
    again = api.post(delta, "key-1")
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    again_gzip = api.post(delta, "key-1", compress=True)  # the same body, once decompressed
    assert again_gzip.json() == {"status": "duplicate"}
    after = (api.json("/v1/report", image="app:1"), api.json("/v1/workloads", image="app:1"))
    assert after == before  # last_received too
    assert api.metric("snoop_receiver_deltas_stored_total") == 1
    assert api.metric("snoop_receiver_deltas_duplicate_total") == 2
    assert api.metric("snoop_receiver_files_stored_total") == 2


def test_same_key_with_another_body_is_refused(api):
    assert api.post(make_delta({"/a": file()}), "key-1").status_code == 200
    other = api.post(make_delta({"/b": file()}), "key-1")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["error"]
    assert report_of(api, "app:1").files.keys() == {b"/a"}
    assert api.metric("snoop_receiver_requests_rejected_total", reason="conflict") == 1


def _union_state(api) -> tuple:
    report = api.json("/v1/report", image="app:1")
    workloads = api.json("/v1/workloads", image="app:1")["workloads"]
    for workload in workloads:
        workload.pop("first_received")
        workload.pop("last_received")
    return report, workloads


def _history() -> list[Delta]:
    """Five deltas of one workload, files overlapping, counters growing."""
    deltas = []
    for step in range(5):
        files = {f"/lib/f{(step * 3 + i) % 9}": file(
            READ if i % 2 else STAT, FOUND if i != 2 else ENOENT_BIT, (f"p{step}", f"q{i}"),
            T0 + 10 * step + i, T0 + 10 * step + 5 + i) for i in range(4)}
        coverage = Coverage(kernel_dropped=step, unobserved=((T0 + step, T0 + step + 1),))
        deltas.append(make_delta(files, updated=T0 + 100 + step, coverage=coverage,
                                 total_events=10 * step, pod_name=f"pod-{step}"))
    return deltas


def test_out_of_order_and_split_deltas_give_the_same_union(store_url, tmp_path):
    from tests.receiver.harness import open_api

    deltas = _history()
    with open_api(store_url) as api:
        for delta in deltas:
            assert api.post(delta).status_code == 200
        in_order = _union_state(api)
    shuffled = [part for delta in deltas for part in delta.split()]
    random.Random(7).shuffle(shuffled)
    with open_api(f"sqlite:///{tmp_path}/other.db") as api:
        for delta in shuffled + shuffled[:3]:  # and some twice, under new keys
            assert api.post(delta).status_code == 200
        assert _union_state(api) == in_order
    report, (workload,) = in_order
    assert len(report["files"]) == 9
    # The head is the newest delta's: its pod, its counters; intervals of that delta only.
    assert workload["pod_name"] == "pod-4" and workload["total_events"] == 40
    assert workload["coverage"]["kernel_dropped"] == 4
    assert len(workload["coverage"]["unobserved"]) == 1
    assert workload["complete"] is False


def test_full_snapshot_then_deltas(api):
    full = make_delta({"/a": file(READ, first=T0 + 1, last=T0 + 2),
                       "/b": file(STAT, ENOENT_BIT)}, full=True, updated=T0 + 10)
    assert api.post(full).json() == {"status": "stored", "files": 2}
    later = make_delta({"/a": file(EXEC, comms=("sh",), first=T0 + 5, last=T0 + 9),
                        "/c": file()}, updated=T0 + 20)
    assert api.post(later).json() == {"status": "stored", "files": 2}
    report = report_of(api, "app:1")
    assert set(report.files) == {b"/a", b"/b", b"/c"}  # a delta never removes a file
    a = report.files[b"/a"]
    assert a.kinds == READ | EXEC and a.comms == ("app", "sh")
    assert (a.first_seen, a.last_seen) == (T0 + 1, T0 + 9)
    assert report.files[b"/b"].found is False
    assert report.last_updated_at == T0 + 20


def test_comms_are_bounded_to_eight_in_sorted_order(api):
    names = [f"proc{i:02d}" for i in range(12)]
    for start in (6, 0, 3):
        api.post(make_delta({"/x": file(comms=tuple(names[start:start + 6]))}))
    assert report_of(api, "app:1").files[b"/x"].comms == tuple(names[:8])


def test_outcomes_keep_all_64_bits(api):
    mask = (1 << 63) | (1 << 62) | ENOENT_BIT
    api.post(make_delta({"/m": file(outcomes=mask)}))
    api.post(make_delta({"/m": file(outcomes=FOUND)}))
    ((path, row),) = api.store.image_files("app:1")  # stored as int64, read back unsigned
    assert row.outcomes == mask | FOUND
    assert api.json("/v1/report", image="app:1")["file_details"]["/m"]["errors"] == [
        "ENOENT", "errno>=62"]


def test_union_per_image_over_workloads_and_origins(api):
    api.post(make_delta({"/bin/app": file(EXEC, first=T0 + 5, last=T0 + 6), "/etc/a": file()},
                        origin="node-a", workload_id="c1"))
    api.post(make_delta({"/bin/app": file(EXEC, comms=("app2",), first=T0 + 1, last=T0 + 2),
                         "/etc/b": file()}, origin="node-b", workload_id="c1"))
    api.post(make_delta({"/bin/app": file(READ, first=T0 + 3, last=T0 + 30)},
                        origin="node-b", workload_id="c2", updated=T0 + 500))
    api.post(make_delta({"/other": file()}, workload_id="c9", image_ref="other:1",
                        image_digest="sha256:bbb"))
    data = api.json("/v1/report", image="app:1")
    assert data["workload_count"] == 3
    assert data["workload"] == "image app:1"
    assert (data["image_ref"], data["image_digest"]) == ("app:1", "sha256:aaa")
    details = data["file_details"]
    assert {path: d["workloads"] for path, d in details.items()} == {
        "/bin/app": 3, "/etc/a": 1, "/etc/b": 1}
    assert details["/bin/app"]["kinds"] == ["read", "exec"]
    assert details["/bin/app"]["comms"] == ["app", "app2"]
    assert parse_iso_time(details["/bin/app"]["first_seen"]) == T0 + 1
    assert parse_iso_time(details["/bin/app"]["last_seen"]) == T0 + 30
    by_digest = api.json("/v1/report", image="sha256:aaa")  # by digest, the same union
    assert by_digest.pop("workload") == "image sha256:aaa"
    assert {k: v for k, v in data.items() if k != "workload"} == by_digest
    report = Report.from_json(data)
    assert report.recovery is None and set(report.files) == {b"/bin/app", b"/etc/a", b"/etc/b"}
    assert parse_iso_time(data["last_updated_at"]) == T0 + 500
    images = api.json("/v1/images")["images"]
    assert [(i["image_ref"], i["workloads"], i["files"]) for i in images] == [
        ("app:1", 3, 3), ("other:1", 1, 1)]
    assert api.get("/v1/report", image="nope:1").status_code == 404


def test_coverage_of_an_image_report(api):
    api.post(make_delta({"/a": file()}, workload_id="c1",
                        coverage=Coverage(kernel_dropped=2, io_uring_ops=1,
                                          unobserved=((T0, T0 + 5),))))
    api.post(make_delta({"/b": file()}, workload_id="c2", origin="node-b",
                        coverage=Coverage(kernel_dropped=3, unobserved=((T0 + 3, T0 + 9),))))
    api.post(make_delta({"/c": file()}, workload_id="c3"))
    report = report_of(api, "app:1")
    assert report.coverage.kernel_dropped == 5 and report.coverage.io_uring_ops == 1
    assert report.coverage.unobserved == ((T0, T0 + 9),)
    workloads = {w["workload_id"]: w for w in api.json("/v1/workloads",
                                                       image="app:1")["workloads"]}
    assert [workloads[k]["complete"] for k in ("c1", "c2", "c3")] == [False, False, True]
    assert workloads["c1"]["coverage"]["unobserved"] == [
        ["2023-11-14T22:13:20.000Z", "2023-11-14T22:13:25.000Z"]]
    assert workloads["c2"]["files"] == 1 and workloads["c2"]["origin"] == "node-b"


def test_reporter_wide_counters_count_once_per_origin(api):
    """A reporter writes its tracers' totals and its lost messages into every report: three
    workloads of one node that lost 5 events lost 5, not 15."""
    wide = {"kernel_dropped": 5, "read_failures": 4, "pending_dropped": 3, "message_gaps": 2,
            "invalid_messages": 1}
    own = {"unresolved_paths": 1, "unique_file_cap_hits": 2, "paths_too_long": 3,
           "uncertain_paths": 4, "io_uring_ops": 5}
    for index, workload_id in enumerate(("c1", "c2", "c3")):
        # An older report of the node's (c3) has smaller totals: the largest is the newest.
        older = {name: value - 1 for name, value in wide.items()} if index == 2 else wide
        api.post(make_delta({f"/{workload_id}": file()}, workload_id=workload_id,
                            coverage=Coverage(**older, **own,
                                              unobserved=((T0 + index, T0 + index + 0.5),))))
    api.post(make_delta({"/d1": file()}, origin="node-b", workload_id="d1",
                        coverage=Coverage(kernel_dropped=7, io_uring_ops=1)))
    coverage = report_of(api, "app:1").coverage
    assert coverage.counters() == {**{name: value for name, value in wide.items()},
                                   "kernel_dropped": 5 + 7,
                                   **{name: 3 * value for name, value in own.items()},
                                   "io_uring_ops": 3 * 5 + 1}
    assert coverage.unobserved == ((T0, T0 + 0.5), (T0 + 1, T0 + 1.5), (T0 + 2, T0 + 2.5))
    data = api.json("/v1/report", image="app:1")
    assert data["dropped_events"] == 5 + 7 + 3 + 0


def test_every_coverage_counter_is_reporter_wide_or_per_workload():
    from snoop.receiver.views import PER_WORKLOAD, REPORTER_WIDE
    from snoop.reporter.store import TRACER_FIELDS

    assert set(TRACER_FIELDS) <= set(REPORTER_WIDE)
    assert {"message_gaps", "invalid_messages"} <= set(REPORTER_WIDE)
    assert sorted(REPORTER_WIDE + PER_WORKLOAD) == sorted(Coverage().counters())


def test_workloads_fields(api):
    api.post(make_delta({"/a": file(), "/b": file()}, workload_id="cid-1", workload="web",
                        pod_name="web-0", namespace="shop", total_events=42))
    (workload,) = api.json("/v1/workloads", image="sha256:aaa")["workloads"]
    assert workload["name"] == "web" and workload["namespace"] == "shop"
    assert workload["files"] == 2 and workload["total_events"] == 42
    assert workload["first_received"] == workload["last_received"]
    assert api.get("/v1/workloads", image="unknown").status_code == 404
    assert api.get("/v1/workloads").status_code == 400


def test_diff_between_two_image_versions(api):
    api.post(make_delta({"/app/v1.py": file(), "/lib/common.so": file(), "/etc/conf": file()},
                        image_ref="app:1", image_digest="sha256:v1", workload_id="a"))
    api.post(make_delta({"/app/v2.py": file(), "/lib/common.so": file(), "/etc/conf": file(),
                         "/lib/\udcffodd": file()},
                        image_ref="app:2", image_digest="sha256:v2", workload_id="b"))
    diff = api.json("/v1/diff", **{"from": "app:1", "to": "sha256:v2"})
    assert diff == {"from": "app:1", "to": "sha256:v2", "added": ["/app/v2.py", "/lib/\udcffodd"],
                    "removed": ["/app/v1.py"], "unchanged": 2}
    assert path_from_json(diff["added"][1]) == b"/lib/\xffodd"
    assert api.get("/v1/diff", **{"from": "app:1", "to": "app:3"}).status_code == 404
    assert api.get("/v1/diff", **{"from": "app:1"}).status_code == 400


def test_text_that_no_database_text_type_holds_round_trips(api):
    delta = make_delta({"/a": file(comms=("\udcfe\x00x",))}, origin="node\x00a",
                       workload_id="/sys/fs/cgroup/\udcff", image_ref="app:\udcfe",
                       labels={"k": "v\x00"})
    assert api.post(delta).status_code == 200
    # A byte that is not UTF-8 is percent-escaped in a query, and reads as U+DCHH.
    reply = api.client.get("/v1/workloads?image=app:%FE",
                           headers={"Authorization": "Bearer test-token-1"})
    (workload,) = reply.json()["workloads"]
    assert (workload["origin"], workload["workload_id"]) == ("node\x00a", "/sys/fs/cgroup/\udcff")
    assert workload["image_ref"] == "app:\udcfe"
    (_, row), = api.store.image_files("app:\udcfe")
    assert row.comms == ("\udcfe\x00x",)


def test_auth(api):
    delta = make_delta({"/a": file()})
    missing = api.post(delta, token=None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert "error" in missing.json()
    malformed = api.post(delta, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert malformed.status_code == 401
    wrong = api.post(delta, token="not-a-token")
    assert wrong.status_code == 403 and wrong.json() == {"error": "token not allowed"}
    for path in ("/v1/images", "/v1/report", "/v1/workloads", "/v1/diff"):
        assert api.get(path, token=None).status_code == 401
        assert api.get(path, token="nope").status_code == 403
    assert api.post(delta, token=OTHER_TOKEN).status_code == 200  # any listed token
    assert api.metric("snoop_receiver_requests_rejected_total", reason="auth") == 6
    assert api.metric("snoop_receiver_requests_rejected_total", reason="forbidden") == 5
    for path in ("/healthz", "/metrics", "/openapi.yaml", "/openapi.json"):
        assert api.client.get(path).status_code == 200


def test_gzip_body(api):
    reply = api.post(make_delta({"/z": file()}), compress=True)
    assert reply.status_code == 200 and reply.json()["files"] == 1
    body = make_delta({"/y": file()}).encode()
    two_members = gzip.compress(body[:50]) + gzip.compress(body[50:])
    assert api.post(two_members, headers={"Content-Encoding": "gzip"}).status_code == 200
    assert set(report_of(api, "app:1").files) == {b"/z", b"/y"}
    broken = api.post(b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"})
    assert broken.status_code == 400 and "gzip" in broken.json()["error"]
    truncated = api.post(gzip.compress(body)[:-12], headers={"Content-Encoding": "gzip"})
    assert truncated.status_code == 400


def test_gzip_bomb_is_refused_without_inflating_it(store_url):
    from tests.receiver.harness import open_api

    limit = 1024 * 1024
    inflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(inflate.compress(b"\0" * (1 << 20)) for _ in range(64)) + inflate.flush()
    assert len(bomb) < limit / 10  # 64 MiB of zeros in about 64 KiB: as sent it fits
    with open_api(store_url, max_body_bytes=limit) as api:
        reply = api.post(bomb, headers={"Content-Encoding": "gzip"})
        assert reply.status_code == 413
        assert "after gunzip" in reply.json()["error"]
        assert api.metric("snoop_receiver_requests_rejected_total", reason="too_large") == 1


def test_oversize_body(store_url):
    from tests.receiver.harness import open_api

    with open_api(store_url, max_body_bytes=2000) as api:
        small = make_delta({"/a": file()})
        assert api.post(small).status_code == 200
        big = make_delta({f"/file/{i}": file() for i in range(100)})
        reply = api.post(big)
        assert reply.status_code == 413 and "as sent" in reply.json()["error"]
        # A body that fits as sent but not once decompressed.
        assert api.post(big, compress=True).status_code == 413
        assert report_of(api, "app:1").files.keys() == {b"/a"}


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "not JSON"),
    (b"[]", "expected a JSON object"),
    (json.dumps({"delta_schema": 2}).encode(), "delta_schema"),
    (json.dumps({"delta_schema": 1, "full": "yes"}).encode(), "full"),
    (json.dumps({"delta_schema": 1, "full": True, "report": {}}).encode(), "report"),
    (json.dumps({"delta_schema": 1, "full": True, "origin": 7, "workload_id": "w",
                 "report": {"files": []}}).encode(), "origin"),
    (json.dumps({"delta_schema": 1, "full": True, "origin": "o", "workload_id": "w",
                 "report": {"files": ["/a"], "file_details": {"/a": {"kinds": ["fly"]}}}}
                ).encode(), "kind"),
    (json.dumps({"delta_schema": True, "full": True, "origin": "o", "workload_id": "w",
                 "report": {"files": []}}).encode(), "delta_schema"),
    (json.dumps({"delta_schema": 1, "full": True, "origin": "o", "workload_id": "w",
                 "report": {"files": [], "workload": {"a": 1}}}).encode(), "report.workload"),
    (json.dumps({"delta_schema": 1, "full": True, "origin": "o", "workload_id": "w",
                 "report": {"files": [], "coverage": None}}).encode(), "report.coverage"),
    (json.dumps({"delta_schema": 1, "full": True, "origin": "o", "workload_id": "w",
                 "report": {"files": [], "labels": {"a": 1}}}).encode(), "report.labels"),
])
def test_invalid_delta_names_the_field(api, body, field):
    reply = api.post(body)
    assert reply.status_code == 400
    message = reply.json()["error"]
    assert field in message and "\n" not in message
    assert api.metric("snoop_receiver_requests_rejected_total", reason="invalid") == 1
    assert api.json("/v1/images") == {"images": []}


def test_deeply_nested_json_is_refused(api):
    nested = b"[" * 100_000 + b"]" * 100_000
    for body in (nested, b'{"delta_schema": 1, "report": {"files": ' + nested + b"}}"):
        reply = api.post(body, compress=True)
        assert reply.status_code == 400 and "nested too deeply" in reply.json()["error"]
    assert api.metric("snoop_receiver_requests_rejected_total", reason="invalid") == 2


def test_an_unforeseen_error_is_a_one_line_answer(api, monkeypatch, caplog):
    def unforeseen(body: bytes, **options: float) -> Delta:
        raise KeyError("surprise")

    monkeypatch.setattr("snoop.receiver.intake.decode_delta", unforeseen)
    reply = api.post(make_delta({"/a": file()}))
    assert reply.status_code == 400
    assert reply.json() == {"error": "body: not a readable delta (KeyError)"}
    assert "Traceback" in caplog.text  # in the log, not in the answer
    monkeypatch.undo()

    def broken(*args: object) -> None:
        raise RuntimeError("/secret/path line 3")

    monkeypatch.setattr(api.store, "store_delta", broken)
    caplog.clear()
    reply = api.post(make_delta({"/a": file()}))
    assert reply.status_code == 500 and reply.json() == {"error": "internal error"}
    assert "RuntimeError: /secret/path line 3" in caplog.text


@pytest.mark.parametrize(("delta", "field"), [
    (make_delta({"/a": file()}, updated=T0 + 2 * DAY), "report.last_updated_at"),
    (make_delta({"/a": file()}, started=T0 + 2 * DAY, updated=T0 + 2 * DAY + 1),
     "report.started_at"),
    (make_delta({"/a": file(first=T0 + 3 * DAY, last=T0 + 3 * DAY)}), "['/a'].first_seen"),
    (make_delta({"/a": file(first=T0, last=T0 + 3 * DAY)}), "['/a'].last_seen"),
])
def test_times_more_than_a_day_ahead_are_refused(store_url, delta, field):
    """The newest last_updated_at wins: one far ahead would pin the workload's head."""
    from tests.receiver.harness import open_api

    with open_api(store_url, clock=lambda: T0) as api:
        reply = api.post(delta)
        assert reply.status_code == 400, reply.text
        message = reply.json()["error"]
        assert field in message and "is later than 2023-11-15T22:13:20.000Z" in message
        assert api.json("/v1/images") == {"images": []}
        ahead = make_delta({"/a": file(first=T0 + DAY - 1, last=T0 + DAY - 1)},
                           started=T0 + DAY - 1, updated=T0 + DAY - 1)
        assert api.post(ahead).status_code == 200  # a clock less than a day ahead


@pytest.mark.parametrize("key", [None, "", "has space", "x" * 129, "ключ".encode()])
def test_bad_idempotency_key(api, key):
    headers = {"Idempotency-Key": key} if key is not None else {}
    reply = api.client.post("/v1/deltas", content=make_delta({"/a": file()}).encode(),
                            headers={"Authorization": "Bearer test-token-1", **headers})
    assert reply.status_code == 400 and "Idempotency-Key" in reply.json()["error"]


def test_unknown_content_encoding(api):
    reply = api.post(make_delta({"/a": file()}), headers={"Content-Encoding": "br"})
    assert reply.status_code == 415 and "Content-Encoding" in reply.json()["error"]
    assert api.metric("snoop_receiver_requests_rejected_total", reason="encoding") == 1
    identity = api.post(make_delta({"/a": file()}), headers={"Content-Encoding": "identity"})
    assert identity.status_code == 200


def test_a_content_type_other_than_json_is_refused(api):
    for value in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        reply = api.post(make_delta({"/a": file()}), headers={"Content-Type": value})
        assert reply.status_code == 415 and "Content-Type" in reply.json()["error"]
    assert api.metric("snoop_receiver_requests_rejected_total", reason="encoding") == 3
    for value in ("application/json", "Application/JSON; charset=utf-8"):
        reply = api.post(make_delta({"/a": file()}), headers={"Content-Type": value})
        assert reply.status_code == 200
    reply = api.client.post("/v1/deltas", content=make_delta({"/a": file()}).encode(),
                            headers={"Authorization": "Bearer test-token-1",
                                     "Idempotency-Key": "no-type"})
    assert reply.status_code == 200  # none at all is taken as JSON


def test_a_naive_time_is_refused(api):
    body = json.loads(make_delta({"/a": file()}).encode())
    body["report"]["last_updated_at"] = "2023-11-14T22:15:00"  # no Z: whose local time?
    reply = api.post(json.dumps(body).encode())
    assert reply.status_code == 400
    assert "report.last_updated_at" in reply.json()["error"]
    assert "UTC offset" in reply.json()["error"]


def test_dropped_events_saturate(api):
    from snoop.common.protocol import COUNT_MAX

    for origin in ("node-a", "node-b"):
        api.post(make_delta({"/a": file()}, origin=origin,
                            coverage=Coverage(kernel_dropped=COUNT_MAX - 1,
                                              pending_dropped=COUNT_MAX - 1)))
    data = api.json("/v1/report", image="app:1")
    assert data["coverage"]["kernel_dropped"] == COUNT_MAX
    assert data["dropped_events"] == COUNT_MAX


def test_errors_are_json(api):
    for reply in (api.client.get("/nowhere"), api.client.delete("/v1/deltas"),
                  api.get("/v1/report")):
        assert reply.headers["content-type"] == "application/json"
        assert set(reply.json()) == {"error"}
    assert api.client.delete("/v1/deltas").status_code == 405


def test_health_and_metrics(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    api.post(make_delta({"/a": file(), "/b": file()}))
    text = api.client.get("/metrics").text
    assert "snoop_receiver_deltas_stored_total 1.0" in text
    assert "snoop_receiver_files_stored_total 2.0" in text
    assert 'snoop_receiver_requests_rejected_total{reason="conflict"} 0.0' in text
    spec = api.client.get("/openapi.json").json()
    assert "/v1/deltas" in spec["paths"]


def test_health_is_503_without_a_database(tmp_path):
    from tests.receiver.harness import open_api

    with open_api(f"sqlite:///{tmp_path}/r.db") as api:
        api.store.close()
        api.store.ping = _fail_ping  # type: ignore[method-assign]
        reply = api.client.get("/healthz")
        assert reply.status_code == 503 and "error" in reply.json()
        assert reply.headers["Retry-After"] == "5"


def _fail_ping() -> None:
    from snoop.receiver.store import StoreError

    raise StoreError("gone")


def test_a_large_delta_is_stored_quickly(api):
    import time

    delta = make_delta({f"/usr/lib/python3/site-packages/pkg{i // 100}/mod{i}.py": file()
                        for i in range(10_000)})
    start = time.monotonic()
    reply = api.post(delta, compress=True)
    elapsed = time.monotonic() - start
    assert reply.json() == {"status": "stored", "files": 10_000}
    assert elapsed < 3.0, f"{elapsed:.2f} s for 10,000 files"  # PostgreSQL: ~0.3 s
    assert len(report_of(api, "app:1").files) == 10_000

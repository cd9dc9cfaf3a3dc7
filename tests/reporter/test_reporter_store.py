import json

from snoop.common.config import Config
from snoop.common.protocol import (
    COUNT_MAX,
    TIME_MIN,
    AccessKind,
    CaptureCounts,
    FileSeen,
    FileUpdates,
    Header,
    TracerStats,
    Workload,
    WorkloadMeta,
    WorkloadUpdate,
    kinds_mask,
)
from snoop.common.report import Report
from snoop.reporter.store import Identity, ReportStore

W1 = Workload("c1", "/docker/c1", "c1")
W2 = Workload("c2", "/docker/c2", "c2")
READ = kinds_mask(AccessKind.READ)
EXEC = kinds_mask(AccessKind.EXEC)


def update(seq: int, *parts, stats=(), gaps: int = 0, invalid: int = 0) -> FileUpdates:
    return FileUpdates(Header("proc", seq), tuple(parts), covers={}, tracer_stats=tuple(stats),
                       gaps=gaps, invalid_messages=invalid)


def part(workload: Workload, *files: tuple[bytes, int, float, float], events: int = 0,
         unresolved: int = 0, capture: CaptureCounts | None = None) -> WorkloadUpdate:
    return WorkloadUpdate(workload, tuple(FileSeen(*f) for f in files), events, unresolved,
                          capture or CaptureCounts())


def stats(sender: str, seq: int, kernel: int = 0, reads: int = 0, pending: int = 0):
    return TracerStats(Header(sender, seq), 1.0, kernel, reads, 0, pending_dropped=pending)


def store(sidecar: bool = False, cap: int = 100, **identity) -> ReportStore:
    return ReportStore(Identity(**identity), sidecar=sidecar, max_unique_files=cap,
                       clock=lambda: 5000.0)


def test_files_merge_kinds_and_times() -> None:
    s = store()
    s.apply(update(1, part(W1, (b"/a", READ, 10.0, 10.0), events=3)))
    s.apply(update(2, part(W1, (b"/a", EXEC, 5.0, 20.0), (b"/b", READ, 7.0, 7.0), events=2)))
    report = s.reports["c1"]
    assert report.files[b"/a"].kinds == READ | EXEC
    assert (report.files[b"/a"].first_seen, report.files[b"/a"].last_seen) == (5.0, 20.0)
    assert set(report.files) == {b"/a", b"/b"}
    assert report.total_events == 5
    assert (report.workload, report.container_id, report.cgroup_path) == \
        ("c1", "c1", "/docker/c1")
    assert s.dirty == {"c1"}


def test_node_mode_keeps_workloads_apart_sidecar_merges_them() -> None:
    node, side = store(), store(sidecar=True)
    for s in (node, side):
        s.apply(update(1, part(W1, (b"/a", READ, 1.0, 1.0)), part(W2, (b"/b", READ, 1.0, 1.0))))
    assert {k: set(r.files) for k, r in node.reports.items()} == {"c1": {b"/a"}, "c2": {b"/b"}}
    assert {k: set(r.files) for k, r in side.reports.items()} == {"": {b"/a", b"/b"}}
    assert side.reports[""].workload == "c1"


def test_unchanged_update_does_not_dirty() -> None:
    s = store()
    s.apply(update(1, part(W1, (b"/a", READ, 1.0, 1.0))))
    s.dirty.clear()
    s.apply(update(2, part(W1, (b"/a", READ, 1.0, 1.0))))
    assert s.dirty == set()


def test_tracer_counters_are_max_per_sender_summed_over_senders() -> None:
    s = store(sidecar=True)
    s.apply(update(1, stats=[stats("t1", 1, kernel=5, reads=1)]))
    s.apply(update(2, stats=[stats("t1", 5, kernel=7, reads=1), stats("t2", 1, kernel=2)]))
    s.apply(update(3, stats=[stats("t1", 3, kernel=6, reads=4, pending=1)]))  # late, older
    assert s.tracers.totals() == {"kernel_dropped": 9, "read_failures": 4, "pending_dropped": 1}
    s.render("")
    coverage = s.reports[""].coverage
    assert (coverage.kernel_dropped, coverage.read_failures, coverage.pending_dropped) == (9, 4, 1)
    assert Report.from_json(json.loads(s.render(""))).dropped_events == 10


def test_forgotten_tracers_still_count() -> None:
    s = store(sidecar=True)
    s.tracers.max_senders = 1
    s.apply(update(1, stats=[stats("t1", 1, kernel=5)]))
    s.apply(update(2, stats=[stats("t2", 1, kernel=2)]))
    assert list(s.tracers.maxima) == ["t2"]
    assert s.tracers.totals()["kernel_dropped"] == 7


def test_gaps_invalid_and_unresolved_add_up() -> None:
    s = store()
    s.apply(update(1, part(W1, (b"x", READ, 1.0, 1.0), unresolved=1), gaps=2, invalid=1))
    s.apply(update(2, part(W1, unresolved=2), gaps=1))
    s.count_lost(gaps=1, invalid=4)
    s.render("c1")
    c = s.reports["c1"].coverage
    assert (c.message_gaps, c.invalid_messages, c.unresolved_paths) == (4, 5, 3)


def test_capture_counts_add_up_per_report() -> None:
    node, side = store(), store(sidecar=True)
    for s in (node, side):
        s.apply(update(1, part(W1, capture=CaptureCounts(paths_too_long=1, io_uring_ops=2)),
                       part(W2, capture=CaptureCounts(uncertain_paths=4))))
        s.apply(update(2, part(W1, capture=CaptureCounts(io_uring_ops=3))))
    c1, c2 = node.reports["c1"].coverage, node.reports["c2"].coverage
    assert (c1.paths_too_long, c1.uncertain_paths, c1.io_uring_ops) == (1, 0, 5)
    assert (c2.paths_too_long, c2.uncertain_paths, c2.io_uring_ops) == (0, 4, 0)
    both = side.reports[""].coverage
    assert (both.paths_too_long, both.uncertain_paths, both.io_uring_ops) == (1, 4, 5)
    data = json.loads(node.render("c1"))["coverage"]
    assert (data["paths_too_long"], data["uncertain_paths"], data["io_uring_ops"]) == (1, 0, 5)


def test_capture_counts_alone_dirty_the_report() -> None:
    s = store()
    s.apply(update(1, part(W1, (b"/a", READ, 1.0, 1.0))))
    s.dirty.clear()
    s.apply(update(2, part(W1, capture=CaptureCounts(io_uring_ops=1))))
    assert s.dirty == {"c1"}


def test_cap_counts_paths_not_kept() -> None:
    s = store(cap=2)
    s.apply(update(1, part(W1, *[(b"/%d" % i, READ, 1.0, 1.0) for i in range(4)])))
    report = s.reports["c1"]
    assert len(report.files) == 2
    assert report.coverage.unique_file_cap_hits == 2
    s.apply(update(2, part(W1, (b"/0", EXEC, 2.0, 2.0))))  # known paths still merge
    assert report.files[b"/0"].kinds == READ | EXEC
    assert report.coverage.unique_file_cap_hits == 2


def test_identity_comes_from_config() -> None:
    config = Config(image_ref="app:1", image_digest="sha256:ab", pod_name="p", namespace="ns",
                    labels={"team": "x"})
    s = ReportStore(Identity.from_config(config), sidecar=True, max_unique_files=10)
    s.apply(update(1, part(W1, (b"/a", READ, 1.0, 1.0))))
    data = json.loads(s.render(""))
    assert (data["image_ref"], data["image_digest"], data["pod_name"], data["namespace"],
            data["labels"]) == ("app:1", "sha256:ab", "p", "ns", {"team": "x"})


def test_state_round_trip_and_floor_from_reports() -> None:
    s = store(sidecar=True)
    s.apply(update(1, stats=[stats("t1", 1, kernel=5)], gaps=3))
    state = s.state_json()
    t = store(sidecar=True)
    t.load_state(state)
    assert t.tracers.totals()["kernel_dropped"] == 5 and t.message_gaps == 3
    # A report on disk newer than the state file: counters never go below it.
    r = Report(workload="c1")
    r.coverage.kernel_dropped = 8
    r.coverage.invalid_messages = 2
    t.adopt("", r)
    t.settle_counters()
    assert t.tracers.totals()["kernel_dropped"] == 8 and t.invalid_messages == 2
    t.apply(update(2, stats=[stats("t1", 2, kernel=6)]))
    assert t.tracers.totals()["kernel_dropped"] == 9


# ---------------------------------------------------------------- one sender cannot poison
# every report (issue 9, item 4)


def test_an_impossible_jump_of_one_sender_is_ignored_and_logged_once(caplog) -> None:
    s = store(sidecar=True)  # clock 5000; these tracers started at 1.0
    s.apply(update(1, stats=[stats("t1", 1, kernel=5), stats("t2", 1, kernel=3)]))
    s.apply(update(2, stats=[stats("t1", 2, kernel=2**62)]))  # no tracer counts that fast
    s.apply(update(3, stats=[stats("t1", 3, kernel=2**62, reads=1)]))
    assert s.tracers.totals()["kernel_dropped"] == 8
    assert s.tracers.ignored == 2
    lines = [r for r in caplog.records if r.getMessage().startswith("ignored tracer stats")]
    assert len(lines) == 1 and lines[0].sender == "t1" and lines[0].counter == "kernel_dropped"
    s.apply(update(4, stats=[stats("t1", 4, kernel=9, reads=2)]))  # t1 still counts
    assert s.tracers.totals() == {"kernel_dropped": 12, "read_failures": 2, "pending_dropped": 0}
    data = json.loads(s.render(""))
    assert data["coverage"]["kernel_dropped"] == 12


def test_a_new_sender_may_bring_what_it_counted_since_it_started() -> None:
    now = 1_800_000_000.0
    s = ReportStore(Identity(), sidecar=True, max_unique_files=10, clock=lambda: now)
    week = 7 * 24 * 3600
    plausible = TracerStats(Header("t1", 1), now - week, 10**12, 0, 0)  # 1.6M/s for a week
    absurd = TracerStats(Header("t2", 1), now - 10, 10**12, 0, 0)  # 1e11/s for ten seconds
    s.apply(update(1, stats=[plausible, absurd]))
    assert s.tracers.totals()["kernel_dropped"] == 10**12
    assert s.tracers.ignored == 1


def test_tracer_totals_stay_within_int64() -> None:
    now = 1_800_000_000.0
    s = ReportStore(Identity(), sidecar=True, max_unique_files=10, clock=lambda: now)
    huge = 8 * 10**17  # each is possible for a tracer started in 2000
    s.apply(update(1, stats=[TracerStats(Header(f"t{i}", 1), TIME_MIN, huge, 0, 0)
                             for i in range(12)]))
    assert s.tracers.ignored == 0
    assert s.tracers.totals()["kernel_dropped"] == COUNT_MAX
    s.tracers.max_senders = 1
    s.apply(update(2, stats=[TracerStats(Header("late", 1), TIME_MIN, huge, 0, 0)]))
    assert s.tracers.retired[0] == COUNT_MAX  # folding retired senders in saturates too
    assert json.loads(s.render(""))["coverage"]["kernel_dropped"] == COUNT_MAX


def test_gaps_and_invalid_counts_saturate_at_int64() -> None:
    s = store()
    s.apply(update(1, part(W1, (b"/a", READ, 1.0, 1.0)), gaps=COUNT_MAX, invalid=COUNT_MAX))
    s.apply(update(2, gaps=COUNT_MAX, invalid=1))
    s.count_lost(gaps=5, invalid=5)
    s.apply(update(3, part(W1, events=COUNT_MAX, unresolved=COUNT_MAX)))
    s.apply(update(4, part(W1, events=COUNT_MAX, unresolved=COUNT_MAX)))
    data = json.loads(s.render("c1"))
    assert data["coverage"]["message_gaps"] == data["coverage"]["invalid_messages"] == COUNT_MAX
    assert data["total_events"] == data["coverage"]["unresolved_paths"] == COUNT_MAX


def test_state_counters_beyond_int64_load_clamped() -> None:
    s = store(sidecar=True)
    s.load_state({"tracers": {"senders": {"t1": {"counters": {"kernel_dropped": 2**70}}},
                              "retired": {"read_failures": 2**64}},
                  "message_gaps": 2**65})
    assert s.tracers.totals()["kernel_dropped"] == COUNT_MAX
    assert s.tracers.totals()["read_failures"] == COUNT_MAX
    assert s.message_gaps == COUNT_MAX


def test_node_mode_reports_take_their_containers_metadata() -> None:
    web = Workload("c1", "/docker/c1", "c1", "shop/web", WorkloadMeta(
        "shop:1.2", "sha256:aa", "web-7d9f", "prod", "app", (("tier", "web"),)))
    worker = Workload("c2", "/docker/c2", "c2", "", WorkloadMeta(
        "worker:3", "sha256:bb", container_name="w"))
    s = store()
    s.apply(update(1, part(web, (b"/a", READ, 1.0, 1.0)),
                   part(worker, (b"/b", READ, 1.0, 1.0))))
    first, second = s.reports["c1"], s.reports["c2"]
    assert (first.image_ref, first.image_digest, first.pod_name, first.namespace,
            first.container_name, first.labels) == (
        "shop:1.2", "sha256:aa", "web-7d9f", "prod", "app", {"tier": "web"})
    assert (second.image_ref, second.image_digest, second.container_name) == (
        "worker:3", "sha256:bb", "w")
    written = json.loads(s.render("c1"))
    assert (written["image_ref"], written["container_name"]) == ("shop:1.2", "app")
    # An identity from the configuration still wins (a sidecar's SNOOP_IMAGE_REF).
    pinned = store(image_ref="pinned:1")
    pinned.apply(update(1, part(web, (b"/a", READ, 1.0, 1.0))))
    assert json.loads(pinned.render("c1"))["image_ref"] == "pinned:1"


def test_a_sidecar_report_keeps_the_first_metadata_it_was_given() -> None:
    one = Workload("c1", "/docker/c1", "c1", "", WorkloadMeta("a:1", labels=(("k", "1"),)))
    two = Workload("c2", "/docker/c2", "c2", "", WorkloadMeta("b:2", labels=(("k", "2"),
                                                                            ("j", "3"))))
    s = store(sidecar=True)
    s.apply(update(1, part(one, (b"/a", READ, 1.0, 1.0))))
    s.apply(update(2, part(two, (b"/b", READ, 1.0, 1.0))))
    report = s.reports[""]
    assert report.image_ref == "a:1" and report.labels == {"k": "1", "j": "3"}

#!/bin/sh
# Runs as the matrix guest's init (exec'd by /matrix-init once the repository is
# mounted read-only at /work/main): mount what the tracer needs, report the kernel,
# bcc and BPF features, run the capture tests with the host's venv, power off.
# Every result line starts with "MATRIX " on the serial console.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
export PY_COLORS=0 NO_COLOR=1
say() { echo "MATRIX $*"; }

mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
# The cgroup layout of the kernel's own distribution: Ubuntu 20.04 (5.4) boots hybrid,
# v1 controllers with the v2 hierarchy at /sys/fs/cgroup/unified; the others unified.
case "$(uname -r)" in
5.4.*)
    mount -t tmpfs cgroup /sys/fs/cgroup
    for controller in cpu,cpuacct memory pids; do
        mkdir -p "/sys/fs/cgroup/$controller"
        mount -t cgroup -o "$controller" cgroup "/sys/fs/cgroup/$controller"
    done
    mkdir -p /sys/fs/cgroup/unified
    mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified ;;
*)
    grep -q ' cgroup2 ' /proc/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup ;;
esac
ip link set lo up
hostname matrix

say "krel=$(uname -r)"
say "bcc=$(python3 -c 'import bcc; print(bcc.__version__)' 2>&1 | tail -1)"
say "python=$(python3 -c 'import platform; print(platform.python_version())')"
say "cgroup2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)"
# The host's .venv names the repository by its host path (MATRIX_REPO, from the kernel
# command line): the same tree is bound there too, so the venv finds Snoop.
if [ -n "$MATRIX_REPO" ] && [ "$MATRIX_REPO" != /work/main ]; then
    mkdir -p "$MATRIX_REPO" && mount --bind /work/main "$MATRIX_REPO"
    cd "$MATRIX_REPO" || exit 1
else
    cd /work/main || exit 1
fi
# What the tracer's own probes find: they choose its event path and cgroup filtering.
.venv/bin/python -c '
from snoop.tracer import features
found = features.probe()
print("MATRIX ringbuf=" + ("yes" if found.ringbuf else "no"))
print("MATRIX ancestor_cgroup_helper=" + ("yes" if found.ancestor_cgroup_helper else "no"))
print("MATRIX event_path=" + found.event_path)'

# The capture tests: relative and dirfd paths, cgroup filtering (a child cgroup and a
# leaf target made after start), loss accounting on ring buffer overflow, clean stop;
# and the perf buffer reader on the kernel's own perf buffers.
TESTS="
tests/tracer/test_capture.py::test_workload_paths_all_arrive_resolved
tests/tracer/test_capture.py::test_short_lived_shell_with_cd_reports_absolute_paths
tests/tracer/test_capture.py::test_find_walking_with_dirfds_reports_right_paths
tests/tracer/test_capture.py::test_process_outside_the_cgroup_and_snoop_itself_are_not_traced
tests/tracer/test_capture.py::test_child_cgroup_made_after_start_is_traced_from_its_first_syscall
tests/tracer/test_capture.py::test_leaf_target_created_while_running_is_traced_within_two_seconds
tests/tracer/test_loss_and_shutdown.py::test_tiny_ring_buffer_flood_received_plus_dropped_equals_sent
tests/tracer/test_loss_and_shutdown.py::test_all_but_self_traces_others_never_itself_and_stops_cleanly
tests/tracer/test_perfbuf.py
"
# MATRIX_TESTS (from the kernel command line, comma-separated) runs others instead.
[ -n "$MATRIX_TESTS" ] && TESTS="$(echo "$MATRIX_TESTS" | tr ',' ' ')"
say "tests_begin"
# Each guest runs its own kernel side: the host's forced fallbacks would only repeat it.
# shellcheck disable=SC2086
.venv/bin/python -m pytest -q -p no:cacheprovider --color=no -k "not forced_fallbacks" \
    $TESTS 2>&1
say "pytest_rc=$?"
say "pickup=$(.venv/bin/python bench/cgroup_pickup.py 100 2>&1 | tail -1)"
say "done"
sync
echo o > /proc/sysrq-trigger
sleep 60

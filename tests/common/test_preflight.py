"""Where BPF cannot work, the tracer says which piece is missing, in one line each."""

import subprocess
import sys


def test_tracer_as_an_unprivileged_user_names_the_missing_privilege():
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "snoop.cli", "tracer", "--target-mode", "cgroup",
         "--target-cgroup", "/nothing"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("snoop tracer: BPF cannot work here: ") for line in lines)
    assert any("not root" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_tracefs_that_is_mounted_but_unreadable_is_not_called_missing():
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "snoop.cli", "tracer", "--target-mode", "cgroup",
         "--target-cgroup", "/nothing"],
        capture_output=True, text=True, timeout=60)
    assert "no tracefs" not in result.stderr
    assert "tracefs is mounted at /sys/kernel/tracing but this user cannot read it" in \
        result.stderr


def test_snoop_run_as_an_unprivileged_user_stops_at_once_naming_the_privilege(tmp_path):
    tmp_path.chmod(0o777)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "snoop.cli", "run", "--run-dir", str(tmp_path / "run"),
         "--report-path", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("snoop run: BPF cannot work here: ") for line in lines)
    assert any("not root" in line for line in lines)
    assert not (tmp_path / "run").exists()  # nothing started

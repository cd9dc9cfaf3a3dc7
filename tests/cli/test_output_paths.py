"""One rule for every output path: a missing directory is named, never made on the way,
and a command that cannot write its output says so in one line before doing any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SNOOP = [sys.executable, "-m", "snoop.cli"]


def snoop(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*SNOOP, *argv], capture_output=True, text=True, timeout=timeout)


def one_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def a_report(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"files": ["/etc/hostname"]}))
    return path


def test_record_into_a_missing_directory_names_it_and_makes_nothing(tmp_path):
    out = tmp_path / "missing" / "r.json"
    result = snoop("record", "-o", str(out), "--", "true")
    assert result.returncode == 2
    assert one_line(result) == (f"snoop record: cannot write {out}: directory "
                                f"{out.parent} does not exist")
    assert not out.parent.exists()


def test_record_into_a_place_that_takes_no_files_exits_nonzero_in_one_line():
    result = snoop("record", "-o", "/proc/r.json", "--", "true")
    assert result.returncode == 2
    assert one_line(result).startswith("snoop record: cannot write /proc/r.json: /proc: ")


def test_merge_into_a_missing_directory_follows_the_same_rule(tmp_path, a_report):
    out = tmp_path / "missing" / "m.json"
    result = snoop("report", "merge", str(a_report), "-o", str(out))
    assert result.returncode == 2
    assert one_line(result) == (f"snoop report merge: error: cannot write {out}: directory "
                                f"{out.parent} does not exist")


def test_slim_makes_its_out_directory_only_inside_one_that_exists(tmp_path, a_report):
    out = tmp_path / "missing" / "out"
    result = snoop("slim", "--image", str(tmp_path / "no-image.tar"), "--report",
                   str(a_report), "--out", str(out))
    assert result.returncode == 2
    assert one_line(result) == (f"snoop slim: error: cannot make {out}: directory "
                                f"{out.parent} does not exist")


@pytest.mark.parametrize("command", [["reporter"], ["run"]])
@pytest.mark.parametrize("setting", ["--report-path", "--report-dir"])
def test_the_daemons_report_locations_follow_the_same_rule(tmp_path, command, setting):
    where = tmp_path / "missing" / ("r.json" if setting == "--report-path" else "reports")
    result = snoop(*command, setting, str(where), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    made = "write" if setting == "--report-path" else "make"
    assert one_line(result) == (f"snoop {command[0]}: cannot {made} {where}: directory "
                                f"{where.parent} does not exist")
    assert not where.parent.exists()


def test_a_report_directory_is_made_inside_one_that_exists(tmp_path):
    from snoop.common.config import Config
    from snoop.common.outputs import report_location_problem

    assert report_location_problem(Config(report_dir=str(tmp_path / "reports"))) is None
    assert report_location_problem(Config(report_path=str(tmp_path / "r.json"))) is None


def test_keys_into_a_missing_directory_follow_the_same_rule(tmp_path):
    where = tmp_path / "missing" / "keys"
    result = snoop("keys", "generate", str(where), "node1")
    assert result.returncode == 2
    assert one_line(result) == (f"snoop keys: cannot make {where}: directory "
                                f"{where.parent} does not exist")
    assert snoop("keys", "generate", str(tmp_path / "keys"), "node1").returncode == 0


def test_record_as_an_unprivileged_user_says_so_without_a_traceback(tmp_path):
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *SNOOP, "record",
         "-o", "/tmp/snoop-unprivileged-r.json", "--", "true"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert one_line(result).startswith("snoop record: needs root")


@pytest.mark.bpf
def test_record_whose_report_never_reaches_the_disk_does_not_exit_with_the_commands_code(
        tmp_path):
    # The command takes the output directory away: the report cannot be written.
    where = tmp_path / "gone"
    where.mkdir()
    result = snoop("record", "-o", str(where / "r.json"), "--", "rm", "-rf", str(where))
    assert result.returncode == 125, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"snoop record: no report written to {where / 'r.json'}")


@pytest.mark.bpf
def test_record_is_quiet_and_ends_with_one_summary_line(tmp_path):
    out = tmp_path / "r.json"
    result = snoop("record", "-o", str(out), "--", "cat", "/etc/hostname")
    assert result.returncode == 0, result.stderr[-2000:]
    line = one_line(result)  # no log lines from the three processes
    report = json.loads(out.read_text())
    files = len(report["files"])
    # Named for what it is: the command; the cgroup made for it stays in the report.
    assert report["workload"] == "cat /etc/hostname"
    assert report["cgroup_path"].startswith("/snoop-record-")
    probed = sum(1 for d in report["file_details"].values()
                 if d["found"] is False and set(d["errors"]) <= {"ENOENT", "ENOTDIR"})
    assert probed >= 1  # cat's loader probes library paths that do not exist
    assert report["file_details"]["/etc/hostname"]["found"] is True
    assert "cat" in report["file_details"]["/etc/hostname"]["comms"]
    assert line == (f"snoop record: {files:,} files recorded in {out} ({probed:,} only "
                    "probed, never found); nothing lost or unresolved")


@pytest.mark.bpf
def test_record_does_not_report_its_own_path_search_as_the_commands_files(tmp_path):
    out = tmp_path / "r.json"
    path = f"{tmp_path / 'nowhere'}:/usr/bin:/bin"
    result = subprocess.run([*SNOOP, "record", "-o", str(out), "--", "true"],
                            capture_output=True, text=True, timeout=180,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stderr[-2000:]
    files = json.loads(out.read_text())["files"]
    assert "/usr/bin/true" in files
    assert not [f for f in files if f.startswith(str(tmp_path / "nowhere"))]


def test_record_of_a_command_not_on_path_exits_127_in_one_line(tmp_path):
    result = snoop("record", "-o", str(tmp_path / "r.json"), "--", "no-such-command-x")
    assert result.returncode == 127
    assert one_line(result) == "snoop record: cannot run no-such-command-x: not found on PATH"

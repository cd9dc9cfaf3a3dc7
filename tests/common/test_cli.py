"""The `snoop` console script: subcommands listed, bad command lines exit 2 in one line."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from snoop.cli.main import SUBCOMMANDS

SNOOP = [sys.executable, "-m", "snoop.cli"]


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNOOP, *argv], capture_output=True, text=True, timeout=60)


def test_help_lists_every_subcommand():
    result = run("--help")
    assert result.returncode == 0
    for name in ("tracer", "processor", "reporter", "run", "record", "report", "slim", "keys"):
        assert name in SUBCOMMANDS
        assert f"    {name}" in result.stdout


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_subcommand_has_help(name):
    result = run(name, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: snoop " + name)


def test_unknown_subcommand_exits_2_with_one_line():
    result = run("snooze")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'snooze'" in result.stderr


def test_bad_flag_exits_2_with_one_line():
    result = run("processor", "--no-such-flag")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "snoop processor: error: unrecognized arguments: --no-such-flag (see --help)"]


def test_keys_writes_a_curve_key_pair(tmp_path):
    result = run("keys", "generate", str(tmp_path), "node1")
    assert result.returncode == 0
    assert (tmp_path / "node1.key").exists()
    assert (tmp_path / "node1.key_secret").stat().st_mode & 0o077 == 0


def test_keys_never_replaces_a_pair_unasked_and_defaults_to_the_host_name(tmp_path):
    assert run("keys", "generate", str(tmp_path)).returncode == 0
    host = socket.gethostname()
    assert (tmp_path / f"{host}.key_secret").stat().st_mode & 0o777 == 0o600
    before = (tmp_path / f"{host}.key").read_bytes()
    result = run("keys", "generate", str(tmp_path), host)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "exists" in result.stderr and "--force" in result.stderr
    assert (tmp_path / f"{host}.key").read_bytes() == before
    assert run("keys", "generate", "--force", str(tmp_path), host).returncode == 0
    assert (tmp_path / f"{host}.key").read_bytes() != before
    bad = run("keys", "generate", str(tmp_path), "../escape")
    assert bad.returncode == 2 and "expected a name" in bad.stderr


def test_a_bad_flag_before_the_command_is_named():
    result = run("--bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "snoop: error: unrecognized argument: --bogus (see --help)"]


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("snoop ")
    assert result.stdout.strip() != "snoop"


@pytest.mark.parametrize("command", ["tracer", "processor", "reporter", "record"])
def test_each_command_shows_and_accepts_only_the_settings_it_uses(command):
    from snoop.cli.record import RECORD_OPTIONS
    from snoop.common.config import OPTIONS_BY_NAME, PROCESS_OPTIONS

    wanted = set(RECORD_OPTIONS if command == "record" else PROCESS_OPTIONS[command])
    shown = set(re.findall(r"^  (--[a-z-]+) VALUE", run(command, "--help").stdout, re.M))
    assert shown == {OPTIONS_BY_NAME[name].flag for name in wanted}
    unused = next(o.flag for name, o in OPTIONS_BY_NAME.items() if name not in wanted)
    result = run(command, unused, "x", *(["--", "true"] if command == "record" else []))
    assert result.returncode == 2
    assert f"unrecognized arguments: {unused}" in result.stderr

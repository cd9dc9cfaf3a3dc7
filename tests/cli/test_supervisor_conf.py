"""`snoop run`'s supervisord config: stop order, restarts, environment passed intact."""

import configparser
import os
import stat

from snoop.cli import supervisor_conf
from snoop.cli.run import child_environ, supervisord_environ, write_conf
from snoop.common.config import load

SECRET = {"SNOOP_API_ENDPOINT": "https://api.example/reports", "SNOOP_API_TOKEN": "s3cret-t0ken"}


def rendered_text(env_extra=None) -> str:
    config = load({"SNOOP_LABELS": "team=a%b", "SNOOP_METRICS_ADDR": "127.0.0.1:9300",
                   **(env_extra or {})})
    envs = {name: child_environ(config, offset)
            for name, offset in supervisor_conf.METRICS_OFFSETS.items()}
    return supervisor_conf.render(envs, "/run/snoop", "/venv/bin/snoop")


def rendered(env_extra=None) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(rendered_text(env_extra))
    return parser


def test_tracer_stops_first_and_reporter_last():
    parser = rendered()
    priority = {name: int(parser[f"program:{name}"]["priority"])
                for name in ("tracer", "processor", "reporter")}
    # supervisord stops in reverse priority order, waiting for each.
    assert priority["tracer"] > priority["processor"] > priority["reporter"]


def test_crashed_programs_are_restarted_and_stopped_with_sigterm():
    parser = rendered()
    for name in ("tracer", "processor", "reporter"):
        section = parser[f"program:{name}"]
        assert section["autorestart"] == "true"
        assert section["stopsignal"] == "TERM"
        assert section["command"] == f"/venv/bin/snoop {name}"


def test_each_program_gets_the_whole_config_and_its_own_metrics_port():
    parser = rendered()
    env = parser["program:processor"]["environment"]
    assert 'SNOOP_METRICS_ADDR="127.0.0.1:9301"' in env
    assert 'SNOOP_LABELS="team=a%%b"' in env  # supervisord expands %(...)s otherwise
    assert 'SNOOP_TARGET_MODE="all-but-self"' in env


def test_the_api_token_is_not_written_into_the_conf_file():
    text = rendered_text(SECRET)
    assert "s3cret-t0ken" not in text and "SNOOP_API_TOKEN" not in text
    assert 'SNOOP_API_ENDPOINT="https://api.example/reports"' in text


def test_supervisord_gets_the_token_in_its_environment_for_its_programs():
    config = load(SECRET)
    env = supervisord_environ(config, {"PATH": "/usr/bin", "SNOOP_API_TOKEN": "from-env"})
    assert env == {"PATH": "/usr/bin", "SNOOP_API_TOKEN": "s3cret-t0ken"}  # config wins
    assert supervisord_environ(load({}), {"PATH": "/usr/bin"}) == {"PATH": "/usr/bin"}


def test_the_conf_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "supervisord.conf"
    path.write_text("left by a last run\n")
    os.chmod(path, 0o644)
    write_conf(str(path), "[supervisord]\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "[supervisord]\n"

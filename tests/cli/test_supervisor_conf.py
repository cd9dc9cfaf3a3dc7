"""`snoop run`'s supervisord config: stop order, restarts, environment passed intact."""

import configparser

from snoop.cli import supervisor_conf
from snoop.cli.run import child_environ
from snoop.common.config import load


def rendered(env_extra=None) -> configparser.RawConfigParser:
    config = load({"SNOOP_LABELS": "team=a%b", "SNOOP_METRICS_ADDR": "127.0.0.1:9300",
                   **(env_extra or {})})
    envs = {name: child_environ(config, offset)
            for name, offset in supervisor_conf.METRICS_OFFSETS.items()}
    parser = configparser.RawConfigParser()
    parser.read_string(supervisor_conf.render(envs, "/run/snoop", "/venv/bin/snoop"))
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

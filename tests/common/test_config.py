"""Config: flags beat env beats defaults; each bad value gives one line naming it."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from snoop.common import config as c


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    c.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_follow_the_plan():
    config = c.load({})
    assert config.target_mode is c.TargetMode.ALL_BUT_SELF
    assert config.exclude_paths == ("/proc", "/sys", "/dev")
    assert config.report_path == "/data/snoop-report.json"
    assert config.report_interval == 30.0
    assert config.metrics_addr == "127.0.0.1:9090"
    assert config.endpoint("events") == "ipc:///run/snoop/events.sock"


def test_flag_beats_environment():
    config = c.load({"SNOOP_REPORT_INTERVAL": "5m", "SNOOP_LOG_LEVEL": "debug"},
                    parse(["--report-interval", "500ms"]))
    assert config.report_interval == 0.5
    assert config.log_level is c.LogLevel.DEBUG


def test_values_parse():
    config = c.load({
        "SNOOP_TARGET_MODE": "container",
        "SNOOP_TARGET_CONTAINER_ID": "abcdef012345, " + "a" * 64,
        "SNOOP_LABELS": "team=infra, app.kubernetes.io/name=web",
        "SNOOP_RINGBUF_BYTES": "16MiB",
        "SNOOP_EXCLUDE_PATHS": "/proc,/tmp/*.lock",
        "SNOOP_INSECURE_TCP": "yes",
        "SNOOP_METRICS_ADDR": ":9100",
    })
    assert config.target_container_id == ("abcdef012345", "a" * 64)
    assert config.labels == {"team": "infra", "app.kubernetes.io/name": "web"}
    assert config.ringbuf_bytes == 16 * 1024 * 1024
    assert config.exclude_paths == ("/proc", "/tmp/*.lock")
    assert config.insecure_tcp is True
    assert config.metrics_addr == "0.0.0.0:9100"


def test_round_trip_through_environment():
    config = c.load({"SNOOP_TARGET_MODE": "cgroup", "SNOOP_TARGET_CGROUP": "/a,/b/c",
                     "SNOOP_LABELS": "x=1", "SNOOP_REPORT_INTERVAL": "2s"})
    assert c.load(c.to_environ(config)) == config


ERRORS = {
    "SNOOP_TARGET_MODE": ("everything", "expected one of cgroup, container, pod, all-but-self"),
    "SNOOP_TARGET_CONTAINER_ID": ("xyz", "expected comma-separated container ids"),
    "SNOOP_TARGET_CGROUP": ("relative/path", "expected comma-separated absolute cgroup paths"),
    "SNOOP_LABELS": ("novalue", "expected comma-separated key=value pairs"),
    "SNOOP_EXCLUDE_PATHS": ("proc", "expected comma-separated absolute path prefixes or globs"),
    "SNOOP_REPORT_PATH": ("", "expected a non-empty path"),
    "SNOOP_REPORT_DIR": ("reports", "expected an absolute path"),
    "SNOOP_REPORT_INTERVAL": ("soon", "expected a duration like 30s"),
    "SNOOP_API_ENDPOINT": ("ftp://x", "expected an http:// or https:// URL"),
    "SNOOP_API_TOKEN": ("tok\u200ben", "expected a bearer token"),
    "SNOOP_API_CA_FILE": ("/nonexistent/ca.pem", "expected an existing file"),
    "SNOOP_API_TLS_VERIFY": ("sometimes", "expected true or false"),
    "SNOOP_SPOOL_MAX_BYTES": ("big", "expected a size like 8MiB"),
    "SNOOP_METRICS_ADDR": ("localhost", "expected host:port or :port"),
    "SNOOP_LOG_LEVEL": ("loud", "expected one of debug, info, warning, error"),
    "SNOOP_LOG_FORMAT": ("pretty", "expected one of auto, json, text"),
    "SNOOP_RUN_DIR": ("run", "expected an absolute path"),
    "SNOOP_EVENTS_ENDPOINT": ("udp://x:1", "expected ipc://PATH, tcp://HOST:PORT or tcp://[IPV6]:PORT"),
    "SNOOP_UPDATES_ENDPOINT": ("tcp://host", "expected ipc://PATH, tcp://HOST:PORT or tcp://[IPV6]:PORT"),
    "SNOOP_CHECKPOINT_ENDPOINT": ("pipe", "expected ipc://PATH, tcp://HOST:PORT or tcp://[IPV6]:PORT"),
    "SNOOP_INSECURE_TCP": ("maybe", "expected true or false"),
    "SNOOP_RINGBUF_BYTES": ("lots", "expected a size like 8MiB"),
    "SNOOP_DEDUP_ENTRIES": ("-1", "expected a whole number above zero"),
    "SNOOP_DEDUP_TTL": ("0s", "expected a duration above zero"),
    "SNOOP_BATCH_MAX_EVENTS": ("many", "expected a whole number above zero"),
    "SNOOP_BATCH_MAX_DELAY": ("x", "expected a duration like 30s"),
    "SNOOP_PENDING_MAX": ("0", "expected a whole number above zero"),
    "SNOOP_RESEND_AFTER": ("never", "expected a duration like 30s"),
    "SNOOP_MAX_UNIQUE_FILES": ("1e6", "expected a whole number above zero"),
    "SNOOP_DOCKER_SOCKET": ("docker.sock", "expected an absolute path"),
    "SNOOP_POD_UID": ("../../etc", "expected a pod uid"),
    "SNOOP_CONTAINERD_SOCKET": ("containerd.sock", "expected an absolute path"),
    "SNOOP_CONTAINERD_NAMESPACE": ("k8s io", "expected a name of letters"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_each_bad_value_names_variable_value_and_expectation(name):
    value, expected = ERRORS[name]
    with pytest.raises(c.ConfigError) as caught:
        c.load({name: value})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}={value!r}: ")
    assert expected in message


def test_every_option_with_a_parser_that_can_fail_has_an_error_case():
    free_text = {"workload_name", "image_ref", "image_digest", "pod_name", "namespace",
                 "node_name",
                 "curve_secret_key", "curve_server_key", "curve_allowed_keys"}
    assert {o.env for o in c.OPTIONS if o.name not in free_text} == set(ERRORS)


def test_flag_errors_name_the_flag():
    with pytest.raises(c.ConfigError, match=r"^--report-interval='x': expected"):
        c.load({}, parse(["--report-interval", "x"]))


def test_several_errors_give_one_line_each():
    with pytest.raises(c.ConfigError) as caught:
        c.load({"SNOOP_LOG_LEVEL": "loud", "SNOOP_DEDUP_TTL": "x"})
    assert len(str(caught.value).splitlines()) == 2


@pytest.mark.parametrize("env, expected", [
    ({"SNOOP_TARGET_MODE": "container"}, "expected SNOOP_TARGET_CONTAINER_ID too"),
    ({"SNOOP_TARGET_MODE": "cgroup"}, "expected SNOOP_TARGET_CGROUP too"),
    ({"SNOOP_API_TOKEN": "t"}, "expected SNOOP_API_ENDPOINT too"),
])
def test_settings_that_need_each_other(env, expected):
    with pytest.raises(c.ConfigError, match=expected):
        c.load(env)


@pytest.mark.parametrize("command", ["tracer", "processor", "reporter", "run", "record"])
def test_commands_exit_2_with_one_line_on_bad_config(command):
    argv = [sys.executable, "-m", "snoop.cli", command]
    if command == "record":
        argv += ["--", "true"]
    result = subprocess.run(argv, env={"SNOOP_REPORT_INTERVAL": "soon", "PATH": "/usr/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"snoop {command}: config error: SNOOP_REPORT_INTERVAL='soon': expected a duration "
        "like 30s, 500ms, 5m or 1.5")


@pytest.mark.parametrize("endpoint", ["tcp://[::1]:5555", "tcp://[fe80::1%eth0]:5555",
                                      "tcp://[2001:db8::7]:1", "tcp://*:5555",
                                      "tcp://snoop-processor:5555", "ipc:///run/snoop/x.sock"])
def test_endpoints_include_ipv6(endpoint):
    assert c.load({"SNOOP_EVENTS_ENDPOINT": endpoint}).events_endpoint == endpoint


@pytest.mark.parametrize("endpoint", ["tcp://[::g]:5555", "tcp://::1:5555", "tcp://[::1]",
                                      "tcp://host:65536"])
def test_bad_tcp_endpoints_are_refused(endpoint):
    with pytest.raises(c.ConfigError, match=r"^SNOOP_EVENTS_ENDPOINT='.*': expected .*tcp://"):
        c.load({"SNOOP_EVENTS_ENDPOINT": endpoint})


def key_file(tmp_path, mode: int) -> str:
    path = tmp_path / "node1.key_secret"
    path.write_text("# a CurveZMQ secret key\n")
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o604, 0o640, 0o660])
def test_secret_keys_others_can_read_are_refused_naming_file_and_mode(tmp_path, mode):
    path = key_file(tmp_path, mode)
    with pytest.raises(c.ConfigError) as caught:
        c.load({"SNOOP_CURVE_SECRET_KEY": path})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"SNOOP_CURVE_SECRET_KEY={path!r}: mode {mode:04o} ")


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_secret_keys_only_the_owner_can_read_are_accepted(tmp_path, mode):
    path = key_file(tmp_path, mode)
    assert c.load({"SNOOP_CURVE_SECRET_KEY": path}).curve_secret_key == path


def test_a_missing_secret_key_is_one_line(tmp_path):
    with pytest.raises(c.ConfigError, match=r"^SNOOP_CURVE_SECRET_KEY='/nonexistent/k': cannot "
                                            r"read: No such file or directory$"):
        c.load({"SNOOP_CURVE_SECRET_KEY": "/nonexistent/k"})


@pytest.mark.parametrize("mode, refused", [(0o777, True), (0o1777, True), (0o757, True),
                                           (0o755, False), (0o700, False), (0o775, False)])
def test_an_allowed_keys_directory_anyone_can_write_to_is_refused(tmp_path, mode, refused):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    allowed.chmod(mode)
    env = {"SNOOP_CURVE_ALLOWED_KEYS": str(allowed)}
    if not refused:
        assert c.load(env).curve_allowed_keys == str(allowed)
        return
    with pytest.raises(c.ConfigError) as caught:
        c.load(env)
    assert str(caught.value).startswith(
        f"SNOOP_CURVE_ALLOWED_KEYS={str(allowed)!r}: mode {mode:04o} lets anyone add a client key")
    assert "\n" not in str(caught.value)


def test_secret_options_can_be_left_out_of_the_environment():
    config = c.load({"SNOOP_API_TOKEN": "s3cret", "SNOOP_API_ENDPOINT": "https://api.example"})
    assert c.to_environ(config)["SNOOP_API_TOKEN"] == "s3cret"
    assert "SNOOP_API_TOKEN" not in c.to_environ(config, secrets=False)
    assert [o.env for o in c.OPTIONS if o.secret] == ["SNOOP_API_TOKEN"]

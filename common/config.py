"""Configuration: `SNOOP_*` environment variables and matching CLI flags, validated once.

Every option has one spec in `OPTIONS`. A flag beats its environment variable, which
beats the default. `load()` parses everything and raises `ConfigError` with one line per
bad value, naming the variable, the value and what was expected. It also refuses CurveZMQ
key material others could read or replace: a secret key file group or other may access,
an allowed-keys directory anyone may write to.

Secret options (`Option.secret`: the API token) are never written into files Snoop
makes: `to_environ(config, secrets=False)` leaves them out.
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import os
import re
import stat
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """One or more bad configuration values; str() has one line per problem."""


class TargetMode(enum.StrEnum):
    CGROUP = "cgroup"
    CONTAINER = "container"
    POD = "pod"
    ALL_BUT_SELF = "all-but-self"


class LogFormat(enum.StrEnum):
    AUTO = "auto"  # text on a terminal, JSON lines otherwise
    JSON = "json"
    TEXT = "text"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Config:
    # target selection
    target_mode: TargetMode = TargetMode.ALL_BUT_SELF
    target_container_id: tuple[str, ...] = ()
    target_cgroup: tuple[str, ...] = ()
    # identity, copied into reports
    workload_name: str = ""
    image_ref: str = ""
    image_digest: str = ""
    pod_name: str = ""
    namespace: str = ""
    pod_uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    # filtering
    exclude_paths: tuple[str, ...] = ("/proc", "/sys", "/dev")
    # output
    report_path: str = "/data/snoop-report.json"
    report_dir: str = ""
    report_interval: float = 30.0
    api_endpoint: str = ""
    api_token: str = ""
    api_ca_file: str = ""
    api_tls_verify: bool = True
    spool_max_bytes: int = 256 * 1024 * 1024
    node_name: str = ""
    # observability
    metrics_addr: str = "127.0.0.1:9090"
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.AUTO
    # links between processes
    run_dir: str = "/run/snoop"
    events_endpoint: str = ""
    updates_endpoint: str = ""
    checkpoint_endpoint: str = ""
    curve_secret_key: str = ""
    curve_server_key: str = ""
    curve_allowed_keys: str = ""
    insecure_tcp: bool = False
    # kernel side
    ringbuf_bytes: int = 8 * 1024 * 1024
    dedup_entries: int = 65536
    dedup_ttl: float = 600.0
    batch_max_events: int = 1000
    batch_max_delay: float = 0.02
    # delivery
    pending_max: int = 250_000
    resend_after: float = 10.0
    max_unique_files: int = 1_000_000
    # container runtime metadata
    docker_socket: str = "/var/run/docker.sock"
    containerd_socket: str = ""
    containerd_namespace: str = "k8s.io"

    def endpoint(self, name: str) -> str:
        """The configured endpoint for `events`, `updates` or `checkpoint`."""
        explicit = getattr(self, f"{name}_endpoint")
        return explicit or f"ipc://{self.run_dir.rstrip('/')}/{name}.sock"


# ---------------------------------------------------------------- value parsers
# Each returns the parsed value or raises ValueError with what was expected.

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^(\d+)([KMG]i?B?)?$", re.IGNORECASE)
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_./-]{0,252}[A-Za-z0-9])?$")
_CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError("a duration like 30s, 500ms, 5m or 1.5")
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if value <= 0:
        raise ValueError("a duration above zero")
    return value


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError("a size like 8MiB, 512K or 4194304")
    unit = (match.group(2) or "").upper()[:1]
    value = int(match.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit]
    if value <= 0:
        raise ValueError("a size above zero")
    return value


def parse_positive_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("a whole number above zero") from None
    if value <= 0:
        raise ValueError("a whole number above zero")
    return value


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("true or false")


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_container_ids(text: str) -> tuple[str, ...]:
    ids = parse_list(text)
    for container_id in ids:
        if not _CONTAINER_ID.match(container_id):
            raise ValueError("comma-separated container ids of 12 to 64 lowercase hex digits")
    return ids


def parse_cgroup_paths(text: str) -> tuple[str, ...]:
    paths = parse_list(text)
    for path in paths:
        if not path.startswith("/") or "/../" in f"{path}/":
            raise ValueError("comma-separated absolute cgroup paths without '..'")
    return paths


def parse_exclude(text: str) -> tuple[str, ...]:
    patterns = parse_list(text)
    for pattern in patterns:
        if not pattern.startswith("/"):
            raise ValueError("comma-separated absolute path prefixes or globs")
    return patterns


def parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for item in parse_list(text):
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.match(key.strip()):
            raise ValueError("comma-separated key=value pairs")
        labels[key.strip()] = value.strip()
    return labels


def parse_addr(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("host:port or :port, port 0-65535")
    return f"{host or '0.0.0.0'}:{port}"


_TCP_ENDPOINT = re.compile(r"^tcp://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]/]+)):(?P<port>\d+)$")


def parse_endpoint(text: str) -> str:
    value = text.strip()
    if not value or re.match(r"^ipc://.+$", value):
        return value
    match = _TCP_ENDPOINT.match(value)
    if not match or int(match.group("port")) > 65535:
        raise ValueError("ipc://PATH, tcp://HOST:PORT or tcp://[IPV6]:PORT, port 0-65535")
    if match.group("v6") is not None:
        try:
            ipaddress.IPv6Address(match.group("v6"))
        except ValueError:
            raise ValueError("tcp://[IPV6]:PORT with a valid IPv6 address") from None
    return value


def parse_absolute_path(text: str) -> str:
    value = text.strip()
    if value and not value.startswith("/"):
        raise ValueError("an absolute path")
    return value


def parse_path(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("a non-empty path")
    return value


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,75}$")


def parse_name(text: str) -> str:
    value = text.strip()
    if not _NAME.match(value):
        raise ValueError("a name of letters, digits, '.', '_' and '-'")
    return value


_UID = re.compile(r"^[0-9a-fA-F-]{8,64}$")


def parse_pod_uid(text: str) -> str:
    value = text.strip()
    if value and not _UID.match(value):
        raise ValueError("a pod uid like 3f2b6c1e-8d4a-4e1b-9c2d-5a6b7c8d9e0f")
    return value


def parse_file(text: str) -> str:
    value = text.strip()
    if value and not os.path.isfile(value):
        raise ValueError("an existing file")
    return value


def parse_url(text: str) -> str:
    value = text.strip()
    if not value:
        return value
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  (raises on a port that is no number or out of range)
    except ValueError:
        raise ValueError("an http:// or https:// URL") from None
    if (parts.scheme not in ("http", "https") or not parts.hostname
            or re.search(r"\s", value)):
        raise ValueError("an http:// or https:// URL")
    return value


_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")  # RFC 6750's b64token


def parse_token(text: str) -> str:
    value = text.strip()
    if value and not _TOKEN.match(value):
        raise ValueError("a bearer token of letters, digits and -._~+/ (RFC 6750)")
    return value


def _enum_parser(enum_type: type[enum.Enum]) -> Callable[[str], Any]:
    def parse(text: str) -> enum.Enum:
        try:
            return enum_type(text.strip().lower())
        except ValueError:
            choices = ", ".join(member.value for member in enum_type)
            raise ValueError(f"one of {choices}") from None

    return parse


@dataclass(frozen=True)
class Option:
    name: str  # Config field
    parse: Callable[[str], Any]
    help: str
    secret: bool = False  # never written into a file (see to_environ)

    @property
    def env(self) -> str:
        return f"SNOOP_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"


OPTIONS: tuple[Option, ...] = (
    Option("target_mode", _enum_parser(TargetMode), "which workloads to trace"),
    Option("target_container_id", parse_container_ids, "container ids (container mode)"),
    Option("target_cgroup", parse_cgroup_paths, "cgroup v2 paths, with descendants (cgroup mode)"),
    Option("workload_name", str.strip,
           "the report's workload name in sidecar mode (default: namespace/pod, or what "
           "the container runtime calls the first workload)"),
    Option("image_ref", str.strip, "image reference, copied into reports"),
    Option("image_digest", str.strip, "image digest, copied into reports"),
    Option("pod_name", str.strip, "pod name, copied into reports"),
    Option("namespace", str.strip, "namespace, copied into reports"),
    Option("pod_uid", parse_pod_uid,
           "the pod's uid (downward API metadata.uid): pod mode finds the pod's cgroup by "
           "it where a private cgroup namespace hides the sidecar's own path"),
    Option("labels", parse_labels, "key=value,... copied into reports"),
    Option("exclude_paths", parse_exclude, "path prefixes or globs left out of reports"),
    Option("report_path", parse_path, "report file (one workload: sidecar mode)"),
    Option("report_dir", parse_absolute_path, "directory of one report per workload (node mode)"),
    Option("report_interval", parse_duration, "how often reports are written"),
    Option("api_endpoint", parse_url,
           "URL the reporter POSTs deltas to (a bare http(s)://HOST:PORT gets /v1/deltas)"),
    Option("api_token", parse_token, "bearer token for the API endpoint", secret=True),
    Option("api_ca_file", parse_file,
           "CA bundle that verifies the API endpoint's TLS certificate (default: the system's)"),
    Option("api_tls_verify", parse_bool,
           "verify the API endpoint's TLS certificate (false only for testing)"),
    Option("spool_max_bytes", parse_size,
           "disk the reporter's push spool may use; beyond it the oldest deltas give way to "
           "one full snapshot per workload, sent when there is room"),
    Option("node_name", str.strip,
           "this host's name: (tracer) put before the key of a workload that is no "
           "container, so several nodes' host services stay apart in one reporter; "
           "(reporter) the origin of the deltas it pushes (default: the host name)"),
    Option("metrics_addr", parse_addr, "host:port for /metrics, /healthz and /readyz"),
    Option("log_level", _enum_parser(LogLevel), "log level"),
    Option("log_format", _enum_parser(LogFormat),
           "log lines: json, text, or auto (text on a terminal)"),
    Option("run_dir", parse_absolute_path, "directory for the default ipc:// sockets"),
    Option("events_endpoint", parse_endpoint, "tracer -> processor link"),
    Option("updates_endpoint", parse_endpoint, "processor -> reporter link"),
    Option("checkpoint_endpoint", parse_endpoint, "reporter -> tracers checkpoint link"),
    Option("curve_secret_key", str.strip, "this process's CurveZMQ secret key file (tcp://)"),
    Option("curve_server_key", str.strip, "the server's CurveZMQ public key file (tcp://)"),
    Option("curve_allowed_keys", str.strip, "directory of allowed client public keys"),
    Option("insecure_tcp", parse_bool, "allow plain tcp:// beyond loopback"),
    Option("ringbuf_bytes", parse_size, "BPF ring buffer size"),
    Option("dedup_entries", parse_positive_int, "entries of the in-kernel dedup LRU map"),
    Option("dedup_ttl", parse_duration, "re-send a deduplicated path after this long"),
    Option("batch_max_events", parse_positive_int, "events per message, at most"),
    Option("batch_max_delay", parse_duration, "how long a batch may wait before it is sent"),
    Option("pending_max", parse_positive_int,
           "unconfirmed events a tracer keeps to re-send (at this many it stops draining)"),
    Option("resend_after", parse_duration, "re-send unconfirmed events after this long"),
    Option("max_unique_files", parse_positive_int, "unique paths per workload, at most"),
    Option("docker_socket", parse_absolute_path,
           "Docker Engine API socket the tracer asks for container names ('' for none)"),
    Option("containerd_socket", parse_absolute_path,
           "containerd's socket the tracer asks for container names and metadata instead "
           "of Docker's ('' for none; /run/containerd/containerd.sock on a Kubernetes node)"),
    Option("containerd_namespace", parse_name,
           "containerd namespace of the containers: k8s.io (the kubelet's CRI), moby (Docker)"),
)

OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}

# The settings each process reads, so its --help lists and its flags accept those only.
# (`snoop run` takes them all and hands them on; every process still reads any SNOOP_*
# variable, since `snoop run` gives each the whole config.)
_EVERY_PROCESS = ("log_level", "log_format", "metrics_addr", "run_dir", "insecure_tcp",
                  "curve_secret_key", "curve_server_key", "curve_allowed_keys")
PROCESS_OPTIONS: dict[str, tuple[str, ...]] = {
    "tracer": (*_EVERY_PROCESS, "target_mode", "target_container_id", "target_cgroup", "pod_uid",
               "events_endpoint", "checkpoint_endpoint", "ringbuf_bytes", "dedup_entries",
               "dedup_ttl", "batch_max_events", "batch_max_delay", "pending_max",
               "resend_after", "docker_socket", "containerd_socket", "containerd_namespace",
               "node_name"),
    "processor": (*_EVERY_PROCESS, "events_endpoint", "updates_endpoint", "exclude_paths",
                  "max_unique_files", "report_interval"),
    "reporter": (*_EVERY_PROCESS, "updates_endpoint", "checkpoint_endpoint", "api_endpoint",
                 "api_token", "api_ca_file", "api_tls_verify", "spool_max_bytes", "node_name",
                 "workload_name", "image_ref", "image_digest", "pod_name",
                 "namespace", "labels", "max_unique_files", "report_path", "report_dir",
                 "report_interval"),
}
assert set(OPTIONS_BY_NAME) == {f.name for f in fields(Config)}, "OPTIONS and Config differ"


def add_arguments(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """Add one flag per option (or per option in `only`, those a command uses); values
    stay strings until `load()` validates them."""
    group = parser.add_argument_group("configuration (each flag also reads SNOOP_<NAME>)")
    wanted = set(OPTIONS_BY_NAME if only is None else only)
    unknown = wanted - set(OPTIONS_BY_NAME)
    if unknown:
        raise ValueError(f"no such options: {sorted(unknown)}")
    for option in (o for o in OPTIONS if o.name in wanted):
        group.add_argument(
            option.flag, dest=f"cfg_{option.name}", metavar="VALUE", default=None,
            help=f"{option.help} [{option.env}]",
        )


def load(
    environ: Mapping[str, str], args: argparse.Namespace | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build a Config from flags, then environment, then defaults; one error line per problem."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for option in OPTIONS:
        raw = getattr(args, f"cfg_{option.name}", None) if args is not None else None
        source = option.flag
        if raw is None and option.env in environ:
            raw, source = environ[option.env], option.env
        if raw is None:
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as exc:
            errors.append(f"{source}={raw!r}: expected {exc}")
    values.update(overrides or {})
    if not errors:
        errors.extend(_cross_checks(values))
    if errors:
        raise ConfigError("\n".join(errors))
    return Config(**values)


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    errors = []
    mode = values.get("target_mode", Config.target_mode)
    if mode is TargetMode.CONTAINER and not values.get("target_container_id"):
        errors.append("SNOOP_TARGET_MODE='container': expected SNOOP_TARGET_CONTAINER_ID too")
    if mode is TargetMode.CGROUP and not values.get("target_cgroup"):
        errors.append("SNOOP_TARGET_MODE='cgroup': expected SNOOP_TARGET_CGROUP too")
    if values.get("api_token") and not values.get("api_endpoint"):
        errors.append("SNOOP_API_TOKEN is set: expected SNOOP_API_ENDPOINT too")
    errors.extend(_key_permission_errors(values.get("curve_secret_key", ""),
                                         values.get("curve_allowed_keys", "")))
    return errors


def _key_permission_errors(secret_key: str, allowed_keys: str) -> list[str]:
    """A secret key only its owner can access; an allow-list nobody else can write to."""
    errors = []
    if secret_key:
        try:
            mode = stat.S_IMODE(os.stat(secret_key).st_mode)
        except OSError as exc:
            errors.append(f"SNOOP_CURVE_SECRET_KEY={secret_key!r}: cannot read: {exc.strerror}")
        else:
            if mode & 0o077:
                errors.append(f"SNOOP_CURVE_SECRET_KEY={secret_key!r}: mode {mode:04o} lets "
                              "group or others access the secret key: expected 0600 or 0400 "
                              f"(chmod 600 {secret_key})")
    if allowed_keys:
        try:
            mode = stat.S_IMODE(os.stat(allowed_keys).st_mode)
        except OSError as exc:
            errors.append(f"SNOOP_CURVE_ALLOWED_KEYS={allowed_keys!r}: cannot read: "
                          f"{exc.strerror}")
        else:
            if mode & 0o002:
                errors.append(f"SNOOP_CURVE_ALLOWED_KEYS={allowed_keys!r}: mode {mode:04o} "
                              "lets anyone add a client key: expected a directory others "
                              f"cannot write to (chmod o-w {allowed_keys})")
    return errors


def to_environ(config: Config, *, secrets: bool = True) -> dict[str, str]:
    """The SNOOP_* variables that reproduce `config` (for child processes).

    `secrets=False` leaves out secret options, for environments written into files.
    """
    env = {}
    for option in OPTIONS:
        if option.secret and not secrets:
            continue
        value = getattr(config, option.name)
        if isinstance(value, enum.Enum):
            text = value.value
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        elif isinstance(value, Mapping):
            text = ",".join(f"{k}={v}" for k, v in value.items())
        else:
            text = str(value)
        env[option.env] = text
    return env


def describe(options: Sequence[Option] = OPTIONS) -> str:
    """A Markdown table of every option, for docs/configuration.md."""
    lines = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    defaults = Config()
    for option in options:
        default = getattr(defaults, option.name)
        if isinstance(default, enum.Enum):
            default = default.value
        elif isinstance(default, tuple):
            default = ",".join(default)
        lines.append(f"| `{option.env}` | `{option.flag}` | `{default}` | {option.help} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())

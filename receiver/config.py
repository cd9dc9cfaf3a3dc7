"""`snoop receive` settings: flags with `SNOOP_RECEIVE_*` fallbacks, validated here once.

A flag beats its environment variable, which beats the default. `load()` raises
ConfigError with one line per problem, naming the flag or variable, the value and what
was expected. The tokens file is read here too: a receiver never starts without a token
list only its owner can read.
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snoop.common import outputs
from snoop.common.config import parse_duration, parse_positive_int, parse_size

DEFAULT_LISTEN = "127.0.0.1:8787"
# ./data is where `make run` keeps reports; the receiver's database sits beside them.
DEFAULT_DB = "sqlite:///data/receiver.db"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# Deltas taken in at once: each may hold --max-body-bytes as sent, as much decompressed,
# and its parsed JSON, so memory stays bounded under a burst from the whole fleet.
DEFAULT_MAX_CONCURRENT_DELTAS = 8
DEFAULT_KEY_TTL = 7 * 86400.0  # seconds: far longer than a reporter keeps retrying a delta
SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")
MAX_TOKEN = 4096


class ConfigError(ValueError):
    """One or more bad settings; str() has one line per problem."""


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True)
class ReceiverConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    db_url: str = DEFAULT_DB
    tokens: tuple[str, ...] = field(default=(), repr=False)
    tokens_file: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_concurrent_deltas: int = DEFAULT_MAX_CONCURRENT_DELTAS
    key_ttl: float = DEFAULT_KEY_TTL  # seconds an idempotency key is kept
    log_format: LogFormat = LogFormat.TEXT

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("HOST:PORT with a valid IPv6 address in brackets") from None
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("HOST:PORT (or [IPV6]:PORT), port 1-65535")
    return host, int(port)


def parse_db_url(text: str) -> str:
    value = text.strip()
    if value.startswith(POSTGRES_PREFIXES):
        return value
    if value.startswith(SQLITE_PREFIX):
        path = sqlite_path(value)
        if not path or path == ":memory:":
            raise ValueError("sqlite:///PATH with a file path (sqlite:////abs/path for "
                             "an absolute one)")
        problem = outputs.file_problem(path)
        if problem:
            raise ValueError(f"a database file Snoop can write ({problem})")
        return value
    raise ValueError("sqlite:///PATH or postgresql://USER@HOST/DB")


def sqlite_path(url: str) -> str:
    """The file of a sqlite:///PATH URL: relative to the working directory, or absolute
    with a fourth slash (sqlite:////var/lib/snoop/receiver.db)."""
    return url.removeprefix(SQLITE_PREFIX)


def parse_max_body(text: str) -> int:
    return parse_size(text)


def parse_key_ttl(text: str) -> float:
    """Seconds, from 7d, 24h, 30m, 90s (or a number of seconds)."""
    value = text.strip()
    try:
        if value.endswith("d"):
            return parse_duration(value[:-1]) * 86400
        return parse_duration(value)
    except ValueError:
        raise ValueError("a duration above zero like 7d, 24h or 30m") from None


def parse_log_format(text: str) -> LogFormat:
    try:
        return LogFormat(text.strip().lower())
    except ValueError:
        raise ValueError("text or json") from None


def read_tokens(path: str) -> tuple[str, ...]:
    """The allowed bearer tokens: one per line, `#` comments and blank lines ignored.
    Refused when group or others may read the file: a token is a password."""
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") \
            from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file")
    if mode & 0o077:
        raise ValueError(f"{path} is readable by group or others (mode "
                         f"{stat.S_IMODE(mode):04o}); chmod 600 it")
    tokens = []
    for number, line in enumerate(lines, 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if any(c.isspace() for c in token) or len(token) > MAX_TOKEN or not token.isascii():
            raise ValueError(f"{path}:{number}: a token is one word of at most {MAX_TOKEN} "
                             "ASCII characters")
        tokens.append(token)
    if not tokens:
        raise ValueError(f"{path} holds no token (one per line; # starts a comment)")
    return tuple(tokens)


@dataclass(frozen=True)
class _Option:
    name: str  # argparse dest, and SNOOP_RECEIVE_<NAME>
    parse: Callable[[str], Any]
    metavar: str
    help: str

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"

    @property
    def env(self) -> str:
        return f"SNOOP_RECEIVE_{self.name.upper()}"


OPTIONS = (
    _Option("listen", parse_listen, "HOST:PORT", f"address to serve on ({DEFAULT_LISTEN})"),
    _Option("db", parse_db_url, "URL",
            f"sqlite:///PATH or postgresql://... ({DEFAULT_DB}: ./data/receiver.db)"),
    _Option("tokens_file", read_tokens, "FILE",
            "allowed bearer tokens, one per line (# comments); mode 600 (required)"),
    _Option("max_body_bytes", parse_max_body, "SIZE",
            "largest delta accepted, as sent and after gunzip (32MiB)"),
    _Option("max_concurrent_deltas", parse_positive_int, "N",
            "deltas taken in at once; past it 503 with Retry-After (8)"),
    _Option("key_ttl", parse_key_ttl, "DURATION",
            "how long an idempotency key is kept, then pruned (7d)"),
    _Option("log_format", parse_log_format, "FORMAT", "log lines: text or json (text)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option; values stay strings until `load()` validates them."""
    for option in OPTIONS:
        parser.add_argument(option.flag, dest=f"receive_{option.name}", metavar=option.metavar,
                            default=None, help=f"{option.help} [{option.env}]")


def load(environ: Mapping[str, str], args: argparse.Namespace | None = None) -> ReceiverConfig:
    values: dict[str, Any] = {}
    errors: list[str] = []
    for option in OPTIONS:
        raw = getattr(args, f"receive_{option.name}", None) if args is not None else None
        source = option.flag
        if raw is None and option.env in environ:
            raw, source = environ[option.env], option.env
        if raw is None:
            if option.name == "tokens_file":
                errors.append(f"{option.flag} (or {option.env}): required, a file of "
                              "allowed bearer tokens")
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as exc:
            problem = str(exc)
            if option.name == "tokens_file":
                errors.append(f"{source}: {problem}")
            else:
                errors.append(f"{source}={raw!r}: expected {problem}")
        else:
            if option.name == "tokens_file":
                values["tokens_path"] = raw
    if "db" not in values and not errors:
        try:
            values["db"] = parse_db_url(DEFAULT_DB)
        except ValueError as exc:
            errors.append(f"--db (default {DEFAULT_DB}): expected {exc}")
    if errors:
        raise ConfigError("\n".join(errors))
    host, port = values.get("listen", parse_listen(DEFAULT_LISTEN))
    return ReceiverConfig(host=host, port=port, db_url=values["db"],
                          tokens=values["tokens_file"], tokens_file=values["tokens_path"],
                          max_body_bytes=values.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
                          max_concurrent_deltas=values.get("max_concurrent_deltas",
                                                           DEFAULT_MAX_CONCURRENT_DELTAS),
                          key_ttl=values.get("key_ttl", DEFAULT_KEY_TTL),
                          log_format=values.get("log_format", LogFormat.TEXT))

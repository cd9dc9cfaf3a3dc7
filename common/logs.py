"""Logging on stderr: one JSON object per line for machines, or, on a terminal (or
with SNOOP_LOG_FORMAT=text), one readable line: time, level, process, message and the
structured fields as key=value."""

from __future__ import annotations

import json
import logging
import sys
import time

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "process": self.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                line[key] = value if isinstance(value, (int, float, bool, str, type(None))) \
                    else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True)


class TextLineFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.gmtime(record.created))
        fields = " ".join(f"{key}={_text_value(value)}" for key, value in vars(record).items()
                          if key not in _STANDARD)
        line = (f"{stamp} {record.levelname.lower():<7} {self.process:<9} "
                f"{record.getMessage()}" + (f"  {fields}" if fields else ""))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


def wants_text(log_format: str, stream=None) -> bool:
    """`auto`: text when the stream is a terminal."""
    if log_format == "auto":
        stream = stream or sys.stderr
        return hasattr(stream, "isatty") and stream.isatty()
    return log_format == "text"


def setup(process: str, level: str, stream=None, text: bool = False) -> logging.Logger:
    """Send every logger's records to `stream` as JSON lines (or readable text lines);
    returns the process logger."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(TextLineFormatter(process) if text else JsonLineFormatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
    return logging.getLogger(f"snoop.{process}")

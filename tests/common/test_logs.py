"""Log lines: JSON for machines, one readable line for people (a terminal, or
SNOOP_LOG_FORMAT=text)."""

from __future__ import annotations

import io
import json
import logging

from snoop.common import logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_carry_the_structured_fields():
    stream = io.StringIO()
    log = logs.setup("tracer", "info", stream=stream)
    log.info("tracer attached", extra={"syscalls": 75})
    line = json.loads(stream.getvalue())
    assert (line["msg"], line["process"], line["syscalls"]) == ("tracer attached", "tracer", 75)


def test_text_lines_read_as_one_sentence_with_the_fields_after_it():
    stream = io.StringIO()
    log = logs.setup("tracer", "info", stream=stream, text=True)
    log.warning("cannot remove cgroup", extra={"path": "/a b", "tries": 3})
    line = stream.getvalue().rstrip("\n")
    assert line.split(" ", 1)[1] == 'warning tracer    cannot remove cgroup  path="/a b" tries=3'
    assert "{" not in line


def test_auto_is_text_on_a_terminal_and_json_elsewhere():
    assert logs.wants_text("auto", Terminal())
    assert not logs.wants_text("auto", io.StringIO())
    assert logs.wants_text("text", io.StringIO())
    assert not logs.wants_text("json", Terminal())


def teardown_module() -> None:
    logging.getLogger().handlers[:] = []

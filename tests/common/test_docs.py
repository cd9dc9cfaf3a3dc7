"""docs/ stays true to the code."""

from pathlib import Path

from snoop.common.config import describe

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_doc_lists_every_option_as_the_code_defines_it():
    assert describe() in (DOCS / "configuration.md").read_text()

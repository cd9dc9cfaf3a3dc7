"""docs/ stays true to the code."""

import json
from pathlib import Path

from snoop.common.config import describe
from snoop.common.report import Coverage

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_doc_lists_every_option_as_the_code_defines_it():
    assert describe() in (DOCS / "configuration.md").read_text()


def test_report_docs_name_every_coverage_counter():
    example = (DOCS / "reports.md").read_text().split("```json")[1].split("```")[0]
    coverage = json.loads(example)["coverage"]
    counters = (DOCS / "reporter.md").read_text().split("### Coverage counters")[1]
    for name in Coverage.__dataclass_fields__:
        assert name in coverage, f"docs/reports.md example lacks coverage.{name}"
        assert f"`{name}`" in counters, f"docs/reporter.md does not explain {name}"

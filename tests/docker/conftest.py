"""The private Docker engine every container test shares (one per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.docker.engine import Engine, EngineError, preflight, private_engine


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    problems = preflight()
    if problems:
        pytest.fail("cannot run the container tests here:\n" + "\n".join(problems),
                    pytrace=False)
    try:
        with private_engine() as running:
            yield running
    except EngineError as exc:
        pytest.fail(str(exc), pytrace=False)

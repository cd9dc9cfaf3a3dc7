"""Each receiver test runs on both back ends: a SQLite file and a fresh database on the
session's private PostgreSQL cluster."""

import pytest

from tests.receiver.harness import open_api
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/receiver.db"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def api(store_url):
    with open_api(store_url) as receiver:
        yield receiver

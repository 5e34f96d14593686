"""A Pod as the operator needs to see it: which workload owns it, the OOM kills in its status, and
for Auto mode's in-place changes what each container asked for and really runs with.

The Kubernetes API is where the operator learns what Prometheus may not have: owners without
kube-state-metrics, OOM kills (cAdvisor's OOM counter is per container instance and vanishes with
the killed container; docs/metrics.md), restarts and readiness, and how a resize went.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd

from rightsizer.discovery import KUBERNETES_API, OWNER_COLUMNS, cronjob_from_job_name
from rightsizer.model import Resources
from rightsizer.quantity import QuantityError, parse
from rightsizer.units import MEMORY
from rightsizer.workload import resources_of

OOM_KILLED = "OOMKilled"
REVISION_LABEL = "controller-revision-hash"


@dataclass(frozen=True)
class OomKill:
    """One OOM kill: the last termination of a container was ``OOMKilled``."""

    container: str
    finished_at: str
    """RFC 3339, as the API gives it; with the pod and container it identifies the kill."""
    memory_limit_bytes: Decimal | None
    """The memory limit the container ran under (its in-place resized one where the API says)."""


@dataclass(frozen=True)
class PodContainer:
    """One container (or native sidecar) of a running pod."""

    desired: Resources
    """What the pod spec asks for (what a resize sets)."""
    actual: Resources | None
    """What the container runs with (``status.containerStatuses[].resources``); None when the
    kubelet does not report it (not started yet)."""
    restarts: int = 0
    restart_on_resize: frozenset[str] = frozenset()
    """Resources whose ``resizePolicy`` is ``RestartContainer``: resizing them restarts it."""
    spec_path: str = ""
    """JSON pointer to the container in the pod (``/spec/containers/0``; sidecars are init containers)."""
    raw_resources: dict[str, Any] = field(default_factory=dict)
    """Its ``resources`` in the spec as the API serves them: what a guarded resize tests first."""


@dataclass(frozen=True)
class PodView:
    namespace: str
    name: str
    owner_kind: str | None
    """Deployment (through its ReplicaSet), StatefulSet, DaemonSet or Job; None for bare pods."""
    owner_name: str | None
    oom_kills: tuple[OomKill, ...] = ()
    controller_name: str | None = None
    """The pod's direct owner (a Deployment's pods: the ReplicaSet's name)."""
    revision: str | None = None
    """Its ``controller-revision-hash`` label (StatefulSet and DaemonSet pods)."""
    running: bool = False
    ready: bool = False
    unready_since: str | None = None
    """When it stopped being ready (its Ready condition's last transition), if it is not."""
    deleting: bool = False
    containers: dict[str, PodContainer] = field(default_factory=dict)
    resize_pending: str | None = None
    """``PodResizePending``: ``Infeasible: ...`` or ``Deferred: ...`` with the kubelet's message."""
    resize_in_progress: bool = False
    uid: str = ""
    phase: str = ""
    """``status.phase``: Pending (not scheduled, or not started yet), Running, Succeeded, Failed."""

    @classmethod
    def from_body(cls, body: Any) -> PodView:
        metadata, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        owner_kind, owner_name = workload_owner(metadata)
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        pending = conditions.get("PodResizePending") or {}
        controller: dict[str, Any] = next(
            (o for o in metadata.get("ownerReferences") or [] if o.get("controller")), {}
        )
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            owner_kind=owner_kind,
            owner_name=owner_name,
            oom_kills=tuple(_oom_kills(spec, status)),
            controller_name=controller.get("name"),
            revision=(metadata.get("labels") or {}).get(REVISION_LABEL),
            running=status.get("phase") == "Running",
            ready=(conditions.get("Ready") or {}).get("status") == "True",
            unready_since=(
                (conditions.get("Ready") or {}).get("lastTransitionTime")
                if (conditions.get("Ready") or {}).get("status") == "False"
                else None
            ),
            deleting=bool(metadata.get("deletionTimestamp")),
            containers=_containers(spec, status),
            resize_pending=(
                f"{pending.get('reason', 'Pending')}: {pending.get('message', '')}".rstrip(": ")
                if pending.get("status") == "True"
                else None
            ),
            resize_in_progress=(conditions.get("PodResizeInProgress") or {}).get("status") == "True",
            uid=metadata.get("uid", ""),
            phase=str(status.get("phase", "")),
        )


def _oom_kills(spec: dict[str, Any], status: dict[str, Any]) -> list[OomKill]:
    spec_limits = {
        c["name"]: (c.get("resources") or {}).get("limits") or {}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    }
    kills = []
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated.get("reason") != OOM_KILLED or not terminated.get("finishedAt"):
            continue
        name = container["name"]
        # status.resources is what the container really ran with (in-place resize); spec otherwise.
        limits = ((container.get("resources") or {}).get("limits")) or spec_limits.get(name, {})
        kills.append(OomKill(name, terminated["finishedAt"], _memory(limits.get(MEMORY))))
    return kills


def _containers(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, PodContainer]:
    """Containers and native sidecars (init containers with ``restartPolicy: Always``)."""
    statuses = {
        s["name"]: s
        for s in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    }
    sized = [
        (f"/spec/initContainers/{index}", c)
        for index, c in enumerate(spec.get("initContainers") or [])
        if c.get("restartPolicy") == "Always"
    ]
    plain = [(f"/spec/containers/{index}", c) for index, c in enumerate(spec.get("containers") or [])]
    containers = {}
    for path, container in [*sized, *plain]:
        name = container["name"]
        state = statuses.get(name, {})
        containers[name] = PodContainer(
            desired=resources_of(container.get("resources")),
            actual=resources_of(state["resources"]) if "resources" in state else None,
            restarts=int(state.get("restartCount", 0)),
            restart_on_resize=frozenset(
                p["resourceName"]
                for p in container.get("resizePolicy") or []
                if p.get("restartPolicy") == "RestartContainer"
            ),
            spec_path=path,
            raw_resources=dict(container.get("resources") or {}),
        )
    return containers


def known_owners(pods: Iterable[PodView]) -> pd.DataFrame:
    """The pods' workloads as ``collect.workload_containers`` takes them (``known_owners``)."""
    rows = [
        (p.namespace, p.name, p.owner_kind, p.owner_name, KUBERNETES_API)
        for p in pods
        if p.owner_kind is not None
    ]
    return pd.DataFrame(rows, columns=OWNER_COLUMNS)


def workload_owner(metadata: dict[str, Any]) -> tuple[str | None, str | None]:
    """The workload of a pod: a ReplicaSet's pods belong to its Deployment, a Job's to its CronJob.

    A Deployment names its ReplicaSets ``<deployment>-<pod-template-hash>`` and labels their pods
    with that hash, and a CronJob names its Jobs after itself and the scheduled minute, so the
    workload is known without reading the ReplicaSet or the Job.
    """
    controller = next((o for o in metadata.get("ownerReferences") or [] if o.get("controller")), None)
    if controller is None:
        return None, None
    kind, name = controller.get("kind"), controller.get("name")
    if kind == "Job":
        cronjob = cronjob_from_job_name(name or "")
        return ("CronJob", cronjob) if cronjob else ("Job", name)
    if kind == "ReplicaSet":
        template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
        if template_hash and name.endswith(f"-{template_hash}"):
            return "Deployment", name.removesuffix(f"-{template_hash}")
        return "ReplicaSet", name
    return kind, name


def _memory(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse(value)
    except QuantityError:
        return None

"""A Pod as the operator needs to see it: which workload owns it and the OOM kills in its status.

The Kubernetes API is where the operator learns what Prometheus may not have: owners without
kube-state-metrics, and OOM kills (cAdvisor's OOM counter is per container instance and vanishes
with the killed container; docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from rightsizer.discovery import KUBERNETES_API, OWNER_COLUMNS, cronjob_from_job_name
from rightsizer.quantity import MEMORY, QuantityError, parse

OOM_KILLED = "OOMKilled"


@dataclass(frozen=True)
class OomKill:
    """One OOM kill: the last termination of a container was ``OOMKilled``."""

    container: str
    finished_at: str
    """RFC 3339, as the API gives it; with the pod and container it identifies the kill."""
    memory_limit_bytes: Decimal | None
    """The memory limit the container ran under (its in-place resized one where the API says)."""


@dataclass(frozen=True)
class PodView:
    namespace: str
    name: str
    owner_kind: str | None
    """Deployment (through its ReplicaSet), StatefulSet, DaemonSet or Job; None for bare pods."""
    owner_name: str | None
    oom_kills: tuple[OomKill, ...] = ()

    @classmethod
    def from_body(cls, body: Any) -> PodView:
        metadata, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        owner_kind, owner_name = _workload_owner(metadata)
        spec_limits = {
            c["name"]: (c.get("resources") or {}).get("limits") or {} for c in spec.get("containers") or []
        }
        kills = []
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("lastState") or {}).get("terminated") or {}
            if terminated.get("reason") != OOM_KILLED or not terminated.get("finishedAt"):
                continue
            name = container["name"]
            # status.resources is what the container really ran with (in-place resize); spec otherwise.
            limits = ((container.get("resources") or {}).get("limits")) or spec_limits.get(name, {})
            kills.append(OomKill(name, terminated["finishedAt"], _memory(limits.get(MEMORY))))
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            owner_kind=owner_kind,
            owner_name=owner_name,
            oom_kills=tuple(kills),
        )


def known_owners(pods: Iterable[PodView]) -> pd.DataFrame:
    """The pods' workloads as ``collect.workload_containers`` takes them (``known_owners``)."""
    rows = [
        (p.namespace, p.name, p.owner_kind, p.owner_name, KUBERNETES_API)
        for p in pods
        if p.owner_kind is not None
    ]
    return pd.DataFrame(rows, columns=OWNER_COLUMNS)


def _workload_owner(metadata: dict[str, Any]) -> tuple[str | None, str | None]:
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

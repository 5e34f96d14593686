"""A workload as the operator needs to see it: any kind rightsizer sizes, its pod template's
containers and their resources, and whether it is settled enough to be changed.

Kinds: Deployment, StatefulSet, DaemonSet and CronJob (its job template). Native sidecars
(``initContainers`` with ``restartPolicy: Always``) run beside the app for the pod's whole life and
are sized like containers; other init containers run before the app, their usage says nothing of
the pod's steady state, and they are listed as left alone, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rightsizer.model import Resources
from rightsizer.quantity import QuantityError, parse
from rightsizer.units import CPU, MEMORY

ANNOTATION_PREFIX = "rightsizer.io/"


@dataclass(frozen=True)
class Kind:
    """How one workload kind is reached through the API and where its pod template sits."""

    name: str
    group: str
    plural: str
    template_path: tuple[str, ...]
    """From the object to its pod template (``spec.template``; a CronJob's is one level down)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1"


DEPLOYMENT = Kind("Deployment", "apps", "deployments", ("spec", "template"))
STATEFULSET = Kind("StatefulSet", "apps", "statefulsets", ("spec", "template"))
DAEMONSET = Kind("DaemonSet", "apps", "daemonsets", ("spec", "template"))
CRONJOB = Kind("CronJob", "batch", "cronjobs", ("spec", "jobTemplate", "spec", "template"))
KINDS = {kind.name: kind for kind in (DEPLOYMENT, STATEFULSET, DAEMONSET, CRONJOB)}


@dataclass(frozen=True)
class WorkloadView:
    kind: Kind
    namespace: str
    name: str
    uid: str
    resource_version: str
    labels: dict[str, str]
    template_labels: dict[str, str]
    """The labels its pods carry (what a PodDisruptionBudget selects)."""
    annotations: dict[str, str]
    """rightsizer's own annotations only (``rightsizer.io/...``)."""
    generation: int
    replicas: int
    """Pods it runs when settled (a DaemonSet's desired count; 1 for a CronJob's job)."""
    containers: dict[str, Resources] = field(default_factory=dict)
    """Resources of each sized container of the pod template, in template order, sidecars first."""
    sidecars: frozenset[str] = frozenset()
    """Which of ``containers`` are native sidecars (they live in ``initContainers``)."""
    init_containers: dict[str, Resources] = field(default_factory=dict)
    """Init containers that run to completion before the app: listed, left alone."""
    unsettled: str | None = None
    """Why it must not be changed now (mid-rollout, paused...), or None when it is settled."""
    strategy: str | None = None
    """Its update strategy (RollingUpdate, Recreate, OnDelete); None for a CronJob."""
    invalid_quantities: tuple[str, ...] = ()

    @classmethod
    def from_body(cls, body: Any) -> WorkloadView:
        """Build from a workload object of one of ``KINDS`` (a dict or a Kopf body)."""
        kind = KINDS[body["kind"]]
        metadata, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        template_spec = _template(body, kind).get("spec") or {}
        invalid: list[str] = []
        containers: dict[str, Resources] = {}
        sidecars: list[str] = []
        init_containers: dict[str, Resources] = {}
        for container in template_spec.get("initContainers") or []:
            if container.get("restartPolicy") == "Always":
                sidecars.append(container["name"])
                containers[container["name"]] = _resources(container, invalid)
            else:
                init_containers[container["name"]] = _resources(container, invalid)
        for container in template_spec.get("containers") or []:
            containers[container["name"]] = _resources(container, invalid)
        return cls(
            kind=kind,
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=metadata.get("uid", ""),
            resource_version=metadata.get("resourceVersion", ""),
            labels=dict(metadata.get("labels") or {}),
            template_labels=dict((_template(body, kind).get("metadata") or {}).get("labels") or {}),
            annotations={
                k: v
                for k, v in (metadata.get("annotations") or {}).items()
                if k.startswith(ANNOTATION_PREFIX)
            },
            generation=int(metadata.get("generation", 0)),
            replicas=_replicas(kind, spec, status),
            containers=containers,
            sidecars=frozenset(sidecars),
            init_containers=init_containers,
            unsettled=_unsettled(kind, metadata, spec, status),
            strategy=_strategy(kind, spec),
            invalid_quantities=tuple(invalid),
        )

    @property
    def reference_name(self) -> str:
        """``Deployment/web``, as people and status name it."""
        return f"{self.kind.name}/{self.name}"

    def reference(self) -> dict[str, Any]:
        """Enough of the object for posting an Event about it."""
        return {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.name,
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }


def _template(body: Any, kind: Kind) -> dict[str, Any]:
    node: Any = body
    for key in kind.template_path:
        node = (node or {}).get(key) or {}
    return dict(node)


def resources_of(
    raw: dict[str, Any] | None, path: str = "resources", invalid: list[str] | None = None
) -> Resources:
    """A manifest's ``resources`` block (requests and limits) in base units; quantities that do not
    parse are left out and described in ``invalid``."""
    raw = raw or {}
    invalid = [] if invalid is None else invalid
    return Resources(
        requests=_quantities(raw.get("requests"), f"{path}.requests", invalid),
        limits=_quantities(raw.get("limits"), f"{path}.limits", invalid),
    )


def _resources(container: dict[str, Any], invalid: list[str]) -> Resources:
    return resources_of(container.get("resources"), container["name"], invalid)


def _replicas(kind: Kind, spec: dict[str, Any], status: dict[str, Any]) -> int:
    if kind is DAEMONSET:
        return int(status.get("desiredNumberScheduled", 0))
    if kind is CRONJOB:
        return int(((spec.get("jobTemplate") or {}).get("spec") or {}).get("parallelism", 1))
    return int(spec.get("replicas", 1))


def _strategy(kind: Kind, spec: dict[str, Any]) -> str | None:
    if kind is DEPLOYMENT:
        return str((spec.get("strategy") or {}).get("type", "RollingUpdate"))
    if kind in (STATEFULSET, DAEMONSET):
        return str((spec.get("updateStrategy") or {}).get("type", "RollingUpdate"))
    return None


def _unsettled(
    kind: Kind, metadata: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]
) -> str | None:
    """Why the workload must not be patched now, or None when its controller has caught up."""
    if kind is CRONJOB:
        return None  # a template change only affects the jobs to come
    if kind is DEPLOYMENT and spec.get("paused"):
        return "Deployment is paused"
    if int(status.get("observedGeneration", 0)) < int(metadata.get("generation", 0)):
        return f"{kind.name} controller has not observed the latest spec yet"
    if kind is DEPLOYMENT:
        replicas, updated = int(spec.get("replicas", 1)), int(status.get("updatedReplicas", 0))
        if updated < replicas:
            return f"rollout in progress ({updated}/{replicas} pods updated)"
        if int(status.get("replicas", 0)) > updated:
            return f"rollout in progress ({int(status['replicas']) - updated} old pods remain)"
    if kind is STATEFULSET and status.get("currentRevision") != status.get("updateRevision"):
        updated = int(status.get("updatedReplicas", 0))
        return f"rollout in progress ({updated}/{int(spec.get('replicas', 1))} pods updated)"
    if kind is DAEMONSET:
        desired, updated = (
            int(status.get("desiredNumberScheduled", 0)),
            int(status.get("updatedNumberScheduled", 0)),
        )
        if updated < desired:
            return f"rollout in progress ({updated}/{desired} pods updated)"
    return None


def _quantities(raw: dict[str, Any] | None, path: str, invalid: list[str]) -> dict[str, Decimal]:
    values: dict[str, Decimal] = {}
    for resource in (CPU, MEMORY):
        if raw and resource in raw:
            try:
                values[resource] = parse(raw[resource], field=f"{path}.{resource}")
            except QuantityError as error:
                invalid.append(str(error))
    return values

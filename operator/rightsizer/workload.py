"""A Deployment as the operator needs to see it: labels, container resources, rollout state."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rightsizer.model import Resources
from rightsizer.quantity import CPU, MEMORY, QuantityError, parse

ANNOTATION_PREFIX = "rightsizer.io/"


@dataclass(frozen=True)
class DeploymentView:
    namespace: str
    name: str
    uid: str
    resource_version: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generation: int
    observed_generation: int
    replicas: int
    updated_replicas: int
    status_replicas: int
    paused: bool
    containers: dict[str, Resources] = field(default_factory=dict)
    """Resources of each container of the pod template, in template order."""
    invalid_quantities: tuple[str, ...] = ()

    @classmethod
    def from_body(cls, body: Any) -> DeploymentView:
        """Build from a Deployment object (a dict or a Kopf body)."""
        metadata, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        containers: dict[str, Resources] = {}
        invalid: list[str] = []
        for container in (spec.get("template") or {}).get("spec", {}).get("containers") or []:
            resources = container.get("resources") or {}
            containers[container["name"]] = Resources(
                requests=_quantities(resources.get("requests"), f"{container['name']}.requests", invalid),
                limits=_quantities(resources.get("limits"), f"{container['name']}.limits", invalid),
            )
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=metadata.get("uid", ""),
            resource_version=metadata.get("resourceVersion", ""),
            labels=dict(metadata.get("labels") or {}),
            annotations={
                k: v
                for k, v in (metadata.get("annotations") or {}).items()
                if k.startswith(ANNOTATION_PREFIX)
            },
            generation=int(metadata.get("generation", 0)),
            observed_generation=int(status.get("observedGeneration", 0)),
            replicas=int(spec.get("replicas", 1)),
            updated_replicas=int(status.get("updatedReplicas", 0)),
            status_replicas=int(status.get("replicas", 0)),
            paused=bool(spec.get("paused", False)),
            containers=containers,
            invalid_quantities=tuple(invalid),
        )

    def rollout_in_progress(self) -> str | None:
        """Why the Deployment must not be patched now, or None when it is settled."""
        if self.paused:
            return "Deployment is paused"
        if self.observed_generation < self.generation:
            return "Deployment controller has not observed the latest spec yet"
        if self.updated_replicas < self.replicas:
            return f"rollout in progress ({self.updated_replicas}/{self.replicas} pods updated)"
        if self.status_replicas > self.updated_replicas:
            return f"rollout in progress ({self.status_replicas - self.updated_replicas} old pods remain)"
        return None

    def reference(self) -> dict[str, Any]:
        """Enough of the object for posting an Event about it."""
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }


def _quantities(raw: dict[str, Any] | None, path: str, invalid: list[str]) -> dict[str, Decimal]:
    values: dict[str, Decimal] = {}
    for resource in (CPU, MEMORY):
        if raw and resource in raw:
            try:
                values[resource] = parse(raw[resource], field=f"{path}.{resource}")
            except QuantityError as error:
                invalid.append(str(error))
    return values

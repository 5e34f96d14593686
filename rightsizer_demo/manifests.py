"""Kubernetes objects matching the generated history: the Deployments and policies of the demo.

The history generator decides what pods used; these manifests create the Deployments those pods
belonged to, with the resources their current pod template has, so the operator finds both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rightsizer_demo.history import ContainerSpec, WorkloadSpec

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
HISTORY_ONLY = {"rightsizer.io/history-only": "true"}
"""A node selector no node matches: the pods of a generated history never run, even on a cluster
with a real node (hack/demo.py runs only the live cart there)."""


def current_containers(workload: WorkloadSpec) -> tuple[ContainerSpec, ...]:
    """The pod template in force at the end of the history (after a rollout, the new one)."""
    if workload.rollout is not None and workload.rollout.containers is not None:
        return workload.rollout.containers
    return workload.containers


def deployment_manifest(workload: WorkloadSpec, *, strategy: str = "Recreate") -> dict[str, Any]:
    """A Deployment for a generated workload, whose pods never run (``HISTORY_ONLY``): its usage
    is the generated history, not a node's.

    ``Recreate`` keeps a rollout settled without a kubelet (old pods go before new ones come), so
    Auto mode sees a Deployment that is not mid-rollout after it patched it.
    """
    labels = {"app": workload.name}
    containers = [
        {
            "name": container.name,
            "image": PAUSE_IMAGE,
            "resources": {
                kind: dict(values)
                for kind, values in (("requests", container.requests), ("limits", container.limits))
                if values
            },
        }
        for container in current_containers(workload)
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": {**labels, "demo": "true"},
        },
        "spec": {
            "replicas": workload.replicas,
            "strategy": {"type": strategy},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"nodeSelector": dict(HISTORY_ONLY), "containers": containers},
            },
        },
    }


def deployment_manifests(workloads: Sequence[WorkloadSpec]) -> list[dict[str, Any]]:
    """Deployments for every generated Deployment workload (StatefulSets are not right-sized yet)."""
    return [deployment_manifest(w) for w in workloads if w.kind == "Deployment"]


def namespace_manifests(workloads: Sequence[WorkloadSpec]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        for name in sorted({w.namespace for w in workloads})
    ]

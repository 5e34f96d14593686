"""HorizontalPodAutoscaler manifests for the tests (autoscaling/v2)."""

from __future__ import annotations

from typing import Any


def autoscaler_manifest(namespace: str, name: str, target: str, **utilization: int) -> dict[str, Any]:
    """An HPA of Deployment ``target`` on each resource's utilization (``cpu=60``: 60% of the
    request), between 1 and 4 replicas."""
    metrics = [
        {
            "type": "Resource",
            "resource": {"name": resource, "target": {"type": "Utilization", "averageUtilization": percent}},
        }
        for resource, percent in utilization.items()
    ]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": metrics,
        },
    }

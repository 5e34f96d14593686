"""Which Deployments a policy targets, from the operator's index of Deployments."""

from __future__ import annotations

from collections.abc import Iterable

from rightsizer.policy import PolicySpec
from rightsizer.workload import DeploymentView


def select_targets(
    spec: PolicySpec, deployments: Iterable[DeploymentView]
) -> tuple[list[DeploymentView], list[str]]:
    """The policy's Deployments (sorted by name) and the names it asks for that do not exist."""
    deployments = list(deployments)
    if spec.target_name is not None:
        found = [d for d in deployments if d.name == spec.target_name]
        return found, ([] if found else [f"Deployment/{spec.target_name}"])
    assert spec.selector is not None
    return sorted((d for d in deployments if spec.selector.matches(d.labels)), key=lambda d: d.name), []

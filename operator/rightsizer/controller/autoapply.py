"""Auto mode for one workload: plan the change, check it against the cluster, patch it.

The decisions are pure (``apply.plan_changes``, ``constraints``); this module reads what the
cluster allows through ``ClusterLimits``, sends the patch through ``Cluster`` and returns what
happened as a ``WorkloadChange``: a summary, or why nothing was applied, per-container notes for
the status, and the Events to post. It writes nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes.client.rest import ApiException

from rightsizer.apply import ApplyPlan, build_patch, describe, plan_changes
from rightsizer.constraints import limit_range_violations, node_fit_violations, quota_violations
from rightsizer.controller.kube import Cluster, PatchConflict
from rightsizer.controller.outcome import Event
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.policy import AutoRails
from rightsizer.timestamps import format_time
from rightsizer.workload import WorkloadView


@dataclass(frozen=True)
class WorkloadChange:
    """What Auto mode did to one workload in one evaluation.

    ``applied`` says what was patched; ``blocked`` why something worth applying was not; neither
    when there was nothing worth applying.
    """

    applied: str | None = None
    blocked: str | None = None
    notes: dict[ContainerKey, str] = field(default_factory=dict)
    events: tuple[Event, ...] = ()


class ClusterLimits:
    """LimitRanges, ResourceQuotas and Nodes of a namespace, each read at most once per evaluation
    and only when a change needs checking."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self._reads: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "limit_ranges": lambda: cluster.limit_ranges(namespace),
            "quotas": lambda: cluster.resource_quotas(namespace),
            "nodes": cluster.nodes,
        }
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def _get(self, what: str) -> list[dict[str, Any]]:
        if what not in self._cache:
            self._cache[what] = self._reads[what]()
        return self._cache[what]

    def violations(
        self, workload: WorkloadView, changed: dict[str, Resources], after: dict[str, Resources]
    ) -> list[str]:
        """Why pods with the changed resources would not be admitted or scheduled; empty if they would."""
        return (
            limit_range_violations(changed, self._get("limit_ranges"))
            + quota_violations(workload.containers, after, workload.replicas, self._get("quotas"))
            + node_fit_violations(after, self._get("nodes"))
        )


def apply_to_workload(
    workload: WorkloadView,
    recommendations: list[Recommendation],
    rails: AutoRails,
    limits: ClusterLimits,
    cluster: Cluster,
    policy_name: str,
    now: datetime,
) -> WorkloadChange:
    """Plan, check and patch one workload's containers (those in ``recommendations``)."""
    plan = plan_changes(workload, recommendations, rails, now)
    notes = {key: f"not applied: {reason}" for key, reason in plan.skipped.items()}
    if plan.blocked:
        notes.update({rec.key: f"not applied: {plan.blocked}" for rec in recommendations})
        return WorkloadChange(blocked=f"{workload.reference_name}: {plan.blocked}", notes=notes)
    if not plan.changes:
        return WorkloadChange(notes=notes)
    violations = limits.violations(workload, _changed(plan), {**workload.containers, **_changed(plan)})
    if violations:
        changed = ", ".join(c.container for c in plan.changes)
        message = f"{workload.reference_name}: change to {changed} not applied: {'; '.join(violations)}"
        notes.update({c.key: f"not applied: {'; '.join(violations)}" for c in plan.changes})
        return WorkloadChange(
            blocked=message, notes=notes, events=(Event("Warning", "ChangeBlocked", message),)
        )
    return _patch(workload, plan, cluster, policy_name, now, notes)


def _changed(plan: ApplyPlan) -> dict[str, Resources]:
    return {change.container: change.after for change in plan.changes}


def _patch(
    workload: WorkloadView,
    plan: ApplyPlan,
    cluster: Cluster,
    policy_name: str,
    now: datetime,
    notes: dict[ContainerKey, str],
) -> WorkloadChange:
    try:
        cluster.patch_workload(
            workload.kind.name,
            workload.namespace,
            workload.name,
            build_patch(workload, plan.changes, policy_name, now),
        )
    except PatchConflict as error:
        return WorkloadChange(
            blocked=f"{workload.reference_name}: {error}; retried at the next evaluation", notes=notes
        )
    except ApiException as error:
        message = (
            f"{workload.reference_name}: patch rejected by the API server: {error.status} {error.reason}"
        )
        return WorkloadChange(
            blocked=message, notes=notes, events=(Event("Warning", "PatchFailed", message),)
        )
    summary = "; ".join(describe(c) for c in plan.changes)
    notes.update({c.key: f"applied at {format_time(now)}: {describe(c)}" for c in plan.changes})
    events = (
        Event("Normal", "Applied", f"{workload.reference_name}: {summary}"),
        Event("Normal", "RightSized", f"by RightSizePolicy/{policy_name}: {summary}", workload.reference()),
    )
    return WorkloadChange(applied=f"{workload.reference_name}: {summary}", notes=notes, events=events)

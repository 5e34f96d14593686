"""Auto mode: which recommended changes to apply now, in what steps, and the patch that does it.

Pure decisions only; the controller reads the cluster, runs ``constraints`` on the plan and sends
the patch. The patch touches nothing but the chosen containers' resources and rightsizer's own
annotations, and carries the resourceVersion it was planned from, so a concurrent edit makes it
fail instead of being overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.policy import AutoRails
from rightsizer.timestamps import format_time, parse_time
from rightsizer.units import RESOURCES, ceil_cpu, ceil_memory
from rightsizer.workload import ANNOTATION_PREFIX, WorkloadView

APPLIED_AT = ANNOTATION_PREFIX + "applied-at"
APPLIED_BY = ANNOTATION_PREFIX + "applied-by"
LAST_CHANGE = ANNOTATION_PREFIX + "last-change"


@dataclass(frozen=True)
class ContainerChange:
    key: ContainerKey
    before: Resources
    after: Resources
    reason: str

    @property
    def container(self) -> str:
        return self.key.container


@dataclass(frozen=True)
class ApplyPlan:
    """Changes worth applying now; per-container reasons for the rest; or why nothing may be applied."""

    changes: tuple[ContainerChange, ...] = ()
    skipped: dict[ContainerKey, str] = field(default_factory=dict)
    blocked: str | None = None


def plan_changes(
    workload: WorkloadView, recommendations: list[Recommendation], rails: AutoRails, now: datetime
) -> ApplyPlan:
    """Decide what Auto mode applies to one workload now."""
    blocked = workload.unsettled or _cooldown(workload, rails, now)
    if blocked:
        return ApplyPlan(blocked=blocked)
    changes: list[ContainerChange] = []
    skipped: dict[ContainerKey, str] = {}
    for rec in recommendations:
        if rec.recommended is None:
            skipped[rec.key] = f"no recommendation: {rec.reason}"
            continue
        # Auto mode goes only as far as the evidence is sure of (the confident part); the rest
        # follows as history accumulates and the bounds close on the recommendation.
        target = rec.confident or rec.recommended
        partial = target != rec.recommended
        # The minimum is judged on the whole change, not on one step of it: with steps smaller than
        # the minimum (maxStepPercent 10 against minChangePercent 10, say) a decrease of 1/1.1, 9%,
        # would otherwise never be applied at all.
        if not is_significant(rec.current, target, rails.min_change_percent):
            skipped[rec.key] = (
                f"the confident part of the change is below the minimum of {rails.min_change_percent}%: "
                "too little history to go further yet"
                if partial and is_significant(rec.current, rec.recommended, rails.min_change_percent)
                else f"change below the minimum of {rails.min_change_percent}%"
            )
            continue
        stepped = _step(rec.current, target, rails.max_step_percent)
        reason = rec.reason + (" (the confident part only)" if partial else "")
        if stepped != target:
            reason += f" (step capped at {rails.max_step_percent}%)"
        changes.append(ContainerChange(rec.key, rec.current, stepped, reason))
    return ApplyPlan(tuple(changes), skipped)


def _cooldown(workload: WorkloadView, rails: AutoRails, now: datetime) -> str | None:
    applied_at = workload.annotations.get(APPLIED_AT)
    if not applied_at:
        return None
    try:
        last = parse_time(applied_at)
    except ValueError:
        return None
    remaining = rails.cooldown_seconds - (now - last).total_seconds()
    if remaining > 0:
        return f"cooldown: last change at {applied_at}, next allowed in {int(remaining // 60) + 1}m"
    return None


def _step(current: Resources, target: Resources, max_step_percent: int) -> Resources:
    """Move each value at most ``max_step_percent`` from where it is; limits stay >= requests."""
    factor = Decimal(max_step_percent) / 100

    def capped(before: Decimal | None, after: Decimal, resource: str) -> Decimal:
        if before is None or before == 0:
            return after
        high, low = before * (1 + factor), before / (1 + factor)
        value = min(max(after, low), high)
        return ceil_cpu(value) if resource == "cpu" else ceil_memory(value)

    requests = {r: capped(current.requests.get(r), v, r) for r, v in target.requests.items()}
    limits = {
        r: max(capped(current.limits.get(r), v, r), requests.get(r, v)) for r, v in target.limits.items()
    }
    return Resources(requests, limits)


def is_significant(current: Resources, target: Resources, min_change_percent: int) -> bool:
    """True when any request or limit moves by at least the minimum, or is added or removed."""
    threshold = Decimal(min_change_percent) / 100
    for kind in ("requests", "limits"):
        before, after = getattr(current, kind), getattr(target, kind)
        for resource in RESOURCES:
            old, new = before.get(resource), after.get(resource)
            if (old is None) != (new is None):
                return True
            changed = old is not None and new is not None and old != new
            if changed and (old == 0 or abs(new - old) / old >= threshold):
                return True
    return False


def build_patch(
    workload: WorkloadView, changes: tuple[ContainerChange, ...], policy: str, now: datetime
) -> dict[str, Any]:
    """A strategic-merge patch of the changed containers' resources in the pod template, plus the
    audit annotations, carrying the resourceVersion the change was planned from."""
    record = {
        c.container: {"from": c.before.to_quantities(), "to": c.after.to_quantities(), "reason": c.reason}
        for c in changes
    }
    patch: dict[str, Any] = {
        "metadata": {
            "resourceVersion": workload.resource_version,
            "annotations": {
                APPLIED_AT: format_time(now),
                APPLIED_BY: f"RightSizePolicy/{policy}",
                LAST_CHANGE: json.dumps(record, sort_keys=True),
            },
        },
    }
    node = patch
    for key in workload.kind.template_path:
        node = node.setdefault(key, {})
    node["spec"] = pod_spec_patch(workload, changes)
    return patch


def pod_spec_patch(workload: WorkloadView, changes: tuple[ContainerChange, ...]) -> dict[str, Any]:
    """The part of a pod spec that sets the changed containers' resources (sidecars are init
    containers): the same for a template and, through ``pods/resize``, for a running pod."""
    lists: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        field_name = "initContainers" if change.container in workload.sidecars else "containers"
        lists.setdefault(field_name, []).append(
            {"name": change.container, "resources": resources_patch(change)}
        )
    return lists


def resources_patch(change: ContainerChange) -> dict[str, dict[str, str | None]]:
    """``requests`` and ``limits`` after the change; a resource it removes is set to None (deleted)."""
    quantities = change.after.to_quantities()
    patch: dict[str, dict[str, str | None]] = {}
    for kind in ("requests", "limits"):
        removed: dict[str, str | None] = {
            r: None for r in RESOURCES if r in getattr(change.before, kind) and r not in quantities[kind]
        }
        patch[kind] = {**removed, **quantities[kind]}
    return patch


def describe(change: ContainerChange) -> str:
    """``app: requests cpu 100m->150m, memory 256Mi->300Mi; limits ...`` for events and status."""
    before, after = change.before.to_quantities(), change.after.to_quantities()
    parts = []
    for kind in ("requests", "limits"):
        moves = [
            f"{r} {before[kind].get(r, 'none')}->{after[kind].get(r, 'none')}"
            for r in RESOURCES
            if before[kind].get(r) != after[kind].get(r)
        ]
        if moves:
            parts.append(f"{kind} {', '.join(moves)}")
    return f"{change.container}: {'; '.join(parts) or 'no change'}"

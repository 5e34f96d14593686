"""Auto mode on a workload: its annotations (the history ``planning`` plans from), the plan of a
change to it, and the part of a pod spec that sets the changed containers' resources.

Pure; the controller sends the patches (``controller/workload_writer``: fenced by the
resourceVersion they were decided from).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from rightsizer.model import Recommendation
from rightsizer.planning import ApplyPlan, ContainerChange, WorkloadHistory, plan_step
from rightsizer.rails import ROLLOUT, AutoRails
from rightsizer.timestamps import format_time, parse_time
from rightsizer.units import RESOURCES
from rightsizer.workload import ANNOTATION_PREFIX, CRONJOB, Kind, WorkloadView

APPLIED_AT = ANNOTATION_PREFIX + "applied-at"
APPLIED_BY = ANNOTATION_PREFIX + "applied-by"
LAST_CHANGE = ANNOTATION_PREFIX + "last-change"
BACKOFF = ANNOTATION_PREFIX + "backoff"


def history_of(workload: WorkloadView) -> WorkloadHistory:
    """What the workload's annotations remember of Auto mode's changes: when the last one was
    applied, and the directions a rollback backed off (an unreadable record remembers nothing)."""
    try:
        applied_at: datetime | None = parse_time(workload.annotations.get(APPLIED_AT) or "")
    except ValueError:
        applied_at = None
    return WorkloadHistory(applied_at, backoff_until(workload.annotations))


def plan_changes(
    workload: WorkloadView, recommendations: list[Recommendation], rails: AutoRails, now: datetime
) -> ApplyPlan:
    """What Auto mode applies to one workload now: nothing while it is not settled (mid-rollout,
    paused), else ``planning.plan_step`` with its history, shaped for in place when it goes so."""
    if workload.unsettled:
        return ApplyPlan(blocked=workload.unsettled)
    in_place = goes_in_place(rails, workload.kind)
    return plan_step(recommendations, rails, now, history_of(workload), in_place=in_place)


def goes_in_place(rails: AutoRails, kind: Kind) -> bool:
    """Whether a change reaches the pods by resizing them: any ``auto.updateMode`` but Rollout, except
    for a CronJob (its template only reaches the jobs to come; there is nothing to resize)."""
    return rails.update_mode != ROLLOUT and kind is not CRONJOB


def backoff_until(annotations: dict[str, str]) -> dict[str, datetime]:
    """Directions backed off after a rollback, and until when (an unreadable record backs off nothing)."""
    try:
        raw = json.loads(annotations.get(BACKOFF) or "{}")
        return {direction: parse_time(until) for direction, until in raw.items()}
    except (ValueError, AttributeError):
        return {}


def backoff_annotation(annotations: dict[str, str], moves: set[str], now: datetime, seconds: int) -> str:
    """The backoff record with ``moves`` backed off for ``seconds`` more (expired entries dropped)."""
    kept = {d: t for d, t in backoff_until(annotations).items() if t > now}
    kept.update(dict.fromkeys(moves, now + timedelta(seconds=seconds)))
    return json.dumps({d: format_time(t) for d, t in sorted(kept.items())})


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

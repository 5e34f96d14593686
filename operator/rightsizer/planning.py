"""Auto mode's rails: which recommended changes to apply to one workload now, and in what step.

Pure and part of the core (neither Kopf nor the Kubernetes client): the operator calls
``plan_step`` at every evaluation of a workload with no change in flight, and an offline replay
(``rightsizer backtest``) can call it at every evaluation of a recorded history. In order:

1. **Cooldown** (``auto.cooldown``) since the last change (``WorkloadHistory.last_applied_at``).
2. **Confident part**: a change goes only as far as the evidence is sure of
   (``Recommendation.confident``).
3. **Minimum change** (``auto.minChangePercent``), judged on the whole change: a container whose
   requests and limits all move by less is left as it is (adding or removing a limit counts).
4. **Step cap** (``auto.maxStepPercent``): each value moves at most that far from where it is.
5. **Back-off**: a direction a rollback backed off (``memory-down``...) is held back until its time
   (``WorkloadHistory.backed_off``).
6. **In place** (``in_place``: any ``auto.updateMode`` but Rollout, and not a CronJob): the change
   as a resize of running containers can take it and a rollback can undo it (``undoable_in_place``).

What comes after, and needs the cluster, is the controller's: whether the workload is settled, what
the namespace admits and the nodes fit, and how the change reaches the pods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.rails import AutoRails
from rightsizer.timestamps import format_time
from rightsizer.units import RESOURCES, ceil_cpu, ceil_memory, format_quantity


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
    """Containers left as they are, and why (no recommendation, below the minimum, backed off)."""
    blocked: str | None = None


@dataclass(frozen=True)
class WorkloadHistory:
    """What Auto mode remembers of a workload's past changes (its ``rightsizer.io/applied-at`` and
    ``rightsizer.io/backoff`` annotations in the cluster)."""

    last_applied_at: datetime | None = None
    backed_off: Mapping[str, datetime] = field(default_factory=dict)
    """Direction (``cpu-up``, ``memory-down``...) -> until when a rollback holds it back."""


def plan_step(
    recommendations: Sequence[Recommendation],
    rails: AutoRails,
    now: datetime,
    history: WorkloadHistory = WorkloadHistory(),
    *,
    in_place: bool = False,
) -> ApplyPlan:
    """What Auto mode applies to one workload now, given its containers' recommendations (each
    with its ``current`` resources), the policy's rails and the workload's history; ``in_place``
    when the change is to reach running pods by resizing them."""
    blocked = cooldown(history.last_applied_at, rails.cooldown_seconds, now)
    if blocked:
        return ApplyPlan(blocked=blocked)
    changes: list[ContainerChange] = []
    skipped: dict[ContainerKey, str] = {}
    for rec in recommendations:
        change, why = _container_step(rec, rails)
        if change is None:
            skipped[rec.key] = why
        else:
            changes.append(change)
    plan = _without_backed_off(ApplyPlan(tuple(changes), skipped), history.backed_off, now, rails)
    return _undoable_in_place(plan, rails.min_change_percent) if in_place else plan


def cooldown(last_applied_at: datetime | None, cooldown_seconds: int, now: datetime) -> str | None:
    """Why no change may start yet (the cooldown since the last one), or None."""
    if last_applied_at is None:
        return None
    remaining = cooldown_seconds - (now - last_applied_at).total_seconds()
    if remaining > 0:
        return (
            f"cooldown: last change at {format_time(last_applied_at)}, "
            f"next allowed in {int(remaining // 60) + 1}m"
        )
    return None


def _container_step(rec: Recommendation, rails: AutoRails) -> tuple[ContainerChange | None, str]:
    """One container's step, or why it has none."""
    if rec.recommended is None:
        return None, f"no recommendation: {rec.reason}"
    # Auto mode goes only as far as the evidence is sure of (the confident part); the rest
    # follows as history accumulates and the bounds close on the recommendation.
    target = rec.confident or rec.recommended
    partial = target != rec.recommended
    # The minimum is judged on the whole change, not on one step of it: with steps smaller than
    # the minimum (maxStepPercent 10 against minChangePercent 10, say) a decrease of 1/1.1, 9%,
    # would otherwise never be applied at all.
    if not is_significant(rec.current, target, rails.min_change_percent):
        if partial and is_significant(rec.current, rec.recommended, rails.min_change_percent):
            return None, (
                f"the confident part of the change is below the minimum of {rails.min_change_percent}%: "
                "too little history to go further yet"
            )
        return None, f"change below the minimum of {rails.min_change_percent}%"
    stepped = capped_step(rec.current, target, rails.max_step_percent)
    reason = rec.reason + (" (the confident part only)" if partial else "")
    if stepped != target:
        reason += f" (step capped at {rails.max_step_percent}%)"
    return ContainerChange(rec.key, rec.current, stepped, reason), ""


def capped_step(current: Resources, target: Resources, max_step_percent: int) -> Resources:
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


def directions(before: Mapping[str, Resources], after: Mapping[str, Resources]) -> set[str]:
    """The directions a change moves requests in: ``cpu-up``, ``memory-down``..."""
    moves = set()
    for container, target in after.items():
        for resource in RESOURCES:
            old = before.get(container, Resources()).requests.get(resource)
            new = target.requests.get(resource)
            if old is not None and new is not None and new != old:
                moves.add(f"{resource}-{'up' if new > old else 'down'}")
    return moves


def without_backed_off(
    before: Resources, after: Resources, backed_off: set[str]
) -> tuple[Resources, list[str]]:
    """``after`` with every resource that moves in a backed-off direction kept as it is."""
    requests, limits, held = dict(after.requests), dict(after.limits), []
    for resource in RESOURCES:
        old, new = before.requests.get(resource), after.requests.get(resource)
        if old is None or new is None or old == new:
            continue
        if f"{resource}-{'up' if new > old else 'down'}" in backed_off:
            held.append(resource)
            for values, source in ((requests, before.requests), (limits, before.limits)):
                values.pop(resource, None)
                if resource in source:
                    values[resource] = source[resource]
    return Resources(requests, limits), held


def _without_backed_off(
    plan: ApplyPlan, backed_off: Mapping[str, datetime], now: datetime, rails: AutoRails
) -> ApplyPlan:
    """The plan without the moves a rollback backed off, while the back-off lasts; what is left of a
    container's change still has to reach the minimum."""
    until = {d: t for d, t in backed_off.items() if t > now}
    if not until:
        return plan
    kept, skipped = [], dict(plan.skipped)
    for change in plan.changes:
        after, held = without_backed_off(change.before, change.after, set(until))
        for resource in held:
            moves = ", ".join(
                f"{d} until {format_time(t)}" for d, t in until.items() if d.startswith(resource)
            )
            skipped[change.key] = f"{resource} held back: rolled back before, backed off ({moves})"
        if is_significant(change.before, after, rails.min_change_percent):
            kept.append(replace(change, after=after))
    return replace(plan, changes=tuple(kept), skipped=skipped)


def undoable_in_place(before: Resources, after: Resources) -> tuple[Resources, tuple[str, ...]]:
    """``after`` as an in-place change can take it and a rollback can undo it, with what was left out.

    Kubernetes resizes a running container's existing requests and limits, and adds limits, but
    never removes one in place ("resource limits cannot be removed"). A limit added in place could
    not be taken away by a rollback, so it is not added; a limit ``after`` drops is kept where it
    is (raised to the request if the request passes it). The rest of the change goes ahead.
    """
    limits: dict[str, Decimal] = {}
    left_out = []
    for resource in RESOURCES:
        old, new = before.limits.get(resource), after.limits.get(resource)
        if old is None:
            if new is not None:
                left_out.append(f"{resource} limit {format_quantity(resource, new)} not added")
            continue
        if new is None:
            left_out.append(f"{resource} limit kept (a limit cannot be removed in place)")
            new = old
        request = after.requests.get(resource)
        limits[resource] = max(new, request) if request is not None else new
    return Resources(dict(after.requests), limits), tuple(left_out)


def _undoable_in_place(plan: ApplyPlan, min_change_percent: int) -> ApplyPlan:
    """The plan as in-place resizes can apply it and a rollback can undo it: limits are changed,
    never added or removed; what is left out is in the change's reason, or in ``skipped`` when the
    rest is below the minimum."""
    kept, skipped = [], dict(plan.skipped)
    for change in plan.changes:
        after, left_out = undoable_in_place(change.before, change.after)
        if not left_out:
            kept.append(change)
            continue
        why = f"{'; '.join(left_out)}: in place, Kubernetes cannot take a limit away again"
        if is_significant(change.before, after, min_change_percent):
            kept.append(replace(change, after=after, reason=f"{change.reason} ({why})"))
        else:
            skipped[change.key] = f"{why}, and the rest is below the minimum change"
    return replace(plan, changes=tuple(kept), skipped=skipped)

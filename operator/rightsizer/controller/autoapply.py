"""Auto mode for one workload: start a change, move it on, or roll it back.

A change is started when nothing is in flight: planned (``apply.plan_changes``), held back where a
rollback backed its direction off, checked against what the cluster admits and schedules, and
then either rolled out (the template patched, the workload's controller replaces the pods) or
resized in place (one canary pod, then the rest, then the template made to match: ``adopt``).
Every evaluation after that moves it on (``change`` has the phases) until it is done, or rolls it
back when a watched pod regresses. Everything that must survive an operator restart is in the
workload's annotations; this module returns what happened as a ``WorkloadChange`` for the status
and the Events, and writes nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from rightsizer.admission import POD_RESOURCES, pod_resources, pod_resources_annotation
from rightsizer.apply import (
    APPLIED_AT,
    APPLIED_BY,
    LAST_CHANGE,
    ApplyPlan,
    ContainerChange,
    build_patch,
    describe,
    is_significant,
    plan_changes,
    pod_spec_patch,
)
from rightsizer.change import (
    BACKOFF,
    CHANGE,
    Change,
    Method,
    Phase,
    PodState,
    backoff_annotation,
    backoff_until,
    directions,
    pod_state,
    regression,
    restarts_of,
    undoable_in_place,
    without_backed_off,
)
from rightsizer.constraints import limit_range_violations, node_fit_violations, quota_violations
from rightsizer.controller.adopt import NotYet, StrategyRecord, adopt_template
from rightsizer.controller.hpa_targets import TargetMoves, move_targets
from rightsizer.controller.kube import Cluster, PatchConflict, ResizeRefused
from rightsizer.controller.outcome import Event
from rightsizer.hpa import Autoscaler, retunes_for_change
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.pods import PodView
from rightsizer.policy import IN_PLACE, PODS_ONLY, ROLLOUT, AutoRails, selector_from
from rightsizer.qos import pod_qos_class
from rightsizer.timestamps import format_time, parse_time
from rightsizer.workload import CRONJOB, WorkloadView

ROLLED_BACK = "rightsizer.io/rolled-back"
MAX_PODS_IN_STATUS = 20
"""Per-pod detail of a change in status is capped (a DaemonSet may run on 1,000 nodes); counts are not."""


@dataclass(frozen=True)
class WorkloadChange:
    """What Auto mode did to one workload in one evaluation.

    ``applied`` says what was changed now (a change started, moved on or finished); ``blocked``
    why something worth applying was not; ``rolled_back`` what was undone and why; ``in_flight``
    the status of a change that is not done yet.
    """

    applied: str | None = None
    blocked: str | None = None
    rolled_back: str | None = None
    in_flight: dict[str, Any] | None = None
    notes: dict[ContainerKey, str] = field(default_factory=dict)
    events: tuple[Event, ...] = ()


class ClusterLimits:
    """LimitRanges, ResourceQuotas, Nodes and PodDisruptionBudgets of a namespace, each read at most
    once per evaluation and only when a change needs checking."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self._reads: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "limit_ranges": lambda: cluster.limit_ranges(namespace),
            "quotas": lambda: cluster.resource_quotas(namespace),
            "nodes": cluster.nodes,
            "budgets": lambda: cluster.pod_disruption_budgets(namespace),
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

    def disruption_blocked(self, workload: WorkloadView) -> str | None:
        """Why a rollout may not take this workload's pods down now: a PodDisruptionBudget of its
        pods that allows no disruption."""
        for budget in self._get("budgets"):
            selector = selector_from((budget.get("spec") or {}).get("selector") or {})
            if not selector.match_labels and not selector.match_expressions:
                continue
            if selector.matches(workload.template_labels):
                allowed = int((budget.get("status") or {}).get("disruptionsAllowed", 0))
                if allowed < 1:
                    name = budget["metadata"]["name"]
                    return (
                        f"PodDisruptionBudget {name} allows no disruption now, and a rollout takes pods "
                        "down: use auto.updateMode InPlace (no pod goes down) or loosen the budget"
                    )
        return None


@dataclass(frozen=True)
class AutoContext:
    """What moving a change needs besides the workload, its pods and its recommendations."""

    rails: AutoRails
    limits: ClusterLimits
    cluster: Cluster
    policy_name: str
    now: datetime
    throttling_threshold: float
    throttled: Callable[[list[str], int], dict[str, float]]
    """Pods, seconds -> each pod's share of CFS periods throttled over those last seconds."""
    autoscalers: tuple[Autoscaler, ...] = ()
    """``spec.hpa: Retune``: the namespace's HPAs, whose targets move with the requests changed."""


def apply_to_workload(
    workload: WorkloadView, pods: list[PodView], recommendations: list[Recommendation], ctx: AutoContext
) -> WorkloadChange:
    """Start, move on or roll back Auto mode's change to one workload (its ``recommendations``)."""
    try:
        change = Change.from_annotations(workload.annotations)
    except ValueError as error:
        return WorkloadChange(blocked=f"{workload.reference_name}: {error}")
    running = [p for p in pods if not p.deleting]
    if change is None:
        return _start(workload, running, recommendations, ctx)
    if change.policy != ctx.policy_name:
        return WorkloadChange(
            blocked=f"{workload.reference_name}: a change by RightSizePolicy/{change.policy} is in flight"
        )
    try:
        return _advance(workload, running, change, ctx)
    except NotYet as waiting:
        return _in_flight(workload, running, change, f"waiting: {waiting}")
    except PatchConflict as error:
        return _in_flight(workload, running, change, f"{error}; retried at the next evaluation")
    except ApiException as error:
        return _in_flight(
            workload, running, change, f"refused by the API server: {error.status} {error.reason}"
        )


# ---------------------------------------------------------------- starting a change


def _start(
    workload: WorkloadView, pods: list[PodView], recommendations: list[Recommendation], ctx: AutoContext
) -> WorkloadChange:
    plan = plan_changes(workload, recommendations, ctx.rails, ctx.now)
    notes = {key: f"not applied: {reason}" for key, reason in plan.skipped.items()}
    if plan.blocked:
        notes.update({rec.key: f"not applied: {plan.blocked}" for rec in recommendations})
        return WorkloadChange(blocked=f"{workload.reference_name}: {plan.blocked}", notes=notes)
    plan = _without_backed_off(workload, plan, ctx.now, notes)
    if ctx.rails.update_mode != ROLLOUT and workload.kind is not CRONJOB:
        plan = _undoable_in_place(plan, ctx.rails.min_change_percent, notes)
    if not plan.changes:
        return WorkloadChange(notes=notes)
    changed = {c.container: c.after for c in plan.changes}
    violations = ctx.limits.violations(workload, changed, {**workload.containers, **changed})
    if violations:
        names = ", ".join(c.container for c in plan.changes)
        message = f"{workload.reference_name}: change to {names} not applied: {'; '.join(violations)}"
        notes.update({c.key: f"not applied: {'; '.join(violations)}" for c in plan.changes})
        return WorkloadChange(
            blocked=message, notes=notes, events=(Event("Warning", "ChangeBlocked", message),)
        )
    method, fell_back = _method(workload, pods, plan.changes, ctx.rails.update_mode)
    if method is None:
        assert fell_back is not None
        notes.update({c.key: f"not applied: {fell_back}" for c in plan.changes})
        return WorkloadChange(blocked=f"{workload.reference_name}: {fell_back}", notes=notes)
    if method is Method.ROLLOUT:
        return _start_rollout(workload, plan.changes, ctx, notes, fell_back)
    if workload.kind is CRONJOB:  # PodsOnly: no running pod to resize; the jobs to come get them
        return _start_for_new_pods(workload, plan.changes, ctx, notes)
    return _start_in_place(workload, pods, plan.changes, ctx, notes, method)


def _without_backed_off(
    workload: WorkloadView, plan: ApplyPlan, now: datetime, notes: dict[ContainerKey, str]
) -> ApplyPlan:
    """The plan without the moves a rollback backed off (``cpu-down``...) while the backoff lasts."""
    until = {d: t for d, t in backoff_until(workload.annotations).items() if t > now}
    if not until:
        return plan
    kept = []
    for change in plan.changes:
        after, held = without_backed_off(change.before, change.after, set(until))
        for resource in held:
            moves = ", ".join(
                f"{d} until {format_time(t)}" for d, t in until.items() if d.startswith(resource)
            )
            notes[change.key] = f"{resource} held back: rolled back before, backed off ({moves})"
        if after != change.before:
            kept.append(replace(change, after=after))
    return replace(plan, changes=tuple(kept))


def _undoable_in_place(plan: ApplyPlan, min_change_percent: int, notes: dict[ContainerKey, str]) -> ApplyPlan:
    """The plan as in-place resizes can apply it and a rollback can undo it (``undoable_in_place``):
    limits are changed, never added or removed; what is left out is noted."""
    kept = []
    for change in plan.changes:
        after, left_out = undoable_in_place(change.before, change.after)
        if not left_out:
            kept.append(change)
            continue
        why = f"{'; '.join(left_out)}: in place, Kubernetes cannot take a limit away again"
        if is_significant(change.before, after, min_change_percent):
            kept.append(replace(change, after=after, reason=f"{change.reason} ({why})"))
        else:
            notes[change.key] = f"not applied: {why}, and the rest is below the minimum change"
    return replace(plan, changes=tuple(kept))


def _method(
    workload: WorkloadView, pods: list[PodView], changes: tuple[ContainerChange, ...], mode: str
) -> tuple[Method | None, str | None]:
    """How the change goes, and why not in place when it cannot (None: it may not go at all)."""
    if mode == PODS_ONLY:
        if workload.kind is CRONJOB:
            return Method.PODS_ONLY, None
        obstacle = _in_place_obstacle(pods, changes)
        return (Method.PODS_ONLY, None) if obstacle is None else (None, f"cannot resize in place: {obstacle}")
    if mode == ROLLOUT or workload.kind is CRONJOB:
        return Method.ROLLOUT, None  # a CronJob's template only reaches the jobs to come: nothing to resize
    obstacle = _in_place_obstacle(pods, changes)
    if obstacle is None:
        return Method.IN_PLACE, None
    if mode == IN_PLACE:
        return (
            None,
            f"cannot resize in place: {obstacle} (auto.updateMode InPlaceOrRollout would roll it out)",
        )
    return Method.ROLLOUT, f"rolled out instead of resized in place: {obstacle}"


def _in_place_obstacle(pods: list[PodView], changes: tuple[ContainerChange, ...]) -> str | None:
    ready = [p for p in pods if p.running and p.ready]
    if not ready:
        return "no running, ready pod to resize"
    after = {c.container: c.after for c in changes}
    for pod in ready:
        before = {name: c.desired for name, c in pod.containers.items()}
        old, new = pod_qos_class(before.values()), pod_qos_class({**before, **after}.values())
        if old != new:
            return f"the QoS class of pod {pod.name} would change from {old} to {new}"
        for change in changes:
            container = pod.containers.get(change.container)
            moved = {r for r in ("cpu", "memory") if _moves(change, r)}
            restarting = sorted(moved & set(container.restart_on_resize)) if container else []
            if restarting:
                resources = ", ".join(restarting)
                return f"container {change.container} has resizePolicy RestartContainer for {resources}"
    return None


def _moves(change: ContainerChange, resource: str) -> bool:
    return any(
        getattr(change.before, kind).get(resource) != getattr(change.after, kind).get(resource)
        for kind in ("requests", "limits")
    )


def _start_rollout(
    workload: WorkloadView,
    changes: tuple[ContainerChange, ...],
    ctx: AutoContext,
    notes: dict[ContainerKey, str],
    fell_back: str | None,
) -> WorkloadChange:
    if workload.kind is not CRONJOB:
        disrupted = ctx.limits.disruption_blocked(workload)
        if disrupted:
            notes.update({c.key: f"not applied: {disrupted}" for c in changes})
            return WorkloadChange(blocked=f"{workload.reference_name}: {disrupted}", notes=notes)
    change = _record(workload, changes, ctx, Method.ROLLOUT, Phase.WATCH, fell_back=fell_back)
    change, held = _lower_targets_first(workload, change, ctx)
    if held.failure:
        return _targets_blocked(workload, changes, notes, held)
    patch = build_patch(workload, changes, ctx.policy_name, ctx.now)
    patch["metadata"]["annotations"][CHANGE] = change.to_annotation()
    try:
        ctx.cluster.patch_workload(workload.kind.name, workload.namespace, workload.name, patch)
    except PatchConflict as error:
        _undo_lowered(workload, held, ctx)
        return WorkloadChange(
            blocked=f"{workload.reference_name}: {error}; retried at the next evaluation", notes=notes
        )
    except ApiException as error:
        _undo_lowered(workload, held, ctx)
        message = (
            f"{workload.reference_name}: patch rejected by the API server: {error.status} {error.reason}"
        )
        return WorkloadChange(
            blocked=message, notes=notes, events=(Event("Warning", "PatchFailed", message),)
        )
    how = "template patched" if workload.kind is CRONJOB else "rolled out"
    summary = "; ".join(describe(c) for c in changes)
    detail = f" ({fell_back})" if fell_back else ""
    notes.update({c.key: f"applied at {format_time(ctx.now)}, {how}{detail}: {describe(c)}" for c in changes})
    applied = _applied(
        workload, ctx, f"{summary} ({how}{detail}){held.text}", notes, _status(workload, [], change)
    )
    return _with(held, workload, applied)


def _start_for_new_pods(
    workload: WorkloadView,
    changes: tuple[ContainerChange, ...],
    ctx: AutoContext,
    notes: dict[ContainerKey, str],
) -> WorkloadChange:
    """PodsOnly for a CronJob: its next jobs' pods get the resources from the webhook, and are watched."""
    change = _record(
        workload,
        changes,
        ctx,
        Method.PODS_ONLY,
        Phase.WATCH,
        pod_resources_before=workload.annotations.get(POD_RESOURCES),
    )
    annotations = {
        CHANGE: change.to_annotation(),
        POD_RESOURCES: pod_resources_annotation(
            {**(pod_resources(workload.annotations) or {}), **change.after}
        ),
        APPLIED_AT: format_time(ctx.now),
        APPLIED_BY: f"RightSizePolicy/{ctx.policy_name}",
        LAST_CHANGE: _last_change(changes),
    }
    _patch_annotations(workload, ctx, annotations)
    summary = "; ".join(describe(c) for c in changes)
    notes.update(
        {c.key: f"applied at {format_time(ctx.now)} to the jobs to come: {describe(c)}" for c in changes}
    )
    message = f"{summary} (the jobs to come, through the admission webhook)"
    return _applied(workload, ctx, message, notes, _status(workload, [], change))


def _start_in_place(
    workload: WorkloadView,
    pods: list[PodView],
    changes: tuple[ContainerChange, ...],
    ctx: AutoContext,
    notes: dict[ContainerKey, str],
    method: Method,
) -> WorkloadChange:
    canary = min((p for p in pods if p.running and p.ready), key=lambda p: p.name)
    change = _record(
        workload,
        changes,
        ctx,
        method,
        Phase.CANARY,
        canary_pod=canary.name,
        restarts={canary.name: restarts_of(canary)},
        pod_resources_before=workload.annotations.get(POD_RESOURCES),
    )
    change, held = _lower_targets_first(workload, change, ctx)
    if held.failure:
        return _targets_blocked(workload, changes, notes, held)
    annotations = {
        CHANGE: change.to_annotation(),
        APPLIED_AT: format_time(ctx.now),
        APPLIED_BY: f"RightSizePolicy/{ctx.policy_name}",
        LAST_CHANGE: _last_change(changes),
    }
    # The rollback point is written before the pods change, and only if nobody changed the
    # workload since it was read.
    metadata = {"resourceVersion": workload.resource_version, "annotations": annotations}
    try:
        ctx.cluster.patch_workload(
            workload.kind.name, workload.namespace, workload.name, {"metadata": metadata}
        )
        ctx.cluster.resize_pod(workload.namespace, canary.name, pod_spec_patch(workload, changes))
    except ResizeRefused as refused:
        instead = _resize_refused(workload, changes, change, ctx, notes, str(refused))
        if instead.blocked:
            _undo_lowered(workload, held, ctx)
        return instead
    except PatchConflict as error:
        _undo_lowered(workload, held, ctx)
        return WorkloadChange(
            blocked=f"{workload.reference_name}: {error}; retried at the next evaluation", notes=notes
        )
    summary = "; ".join(describe(c) for c in changes)
    notes.update(
        {
            c.key: f"applied at {format_time(ctx.now)} to canary pod {canary.name}: {describe(c)}"
            for c in changes
        }
    )
    applied = _applied(
        workload,
        ctx,
        f"{summary} (canary pod {canary.name} resized in place){held.text}",
        notes,
        _status(workload, pods, change),
    )
    return _with(held, workload, applied)


def _resize_refused(
    workload: WorkloadView,
    changes: tuple[ContainerChange, ...],
    change: Change,
    ctx: AutoContext,
    notes: dict[ContainerKey, str],
    refusal: str,
) -> WorkloadChange:
    """The API server refused the canary's resize: nothing changed; fall back or give up."""
    if ctx.rails.update_mode in (IN_PLACE, PODS_ONLY):
        _patch_annotations(workload, ctx, {CHANGE: None})
        reason = f"the API server refused the in-place resize: {refusal}"
        notes.update({c.key: f"not applied: {reason}" for c in changes})
        return WorkloadChange(blocked=f"{workload.reference_name}: {reason}", notes=notes)
    return _start_rollout(workload, changes, ctx, notes, f"rolled out instead of resized in place: {refusal}")


def _record(
    workload: WorkloadView,
    changes: tuple[ContainerChange, ...],
    ctx: AutoContext,
    method: Method,
    phase: Phase,
    **extra: Any,
) -> Change:
    started = format_time(ctx.now)
    retunes = retunes_for_change(
        ctx.autoscalers, _key(workload, ""), workload.containers, {c.container: c.after for c in changes}
    )
    return Change(
        policy=ctx.policy_name,
        method=method,
        phase=phase,
        started_at=started,
        phase_started_at=started,
        before={c.container: c.before for c in changes},
        after={c.container: c.after for c in changes},
        reason="; ".join(c.reason for c in changes),
        template_done=method is Method.ROLLOUT,
        autoscalers=retunes,
        **extra,
    )


# ---------------------------------------------------------------- moving a change on


def _advance(workload: WorkloadView, pods: list[PodView], change: Change, ctx: AutoContext) -> WorkloadChange:
    reached = _reached(pods, change)
    seconds = int((ctx.now - parse_time(change.phase_started_at)).total_seconds())
    throttled = ctx.throttled([p.name for p in reached], seconds) if seconds >= 10 and reached else {}
    hurt = regression(change, reached, throttled, ctx.throttling_threshold, ctx.now)
    if hurt:
        return _roll_back(workload, pods, change, ctx, hurt)
    if change.method is Method.ROLLOUT:
        return _advance_rollout(workload, pods, change, ctx)
    if change.phase is Phase.CANARY:
        return _advance_canary(workload, pods, change, ctx)
    if change.phase is Phase.ROLLOUT:
        return _advance_resizing(workload, pods, change, ctx)
    return _finish_when_watched(workload, pods, change, ctx)


def _reached(pods: list[PodView], change: Change) -> list[PodView]:
    """The pods the change has reached: they run (or, mid-resize, ask for) the new resources."""
    return [p for p in pods if pod_state(p, change.after)[0] is not PodState.NOT_STARTED]


def _advance_rollout(
    workload: WorkloadView, pods: list[PodView], change: Change, ctx: AutoContext
) -> WorkloadChange:
    if workload.unsettled:
        return _in_flight(workload, pods, change, workload.unsettled)
    if not change.settled:
        settled = change.next_phase(
            Phase.WATCH, ctx.now, settled=True, restarts={p.name: restarts_of(p) for p in pods}
        )
        _patch_annotations(workload, ctx, {CHANGE: settled.to_annotation()})
        return _in_flight(
            workload, pods, settled, "rolled out: every pod runs the new resources; watching them"
        )
    return _finish_when_watched(workload, pods, change, ctx)


def _advance_canary(
    workload: WorkloadView, pods: list[PodView], change: Change, ctx: AutoContext
) -> WorkloadChange:
    canary = next((p for p in pods if p.name == change.canary_pod), None)
    if canary is None:
        return _roll_back(
            workload, pods, change, ctx, f"canary pod {change.canary_pod} is gone", back_off=False
        )
    state, why = pod_state(canary, change.after)
    if state is PodState.NOT_STARTED:  # the resize did not get through at the start: again
        _resize(workload, [canary], change.after, ctx)
        return _in_flight(workload, pods, change, f"canary pod {canary.name}: resize sent again")
    if state is PodState.INFEASIBLE or (
        state is PodState.PENDING and change.watched_long_enough(ctx.now, ctx.rails.canary_seconds)
    ):
        if change.method is Method.IN_PLACE and ctx.rails.update_mode != IN_PLACE and not change.fell_back:
            return _fall_back(workload, pods, change, ctx, f"canary pod {canary.name}: {why}")
        return _roll_back(
            workload, pods, change, ctx, f"canary pod {canary.name} could not be resized: {why}"
        )
    if state is not PodState.RESIZED or not change.watched_long_enough(ctx.now, ctx.rails.canary_seconds):
        return _in_flight(workload, pods, change, f"canary pod {canary.name}: {why}")
    rest = [p for p in pods if p.running and pod_state(p, change.after)[0] is PodState.NOT_STARTED]
    restarts = {**change.restarts, **{p.name: restarts_of(p) for p in rest}}
    moved_on = change.next_phase(Phase.ROLLOUT, ctx.now, restarts=restarts)
    annotations: dict[str, str | None] = {CHANGE: moved_on.to_annotation()}
    if change.method is Method.PODS_ONLY:  # from now on new pods get the new resources too
        annotations[POD_RESOURCES] = pod_resources_annotation(
            {**(pod_resources(workload.annotations) or {}), **change.after}
        )
    _patch_annotations(workload, ctx, annotations)
    _resize(workload, rest, change.after, ctx)
    message = (
        f"canary pod {canary.name} healthy for {ctx.rails.canary_seconds}s: "
        f"{len(rest)} more pod(s) resized in place"
    )
    return _moved_on(workload, pods, moved_on, ctx, message)


def _advance_resizing(
    workload: WorkloadView, pods: list[PodView], change: Change, ctx: AutoContext
) -> WorkloadChange:
    states = {p.name: pod_state(p, change.after)[0] for p in pods if p.running}
    infeasible = sorted(name for name, state in states.items() if state is PodState.INFEASIBLE)
    if infeasible:
        return _roll_back(workload, pods, change, ctx, f"pod(s) {', '.join(infeasible)} could not be resized")
    late = [p for p in pods if p.running and states.get(p.name) is PodState.NOT_STARTED]
    if late:  # pods started since (a scale-up): they are resized too
        restarts = {**change.restarts, **{p.name: restarts_of(p) for p in late}}
        change = replace(change, restarts=restarts)
        _patch_annotations(workload, ctx, {CHANGE: change.to_annotation()})
        _resize(workload, late, change.after, ctx)
        return _in_flight(workload, pods, change, f"{len(late)} pod(s) started since: resized in place too")
    if any(state is not PodState.RESIZED for state in states.values()):
        return _in_flight(workload, pods, change, "resizing in place")
    if change.method is Method.PODS_ONLY:
        watched = change.next_phase(Phase.WATCH, ctx.now)
        _patch_annotations(workload, ctx, {CHANGE: watched.to_annotation()})
        return _moved_on(
            workload, pods, watched, ctx, "every pod resized in place; the template is left as it is"
        )
    watched = change.next_phase(Phase.WATCH, ctx.now, template_done=True)
    strategy = StrategyRecord(
        recorded=change.strategy,
        record=lambda original: {CHANGE: replace(change, strategy=original).to_annotation()},
    )
    adopt_template(
        workload, _changes(workload, change), pods, ctx.cluster, {CHANGE: watched.to_annotation()}, strategy
    )
    return _moved_on(
        workload, pods, watched, ctx, "every pod resized in place; the template now says so too (no rollout)"
    )


def _finish_when_watched(
    workload: WorkloadView, pods: list[PodView], change: Change, ctx: AutoContext
) -> WorkloadChange:
    if not change.watched_long_enough(ctx.now, ctx.rails.canary_seconds):
        return _in_flight(workload, pods, change, f"watching every pod for {ctx.rails.canary_seconds}s")
    # A raised HPA target (the requests went down) is set last: until then the pods scale out sooner.
    change, held = _raise_targets_last(workload, change, ctx)
    if held.failure:
        return _with(held, workload, _in_flight(workload, pods, change, f"waiting: {held.failure}"))
    _patch_annotations(workload, ctx, {CHANGE: None})
    watched = f"every pod watched for {ctx.rails.canary_seconds}s"
    message = f"{workload.reference_name}: change done, {watched}{held.text}"
    done = WorkloadChange(
        applied=message,
        notes={_key(workload, c): f"done at {format_time(ctx.now)}" for c in change.after},
        events=(Event("Normal", "ChangeDone", message),),
    )
    return _with(held, workload, done)


def _fall_back(
    workload: WorkloadView, pods: list[PodView], change: Change, ctx: AutoContext, why: str
) -> WorkloadChange:
    """InPlaceOrRollout: put the canary back as it was, then roll the change out instead."""
    _resize(workload, [p for p in pods if p.name == change.canary_pod], change.before, ctx)
    rolled = replace(
        change,
        method=Method.ROLLOUT,
        phase=Phase.WATCH,
        phase_started_at=format_time(ctx.now),
        template_done=True,
        fell_back=f"rolled out instead of resized in place: {why}",
        restarts={},
    )
    patch = build_patch(workload, _changes(workload, change), ctx.policy_name, ctx.now)
    patch["metadata"].pop("resourceVersion")
    patch["metadata"]["annotations"][CHANGE] = rolled.to_annotation()
    ctx.cluster.patch_workload(workload.kind.name, workload.namespace, workload.name, patch)
    return _moved_on(workload, pods, rolled, ctx, rolled.fell_back or "")


# ---------------------------------------------------------------- rolling back


def _roll_back(
    workload: WorkloadView,
    pods: list[PodView],
    change: Change,
    ctx: AutoContext,
    reason: str,
    *,
    back_off: bool = True,
) -> WorkloadChange:
    """Put the resources from before the change back, on the pods and (if it got there) the template."""
    undo = _changes(workload, change, reverse=True)
    moves = directions(change.before, change.after) if back_off else set()
    annotations: dict[str, str | None] = {
        CHANGE: None,
        ROLLED_BACK: json.dumps({"at": format_time(ctx.now), "reason": reason, "directions": sorted(moves)}),
    }
    if moves:
        annotations[BACKOFF] = backoff_annotation(
            workload.annotations, moves, ctx.now, ctx.rails.rollback_backoff_seconds
        )
    if change.method is Method.PODS_ONLY:
        annotations[POD_RESOURCES] = change.pod_resources_before
    stuck: list[str] = []
    if change.method is Method.ROLLOUT:
        patch = build_patch(workload, undo, ctx.policy_name, ctx.now)
        patch["metadata"].pop("resourceVersion")
        patch["metadata"]["annotations"].update(annotations)
        ctx.cluster.patch_workload(workload.kind.name, workload.namespace, workload.name, patch)
    else:
        stuck = _resize(
            workload,
            [p for p in pods if pod_state(p, change.before)[0] is PodState.NOT_STARTED],
            change.before,
            ctx,
        )
        if change.template_done:
            strategy = StrategyRecord(
                recorded=change.strategy,
                record=lambda original: {CHANGE: replace(change, strategy=original).to_annotation()},
            )
            adopt_template(workload, undo, pods, ctx.cluster, annotations, strategy)
        else:
            _patch_annotations(workload, ctx, annotations)
    backed = (
        f"; {', '.join(sorted(moves))} backed off for {ctx.rails.rollback_backoff_seconds}s" if moves else ""
    )
    backed += _put_targets_back(workload, change, ctx)
    if stuck:  # nothing retries them once the change is gone: say so, loudly
        backed += (
            f"; not put back in place, delete to have them recreated from the template: {'; '.join(stuck)}"
        )
    message = f"{workload.reference_name}: rolled back ({reason}){backed}"
    return WorkloadChange(
        rolled_back=message,
        notes={_key(workload, c): f"rolled back at {format_time(ctx.now)}: {reason}" for c in change.after},
        events=(
            Event("Warning", "RolledBack", message),
            Event(
                "Warning",
                "RolledBack",
                f"by RightSizePolicy/{ctx.policy_name}: {reason}{backed}",
                workload.reference(),
            ),
        ),
    )


# ---------------------------------------------------------------- HPA targets (spec.hpa: Retune)


def _lower_targets_first(
    workload: WorkloadView, change: Change, ctx: AutoContext
) -> tuple[Change, TargetMoves]:
    """The HPA targets a starting change lowers (its requests go up), set before the workload is
    touched: requests raised under the old target would scale out later than before. If one cannot
    be set, those that were are put back and the change waits (``failure``). A target somebody else
    changed is left alone, and dropped from the change (its rollback too)."""
    moved, moves = _set_targets(workload, change, ctx, lowered=True)
    if moves.failed:
        _undo_lowered(workload, moves, ctx)
        return change, replace(moves, moved=())
    return moved, moves


def _raise_targets_last(
    workload: WorkloadView, change: Change, ctx: AutoContext
) -> tuple[Change, TargetMoves]:
    """The HPA targets a finished change raises (its requests went down), set once every pod runs
    the new requests: until then the pods scale out sooner than before, never later."""
    return _set_targets(workload, change, ctx, lowered=False)


def _set_targets(
    workload: WorkloadView, change: Change, ctx: AutoContext, *, lowered: bool
) -> tuple[Change, TargetMoves]:
    """Set the targets the change lowers (``lowered``) or raises; the change without those left alone."""
    wanted = [retune for retune in change.autoscalers if retune.lowers == lowered]
    if not wanted:
        return change, TargetMoves()
    moves = move_targets(ctx.cluster, workload.namespace, wanted)
    dropped = {retune for retune, _ in moves.left_alone}
    return replace(change, autoscalers=tuple(r for r in change.autoscalers if r not in dropped)), moves


def _undo_lowered(workload: WorkloadView, moves: TargetMoves, ctx: AutoContext) -> None:
    """Put back the targets lowered for a change that then did not start (best effort: a target
    that stays lowered scales out sooner, not later)."""
    if moves.moved:
        move_targets(ctx.cluster, workload.namespace, moves.moved, back=True)


def _targets_blocked(
    workload: WorkloadView,
    changes: tuple[ContainerChange, ...],
    notes: dict[ContainerKey, str],
    moves: TargetMoves,
) -> WorkloadChange:
    why = f"the HorizontalPodAutoscaler must be retuned first: {moves.failure}"
    notes.update({c.key: f"not applied: {why}" for c in changes})
    return _with(moves, workload, WorkloadChange(blocked=f"{workload.reference_name}: {why}", notes=notes))


def _put_targets_back(workload: WorkloadView, change: Change, ctx: AutoContext) -> str:
    """A rollback's HPA part, after the pods': every target as it was; what could not be, said."""
    if not change.autoscalers:
        return ""
    moves = move_targets(ctx.cluster, workload.namespace, change.autoscalers, back=True)
    said = "".join(f"; {retune.describe(back=True)}" for retune in moves.moved)
    said += "".join(f"; {why}" for _, why in moves.left_alone)
    if moves.failed:
        targets = ", ".join(f"{r.hpa} {r.resource} {r.before}%" for r in change.autoscalers)
        said += f"; {'; '.join(moves.failed)}: set it back by hand ({targets})"
    return said


def _with(moves: TargetMoves, workload: WorkloadView, change: WorkloadChange) -> WorkloadChange:
    return moves.added_to(change, workload.reference_name)


# ---------------------------------------------------------------- helpers


def _resize(
    workload: WorkloadView, pods: list[PodView], target: dict[str, Resources], ctx: AutoContext
) -> list[str]:
    """Resize each pod's containers to ``target`` in place. A refusal is left for the next look
    (the pod's state shows it not resized); returned as ``pod: why`` for those who must say so."""
    refused = []
    for pod in pods:
        changes = tuple(
            ContainerChange(_key(workload, name), pod.containers[name].desired, resources, "")
            for name, resources in target.items()
            if name in pod.containers
        )
        try:
            ctx.cluster.resize_pod(workload.namespace, pod.name, pod_spec_patch(workload, changes))
        except ResizeRefused as error:
            refused.append(f"{pod.name}: {error}")
    return refused


def _changes(workload: WorkloadView, change: Change, *, reverse: bool = False) -> tuple[ContainerChange, ...]:
    pairs = (change.after, change.before) if reverse else (change.before, change.after)
    return tuple(
        ContainerChange(_key(workload, name), pairs[0].get(name, Resources()), resources, change.reason)
        for name, resources in pairs[1].items()
    )


def _key(workload: WorkloadView, container: str) -> ContainerKey:
    return ContainerKey(workload.namespace, workload.kind.name, workload.name, container)


def _patch_annotations(
    workload: WorkloadView, ctx: AutoContext, annotations: Mapping[str, str | None]
) -> None:
    ctx.cluster.patch_workload(
        workload.kind.name, workload.namespace, workload.name, {"metadata": {"annotations": annotations}}
    )


def _last_change(changes: tuple[ContainerChange, ...]) -> str:
    record = {
        c.container: {"from": c.before.to_quantities(), "to": c.after.to_quantities(), "reason": c.reason}
        for c in changes
    }
    return json.dumps(record, sort_keys=True)


def _applied(
    workload: WorkloadView,
    ctx: AutoContext,
    summary: str,
    notes: dict[ContainerKey, str],
    status: dict[str, Any],
) -> WorkloadChange:
    message = f"{workload.reference_name}: {summary}"
    return WorkloadChange(
        applied=message,
        in_flight=status,
        notes=notes,
        events=(
            Event("Normal", "Applied", message),
            Event(
                "Normal",
                "RightSized",
                f"by RightSizePolicy/{ctx.policy_name}: {summary}",
                workload.reference(),
            ),
        ),
    )


def _moved_on(
    workload: WorkloadView, pods: list[PodView], change: Change, ctx: AutoContext, message: str
) -> WorkloadChange:
    text = f"{workload.reference_name}: {message}"
    return WorkloadChange(
        applied=text,
        in_flight=_status(workload, pods, change, message),
        notes={_key(workload, c): f"{change.phase.value.lower()}: {message}" for c in change.after},
        events=(Event("Normal", "ChangeProgressed", text),),
    )


def _in_flight(workload: WorkloadView, pods: list[PodView], change: Change, message: str) -> WorkloadChange:
    return WorkloadChange(
        in_flight=_status(workload, pods, change, message),
        notes={_key(workload, c): f"{change.phase.value.lower()}: {message}" for c in change.after},
    )


def _status(workload: WorkloadView, pods: list[PodView], change: Change, message: str = "") -> dict[str, Any]:
    """A change in flight as ``status.changes`` shows it: phase, and what became of each pod."""
    states = [(p.name, *pod_state(p, change.after)) for p in sorted(pods, key=lambda p: p.name) if p.running]
    counts: dict[str, int] = {}
    for _, state, _ in states:
        counts[state.value] = counts.get(state.value, 0) + 1
    entry: dict[str, Any] = {
        "workload": workload.reference_name,
        "method": change.method.value,
        "phase": change.phase.value,
        "startedAt": change.started_at,
        "phaseStartedAt": change.phase_started_at,
        "message": message,
        "podCounts": counts,
        "pods": [
            {"name": name, "state": state.value, "message": why}
            for name, state, why in states[:MAX_PODS_IN_STATUS]
        ],
    }
    if change.canary_pod:
        entry["canaryPod"] = change.canary_pod
    if change.fell_back:
        entry["fellBack"] = change.fell_back
    return entry

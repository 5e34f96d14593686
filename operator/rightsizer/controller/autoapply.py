"""Auto mode for one workload: start a change, or move the one in flight on by a step.

Thin: the decisions are pure functions elsewhere. A change is started when nothing is in flight:
planned (``apply.plan_changes``: the rails of ``planning``, in-place shaping included), checked against
what the namespace admits and the nodes fit (``constraints``), given a method
(``change_method``), and begun (``change_machine.begin``). A change in flight is moved on by
``change_machine.advance``. Either way one step (``change_steps.Step``) is carried out by
``change_executor`` (its record first, fenced), and what happened comes back as a
``WorkloadChange`` for the status, the conditions and the Events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from rightsizer.apply import plan_changes
from rightsizer.change import Change, Method, Phase
from rightsizer.change_machine import advance, begin, cannot_resize, throttling_window
from rightsizer.change_method import method_for
from rightsizer.change_steps import ChangeStatus, Deadlines, Judge, Notice, Observed, Report, Step, StepKind
from rightsizer.constraints import limit_range_violations, node_fit_violations, quota_violations
from rightsizer.controller.change_executor import Carried, carry_out
from rightsizer.controller.kube import Cluster
from rightsizer.controller.outcome import Event, PolicyObject
from rightsizer.controller.workload_writer import WorkloadWriter
from rightsizer.hpa import Autoscaler, TargetRetune, retunes_for_change
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.planning import ContainerChange
from rightsizer.pods import PodView
from rightsizer.policy import selector_from
from rightsizer.rails import IN_PLACE_OR_ROLLOUT, AutoRails
from rightsizer.settings import DEFAULTS
from rightsizer.timestamps import format_time
from rightsizer.workload import CRONJOB, WorkloadView


@dataclass(frozen=True)
class WorkloadChange:
    """What Auto mode did to one workload in one evaluation.

    ``applied`` says what was changed now (a change started, moved on or finished); ``blocked``
    why something worth applying was not; ``rolled_back`` why a change began to be rolled back now;
    ``rollback_over`` a rollback finished now (every pod runs the old resources); ``in_flight`` the
    change not done yet.
    """

    applied: str | None = None
    blocked: str | None = None
    rolled_back: str | None = None
    rollback_over: str | None = None
    in_flight: ChangeStatus | None = None
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
    """What starting and moving changes needs besides the workload, its pods and its recommendations."""

    rails: AutoRails
    limits: ClusterLimits
    cluster: Cluster
    policy_name: str
    now: datetime
    throttling_threshold: float
    throttled: Callable[[list[str], int], dict[str, float] | None]
    """Pods, seconds -> each pod's share of CFS periods throttled over those last seconds; None when
    Prometheus cannot say."""
    autoscalers: tuple[Autoscaler, ...] = ()
    """The namespace's HPAs (the operator's index): where the targets a change moves stand."""
    retune: bool = False
    """``spec.hpa: Retune``: a new change moves the targets of the HPAs that scale on its requests."""
    stop: str | None = None
    """Why the policy no longer carries its changes (they are rolled back, none is started)."""
    deadlines: Deadlines = field(default_factory=Deadlines)

    @classmethod
    def stopped(
        cls,
        cluster: Cluster,
        policy: PolicyObject,
        now: datetime,
        autoscalers: Sequence[Autoscaler],
        why: str,
    ) -> AutoContext:
        """A context that only rolls back the policy's changes in flight (its spec cannot be read,
        or it was deleted), with the default rails."""
        return cls(
            rails=AutoRails(),
            limits=ClusterLimits(cluster, policy.namespace),
            cluster=cluster,
            policy_name=policy.name,
            now=now,
            throttling_threshold=DEFAULTS.throttling_threshold,
            throttled=lambda pods, seconds: None,
            autoscalers=tuple(autoscalers),
            stop=why,
        )

    def judge(self) -> Judge:
        return Judge(
            canary_seconds=self.rails.canary_seconds,
            throttling_threshold=self.throttling_threshold,
            backoff_seconds=self.rails.rollback_backoff_seconds,
            update_mode=self.rails.update_mode,
            deadlines=self.deadlines,
            stop=self.stop,
        )


def apply_to_workload(
    workload: WorkloadView, pods: list[PodView], recommendations: list[Recommendation], ctx: AutoContext
) -> WorkloadChange:
    """Start a change to one workload (its ``recommendations``), or move the one in flight on."""
    try:
        change = Change.from_annotations(workload.annotations)
    except ValueError as error:
        return WorkloadChange(blocked=f"{workload.reference_name}: {error}")
    running = [p for p in pods if not p.deleting]
    if change is None:
        return WorkloadChange() if ctx.stop else _start(workload, running, recommendations, ctx)
    if change.policy != ctx.policy_name:
        return WorkloadChange(
            blocked=f"{workload.reference_name}: a change by RightSizePolicy/{change.policy} is in flight"
        )
    return _advance(workload, running, change, ctx)


def carry_changes(
    ctx: AutoContext,
    targets: list[WorkloadView],
    workloads: list[WorkloadView],
    pods: list[PodView],
    recommendations: list[Recommendation] | None,
) -> list[WorkloadChange]:
    """Auto mode over a policy's targets: with ``recommendations``, a change started or moved on for
    each; without (Prometheus unreachable, mode Recommend, the policy unreadable), the changes in
    flight only. The policy's changes to workloads it no longer selects are rolled back."""
    selected = {(w.kind.name, w.name) for w in targets}
    changes = []
    for workload in targets:
        its_pods = _pods_of(workload, pods)
        if recommendations is not None:
            mine = [
                r for r in recommendations if (r.key.kind, r.key.name) == (workload.kind.name, workload.name)
            ]
            changes.append(apply_to_workload(workload, its_pods, mine, ctx))
        elif owns_change(workload, ctx.policy_name):
            changes.append(apply_to_workload(workload, its_pods, [], ctx))
    for workload in workloads:
        if (workload.kind.name, workload.name) not in selected and owns_change(workload, ctx.policy_name):
            left = replace(
                ctx, stop=ctx.stop or f"{workload.reference_name} is no longer selected by the policy"
            )
            changes.append(apply_to_workload(workload, _pods_of(workload, pods), [], left))
    return changes


def _pods_of(workload: WorkloadView, pods: list[PodView]) -> list[PodView]:
    return [p for p in pods if (p.owner_kind, p.owner_name) == (workload.kind.name, workload.name)]


def owns_change(workload: WorkloadView, policy: str) -> bool:
    """Whether a change of ``policy`` is recorded on the workload (one that cannot be read is not
    taken for anybody's)."""
    try:
        change = Change.from_annotations(workload.annotations)
    except ValueError:
        return False
    return change is not None and change.policy == policy


# ---------------------------------------------------------------- starting a change


def _start(
    workload: WorkloadView, pods: list[PodView], recommendations: list[Recommendation], ctx: AutoContext
) -> WorkloadChange:
    plan = plan_changes(workload, recommendations, ctx.rails, ctx.now)
    notes = {key: f"not applied: {reason}" for key, reason in plan.skipped.items()}
    if plan.blocked:
        notes.update({rec.key: f"not applied: {plan.blocked}" for rec in recommendations})
        return WorkloadChange(blocked=f"{workload.reference_name}: {plan.blocked}", notes=notes)
    if not plan.changes:
        return WorkloadChange(notes=notes)
    blocked = _why_not(workload, pods, plan.changes, ctx)
    if isinstance(blocked, WorkloadChange):
        return replace(blocked, notes={**notes, **blocked.notes})
    method, fell_back = blocked
    seen = _observed(workload, pods, ctx, None)
    retunes: tuple[TargetRetune, ...] = ()
    if ctx.retune:
        after = {c.container: c.after for c in plan.changes}
        retunes = retunes_for_change(ctx.autoscalers, _key(workload, ""), workload.containers, after)
    step = begin(ctx.policy_name, method, plan.changes, seen, retunes=retunes, fell_back=fell_back)
    return _carry(step, seen, None, ctx, notes)


def _why_not(
    workload: WorkloadView, pods: list[PodView], changes: tuple[ContainerChange, ...], ctx: AutoContext
) -> WorkloadChange | tuple[Method, str | None]:
    """How the change goes (its method, and why not in place), or why it may not go now."""
    changed = {c.container: c.after for c in changes}
    violations = ctx.limits.violations(workload, changed, {**workload.containers, **changed})
    if violations:
        names = ", ".join(c.container for c in changes)
        message = f"{workload.reference_name}: change to {names} not applied: {'; '.join(violations)}"
        notes = {c.key: f"not applied: {'; '.join(violations)}" for c in changes}
        return WorkloadChange(
            blocked=message, notes=notes, events=(Event("Warning", "ChangeBlocked", message),)
        )
    method, why = method_for(workload, pods, changes, ctx.rails.update_mode)
    if method is Method.ROLLOUT and workload.kind is not CRONJOB:
        why_not = ctx.limits.disruption_blocked(workload)
        if why_not:
            method, why = None, why_not
    if method is None:
        assert why is not None
        notes = {c.key: f"not applied: {why}" for c in changes}
        return WorkloadChange(blocked=f"{workload.reference_name}: {why}", notes=notes)
    return method, why


# ---------------------------------------------------------------- moving a change on


def _advance(workload: WorkloadView, pods: list[PodView], change: Change, ctx: AutoContext) -> WorkloadChange:
    seen = _observed(workload, pods, ctx, change)
    return _carry(advance(change, seen, ctx.judge()), seen, change, ctx, {})


def _observed(
    workload: WorkloadView, pods: list[PodView], ctx: AutoContext, change: Change | None
) -> Observed:
    seen = Observed(workload, tuple(pods), ctx.now, {}, ctx.autoscalers)
    if change is None:
        return seen
    window = throttling_window(change, seen)
    throttled = ctx.throttled(*window) if window else {}
    could_fall_back = change.method is Method.IN_PLACE and ctx.rails.update_mode == IN_PLACE_OR_ROLLOUT
    blocked = ctx.limits.disruption_blocked(workload) if could_fall_back else None
    return replace(seen, throttled=throttled, rollout_blocked=blocked)


def _carry(
    step: Step, seen: Observed, change: Change | None, ctx: AutoContext, notes: dict[ContainerKey, str]
) -> WorkloadChange:
    """Carry the step out; a resize the API server refused in a forward step is resolved at once
    (``cannot_resize``) by a second step."""
    writer = WorkloadWriter(ctx.cluster, seen.workload)
    carried = carry_out(step, writer, list(seen.pods))
    said = _said(step, carried)
    record = step.write.record if step.write and step.write.record else change
    if carried.refused and record is not None and record.phase is not Phase.ROLLING_BACK:
        pod, why = carried.refused[0]
        second = cannot_resize(
            record, seen, ctx.judge(), f"pod {pod}: the API server refused the resize: {why}"
        )
        again = carry_out(second, writer, list(seen.pods))
        said = _said(second, again)
        carried.notices += again.notices
        carried.failures += again.failures
        carried.moved += again.moved
    return _outcome(said, carried, seen, record or change, notes)


def _said(step: Step, carried: Carried) -> Report:
    """What the step says: its report on success, else its report with what failed."""
    if carried.ok and step.on_success is not None:
        return step.on_success
    report = step.report
    if carried.ok:
        return report
    failed = "; ".join(carried.failures + [f"pod {p}: resize refused: {why}" for p, why in carried.refused])
    if not carried.written and report.kind in (StepKind.STARTED, StepKind.ROLLING_BACK, StepKind.MOVED_ON):
        return Report(StepKind.WAITING, failed, None if report.kind is StepKind.STARTED else report.status)
    status = replace(report.status, message=f"{report.status.message}; {failed}") if report.status else None
    return replace(report, message=f"{report.message}; {failed}", status=status)


def _outcome(
    report: Report, carried: Carried, seen: Observed, change: Change | None, notes: dict[ContainerKey, str]
) -> WorkloadChange:
    name = seen.workload.reference_name
    text = f"{name}: {report.message}" + "".join(f"; {moved}" for moved in carried.moved)
    events = tuple(_event(n, seen, change) for n in (*carried.notices, *report.notices))
    keys = [_key(seen.workload, c) for c in (change.after if change else {})]
    notes = {**notes, **{key: _note(report, change, seen.now) for key in keys}}
    kind = report.kind
    if kind is StepKind.WAITING and report.status is None:  # a start whose record write failed
        failed = (Event("Warning", "PatchFailed", text),) if carried.rejected else ()
        notes = {key: f"not applied: {report.message}" for key in notes}
        return WorkloadChange(blocked=text, notes=notes, events=events + failed)
    return WorkloadChange(
        applied=text if kind in (StepKind.STARTED, StepKind.MOVED_ON, StepKind.DONE) else None,
        rolled_back=text if kind is StepKind.ROLLING_BACK else None,
        rollback_over=text if kind is StepKind.ROLLED_BACK else None,
        in_flight=report.status,
        notes=notes,
        events=events,
    )


def _note(report: Report, change: Change | None, now: datetime) -> str:
    when = format_time(now)
    if report.kind is StepKind.STARTED:
        return f"applied at {when}: {report.message}"
    if report.kind is StepKind.DONE:
        return f"done at {when}"
    if report.kind is StepKind.ROLLED_BACK:
        return f"rolled back at {when}: {report.message}"
    phase = report.status.phase if report.status else (change.phase.value if change else "")
    return f"{phase.lower()}: {report.message}"


def _event(notice: Notice, seen: Observed, change: Change | None) -> Event:
    kind = "Warning" if notice.warning else "Normal"
    if not notice.on_workload:
        return Event(kind, notice.reason, notice.message)
    policy = change.policy if change else ""
    return Event(
        kind, notice.reason, f"by RightSizePolicy/{policy}: {notice.message}", seen.workload.reference()
    )


def _key(workload: WorkloadView, container: str) -> ContainerKey:
    return ContainerKey(workload.namespace, workload.kind.name, workload.name, container)

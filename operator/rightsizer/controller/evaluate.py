"""One evaluation of one RightSizePolicy: recommend for its targets and, in Auto mode, apply.

Called by the Kopf timer (``handlers.tick``) with everything it needs passed in, so it runs the
same against a real cluster and in unit tests. It returns the whole new status and the Events to
post; its side effects are Auto mode's writes, made through ``Cluster`` (``autoapply``), and the
operator's own counters of changes (``metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from rightsizer import conditions as cond
from rightsizer.admission import pod_resources
from rightsizer.collect import CollectedBatch, collect_batch
from rightsizer.controller import metrics
from rightsizer.controller.autoapply import AutoContext, ClusterLimits, WorkloadChange, carry_changes
from rightsizer.controller.batches import SharedBatches
from rightsizer.controller.kube import Cluster
from rightsizer.controller.outcome import Event, Outcome, PolicyObject
from rightsizer.controller.status_budget import bounded_message, bounded_recommendations
from rightsizer.cost import DEFAULT_PRICES, Prices, total_cost
from rightsizer.engine import recommend
from rightsizer.hpa import RETUNE, Autoscaler, with_autoscalers
from rightsizer.model import ContainerKey, ContainerUsage, Recommendation, Resources
from rightsizer.oomkills import ObservedOomKill, observe, with_observed
from rightsizer.pods import PodView, known_owners
from rightsizer.policy import AUTO, PolicyError, PolicySpec, parse_policy
from rightsizer.promql import LabelConfig, QueryScope
from rightsizer.rails import PODS_ONLY
from rightsizer.selection import select_targets
from rightsizer.shards import FailedScope
from rightsizer.source import PrometheusSource, PrometheusUnavailable
from rightsizer.timestamps import format_time
from rightsizer.workload import WorkloadView

LEFT_ALONE = "left alone: containerPolicies mode Off"
INIT_CONTAINER = (
    "left alone: an init container runs to completion before the app starts; what it uses then says "
    "nothing of the running pod (a native sidecar, restartPolicy Always, is sized like a container)"
)


class Evaluation:
    """What one evaluation finds, collected as it goes: conditions, a note per container (what
    Auto mode did with it, or why not), Events. ``outcome`` turns them into the status."""

    def __init__(self, policy: PolicyObject, now: datetime) -> None:
        self.policy, self.now = policy, now
        self.conditions: list[dict[str, Any]] = list(policy.status.get("conditions") or [])
        self.notes: dict[ContainerKey, str] = {}
        self.events: list[Event] = []

    def condition(self, type_: str, ok: bool, reason: str, message: str) -> None:
        self.conditions = cond.set_condition(
            self.conditions, type_, ok, reason, bounded_message(message), self.policy.generation, self.now
        )

    def was_true(self, type_: str) -> bool:
        """The condition as it was before this evaluation (a missing one counts as true)."""
        return (cond.get_condition(self.policy.status.get("conditions") or [], type_) or {}).get(
            "status"
        ) != "False"

    def outcome(self, fresh: list[Recommendation] | None, **fields: Any) -> Outcome:
        """The whole status: bookkeeping, ``fields``, conditions and, when there are ``fresh`` ones,
        the recommendations with their notes (else ``fields`` carries the ones kept)."""
        status: dict[str, Any] = {
            "observedGeneration": self.policy.generation,
            "lastEvaluationTime": format_time(self.now),
            **fields,
            "conditions": self.conditions,
        }
        if fresh is not None:
            entries = [_status_entry(r, self.notes.get(r.key)) for r in fresh]
            status.update(bounded_recommendations(entries, self.policy.namespace))
        return Outcome(status, self.events)


def evaluate(
    policy: PolicyObject,
    workloads: list[WorkloadView],
    pods: list[PodView],
    prometheus: PrometheusSource,
    cluster: Cluster,
    labels: LabelConfig,
    now: datetime,
    batches: SharedBatches | None = None,
    *,
    autoscalers: Sequence[Autoscaler] = (),
    prices: Prices = DEFAULT_PRICES,
) -> Outcome:
    """Recommend for the policy's targets (and apply in Auto mode); the status to write and events.

    ``workloads``, ``pods`` and ``autoscalers`` (HPAs) are those of the policy's namespace (the
    operator's indexes): a request an HPA scales on is kept, or the HPA's target moved with it in Auto
    mode, per ``spec.hpa`` (``rightsizer.hpa``). With
    ``batches``, the namespace's Prometheus batch is shared with its other policies' evaluations
    in the same interval (``controller/batches.py``). ``prices`` give ``status.monthlyCost``.
    """
    run = Evaluation(policy, now)
    try:
        spec = parse_policy(policy.spec)
    except PolicyError as error:
        return _invalid(run, str(error), cluster, workloads, pods, autoscalers)

    targets, missing = select_targets(spec, workloads)
    remembered = policy.status.get("observedOOMKills") or []
    selected = {(target.kind.name, target.name) for target in targets}
    oom_kills = observe(policy.namespace, remembered, pods, now, spec.history_seconds, selected)
    seen = {
        "targetCount": len(targets),
        "missingTargets": missing,
        "observedOOMKills": [kill.to_status() for kill in oom_kills],
    }
    try:
        batch = _fetch(run, spec, pods, prometheus, labels, batches)
    except PrometheusUnavailable as error:
        # Changes in flight are judged all the same: OOM kills, restarts and readiness come from the API.
        ctx = _auto_context(run, spec, cluster, prometheus, labels, autoscalers)
        changes = _auto_mode(run, ctx, targets, workloads, pods, None)
        return _prometheus_failed(run, str(error), {**seen, "changes": changes})
    _set_reachable(run, prometheus.url, batch)
    seen["failedScopes"] = [scope.to_dict() for scope in batch.failed]

    recommendations, evaluated = _recommendations(run, spec, targets, batch, oom_kills, autoscalers)
    ready = sum(r.ready for r in evaluated)
    replicas = {(w.kind.name, w.name): float(w.replicas) for w in targets}
    seen["monthlyCost"] = total_cost(evaluated, replicas, prices).to_dict()
    _set_readiness(run, targets, missing, evaluated)
    ctx = _auto_context(run, spec, cluster, prometheus, labels, autoscalers)
    seen["changes"] = _auto_mode(run, ctx, targets, workloads, pods, evaluated if spec.mode == AUTO else None)
    if spec.mode != AUTO:
        run.condition(cond.APPLIED, False, "RecommendMode", "mode is Recommend: workloads are never changed")
    return run.outcome(
        recommendations, **seen, consecutiveFailures=0, readyContainers=f"{ready}/{len(evaluated)}"
    )


def _recommendations(
    run: Evaluation,
    spec: PolicySpec,
    targets: list[WorkloadView],
    batch: CollectedBatch,
    oom_kills: list[ObservedOomKill],
    autoscalers: Sequence[Autoscaler],
) -> tuple[list[Recommendation], list[Recommendation]]:
    """Every target container's recommendation (an HPA's request kept or its target moved), and those
    of the containers evaluated (not left alone: init containers, failed scopes...)."""
    usage = _usage_by_container(batch, oom_kills)
    recommendations, left_alone = _recommend_targets(spec, targets, usage, batch.failed_workloads)
    init = {key for key, why in left_alone.items() if why == INIT_CONTAINER}
    recommendations = with_autoscalers(recommendations, autoscalers, spec.hpa, skip=init)
    run.notes.update(left_alone)
    return recommendations, [r for r in recommendations if r.key not in left_alone]


def _fetch(
    run: Evaluation,
    spec: PolicySpec,
    pods: list[PodView],
    prometheus: PrometheusSource,
    labels: LabelConfig,
    batches: SharedBatches | None,
) -> CollectedBatch:
    """The namespace's usage over the policy's window (shared with its other policies with ``batches``)."""
    owners = known_owners(pods)
    now = run.now.timestamp()
    scope = QueryScope((run.policy.namespace,), spec.history_seconds, labels, spec.cpu_window_seconds)
    if batches is None:
        return collect_batch(prometheus.fetch(scope, now), labels, owners)
    return batches.collect(scope, now, spec.interval_seconds, owners)


def _invalid(
    run: Evaluation,
    error: str,
    cluster: Cluster,
    workloads: list[WorkloadView],
    pods: list[PodView],
    autoscalers: Sequence[Autoscaler],
) -> Outcome:
    """A policy that cannot be read: said, and its changes in flight rolled back (nothing else can
    carry them on)."""
    run.condition(cond.RECOMMENDATIONS_READY, False, "InvalidPolicy", error)
    run.events.append(Event("Warning", "InvalidPolicy", error))
    stopped = AutoContext.stopped(
        cluster, run.policy, run.now, autoscalers, f"the policy is invalid: {error}"
    )
    changes = _auto_mode(run, stopped, [], workloads, pods, None)
    return run.outcome([], targetCount=0, readyContainers="0/0", changes=changes)


def _usage_by_container(
    batch: CollectedBatch, oom_kills: list[ObservedOomKill]
) -> Callable[[ContainerKey], ContainerUsage]:
    """What Prometheus saw of a container (its own copy: the batch is shared), with the OOM kills the
    API showed added in."""
    kills: dict[ContainerKey, list[ObservedOomKill]] = {}
    for kill in oom_kills:
        kills.setdefault(kill.key, []).append(kill)

    def usage_of(key: ContainerKey) -> ContainerUsage:
        return with_observed(batch.usage(key) or ContainerUsage(), kills.get(key, []))

    return usage_of


def _set_reachable(run: Evaluation, url: str, batch: CollectedBatch) -> None:
    if not batch.failed:
        run.condition(cond.PROMETHEUS_REACHABLE, True, "QuerySucceeded", f"queried {url}")
        return
    scopes = "; ".join(scope.describe() for scope in batch.failed)
    message = f"queried {url}; it could not answer for {scopes}"
    run.condition(cond.PROMETHEUS_REACHABLE, True, "PartlyAnswered", message)


def _recommend_targets(
    spec: PolicySpec,
    targets: list[WorkloadView],
    usage: Callable[[ContainerKey], ContainerUsage],
    failed: Mapping[tuple[str, str, str], FailedScope],
) -> tuple[list[Recommendation], dict[ContainerKey, str]]:
    """A recommendation per container of every target, in template order, and the containers left
    alone with the reason: those whose policy says ``mode: Off`` (recommended with the policy's
    general settings, never changed) and init containers (listed, not sized). Targets with a pod
    Prometheus could not answer for (``failed``) get none, with the scope named."""
    recommendations: list[Recommendation] = []
    left_alone: dict[ContainerKey, str] = {}
    for workload in targets:
        for container, current in sized_from(workload, spec).items():
            key = ContainerKey(workload.namespace, workload.kind.name, workload.name, container)
            settings = spec.container_settings(container)
            if settings is None:
                left_alone[key] = LEFT_ALONE
                settings = spec.settings
            gone = failed.get((workload.namespace, workload.kind.name, workload.name))
            if gone is not None:
                reason = f"Prometheus could not answer for {gone.describe()}"
                recommendations.append(Recommendation(key, current, None, None, reason, {}))
                continue
            rec = recommend(key, usage(key), current, settings)
            if workload.invalid_quantities:
                rec = replace(rec, warnings=rec.warnings + workload.invalid_quantities)
            recommendations.append(rec)
        for container, current in workload.init_containers.items():
            key = ContainerKey(workload.namespace, workload.kind.name, workload.name, container)
            left_alone[key] = INIT_CONTAINER
            recommendations.append(Recommendation(key, current, None, None, "init container: not sized", {}))
    return recommendations, left_alone


def _set_readiness(
    run: Evaluation, targets: list[WorkloadView], missing: list[str], evaluated: list[Recommendation]
) -> None:
    if not targets:
        message = f"no target found: {', '.join(missing)}" if missing else "the selector matches no workload"
        run.condition(cond.RECOMMENDATIONS_READY, False, "NoTargets", message)
        run.condition(cond.INSUFFICIENT_DATA, False, "NoTargets", message)
        return
    not_ready = [r for r in evaluated if not r.ready]
    if not_ready:
        listing = "; ".join(f"{r.key.name}/{r.key.container}: {r.reason}" for r in not_ready)
        run.condition(cond.INSUFFICIENT_DATA, True, "InsufficientHistory", listing)
        message = f"{len(not_ready)} of {len(evaluated)} containers have no recommendation yet"
        run.condition(cond.RECOMMENDATIONS_READY, False, "InsufficientData", message)
        return
    run.condition(cond.INSUFFICIENT_DATA, False, "EnoughHistory", "every container has enough history")
    message = f"{len(evaluated)} containers in {len(targets)} workloads"
    if missing:
        message += f"; missing: {', '.join(missing)}"
    run.condition(cond.RECOMMENDATIONS_READY, True, "RecommendationsComputed", message)


def _auto_context(
    run: Evaluation,
    spec: PolicySpec,
    cluster: Cluster,
    prometheus: PrometheusSource,
    labels: LabelConfig,
    autoscalers: Sequence[Autoscaler],
) -> AutoContext:
    """Auto mode's context for this evaluation; in Recommend mode, one that rolls back what the
    policy still has in flight and starts nothing."""
    namespace = run.policy.namespace

    def throttled(pod_names: list[str], seconds: int) -> dict[str, float] | None:
        try:
            return prometheus.throttled_shares(labels, namespace, pod_names, seconds, run.now.timestamp())
        except PrometheusUnavailable:
            return None  # not judged this time: the change waits for it; the other signals still are

    return AutoContext(
        rails=spec.auto,
        limits=ClusterLimits(cluster, namespace),
        cluster=cluster,
        policy_name=run.policy.name,
        now=run.now,
        throttling_threshold=spec.settings.throttling_threshold,
        throttled=throttled,
        autoscalers=tuple(autoscalers),
        retune=spec.hpa == RETUNE,
        stop=None if spec.mode == AUTO else "the policy's mode is Recommend",
    )


def _auto_mode(
    run: Evaluation,
    ctx: AutoContext,
    targets: list[WorkloadView],
    workloads: list[WorkloadView],
    pods: list[PodView],
    evaluated: list[Recommendation] | None,
) -> list[dict[str, Any]]:
    """Start, move on or roll back a change to every target (with no ``evaluated`` recommendations,
    only move on the changes in flight), and roll back the policy's changes to workloads it no
    longer selects; one Applied and one RolledBack condition for them all. Returns the changes in
    flight (``status.changes``)."""
    changes = carry_changes(ctx, targets, workloads, pods, evaluated)
    for change in changes:
        run.notes.update(change.notes)
        run.events.extend(change.events)
    metrics.count_changes(run.policy.namespace, run.policy.name, changes)
    over = [c.rollback_over for c in changes if c.rollback_over]
    rolling = [c.in_flight.message for c in changes if c.in_flight and c.in_flight.rolling_back]
    if over:
        run.condition(cond.ROLLED_BACK, True, "RolledBack", "; ".join(over))
    elif rolling:
        run.condition(cond.ROLLED_BACK, False, "RollingBack", "; ".join(rolling))
    elif cond.get_condition(run.conditions, cond.ROLLED_BACK) is None:
        run.condition(cond.ROLLED_BACK, False, "NoRollback", "no change has been rolled back")
    if ctx.stop is None and (evaluated is not None or changes):
        _set_applied(run, changes)
    return [c.in_flight.to_status() for c in changes if c.in_flight]


def _set_applied(run: Evaluation, changes: list[WorkloadChange]) -> None:
    applied = [c.applied for c in changes if c.applied]
    blocked = [c.blocked for c in changes if c.blocked]
    in_flight = [c.in_flight.message for c in changes if c.in_flight and not c.applied]
    if applied:
        run.condition(cond.APPLIED, True, "Applied", "; ".join(applied))
    elif in_flight:
        run.condition(cond.APPLIED, False, "InProgress", "; ".join(in_flight))
    elif blocked:
        run.condition(cond.APPLIED, False, "Blocked", "; ".join(blocked))
    else:
        run.condition(cond.APPLIED, False, "NoChangeNeeded", "no change worth applying")


def _prometheus_failed(run: Evaluation, error: str, seen: dict[str, Any]) -> Outcome:
    """Keep the last recommendations, say why they are not fresh, start no change, back off (the
    changes in flight were judged all the same: ``seen`` has them)."""
    if run.was_true(cond.PROMETHEUS_REACHABLE):
        run.events.append(Event("Warning", "PrometheusUnreachable", error))
    run.condition(cond.PROMETHEUS_REACHABLE, False, "QueryFailed", error)
    previous = run.policy.status
    return run.outcome(
        None,
        **seen,
        recommendations=previous.get("recommendations", []),
        readyContainers=previous.get("readyContainers", "0/0"),
        consecutiveFailures=int(previous.get("consecutiveFailures", 0)) + 1,
    )


def sized_from(workload: WorkloadView, spec: PolicySpec) -> dict[str, Resources]:
    """The resources a target's containers are sized from: its template's, except in PodsOnly mode,
    where its pods run (and new pods get) the resources rightsizer gave them, not the template's."""
    given = pod_resources(workload.annotations) if spec.auto.update_mode == PODS_ONLY else None
    return {name: (given or {}).get(name, current) for name, current in workload.containers.items()}


def _status_entry(rec: Recommendation, note: str | None) -> dict[str, Any]:
    entry = rec.to_dict()
    entry.pop("namespace")
    if entry["recommended"] is None:
        entry.pop("recommended")
    if entry["qosClass"] is None:
        entry.pop("qosClass")
    if note:
        entry["autoApply"] = note
    return entry

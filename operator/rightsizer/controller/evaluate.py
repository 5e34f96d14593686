"""One evaluation of one RightSizePolicy: recommend for its targets and, in Auto mode, apply.

Called by the Kopf timer in ``main`` with everything it needs passed in, so it runs the same
against a real cluster and in tests. It returns the new status and the events to post; the
only side effect is the Deployment patch in Auto mode, made through ``Cluster``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kubernetes.client.rest import ApiException

from rightsizer import conditions as cond
from rightsizer.apply import build_patch, describe, plan_changes
from rightsizer.collect import workload_containers
from rightsizer.constraints import limit_range_violations, node_fit_violations, quota_violations
from rightsizer.controller.kube import Cluster, PatchConflict
from rightsizer.engine import recommend
from rightsizer.model import ContainerKey, ContainerUsage, Recommendation, Resources
from rightsizer.oomkills import ObservedOomKill, observe, with_observed
from rightsizer.pods import PodView, known_owners
from rightsizer.policy import AUTO, PolicyError, PolicySpec, parse_policy
from rightsizer.promql import LabelConfig, QueryScope
from rightsizer.selection import select_targets
from rightsizer.source import PrometheusSource, PrometheusUnavailable, UsageFrames
from rightsizer.workload import DeploymentView

DEFAULT_INTERVAL_SECONDS = 300
RETRY_BASE_SECONDS = 15


@dataclass(frozen=True)
class PolicyObject:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """An Event to post: on the policy when ``target`` is None, else on that object."""

    type: str
    reason: str
    message: str
    target: dict[str, Any] | None = None


@dataclass
class Outcome:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)


def is_due(policy: PolicyObject, now: datetime) -> bool:
    """Evaluate at once on a new generation; else after the interval (with up to 10% jitter per
    policy, so policies created together do not query Prometheus together), or sooner with
    exponential backoff after Prometheus failed."""
    status = policy.status
    if status.get("observedGeneration") != policy.generation or not status.get("lastEvaluationTime"):
        return True
    try:
        interval = parse_policy(policy.spec).interval_seconds
    except PolicyError:
        interval = DEFAULT_INTERVAL_SECONDS
    failures = int(status.get("consecutiveFailures", 0))
    if failures:
        wait = min(interval, RETRY_BASE_SECONDS * 2 ** (failures - 1))
    else:
        jitter = int(hashlib.sha256(policy.uid.encode()).hexdigest()[:4], 16) / 0xFFFF * 0.1
        wait = interval * (1 + jitter)
    last = datetime.fromisoformat(status["lastEvaluationTime"].replace("Z", "+00:00"))
    return (now - last).total_seconds() >= wait


def evaluate(
    policy: PolicyObject,
    deployments: list[DeploymentView],
    pods: list[PodView],
    prometheus: PrometheusSource,
    cluster: Cluster,
    labels: LabelConfig,
    now: datetime,
) -> Outcome:
    """Recommend for the policy's targets (and apply in Auto mode); the status to write and events.

    ``deployments`` and ``pods`` are those of the policy's namespace (the operator's indexes).
    """
    conditions = list(policy.status.get("conditions") or [])
    status: dict[str, Any] = {
        "observedGeneration": policy.generation,
        "lastEvaluationTime": cond.timestamp(now),
    }

    def set_condition(type_: str, ok: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = cond.set_condition(conditions, type_, ok, reason, message, policy.generation, now)

    try:
        spec = parse_policy(policy.spec)
    except PolicyError as error:
        set_condition(cond.RECOMMENDATIONS_READY, False, "InvalidPolicy", str(error))
        status.update(conditions=conditions, recommendations=[], targetCount=0, readyContainers="0/0")
        return Outcome(status, [Event("Warning", "InvalidPolicy", str(error))])

    targets, missing = select_targets(spec, deployments)
    oom_kills = observe(
        policy.namespace, policy.status.get("observedOOMKills") or [], pods, now, spec.history_seconds
    )
    status.update(
        targetCount=len(targets),
        missingTargets=missing,
        observedOOMKills=[kill.to_status() for kill in oom_kills],
    )
    try:
        scope = QueryScope((policy.namespace,), spec.history_seconds, labels, spec.cpu_window_seconds)
        frames = prometheus.fetch(scope, spec.settings.cpu_percentile, now.timestamp())
    except PrometheusUnavailable as error:
        return _prometheus_failed(policy, status, conditions, str(error), now)
    set_condition(cond.PROMETHEUS_REACHABLE, True, "QuerySucceeded", f"queried {prometheus.url}")
    status["consecutiveFailures"] = 0

    usage = _usage_by_container(frames, labels, pods, oom_kills)
    recommendations, left_alone = _recommend_targets(spec, targets, usage)
    notes: dict[tuple[str, str], str] = {key: "left alone: containerPolicies mode Off" for key in left_alone}
    events: list[Event] = []

    evaluated = [r for r in recommendations if (r.key.name, r.key.container) not in left_alone]
    not_ready = [r for r in evaluated if not r.ready]
    _set_readiness(set_condition, targets, missing, evaluated, not_ready)

    if spec.mode == AUTO:
        applied, blocked = _auto_apply(
            policy, spec, targets, recommendations, left_alone, cluster, now, notes, events
        )
        if applied:
            set_condition(cond.APPLIED, True, "Applied", "; ".join(applied))
        elif blocked:
            set_condition(cond.APPLIED, False, "Blocked", "; ".join(blocked))
        else:
            set_condition(cond.APPLIED, False, "NoChangeNeeded", "no change worth applying")
    else:
        set_condition(cond.APPLIED, False, "RecommendMode", "mode is Recommend: workloads are never changed")

    status.update(
        conditions=conditions,
        readyContainers=f"{len(evaluated) - len(not_ready)}/{len(evaluated)}",
        recommendations=[_status_entry(r, notes.get((r.key.name, r.key.container))) for r in recommendations],
    )
    return Outcome(status, events)


def _usage_by_container(
    frames: UsageFrames, labels: LabelConfig, pods: list[PodView], oom_kills: list[ObservedOomKill]
) -> dict[ContainerKey, ContainerUsage]:
    """What Prometheus saw of each container, with the OOM kills the API showed added in."""
    usage = {item.key: item.usage for item in workload_containers(frames, labels, known_owners(pods))}
    for key in {kill.key for kill in oom_kills}:
        kills = [kill for kill in oom_kills if kill.key == key]
        usage[key] = with_observed(usage.get(key, ContainerUsage()), kills)
    return usage


def _recommend_targets(
    spec: PolicySpec, targets: list[DeploymentView], usage: dict[ContainerKey, ContainerUsage]
) -> tuple[list[Recommendation], set[tuple[str, str]]]:
    recommendations, left_alone = [], set()
    for deployment in targets:
        for container, current in deployment.containers.items():
            settings = spec.container_settings(container)
            key = ContainerKey(deployment.namespace, "Deployment", deployment.name, container)
            if settings is None:
                left_alone.add((deployment.name, container))
                settings = spec.settings
            rec = recommend(key, usage.get(key, ContainerUsage()), current, settings)
            if deployment.invalid_quantities:
                rec = replace(rec, warnings=rec.warnings + deployment.invalid_quantities)
            recommendations.append(rec)
    return recommendations, left_alone


def _set_readiness(
    set_condition: Callable[[str, bool, str, str], None],
    targets: list[DeploymentView],
    missing: list[str],
    evaluated: list[Recommendation],
    not_ready: list[Recommendation],
) -> None:
    if not targets:
        message = (
            f"no target found: {', '.join(missing)}" if missing else "the selector matches no Deployment"
        )
        set_condition(cond.RECOMMENDATIONS_READY, False, "NoTargets", message)
        set_condition(cond.INSUFFICIENT_DATA, False, "NoTargets", message)
        return
    if not_ready:
        listing = "; ".join(f"{r.key.name}/{r.key.container}: {r.reason}" for r in not_ready)
        set_condition(cond.INSUFFICIENT_DATA, True, "InsufficientHistory", listing)
        set_condition(
            cond.RECOMMENDATIONS_READY,
            False,
            "InsufficientData",
            f"{len(not_ready)} of {len(evaluated)} containers have no recommendation yet",
        )
    else:
        set_condition(cond.INSUFFICIENT_DATA, False, "EnoughHistory", "every container has enough history")
        message = f"{len(evaluated)} containers in {len(targets)} Deployments"
        if missing:
            message += f"; missing: {', '.join(missing)}"
        set_condition(cond.RECOMMENDATIONS_READY, True, "RecommendationsComputed", message)


def _auto_apply(
    policy: PolicyObject,
    spec: PolicySpec,
    targets: list[DeploymentView],
    recommendations: list[Recommendation],
    left_alone: set[tuple[str, str]],
    cluster: Cluster,
    now: datetime,
    notes: dict[tuple[str, str], str],
    events: list[Event],
) -> tuple[list[str], list[str]]:
    """Plan, check and patch each target; returns what was applied and what was blocked."""
    applied: list[str] = []
    blocked: list[str] = []
    cluster_limits = _ClusterLimits(cluster, policy.namespace)
    for deployment in targets:
        recs = [
            r
            for r in recommendations
            if r.key.name == deployment.name and (deployment.name, r.key.container) not in left_alone
        ]
        plan = plan_changes(deployment, recs, spec.auto, now)
        for container, reason in plan.skipped.items():
            notes[(deployment.name, container)] = f"not applied: {reason}"
        if plan.blocked:
            blocked.append(f"{deployment.name}: {plan.blocked}")
            for rec in recs:
                notes[(deployment.name, rec.key.container)] = f"not applied: {plan.blocked}"
            continue
        if not plan.changes:
            continue
        after = dict(deployment.containers)
        after.update({c.container: c.after for c in plan.changes})
        violations = cluster_limits.violations(
            deployment, {c.container: c.after for c in plan.changes}, after
        )
        changed = ", ".join(c.container for c in plan.changes)
        if violations:
            message = f"{deployment.name}: change to {changed} not applied: {'; '.join(violations)}"
            blocked.append(message)
            events.append(Event("Warning", "ChangeBlocked", message))
            for change in plan.changes:
                notes[(deployment.name, change.container)] = f"not applied: {'; '.join(violations)}"
            continue
        try:
            cluster.patch_deployment(
                deployment.namespace, deployment.name, build_patch(deployment, plan.changes, policy.name, now)
            )
        except PatchConflict as error:
            blocked.append(f"{deployment.name}: {error}; retried at the next evaluation")
            continue
        except ApiException as error:
            message = f"{deployment.name}: patch rejected by the API server: {error.status} {error.reason}"
            blocked.append(message)
            events.append(Event("Warning", "PatchFailed", message))
            continue
        summary = "; ".join(describe(c) for c in plan.changes)
        applied.append(f"{deployment.name}: {summary}")
        events.append(Event("Normal", "Applied", f"{deployment.name}: {summary}"))
        events.append(
            Event(
                "Normal", "RightSized", f"by RightSizePolicy/{policy.name}: {summary}", deployment.reference()
            )
        )
        for change in plan.changes:
            notes[(deployment.name, change.container)] = (
                f"applied at {cond.timestamp(now)}: {describe(change)}"
            )
    return applied, blocked


class _ClusterLimits:
    """LimitRanges, ResourceQuotas and Nodes, read at most once per evaluation and only when needed."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self._cluster, self._namespace = cluster, namespace
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def _get(self, what: str) -> list[dict[str, Any]]:
        if what not in self._cache:
            read = {
                "limit_ranges": lambda: self._cluster.limit_ranges(self._namespace),
                "quotas": lambda: self._cluster.resource_quotas(self._namespace),
                "nodes": self._cluster.nodes,
            }[what]
            self._cache[what] = read()
        return self._cache[what]

    def violations(
        self, deployment: DeploymentView, changed: dict[str, Resources], after: dict[str, Resources]
    ) -> list[str]:
        return (
            limit_range_violations(changed, self._get("limit_ranges"))
            + quota_violations(deployment.containers, after, deployment.replicas, self._get("quotas"))
            + node_fit_violations(after, self._get("nodes"))
        )


def _prometheus_failed(
    policy: PolicyObject, status: dict[str, Any], conditions: list[dict[str, Any]], error: str, now: datetime
) -> Outcome:
    """Keep the last recommendations, say why they are not fresh, patch nothing, back off."""
    was_reachable = (cond.get_condition(conditions, cond.PROMETHEUS_REACHABLE) or {}).get("status") != "False"
    conditions = cond.set_condition(
        conditions, cond.PROMETHEUS_REACHABLE, False, "QueryFailed", error, policy.generation, now
    )
    previous = policy.status
    status.update(
        conditions=conditions,
        recommendations=previous.get("recommendations", []),
        readyContainers=previous.get("readyContainers", "0/0"),
        consecutiveFailures=int(previous.get("consecutiveFailures", 0)) + 1,
    )
    events = [Event("Warning", "PrometheusUnreachable", error)] if was_reachable else []
    return Outcome(status, events)


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

"""Gauges of each policy's state, derived from its status and its targets' annotations.

Every replica sets them at every tick of every policy (``handlers.tick``), leader or not: the
status is the cluster's record, so the replicas agree, and a standby's gauges show a leader that
stopped evaluating (``lastEvaluationTime`` no longer moves). Each tick replaces the policy's
series: a container or workload that left its targets loses its series; ``metrics.forget`` removes
them all when the policy is deleted.

==========================================================  =========================================
metric                                                      labels (after ``namespace``, ``policy``)
==========================================================  =========================================
``rightsizer_policy_last_evaluation_timestamp_seconds``     none (the policy's creation before one)
``rightsizer_policy_interval_seconds``                      none (``spec.interval``)
``rightsizer_policy_condition``                             ``condition`` (1 True, 0 False; up to 5)
``rightsizer_workload_last_change_timestamp_seconds``       ``workload_kind``, ``workload`` (Auto mode's
                                                            ``rightsizer.io/applied-at``)
``rightsizer_container_current``                            ``workload_kind``, ``workload``,
                                                            ``container``, ``resource`` (cpu in cores,
                                                            memory in bytes), ``field`` (request,
                                                            limit): up to 4 per container
``rightsizer_container_recommended``                        the same
``rightsizer_container_last_oom_kill_timestamp_seconds``    ``workload_kind``, ``workload``,
                                                            ``container`` (``status.observedOOMKills``)
==========================================================  =========================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Gauge
from prometheus_client.metrics import MetricWrapperBase

from rightsizer.apply import APPLIED_AT
from rightsizer.controller.metrics import CONTAINER, POLICY, REGISTRY, WORKLOAD, drop_series, policy_series
from rightsizer.policy import PolicyError, parse_policy
from rightsizer.quantity import QuantityError, parse
from rightsizer.timestamps import parse_time
from rightsizer.workload import WorkloadView

LAST_EVALUATION = Gauge(
    "rightsizer_policy_last_evaluation_timestamp_seconds",
    "status.lastEvaluationTime of the policy (its creation until the first evaluation)",
    POLICY,
    registry=REGISTRY,
)
INTERVAL = Gauge(
    "rightsizer_policy_interval_seconds",
    "spec.interval: how often the policy is evaluated",
    POLICY,
    registry=REGISTRY,
)
CONDITION = Gauge(
    "rightsizer_policy_condition",
    "The policy's status conditions: 1 when True, 0 when False",
    [*POLICY, "condition"],
    registry=REGISTRY,
)
LAST_CHANGE = Gauge(
    "rightsizer_workload_last_change_timestamp_seconds",
    "When Auto mode last changed a target workload (its rightsizer.io/applied-at annotation)",
    WORKLOAD,
    registry=REGISTRY,
)
CURRENT = Gauge(
    "rightsizer_container_current",
    "A target container's requests and limits now (cpu in cores, memory in bytes)",
    [*CONTAINER, "resource", "field"],
    registry=REGISTRY,
)
RECOMMENDED = Gauge(
    "rightsizer_container_recommended",
    "The requests and limits recommended for a target container (cpu in cores, memory in bytes)",
    [*CONTAINER, "resource", "field"],
    registry=REGISTRY,
)
LAST_OOM_KILL = Gauge(
    "rightsizer_container_last_oom_kill_timestamp_seconds",
    "The last OOM kill of a target container seen in its pods' status (status.observedOOMKills)",
    CONTAINER,
    registry=REGISTRY,
)

Series = tuple[MetricWrapperBase, tuple[str, ...]]
_previous: dict[tuple[str, str], set[Series]] = {}


def observe(body: Mapping[str, Any], workloads: Iterable[WorkloadView]) -> None:
    """Set the gauges of one policy (a plain ``body``) and drop those it no longer has."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    values = state_of(body, workloads)
    for (metric, labels), value in values.items():
        policy_series(metric, *labels).set(value)
    for gone in _previous.get((namespace, name), set()) - values.keys():
        drop_series(*gone)
    _previous[(namespace, name)] = set(values)


def forget(namespace: str, name: str) -> None:
    _previous.pop((namespace, name), None)


def state_of(body: Mapping[str, Any], workloads: Iterable[WorkloadView]) -> dict[Series, float]:
    """Every gauge of one policy: (metric, label values) -> value."""
    metadata, status = body["metadata"], body.get("status") or {}
    policy = (metadata["namespace"], metadata["name"])
    values: dict[Series, float] = {}
    last = _timestamp(status.get("lastEvaluationTime") or metadata.get("creationTimestamp"))
    if last is not None:
        values[(LAST_EVALUATION, policy)] = last
    with contextlib.suppress(PolicyError):  # an invalid policy says so in its condition
        values[(INTERVAL, policy)] = parse_policy(body.get("spec") or {}).interval_seconds
    for condition in status.get("conditions") or []:
        values[(CONDITION, (*policy, condition["type"]))] = float(condition.get("status") == "True")
    targets: set[tuple[str, str]] = set()
    for entry in status.get("recommendations") or []:
        container = (*policy, entry["kind"], entry["name"], entry["container"])
        targets.add((entry["kind"], entry["name"]))
        for metric, resources in ((CURRENT, entry.get("current")), (RECOMMENDED, entry.get("recommended"))):
            for field, amounts in (("request", "requests"), ("limit", "limits")):
                for resource, quantity in ((resources or {}).get(amounts) or {}).items():
                    amount = _amount(quantity)
                    if amount is not None:
                        values[(metric, (*container, resource, field))] = amount
    for kill in status.get("observedOOMKills") or []:
        finished = _timestamp(kill.get("finishedAt"))
        key: Series = (LAST_OOM_KILL, (*policy, kill["kind"], kill["name"], kill["container"]))
        if finished is not None:
            values[key] = max(values.get(key, finished), finished)
    for workload in workloads:
        changed = _timestamp(workload.annotations.get(APPLIED_AT))
        if (workload.kind.name, workload.name) in targets and changed is not None:
            values[(LAST_CHANGE, (*policy, workload.kind.name, workload.name))] = changed
    return values


def _timestamp(text: str | None) -> float | None:
    try:
        return parse_time(text).timestamp() if text else None
    except ValueError:
        return None


def _amount(quantity: str) -> float | None:
    try:
        return float(parse(quantity))
    except QuantityError:
        return None

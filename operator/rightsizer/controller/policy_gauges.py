"""Gauges of each policy's state, derived from its status and its targets' annotations.

Every replica sets them at every tick of every policy (``handlers.tick``), leader or not: the
status is the cluster's record, so the replicas agree, and a standby's gauges show a leader that
stopped evaluating (``lastEvaluationTime`` no longer moves). Each tick replaces the policy's
series: a container or workload that left its targets loses its series; ``metrics.forget`` removes
them all when the policy is deleted. Kept as plain numbers (``policy_series``).

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
``rightsizer_policy_monthly_cost``                          ``requests`` (current, recommended):
                                                            ``status.monthlyCost``
``rightsizer_policy_monthly_cost_difference``               none (recommended - current)
==========================================================  =========================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from rightsizer.apply import APPLIED_AT
from rightsizer.controller.metrics import CONTAINER, SERIES, WORKLOAD
from rightsizer.controller.policy_series import Series
from rightsizer.policy import PolicyError, parse_policy
from rightsizer.quantity import QuantityError, parse
from rightsizer.timestamps import parse_time
from rightsizer.workload import WorkloadView

LAST_EVALUATION = SERIES.family(
    "rightsizer_policy_last_evaluation_timestamp_seconds",
    "status.lastEvaluationTime of the policy (its creation until the first evaluation)",
    "gauge",
)
INTERVAL = SERIES.family(
    "rightsizer_policy_interval_seconds", "spec.interval: how often the policy is evaluated", "gauge"
)
CONDITION = SERIES.family(
    "rightsizer_policy_condition",
    "The policy's status conditions: 1 when True, 0 when False",
    "gauge",
    ("condition",),
)
LAST_CHANGE = SERIES.family(
    "rightsizer_workload_last_change_timestamp_seconds",
    "When Auto mode last changed a target workload (its rightsizer.io/applied-at annotation)",
    "gauge",
    WORKLOAD,
)
CURRENT = SERIES.family(
    "rightsizer_container_current",
    "A target container's requests and limits now (cpu in cores, memory in bytes)",
    "gauge",
    (*CONTAINER, "resource", "field"),
)
RECOMMENDED = SERIES.family(
    "rightsizer_container_recommended",
    "The requests and limits recommended for a target container (cpu in cores, memory in bytes)",
    "gauge",
    (*CONTAINER, "resource", "field"),
)
LAST_OOM_KILL = SERIES.family(
    "rightsizer_container_last_oom_kill_timestamp_seconds",
    "The last OOM kill of a target container seen in its pods' status (status.observedOOMKills)",
    "gauge",
    CONTAINER,
)

MONTHLY_COST = SERIES.family(
    "rightsizer_policy_monthly_cost",
    "What the requests of the policy's target containers cost a month, today's and the recommended "
    "ones (status.monthlyCost: the operator's --cpu-price and --memory-price, 730 h)",
    "gauge",
    ("requests",),
)
MONTHLY_DIFFERENCE = SERIES.family(
    "rightsizer_policy_monthly_cost_difference",
    "The recommended requests' monthly cost minus today's (below zero: a saving)",
    "gauge",
)


def observe(body: Mapping[str, Any], workloads: Iterable[WorkloadView]) -> None:
    """Set the gauges of one policy (a plain ``body``); those it no longer has are dropped."""
    metadata = body["metadata"]
    SERIES.set_gauges((metadata["namespace"], metadata["name"]), state_of(body, workloads))


def state_of(body: Mapping[str, Any], workloads: Iterable[WorkloadView]) -> dict[Series, float]:
    """Every gauge of one policy: (family, label values after the policy's) -> value."""
    status = body.get("status") or {}
    metadata = body["metadata"]
    values: dict[Series, float] = {}
    last = _timestamp(status.get("lastEvaluationTime") or metadata.get("creationTimestamp"))
    if last is not None:
        values[(LAST_EVALUATION, ())] = last
    with contextlib.suppress(PolicyError):  # an invalid policy says so in its condition
        values[(INTERVAL, ())] = parse_policy(body.get("spec") or {}).interval_seconds
    for condition in status.get("conditions") or []:
        values[(CONDITION, (condition["type"],))] = float(condition.get("status") == "True")
    targets: set[tuple[str, str]] = set()
    for entry in status.get("recommendations") or []:
        container = (entry["kind"], entry["name"], entry["container"])
        targets.add((entry["kind"], entry["name"]))
        for family, resources in ((CURRENT, entry.get("current")), (RECOMMENDED, entry.get("recommended"))):
            for field, amounts in (("request", "requests"), ("limit", "limits")):
                for resource, quantity in ((resources or {}).get(amounts) or {}).items():
                    amount = _amount(quantity)
                    if amount is not None:
                        values[(family, (*container, resource, field))] = amount
    for kill in status.get("observedOOMKills") or []:
        finished = _timestamp(kill.get("finishedAt"))
        key: Series = (LAST_OOM_KILL, (kill["kind"], kill["name"], kill["container"]))
        if finished is not None:
            values[key] = max(values.get(key, finished), finished)
    cost = status.get("monthlyCost") or {}
    for requests in ("current", "recommended"):
        if isinstance(cost.get(requests), int | float):
            values[(MONTHLY_COST, (requests,))] = float(cost[requests])
    if isinstance(cost.get("difference"), int | float):
        values[(MONTHLY_DIFFERENCE, ())] = float(cost["difference"])
    for workload in workloads:
        changed = _timestamp(workload.annotations.get(APPLIED_AT))
        if (workload.kind.name, workload.name) in targets and changed is not None:
            values[(LAST_CHANGE, (workload.kind.name, workload.name))] = changed
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

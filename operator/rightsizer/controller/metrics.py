"""The operator's own Prometheus metrics, served on ``--metrics-listen`` (``/metrics``).

Every metric of the operator is defined here, in one registry (``REGISTRY``, with the process and
Python collectors). Names, labels and how many series each can have:

================================================  ======================================  ==============
metric (type)                                     labels                                  series at most
================================================  ======================================  ==============
``rightsizer_build_info`` (gauge, 1)              ``version``                             1
``rightsizer_leading`` (gauge, 0/1)               none                                    1
``rightsizer_evaluations_total``                  ``namespace``, ``policy``               1 a policy
``rightsizer_evaluation_failures_total``          ``namespace``, ``policy``, ``reason``   3 a policy
``rightsizer_evaluation_duration_seconds``        ``namespace``, ``policy``               16 a policy
``rightsizer_prometheus_query_duration_seconds``  ``result``                              2 x 16
``rightsizer_changes_total``                      ``namespace``, ``policy``, ``outcome``  3 a policy
``rightsizer_policy_*`` (``policy_gauges``)       ``namespace``, ``policy``, ...          7 a policy
``rightsizer_workload_*`` (``policy_gauges``)     ... ``workload_kind``, ``workload``     1 a target
``rightsizer_container_*`` (``policy_gauges``)    ... ``container``, ...                  9 a container
================================================  ======================================  ==============

Failure ``reason``: ``PrometheusUnreachable``, ``InvalidPolicy``, ``Error`` (an exception; Kopf
retries). Query ``result``: ``success``, ``failure``. Change ``outcome``: ``applied`` (a change
started, moved on or finished), ``blocked`` (worth applying, not applied: the reason is in the
policy's status), ``rolled_back``. Labels hold only names of policies, of their targets and of
containers, never pods or free text, and every series of a policy is removed when the policy is
deleted (``forget``), so the number of series follows the number of policies and their targets.

Counters and histograms are the leader's (only it evaluates); the gauges of ``policy_gauges`` are
derived from the policies' status by every replica, so aggregate them with ``max by (...)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
    start_http_server,
)

from rightsizer import conditions as cond
from rightsizer.controller.policy_series import PolicySeries
from rightsizer.errors import ConfigurationError

if TYPE_CHECKING:
    from rightsizer.controller.autoapply import WorkloadChange

REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

WORKLOAD = ("workload_kind", "workload")
CONTAINER = (*WORKLOAD, "container")
"""Labels of a policy's series after ``namespace`` and ``policy`` (``policy_series.POLICY_LABELS``)."""
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
"""Seconds: a query answers in milliseconds; an evaluation of a busy namespace takes seconds; the
Prometheus timeout is 2 minutes."""

BUILD_INFO = Gauge("rightsizer_build_info", "Always 1: the running version", ["version"], registry=REGISTRY)
LEADING = Gauge(
    "rightsizer_leading", "1 while this replica holds the Lease (or runs without election)", registry=REGISTRY
)
SERIES = PolicySeries()
"""Every series labelled with a policy (``policy_series``): these, and those of ``policy_gauges``."""
REGISTRY.register(SERIES)
EVALUATIONS = SERIES.family(
    "rightsizer_evaluations", "Evaluations of a RightSizePolicy, failed or not", "counter"
)
EVALUATION_FAILURES = SERIES.family(
    "rightsizer_evaluation_failures",
    "Evaluations that produced no fresh recommendations, by reason",
    "counter",
    ("reason",),
)
EVALUATION_DURATION = SERIES.family(
    "rightsizer_evaluation_duration_seconds",
    "Time one evaluation took (Prometheus queries, engine, Auto mode)",
    "histogram",
    buckets=DURATION_BUCKETS,
)
QUERY_DURATION = Histogram(
    "rightsizer_prometheus_query_duration_seconds",
    "Prometheus API requests (queries, range queries, label values) and their latency",
    ["result"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
CHANGES = SERIES.family(
    "rightsizer_changes",
    "Auto mode, per workload and evaluation: changes applied, blocked, rolled back",
    "counter",
    ("outcome",),
)
PROMETHEUS_UNREACHABLE, INVALID_POLICY, ERROR = "PrometheusUnreachable", "InvalidPolicy", "Error"
APPLIED, BLOCKED, ROLLED_BACK = "applied", "blocked", "rolled_back"


def serve(host: str, port: int) -> None:
    """Serve ``/metrics`` from a daemon thread; ``ConfigurationError`` if the address cannot be had."""
    try:
        running = version("rightsizer")
    except PackageNotFoundError:
        running = "unknown"
    BUILD_INFO.labels(running).set(1)
    try:
        start_http_server(port, host, registry=REGISTRY)
    except OSError as error:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {error.strerror}") from None


def observe_query(seconds: float, ok: bool) -> None:
    """One request to Prometheus (``PrometheusSource.on_query``)."""
    QUERY_DURATION.labels("success" if ok else "failure").observe(seconds)


def observe_evaluation(namespace: str, policy: str, seconds: float, failure: str | None) -> None:
    SERIES.inc(EVALUATIONS, (namespace, policy))
    SERIES.observe(EVALUATION_DURATION, (namespace, policy), seconds)
    if failure is not None:
        SERIES.inc(EVALUATION_FAILURES, (namespace, policy), failure)


def failure_of(status: dict[str, Any]) -> str | None:
    """Why an evaluation that wrote ``status`` made no fresh recommendations, or None."""
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    if conditions.get(cond.RECOMMENDATIONS_READY, {}).get("reason") == INVALID_POLICY:
        return INVALID_POLICY
    if conditions.get(cond.PROMETHEUS_REACHABLE, {}).get("status") == "False":
        return PROMETHEUS_UNREACHABLE
    return None


def count_changes(namespace: str, policy: str, changes: Iterable[WorkloadChange]) -> None:
    """Auto mode's outcome for each workload of one evaluation."""
    for change in changes:
        happened = {APPLIED: change.applied, BLOCKED: change.blocked, ROLLED_BACK: change.rolled_back}
        for outcome in (outcome for outcome, what in happened.items() if what):
            SERIES.inc(CHANGES, (namespace, policy), outcome)


def forget(namespace: str, policy: str) -> None:
    """Remove every series of one policy (it was deleted)."""
    SERIES.forget((namespace, policy))

"""The operator's metrics (controller/metrics.py, controller/policy_gauges.py) without a cluster:
what each recorder sets, the gauges derived from a policy's status, series dropped when a container
leaves a policy and when the policy is deleted, the query hook of ``PrometheusSource`` against a
closed port, ``/metrics`` served over HTTP, and the ``--metrics-listen`` flag."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest

from rightsizer.apply import APPLIED_AT
from rightsizer.cli import build_parser
from rightsizer.controller import metrics, policy_gauges
from rightsizer.controller.autoapply import WorkloadChange
from rightsizer.controller.handlers import forget_policy
from rightsizer.errors import ConfigurationError
from rightsizer.options import listen_address
from rightsizer.settings import METRICS_LISTEN
from rightsizer.source import PrometheusSource, PrometheusUnavailable
from rightsizer.workload import WorkloadView
from tests.support.operator import free_port


def value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def series_of(namespace: str, policy: str) -> list[tuple[str, dict[str, str]]]:
    """Every sample in the registry labelled with this policy."""
    return [
        (sample.name, sample.labels)
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get("policy") == policy
    ]


def policy_body(namespace: str, name: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "interval": "10m"},
        "status": status,
    }


def entry(container: str, current: dict[str, Any], recommended: dict[str, Any] | None) -> dict[str, Any]:
    item = {"kind": "Deployment", "name": "web", "container": container, "current": current}
    if recommended is not None:
        item["recommended"] = recommended
    return item


def deployment(annotations: dict[str, str]) -> WorkloadView:
    return WorkloadView.from_body(
        {
            "kind": "Deployment",
            "metadata": {"namespace": "shop", "name": "web", "annotations": annotations},
            "spec": {"template": {"spec": {"containers": [{"name": "app"}]}}},
        }
    )


CURRENT = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
RECOMMENDED = {"requests": {"cpu": "750m", "memory": "384Mi"}, "limits": {"memory": "576Mi"}}
CONDITIONS = [
    {"type": "RecommendationsReady", "status": "True", "reason": "RecommendationsComputed"},
    {"type": "PrometheusReachable", "status": "False", "reason": "QueryFailed"},
]


def test_the_gauges_of_a_policy_come_from_its_status_and_its_targets_annotations() -> None:
    body = policy_body(
        "shop",
        "web",
        lastEvaluationTime="2026-01-02T03:04:05Z",
        conditions=CONDITIONS,
        recommendations=[entry("app", CURRENT, RECOMMENDED), entry("init", {"requests": {}}, None)],
        monthlyCost={"current": 98.39, "recommended": 25.12, "difference": -73.27},
        observedOOMKills=[
            {"kind": "Deployment", "name": "web", "container": "app", "finishedAt": "2026-01-02T01:00:00Z"},
            {"kind": "Deployment", "name": "web", "container": "app", "finishedAt": "2026-01-02T02:00:00Z"},
        ],
    )
    policy_gauges.observe(body, [deployment({APPLIED_AT: "2026-01-01T12:00:00Z"})])
    policy = {"namespace": "shop", "policy": "web"}
    web = {**policy, "workload_kind": "Deployment", "workload": "web"}
    app = {**web, "container": "app"}
    assert value("rightsizer_policy_last_evaluation_timestamp_seconds", **policy) == 1767323045
    assert value("rightsizer_policy_interval_seconds", **policy) == 600
    assert value("rightsizer_policy_condition", **policy, condition="RecommendationsReady") == 1
    assert value("rightsizer_policy_condition", **policy, condition="PrometheusReachable") == 0
    assert value("rightsizer_container_current", **app, resource="cpu", field="limit") == 2
    assert value("rightsizer_container_current", **app, resource="memory", field="request") == 2**30
    assert value("rightsizer_container_recommended", **app, resource="cpu", field="request") == 0.75
    assert value("rightsizer_container_recommended", **app, resource="memory", field="limit") == 576 * 2**20
    assert value("rightsizer_container_recommended", **app, resource="cpu", field="limit") is None
    assert value("rightsizer_container_last_oom_kill_timestamp_seconds", **app) == 1767319200  # the later
    assert value("rightsizer_workload_last_change_timestamp_seconds", **web) == 1767268800
    assert value("rightsizer_policy_monthly_cost", **policy, requests="current") == 98.39
    assert value("rightsizer_policy_monthly_cost", **policy, requests="recommended") == 25.12
    assert value("rightsizer_policy_monthly_cost_difference", **policy) == -73.27
    assert (
        value("rightsizer_container_current", **web, container="init", resource="cpu", field="request")
        is None
    )


def test_a_container_that_left_the_policy_loses_its_series_and_a_deleted_policy_all_of_them() -> None:
    first = policy_body("team", "api", recommendations=[entry("a", CURRENT, None), entry("b", CURRENT, None)])
    other = policy_body("team", "other", recommendations=[entry("a", CURRENT, None)])
    policy_gauges.observe(first, [])
    policy_gauges.observe(other, [])
    metrics.observe_evaluation("team", "api", 0.5, None)
    metrics.count_changes("team", "api", [WorkloadChange(applied="changed")])
    containers = {name for name, labels in series_of("team", "api") if "container" in labels}
    assert containers == {"rightsizer_container_current"}
    assert {labels["container"] for _, labels in series_of("team", "api") if "container" in labels} == {
        "a",
        "b",
    }

    policy_gauges.observe(policy_body("team", "api", recommendations=[entry("a", CURRENT, None)]), [])
    assert {labels["container"] for _, labels in series_of("team", "api") if "container" in labels} == {"a"}

    forget_policy("team", "api")
    assert series_of("team", "api") == []
    assert value("rightsizer_policy_last_evaluation_timestamp_seconds", namespace="team", policy="other")


def test_evaluations_failures_and_changes_are_counted_per_policy() -> None:
    policy = {"namespace": "count", "policy": "p"}
    unreachable = {"conditions": CONDITIONS}
    invalid = {
        "conditions": [
            {"type": "RecommendationsReady", "status": "False", "reason": "InvalidPolicy"},
            *CONDITIONS[1:],
        ]
    }
    assert metrics.failure_of({"conditions": CONDITIONS[:1]}) is None
    assert metrics.failure_of(unreachable) == metrics.PROMETHEUS_UNREACHABLE
    assert metrics.failure_of(invalid) == metrics.INVALID_POLICY  # whatever Prometheus did before
    for seconds, status in ((0.2, {"conditions": CONDITIONS[:1]}), (0.3, unreachable), (7.0, unreachable)):
        metrics.observe_evaluation("count", "p", seconds, metrics.failure_of(status))
    assert value("rightsizer_evaluations_total", **policy) == 3
    assert value("rightsizer_evaluation_failures_total", **policy, reason="PrometheusUnreachable") == 2
    assert value("rightsizer_evaluation_duration_seconds_sum", **policy) == pytest.approx(7.5)
    assert value("rightsizer_evaluation_duration_seconds_bucket", **policy, le="0.25") == 1
    assert value("rightsizer_evaluation_duration_seconds_bucket", **policy, le="5.0") == 2
    assert value("rightsizer_evaluation_duration_seconds_bucket", **policy, le="+Inf") == 3
    assert value("rightsizer_evaluation_duration_seconds_count", **policy) == 3
    changes = [
        WorkloadChange(applied="x"),
        WorkloadChange(blocked="quota"),
        WorkloadChange(blocked="node"),
        WorkloadChange(rolled_back="OOM killed"),
        WorkloadChange(),  # nothing to do: not counted
    ]
    metrics.count_changes("count", "p", changes)
    assert value("rightsizer_changes_total", **policy, outcome="applied") == 1
    assert value("rightsizer_changes_total", **policy, outcome="blocked") == 2
    assert value("rightsizer_changes_total", **policy, outcome="rolled_back") == 1


def test_every_request_to_prometheus_is_observed_with_its_result() -> None:
    seen: list[tuple[float, bool]] = []
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_seconds=5)
    source.on_query = lambda seconds, ok: seen.append((seconds, ok))
    with pytest.raises(PrometheusUnavailable):
        source.check()
    assert len(seen) == 1 and seen[0][1] is False and seen[0][0] >= 0

    before = value("rightsizer_prometheus_query_duration_seconds_count", result="failure") or 0
    metrics.observe_query(0.01, False)
    metrics.observe_query(0.02, True)
    assert value("rightsizer_prometheus_query_duration_seconds_count", result="failure") == before + 1
    assert value("rightsizer_prometheus_query_duration_seconds_count", result="success")


def test_metrics_are_served_over_http_with_the_process_collectors() -> None:
    port = free_port()
    metrics.serve("127.0.0.1", port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'rightsizer_build_info{version="' in text
    assert "process_resident_memory_bytes" in text


def test_the_metrics_flag_defaults_to_the_setting_and_can_be_turned_off() -> None:
    parser = build_parser()
    base = ["operator", "--prometheus-url", "http://127.0.0.1:9"]
    assert parser.parse_args(base).metrics_listen == listen_address(METRICS_LISTEN)
    assert parser.parse_args([*base, "--metrics-listen", "127.0.0.1:9100"]).metrics_listen == (
        "127.0.0.1",
        9100,
    )
    assert parser.parse_args([*base, "--metrics-listen", ":9100"]).metrics_listen == ("0.0.0.0", 9100)
    assert parser.parse_args([*base, "--metrics-listen", "off"]).metrics_listen is None
    for bad in ("9100", "host:port", "127.0.0.1:70000"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([*base, "--metrics-listen", bad])
        assert exit_.value.code == 2


def test_a_metrics_port_in_use_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            metrics.serve("127.0.0.1", port)

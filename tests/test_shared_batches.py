"""Policies of one namespace share one Prometheus batch per interval (``controller/batches.py``):
many policies evaluated at once, from threads as Kopf runs them, against the real demo Prometheus,
with the queries counted by Prometheus itself."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rightsizer.controller.batches import SharedBatches
from rightsizer.controller.evaluate import evaluate
from rightsizer.controller.kube import KubernetesCluster
from rightsizer.controller.outcome import Outcome, PolicyObject
from rightsizer.promql import LabelConfig
from rightsizer.source import PrometheusSource
from rightsizer.workload import WorkloadView
from rightsizer_demo.manifests import deployment_manifests
from tests.support.prometheus import queries_run, refusing_url

pytestmark = pytest.mark.prometheus

BATCH_QUERIES = 14
"""docs/metrics.md: "A namespace's batch is 14 queries (5 range, 9 instant) whatever its pods"."""
POLICIES = 12
INTERVAL = "5m"


@pytest.fixture(scope="module")
def views(demo_workloads) -> dict[str, list[WorkloadView]]:
    """The demo's Deployments by namespace."""
    by_namespace: dict[str, list[WorkloadView]] = {}
    for manifest in deployment_manifests(demo_workloads):
        body = copy.deepcopy(manifest)
        body["metadata"].update(uid=f"uid-{body['metadata']['name']}", generation=1)
        by_namespace.setdefault(body["metadata"]["namespace"], []).append(WorkloadView.from_body(body))
    return by_namespace


def evaluate_all(
    batches: SharedBatches,
    views: dict[str, list[WorkloadView]],
    policies: list[tuple[str, dict[str, Any]]],
    now: datetime,
) -> list[Outcome]:
    """Every (namespace, spec) evaluated at ``now``, all at once from as many threads."""

    def one(index: int) -> Outcome:
        namespace, spec = policies[index]
        policy = PolicyObject(f"p{index}", namespace, f"uid-{index}", 1, spec, {})
        cluster = KubernetesCluster()  # Recommend mode: never called
        return evaluate(policy, views[namespace], [], batches.source, cluster, LabelConfig(), now, batches)

    with ThreadPoolExecutor(max_workers=len(policies)) as pool:
        return list(pool.map(one, range(len(policies))))


def ready(outcome: Outcome) -> bool:
    """Evaluated from Prometheus' answer (a young workload may still have too little history)."""
    reasons = {c["type"]: c["reason"] for c in outcome.status["conditions"]}
    return reasons["PrometheusReachable"] == "QuerySucceeded" and reasons["RecommendationsReady"] in (
        "RecommendationsComputed",
        "InsufficientData",
    )


def test_policies_of_one_namespace_evaluated_together_send_one_batch(demo_prometheus, views):
    batches = SharedBatches(PrometheusSource(demo_prometheus.url))
    targets = ["web", "cart", "search", "checkout"]
    policies = [
        ("shop", {"targetRef": {"name": targets[i % 4]}, "interval": INTERVAL}) for i in range(POLICIES)
    ]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    before = queries_run(demo_prometheus.url)
    outcomes = evaluate_all(batches, views, policies, now)
    assert queries_run(demo_prometheus.url) - before == BATCH_QUERIES
    assert all(ready(o) and o.status["readyContainers"] != "0/0" for o in outcomes)
    assert (batches.fetches, batches.shared) == (1, POLICIES - 1)
    # The same recommendations as a policy that fetched alone.
    alone = evaluate(
        PolicyObject("alone", "shop", "uid-alone", 1, policies[0][1], {}),
        views["shop"],
        [],
        PrometheusSource(demo_prometheus.url),
        KubernetesCluster(),
        LabelConfig(),
        now.replace(minute=now.minute - now.minute % 5),
    )
    assert outcomes[0].status["recommendations"] == alone.status["recommendations"]


def test_the_count_per_interval_depends_on_the_namespaces_not_on_the_policies(demo_prometheus, views):
    batches = SharedBatches(PrometheusSource(demo_prometheus.url))
    spec = {"selector": {}, "interval": INTERVAL}
    policies = [(("shop", "legacy", "batch")[i % 3], spec) for i in range(POLICIES)]
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % 5)
    before = queries_run(demo_prometheus.url)
    # Within one interval (jittered evaluations): 3 namespaces, 3 batches.
    evaluate_all(batches, views, policies, start + timedelta(seconds=10))
    evaluate_all(batches, views, policies, start + timedelta(minutes=4, seconds=50))
    assert queries_run(demo_prometheus.url) - before == 3 * BATCH_QUERIES
    # The next interval fetches again; the previous interval's batches have expired.
    outcomes = evaluate_all(batches, views, policies, start + timedelta(minutes=5, seconds=1))
    assert queries_run(demo_prometheus.url) - before == 2 * 3 * BATCH_QUERIES
    assert all(ready(o) for o in outcomes)
    assert len(batches) == 3


def test_another_history_window_is_another_batch(demo_prometheus, views):
    batches = SharedBatches(PrometheusSource(demo_prometheus.url))
    week = {"selector": {}, "interval": INTERVAL, "history": {"window": "7d"}}
    two_days = {"selector": {}, "interval": INTERVAL, "history": {"window": "2d"}}
    policies = [("shop", week if i % 2 else two_days) for i in range(POLICIES)]
    before = queries_run(demo_prometheus.url)
    evaluate_all(batches, views, policies, datetime.now(UTC))
    assert queries_run(demo_prometheus.url) - before == 2 * BATCH_QUERIES


def test_a_failed_fetch_fails_its_waiters_and_is_not_kept(views):
    with refusing_url() as url:
        fetch_fails_and_is_not_kept(SharedBatches(PrometheusSource(url)), views)


def fetch_fails_and_is_not_kept(batches: SharedBatches, views: dict[str, list[WorkloadView]]) -> None:
    policies = [("shop", {"selector": {}, "interval": INTERVAL}) for _ in range(4)]
    now = datetime.now(UTC)
    for attempt in (1, 2):
        outcomes = evaluate_all(batches, views, policies, now)
        for outcome in outcomes:
            reachable = next(c for c in outcome.status["conditions"] if c["type"] == "PrometheusReachable")
            assert reachable["reason"] == "QueryFailed"
        assert len(batches) == 0
        # Each attempt fetches once (the others waited for it), and the failure is not cached.
        assert batches.fetches == attempt

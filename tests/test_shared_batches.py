"""Policies of one namespace share one Prometheus batch per interval, collected once
(``controller/batches.py``): many policies evaluated at once, from threads as Kopf runs them, against
the real demo Prometheus, with the queries counted by Prometheus itself; and the recommendations made
through the shared batch equal those of policies evaluated alone."""

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
from rightsizer.duration import parse_duration
from rightsizer.pods import PodView
from rightsizer.promql import LabelConfig, QueryScope
from rightsizer.settings import CPU_WINDOW_SECONDS
from rightsizer.source import PrometheusSource
from rightsizer.workload import WorkloadView
from rightsizer_demo.manifests import deployment_manifests
from tests.support.prometheus import queries_run, refusing_url

pytestmark = pytest.mark.prometheus

POLICIES = 12
INTERVAL = "5m"


def batch_queries(url: str, namespace: str, end: datetime, window: str = "14d") -> int:
    """What one batch of ``namespace`` costs at ``end`` (its interval's start), fetched alone:
    docs/metrics.md, "Queries" (13 queries, and a second round for what they call for)."""
    source = PrometheusSource(url)
    scope = QueryScope((namespace,), parse_duration(window), LabelConfig(), CPU_WINDOW_SECONDS)
    source.fetch(scope, interval_start(end).timestamp())
    return source.queries_sent


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
    pods: list[PodView] | None = None,
) -> list[Outcome]:
    """Every (namespace, spec) evaluated at ``now``, all at once from as many threads."""

    def one(index: int) -> Outcome:
        namespace, spec = policies[index]
        its_pods = [p for p in pods or [] if p.namespace == namespace]
        return evaluate_one(batches, views, namespace, spec, now, its_pods, index)

    with ThreadPoolExecutor(max_workers=len(policies)) as pool:
        return list(pool.map(one, range(len(policies))))


def evaluate_one(
    batches: SharedBatches | None,
    views: dict[str, list[WorkloadView]],
    namespace: str,
    spec: dict[str, Any],
    now: datetime,
    pods: list[PodView],
    index: int = 0,
    source: PrometheusSource | None = None,
) -> Outcome:
    """One policy's evaluation, through ``batches`` or, without, alone on ``source``."""
    policy = PolicyObject(f"p{index}", namespace, f"uid-{index}", 1, spec, {})
    cluster = KubernetesCluster()  # Recommend mode: never called
    prometheus = batches.source if batches is not None else source
    assert prometheus is not None
    return evaluate(policy, views[namespace], pods, prometheus, cluster, LabelConfig(), now, batches)


def interval_start(now: datetime, minutes: int = 5) -> datetime:
    """Where the shared batch of an ``interval: 5m`` policy evaluated at ``now`` ends."""
    return now.replace(minute=now.minute - now.minute % minutes, second=0, microsecond=0)


def demo_pods(url: str, namespace: str, now: datetime) -> list[PodView]:
    """The namespace's pods with history, as the API would list them: owned by their Deployment."""
    scope = QueryScope((namespace,), 3 * 24 * 3600, LabelConfig())
    names = PrometheusSource(url).pods(scope, now.timestamp())
    return [PodView(namespace, name, "Deployment", name.rsplit("-", 2)[0]) for name in names]


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
    assert queries_run(demo_prometheus.url) - before == batch_queries(demo_prometheus.url, "shop", now)
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
    one_each = sum(
        batch_queries(demo_prometheus.url, namespace, start) for namespace in ("shop", "legacy", "batch")
    )
    before = queries_run(demo_prometheus.url)
    # Within one interval (jittered evaluations): 3 namespaces, 3 batches.
    evaluate_all(batches, views, policies, start + timedelta(seconds=10))
    evaluate_all(batches, views, policies, start + timedelta(minutes=4, seconds=50))
    assert queries_run(demo_prometheus.url) - before == one_each
    # The next interval fetches again; the previous interval's batches have expired.
    after = start + timedelta(minutes=5, seconds=1)
    one_each_after = sum(
        batch_queries(demo_prometheus.url, namespace, after) for namespace in ("shop", "legacy", "batch")
    )
    before = queries_run(demo_prometheus.url)
    outcomes = evaluate_all(batches, views, policies, after)
    assert queries_run(demo_prometheus.url) - before == one_each_after
    assert all(ready(o) for o in outcomes)
    assert len(batches) == 3


def test_another_history_window_is_another_batch(demo_prometheus, views):
    batches = SharedBatches(PrometheusSource(demo_prometheus.url))
    week = {"selector": {}, "interval": INTERVAL, "history": {"window": "7d"}}
    two_days = {"selector": {}, "interval": INTERVAL, "history": {"window": "2d"}}
    policies = [("shop", week if i % 2 else two_days) for i in range(POLICIES)]
    now = datetime.now(UTC)
    both = batch_queries(demo_prometheus.url, "shop", now, "7d") + batch_queries(
        demo_prometheus.url, "shop", now, "2d"
    )
    before = queries_run(demo_prometheus.url)
    evaluate_all(batches, views, policies, now)
    assert queries_run(demo_prometheus.url) - before == both


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


SPECS = [
    {"targetRef": {"name": "web"}, "interval": INTERVAL},
    {"targetRef": {"name": "web"}, "interval": INTERVAL, "profile": "background"},
    {"targetRef": {"name": "cart"}, "interval": INTERVAL, "memory": {"headroom": 0.3}},
    {"targetRef": {"name": "search"}, "interval": INTERVAL, "cpu": {"noLimit": True}},
    {
        "selector": {},
        "interval": INTERVAL,
        "containerPolicies": [{"containerName": "log-shipper", "mode": "Off"}],
    },
]


def conditions(outcome: Outcome) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c["reason"], c["message"]) for c in outcome.status["conditions"]]


def test_recommendations_through_the_shared_batch_equal_those_computed_alone(demo_prometheus, views):
    now = datetime.now(UTC)
    end = interval_start(now)
    pods = demo_pods(demo_prometheus.url, "shop", end)
    assert len(pods) > 5
    batches = SharedBatches(PrometheusSource(demo_prometheus.url))
    shared = evaluate_all(batches, views, [("shop", spec) for spec in SPECS], now, pods)
    assert (batches.fetches, batches.shared) == (1, len(SPECS) - 1)
    alone_source = PrometheusSource(demo_prometheus.url)
    for index, (spec, outcome) in enumerate(zip(SPECS, shared, strict=True)):
        alone = evaluate_one(None, views, "shop", spec, end, pods, index, alone_source)
        assert outcome.status["recommendations"] == alone.status["recommendations"], spec
        assert outcome.status["readyContainers"] == alone.status["readyContainers"] != "0/0"
        assert conditions(outcome) == conditions(alone)
    by_spec = [{r["name"]: r for r in o.status["recommendations"]} for o in shared]
    # The policies differ, and so do their recommendations for the same container.
    assert by_spec[0]["web"]["recommended"] != by_spec[1]["web"]["recommended"]


def test_other_owners_of_the_batch_pods_get_a_collection_of_their_own(demo_prometheus, views):
    now = datetime.now(UTC)
    end = interval_start(now)
    pods = demo_pods(demo_prometheus.url, "shop", end)
    web = sorted(p.name for p in pods if p.owner_name == "web")
    # The API says one of web's pods is another workload's (as a pod's owner may be, gone or renamed).
    moved = [p if p.name != web[0] else PodView("shop", p.name, "StatefulSet", "web-db") for p in pods]
    # A pod with no history yet changes nothing the batch says.
    new = [*pods, PodView("shop", "web-7d9f8b6c5d-x2x4q", "Deployment", "web")]
    spec = {"targetRef": {"name": "web"}, "interval": INTERVAL}
    batches = SharedBatches(PrometheusSource(demo_prometheus.url))
    one = batch_queries(demo_prometheus.url, "shop", now)
    before = queries_run(demo_prometheus.url)
    first = evaluate_one(batches, views, "shop", spec, now, pods)
    with_new = evaluate_one(batches, views, "shop", spec, now, new)
    assert (batches.fetches, batches.shared) == (1, 1)
    assert with_new.status["recommendations"] == first.status["recommendations"]
    other = evaluate_one(batches, views, "shop", spec, now, moved)
    assert (batches.fetches, batches.shared) == (2, 1)
    assert queries_run(demo_prometheus.url) - before == 2 * one
    alone = evaluate_one(None, views, "shop", spec, end, moved, source=PrometheusSource(demo_prometheus.url))
    assert other.status["recommendations"] == alone.status["recommendations"]
    pods_seen = [r["evidence"]["pods"] for r in other.status["recommendations"]]
    assert pods_seen == [r["evidence"]["pods"] - 1 for r in first.status["recommendations"]]

"""One evaluation, as the operator runs it, without Kopf: ``evaluate`` against a fake ``Cluster``
(it records what would be patched and serves LimitRanges, quotas and nodes; changes in flight are
``tests/test_change_machine.py``'s, on a fake that keeps its objects) and the real demo Prometheus;
and ``is_due``, the schedule of evaluations."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from rightsizer.apply import APPLIED_AT
from rightsizer.controller.evaluate import evaluate
from rightsizer.controller.kube import PatchConflict
from rightsizer.controller.outcome import Outcome, PolicyObject
from rightsizer.controller.schedule import is_due, jitter, wait_seconds
from rightsizer.cost import Prices
from rightsizer.pods import PodView
from rightsizer.promql import LabelConfig
from rightsizer.quantity import parse
from rightsizer.source import PrometheusSource
from rightsizer.timestamps import format_time
from rightsizer.workload import WorkloadView
from rightsizer_demo.manifests import deployment_manifests
from tests.support.prometheus import refusing_url

pytestmark = pytest.mark.prometheus


@dataclass
class FakeCluster:
    """``Cluster`` without an API server: what exists is given, what would be patched is recorded."""

    limit_range_items: list[dict[str, Any]] = field(default_factory=list)
    quota_items: list[dict[str, Any]] = field(default_factory=list)
    node_items: list[dict[str, Any]] = field(default_factory=list)
    budget_items: list[dict[str, Any]] = field(default_factory=list)
    resizes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    patches: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    fail_with: Exception | None = None
    autoscaler_items: dict[str, dict[str, Any]] = field(default_factory=dict)
    autoscaler_fail_with: Exception | None = None

    def limit_ranges(self, namespace: str) -> list[dict[str, Any]]:
        self.reads.append("limit_ranges")
        return self.limit_range_items

    def resource_quotas(self, namespace: str) -> list[dict[str, Any]]:
        self.reads.append("quotas")
        return self.quota_items

    def nodes(self) -> list[dict[str, Any]]:
        self.reads.append("nodes")
        return self.node_items

    def patch_workload(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.patches.append((kind, namespace, name, patch))
        return str(len(self.patches) + 7)

    def pod_disruption_budgets(self, namespace: str) -> list[dict[str, Any]]:
        self.reads.append("budgets")
        return self.budget_items

    def resize_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        self.resizes.append((name, operations))

    def evict_pod(self, namespace: str, name: str, uid: str) -> None:
        raise AssertionError("not evicted in these tests")

    def read_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """Read after a refused patch (to retry it): whatever refused it refuses this too."""
        if self.fail_with is not None:
            raise self.fail_with
        raise AssertionError("not read in these tests")

    def label_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        raise AssertionError("not labelled in these tests")

    def read_replicaset(self, namespace: str, name: str) -> dict[str, Any]:
        raise AssertionError("not read in these tests")

    def patch_replicaset(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        raise AssertionError("not patched in these tests")

    def controller_revisions(self, namespace: str) -> list[dict[str, Any]]:
        raise AssertionError("not read in these tests")

    def read_autoscaler(self, namespace: str, name: str) -> dict[str, Any]:
        if name not in self.autoscaler_items:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.autoscaler_items[name])

    def patch_autoscaler(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        """Recorded among ``patches`` (kind HorizontalPodAutoscaler), so their order shows; a JSON
        patch of ``test`` and ``replace`` operations applied to the HPA as the API server would."""
        if self.autoscaler_fail_with is not None:
            raise self.autoscaler_fail_with
        body = self.autoscaler_items[name]
        for operation in operations:
            *parents, last = operation["path"].strip("/").split("/")
            node = body
            for part in parents:
                node = node[int(part)] if part.isdigit() else node[part]
            if operation["op"] == "test" and node[last] != operation["value"]:
                raise PatchConflict(f"HorizontalPodAutoscaler {name}: test failed")
            if operation["op"] == "replace":
                node[last] = operation["value"]
        self.patches.append(("HorizontalPodAutoscaler", namespace, name, {"operations": operations}))


@pytest.fixture(scope="module")
def manifests(demo_workloads) -> dict[str, dict[str, Any]]:
    """The demo's Deployments, settled (their controller has rolled every replica out)."""
    settled = {}
    for manifest in deployment_manifests(demo_workloads):
        body = copy.deepcopy(manifest)
        replicas = body["spec"]["replicas"]
        body["metadata"].update(uid=f"uid-{body['metadata']['name']}", resourceVersion="7", generation=1)
        body["status"] = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas}
        settled[f"{body['metadata']['namespace']}/{body['metadata']['name']}"] = body
    return settled


def deployments(manifests: dict[str, dict[str, Any]], namespace: str, **changes: Any) -> list[WorkloadView]:
    """The namespace's Deployments; ``changes`` maps a name to a function that edits its body."""
    views = []
    for key, body in manifests.items():
        if key.startswith(f"{namespace}/"):
            body = copy.deepcopy(body)
            edit = changes.get(body["metadata"]["name"])
            if edit is not None:
                edit(body)
            views.append(WorkloadView.from_body(body))
    return views


NOW = datetime.now(UTC).replace(microsecond=0)


def policy(
    spec: dict[str, Any], status: dict[str, Any] | None = None, namespace: str = "shop"
) -> PolicyObject:
    return PolicyObject("p", namespace, "uid-p", 3, spec, status or {})


def run(
    prometheus: PrometheusSource,
    spec: dict[str, Any],
    views: list[WorkloadView],
    cluster: FakeCluster | None = None,
    status: dict[str, Any] | None = None,
    pods: list[PodView] | None = None,
    namespace: str = "shop",
) -> Outcome:
    return evaluate(
        policy(spec, status, namespace),
        views,
        pods or [],
        prometheus,
        cluster or FakeCluster(),
        LabelConfig(),
        NOW,
    )


def conditions(outcome: Outcome) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in outcome.status["conditions"]}


def entries(outcome: Outcome) -> dict[str, dict[str, Any]]:
    return {f"{r['name']}/{r['container']}": r for r in outcome.status["recommendations"]}


@pytest.fixture(scope="module")
def prometheus(demo_prometheus) -> PrometheusSource:
    return PrometheusSource(demo_prometheus.url)


AUTO = {"mode": "Auto", "auto": {"maxStepPercent": 300}}


# ---------------------------------------------------------------- Recommend mode


def test_recommend_mode_writes_every_container_and_patches_nothing(prometheus, manifests):
    cluster = FakeCluster()
    outcome = run(prometheus, {"targetRef": {"name": "web"}}, deployments(manifests, "shop"), cluster)
    status = outcome.status
    assert set(entries(outcome)) == {"web/app", "web/log-shipper"}
    assert status["readyContainers"] == "2/2" and status["targetCount"] == 1
    assert status["observedGeneration"] == 3 and status["lastEvaluationTime"] == format_time(NOW)
    assert status["consecutiveFailures"] == 0
    found = conditions(outcome)
    assert found["PrometheusReachable"]["status"] == "True"
    assert found["RecommendationsReady"]["reason"] == "RecommendationsComputed"
    assert found["Applied"]["reason"] == "RecommendMode"
    assert cluster.patches == [] and cluster.reads == []
    assert outcome.events == []


def test_the_status_says_what_the_targets_requests_cost_a_month(prometheus, manifests):
    """By hand: web runs 3 replicas of app (1 core, 1Gi) and log-shipper (100m, 128Mi): 3 x 730 h x
    (1.1 cores x 0.04048 + 1.125 GiB x 0.004445) = 108.47 a month today at the default prices."""
    outcome = run(prometheus, {"targetRef": {"name": "web"}}, deployments(manifests, "shop"))
    cost = outcome.status["monthlyCost"]
    assert cost["current"] == pytest.approx(108.47, abs=0.01)
    recommended = 0.0
    for entry in outcome.status["recommendations"]:
        requests = entry["recommended"]["requests"]
        cores, gib = float(parse(requests["cpu"])), float(parse(requests["memory"])) / 2**30
        recommended += 3 * 730 * (cores * 0.04048 + gib * 0.004445)
    assert cost["recommended"] == pytest.approx(recommended, abs=0.01)
    assert cost["difference"] == pytest.approx(cost["recommended"] - cost["current"], abs=0.01)
    assert cost["difference"] < 0  # web is over-provisioned
    policy_object = policy({"targetRef": {"name": "web"}})
    dearer = evaluate(
        policy_object, deployments(manifests, "shop"), [], prometheus, FakeCluster(), LabelConfig(), NOW,
        prices=Prices(cpu_per_core_hour=1.0, memory_per_gib_hour=0.0),
    )  # fmt: skip
    assert dearer.status["monthlyCost"]["current"] == pytest.approx(3 * 730 * 1.1)


def test_a_policy_that_cannot_be_read_says_why(prometheus, manifests):
    outcome = run(
        prometheus, {"targetRef": {"name": "web"}, "interval": "often"}, deployments(manifests, "shop")
    )
    assert conditions(outcome)["RecommendationsReady"]["reason"] == "InvalidPolicy"
    assert "spec.interval" in conditions(outcome)["RecommendationsReady"]["message"]
    assert outcome.status["recommendations"] == []
    assert [e.reason for e in outcome.events] == ["InvalidPolicy"]


def test_no_target_is_said_in_both_conditions(prometheus, manifests):
    outcome = run(
        prometheus, {"selector": {"matchLabels": {"app": "nothing"}}}, deployments(manifests, "shop")
    )
    found = conditions(outcome)
    assert found["RecommendationsReady"]["reason"] == "NoTargets"
    assert found["InsufficientData"]["reason"] == "NoTargets"
    assert "matches no workload" in found["RecommendationsReady"]["message"]


def test_a_young_workload_is_insufficient_data(prometheus, manifests):
    outcome = run(prometheus, {"targetRef": {"name": "new-feature"}}, deployments(manifests, "shop"))
    found = conditions(outcome)
    assert found["InsufficientData"]["status"] == "True"
    assert "new-feature/app: insufficient history" in found["InsufficientData"]["message"]
    assert outcome.status["readyContainers"] == "0/1"
    assert "recommended" not in entries(outcome)["new-feature/app"]


def test_a_container_with_mode_off_is_listed_and_never_changed(prometheus, manifests):
    spec = {
        **AUTO,
        "targetRef": {"name": "web"},
        "containerPolicies": [{"containerName": "log-shipper", "mode": "Off"}],
    }
    cluster = FakeCluster()
    outcome = run(prometheus, spec, deployments(manifests, "shop"), cluster)
    assert entries(outcome)["web/log-shipper"]["autoApply"] == "left alone: containerPolicies mode Off"
    assert outcome.status["readyContainers"] == "1/1"  # only app is evaluated
    (_, _, _, patch) = cluster.patches[0]
    assert [c["name"] for c in patch["spec"]["template"]["spec"]["containers"]] == ["app"]


# ---------------------------------------------------------------- Prometheus unreachable


@pytest.fixture
def down() -> Iterator[PrometheusSource]:
    """A Prometheus URL that refuses connections."""
    with refusing_url() as url:
        yield PrometheusSource(url)


def test_prometheus_unreachable_keeps_the_last_recommendations_and_patches_nothing(
    prometheus, manifests, down
):
    first = run(prometheus, {**AUTO, "targetRef": {"name": "cart"}}, deployments(manifests, "shop"))
    cluster = FakeCluster()
    outcome = run(
        down, {**AUTO, "targetRef": {"name": "cart"}}, deployments(manifests, "shop"), cluster, first.status
    )
    found = conditions(outcome)
    assert found["PrometheusReachable"]["reason"] == "QueryFailed"
    assert "cannot connect to Prometheus" in found["PrometheusReachable"]["message"]
    assert outcome.status["recommendations"] == first.status["recommendations"]
    assert outcome.status["consecutiveFailures"] == 1
    assert cluster.patches == []
    assert [e.reason for e in outcome.events] == ["PrometheusUnreachable"]
    # Still down: counted again, but the Event was posted once, when it became unreachable.
    again = run(
        down, {**AUTO, "targetRef": {"name": "cart"}}, deployments(manifests, "shop"), cluster, outcome.status
    )
    assert again.status["consecutiveFailures"] == 2
    assert again.events == [] and cluster.patches == []


# ---------------------------------------------------------------- Auto mode


def test_auto_mode_patches_the_confident_part_of_the_recommendation_and_says_so(prometheus, manifests):
    cluster = FakeCluster()
    outcome = run(
        prometheus, {**AUTO, "targetRef": {"name": "cart"}}, deployments(manifests, "shop"), cluster
    )
    ((kind, namespace, name, patch),) = cluster.patches
    assert (kind, namespace, name) == ("Deployment", "shop", "cart")
    assert patch["metadata"]["resourceVersion"] == "7"
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    # Auto mode applies the part of the change the evidence is sure of (here a little short of the
    # recommendation's CPU: the days of the demo history differ).
    confident = entries(outcome)["cart/app"]["confident"]
    assert confident != entries(outcome)["cart/app"]["recommended"]
    assert container["resources"]["requests"] == confident["requests"]
    assert conditions(outcome)["Applied"]["status"] == "True"
    assert entries(outcome)["cart/app"]["autoApply"].startswith(f"applied at {format_time(NOW)}")
    assert [(e.reason, e.target is not None) for e in outcome.events] == [
        ("Applied", False),
        ("RightSized", True),
    ]
    assert outcome.events[1].target["metadata"]["name"] == "cart"
    assert set(cluster.reads) == {"limit_ranges", "quotas", "nodes", "budgets"}


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda body: body["spec"].update(paused=True), "Deployment is paused"),
        (lambda body: body["status"].update(replicas=3), "old pods remain"),
        (lambda body: body["status"].update(updatedReplicas=1), "rollout in progress (1/2 pods updated)"),
        (lambda body: body["metadata"].update(generation=2), "has not observed the latest spec"),
        (
            lambda body: body["metadata"].update(
                annotations={APPLIED_AT: format_time(NOW - timedelta(minutes=5))}
            ),
            "cooldown",
        ),
    ],
)
def test_auto_mode_leaves_a_deployment_that_is_not_settled_alone(prometheus, manifests, edit, reason):
    cluster = FakeCluster()
    views = deployments(manifests, "shop", cart=edit)
    outcome = run(prometheus, {**AUTO, "targetRef": {"name": "cart"}}, views, cluster)
    assert cluster.patches == []
    applied = conditions(outcome)["Applied"]
    assert applied["reason"] == "Blocked" and reason in applied["message"]
    assert reason in entries(outcome)["cart/app"]["autoApply"]


def test_a_limit_range_default_limit_counts_like_a_limit_set_in_the_pod(prometheus, manifests):
    """The change leaves cart's CPU limit unset; the LimitRange's default limit then applies, and
    its ratio to the new request is above what the LimitRange allows."""
    limit_range = {
        "metadata": {"name": "ratio"},
        "spec": {
            "limits": [{"type": "Container", "default": {"cpu": "8"}, "maxLimitRequestRatio": {"cpu": "4"}}]
        },
    }
    spec = {**AUTO, "targetRef": {"name": "cart"}, "cpu": {"noLimit": True}}
    cluster = FakeCluster(limit_range_items=[limit_range])
    outcome = run(prometheus, spec, deployments(manifests, "shop"), cluster)
    assert cluster.patches == []
    message = conditions(outcome)["Applied"]["message"]
    assert "LimitRange ratio: container app: cpu limit/request" in message
    assert [e.reason for e in outcome.events] == ["ChangeBlocked"]


def test_a_change_that_fits_no_node_is_blocked(prometheus, manifests):
    node = {"metadata": {"name": "tiny"}, "status": {"allocatable": {"cpu": "100m", "memory": "128Mi"}}}
    cluster = FakeCluster(node_items=[node])
    outcome = run(
        prometheus, {**AUTO, "targetRef": {"name": "cart"}}, deployments(manifests, "shop"), cluster
    )
    assert cluster.patches == []
    assert "fit no node (largest: tiny" in conditions(outcome)["Applied"]["message"]


@pytest.mark.parametrize(
    ("error", "reason", "events"),
    [
        (
            PatchConflict("Deployment shop/cart changed while being evaluated"),
            "retried at the next evaluation",
            [],
        ),
        (
            ApiException(status=422, reason="Unprocessable Entity"),
            "rejected by the API server: 422",
            ["PatchFailed"],
        ),
    ],
)
def test_a_refused_patch_is_reported_not_retried_blindly(prometheus, manifests, error, reason, events):
    cluster = FakeCluster(fail_with=error)
    outcome = run(
        prometheus, {**AUTO, "targetRef": {"name": "cart"}}, deployments(manifests, "shop"), cluster
    )
    applied = conditions(outcome)["Applied"]
    assert applied["reason"] == "Blocked" and reason in applied["message"]
    assert [e.reason for e in outcome.events] == events


def test_oom_kills_in_pod_statuses_are_remembered_and_counted(prometheus, manifests):
    killed = PodView.from_body(
        {
            "metadata": {
                "namespace": "shop",
                "name": "cart-5d8f7b9c6d-x2x4q",
                "labels": {"pod-template-hash": "5d8f7b9c6d"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "cart-5d8f7b9c6d", "controller": True}],
            },
            "spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "512Mi"}}}]},
            "status": {
                "containerStatuses": [
                    {
                        "name": "app",
                        "lastState": {"terminated": {"reason": "OOMKilled", "finishedAt": format_time(NOW)}},
                    }
                ]
            },
        }
    )
    spec = {"targetRef": {"name": "cart"}}
    outcome = run(prometheus, spec, deployments(manifests, "shop"), pods=[killed])
    (remembered,) = outcome.status["observedOOMKills"]
    assert remembered == {
        "kind": "Deployment",
        "name": "cart",
        "container": "app",
        "pod": "cart-5d8f7b9c6d-x2x4q",
        "finishedAt": format_time(NOW),
        "memoryLimit": "512Mi",
    }
    # The next evaluation no longer sees the pod (a rollout deleted it) but still counts the kill.
    later = run(prometheus, spec, deployments(manifests, "shop"), status=outcome.status)
    assert later.status["observedOOMKills"] == [remembered]
    assert entries(later)["cart/app"]["evidence"]["oomKills"] >= 1


# ---------------------------------------------------------------- the schedule


def evaluated(at: datetime, generation: int = 3, failures: int = 0, interval: str = "5m") -> PolicyObject:
    status = {"observedGeneration": 3, "lastEvaluationTime": format_time(at), "consecutiveFailures": failures}
    return PolicyObject(
        "p", "shop", "uid-p", generation, {"targetRef": {"name": "web"}, "interval": interval}, status
    )


def test_a_new_or_changed_policy_is_evaluated_at_once():
    assert is_due(PolicyObject("p", "shop", "uid-p", 1, {"targetRef": {"name": "web"}}, {}), NOW)
    assert is_due(evaluated(NOW, generation=4), NOW)  # spec changed: evaluated right away
    assert not is_due(evaluated(NOW), NOW + timedelta(seconds=1))


def test_the_interval_plus_a_fixed_jitter_of_at_most_ten_percent():
    spread = {jitter(f"uid-{n}") for n in range(200)}
    assert max(spread) <= 0.1 and min(spread) >= 0
    assert max(spread) - min(spread) > 0.08  # policies really spread out, over most of the 10%
    assert jitter("uid-p") == jitter("uid-p")  # the same for one policy every time
    waits = {wait_seconds(replace(evaluated(NOW), uid=f"uid-{n}")) for n in range(200)}
    assert min(waits) >= 300 and max(waits) <= 330  # a 5m interval, plus at most 10%
    assert max(waits) - min(waits) > 24
    assert not is_due(evaluated(NOW), NOW + timedelta(seconds=299))
    assert is_due(evaluated(NOW), NOW + timedelta(seconds=331))


def test_after_prometheus_failures_the_retries_back_off_up_to_the_interval():
    waits = [wait_seconds(evaluated(NOW, failures=n)) for n in range(1, 7)]
    assert waits == [15, 30, 60, 120, 240, 300]  # doubled from 15 s, never above the 5m interval
    assert not is_due(evaluated(NOW, failures=2), NOW + timedelta(seconds=29))
    assert is_due(evaluated(NOW, failures=2), NOW + timedelta(seconds=30))


def test_a_policy_that_cannot_be_read_is_retried_at_the_default_interval():
    status = {"observedGeneration": 3, "lastEvaluationTime": format_time(NOW)}
    broken = PolicyObject("p", "shop", "uid-p", 3, {"interval": "often"}, status)
    assert 300 <= wait_seconds(broken) <= 330  # 5 minutes and its jitter


def redis_statefulset(demo_workloads) -> WorkloadView:
    """data/redis of the demo history as a settled StatefulSet, with an init container."""
    (redis,) = [w for w in demo_workloads if w.name == "redis"]
    container = redis.containers[0]
    resources = {"requests": dict(container.requests), "limits": dict(container.limits)}
    return WorkloadView.from_body(
        {
            "kind": "StatefulSet",
            "metadata": {
                "name": "redis",
                "namespace": "data",
                "uid": "u-redis",
                "resourceVersion": "5",
                "generation": 1,
            },
            "spec": {
                "replicas": redis.replicas,
                "template": {
                    "spec": {
                        "initContainers": [
                            {"name": "wait-for-disk", "resources": {"requests": {"cpu": "10m"}}}
                        ],
                        "containers": [{"name": "redis", "resources": resources}],
                    }
                },
            },
            "status": {"observedGeneration": 1, "currentRevision": "r1", "updateRevision": "r1"},
        }
    )


def test_a_statefulset_is_sized_and_patched_and_its_init_container_left_alone(prometheus, demo_workloads):
    cluster = FakeCluster()
    spec = {**AUTO, "targetRef": {"kind": "StatefulSet", "name": "redis"}}
    outcome = run(prometheus, spec, [redis_statefulset(demo_workloads)], cluster, namespace="data")
    found = entries(outcome)
    assert found["redis/redis"]["kind"] == "StatefulSet" and "recommended" in found["redis/redis"]
    assert found["redis/wait-for-disk"]["autoApply"].startswith("left alone: an init container")
    assert "recommended" not in found["redis/wait-for-disk"]
    assert outcome.status["readyContainers"] == "1/1"  # the init container is not counted
    ((kind, namespace, name, patch),) = cluster.patches
    assert (kind, namespace, name) == ("StatefulSet", "data", "redis")
    assert [c["name"] for c in patch["spec"]["template"]["spec"]["containers"]] == ["redis"]
    assert "initContainers" not in patch["spec"]["template"]["spec"]
    assert outcome.events[1].target["kind"] == "StatefulSet"

"""The operator end to end: a real kube-apiserver with RBAC, a real Prometheus, the operator as the
ServiceAccount of deploy/, policies applied with kubectl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rightsizer_demo.manifests import deployment_manifests, namespace_manifests
from tests.support.k8s import ControlPlane, kubectl, serviceaccount_kubeconfig, start_control_plane
from tests.support.operator import OperatorProcess
from tests.support.prometheus import start_demo_prometheus

pytestmark = [pytest.mark.k8s, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 90


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = start_control_plane(tmp_path_factory.mktemp("k8s"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory):
    """This module's own Prometheus: one test stops it."""
    server = start_demo_prometheus(tmp_path_factory.mktemp("e2e-prometheus"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def k(cluster: ControlPlane) -> Callable[..., Any]:
    def run(*args: str, input: str | None = None, check: bool = True):
        return kubectl(*args, kubeconfig=cluster.kubeconfig, input=input, check=check)

    return run


@pytest.fixture(scope="module")
def operator(cluster, prometheus, k, demo_workloads, tmp_path_factory) -> Iterator[OperatorProcess]:
    k("apply", "-f", str(ROOT / "crds" / "rightsizepolicy.yaml"))
    k("wait", "--for", "condition=established", "--timeout=60s", "crd/rightsizepolicies.rightsizer.io")
    for manifest in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        k("apply", "-f", str(ROOT / "deploy" / manifest))
    objects = namespace_manifests(demo_workloads) + deployment_manifests(demo_workloads)
    k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    state = tmp_path_factory.mktemp("operator")
    identity = serviceaccount_kubeconfig(
        cluster.kubeconfig, "rightsizer-system", "rightsizer", state / "sa.kubeconfig"
    )
    process = OperatorProcess(identity, prometheus.url, state / "operator.log").start()
    try:
        yield process
    finally:
        process.stop()
        print(process.log_tail(200))


def apply_policy(k, name: str, namespace: str, spec: dict[str, Any]) -> None:
    policy = {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    k("apply", "-f", "-", input=json.dumps(policy))


def get(k, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return json.loads(k("get", kind, name, "-n", namespace, "-o", "json").stdout)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def wait_for(
    k, operator: OperatorProcess, name: str, namespace: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    policy: dict[str, Any] = {}
    while time.monotonic() < deadline:
        policy = get(k, "rsp", name, namespace)
        if check(policy):
            return policy
        time.sleep(1)
    raise AssertionError(
        f"policy {namespace}/{name} never reached the state; last status:\n"
        f"{json.dumps(policy.get('status'), indent=1)}\noperator log:\n{operator.log_tail()}"
    )


def evaluated_after(since: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("status", {}).get("lastEvaluationTime", "") > since


def by_container(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {(r["name"], r["container"]): r for r in policy["status"]["recommendations"]}


def template_resources(deployment: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: c.get("resources", {}) for c in deployment["spec"]["template"]["spec"]["containers"]}


def test_recommendations_appear_in_status_and_in_kubectl_get(k, operator):
    before = get(k, "deployment", "web", "shop")
    apply_policy(k, "web", "shop", {"targetRef": {"name": "web"}, "interval": "30s"})
    policy = wait_for(
        k, operator, "web", "shop", lambda p: condition(p, "RecommendationsReady").get("status") == "True"
    )
    recs = by_container(policy)
    assert set(recs) == {("web", "app"), ("web", "log-shipper")}
    app = recs[("web", "app")]
    assert app["current"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert app["recommended"]["requests"]["cpu"].endswith("m")
    assert app["evidence"]["pods"] == 3 and app["reason"]
    assert policy["status"]["observedGeneration"] == policy["metadata"]["generation"]
    assert condition(policy, "PrometheusReachable")["status"] == "True"
    assert condition(policy, "Applied")["reason"] == "RecommendMode"

    table = k("get", "rsp", "-n", "shop").stdout
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert header == ["NAME", "MODE", "TARGETS", "READY", "APPLIED", "AGE"]
    assert row[:5] == ["web", "Recommend", "1", "2/2", "RecommendMode"]
    # Recommend mode never writes to workloads.
    assert get(k, "deployment", "web", "shop")["metadata"]["generation"] == before["metadata"]["generation"]


def test_too_little_history_is_insufficient_data_with_no_recommendation(k, operator):
    apply_policy(k, "new-feature", "shop", {"targetRef": {"name": "new-feature"}, "mode": "Auto"})
    policy = wait_for(
        k, operator, "new-feature", "shop", lambda p: condition(p, "InsufficientData").get("status") == "True"
    )
    assert "insufficient history" in condition(policy, "InsufficientData")["message"]
    assert condition(policy, "RecommendationsReady")["status"] == "False"
    (rec,) = policy["status"]["recommendations"]
    assert "recommended" not in rec
    assert get(k, "deployment", "new-feature", "shop")["metadata"]["generation"] == 1


def test_a_missing_target_is_said_in_status(k, operator):
    apply_policy(k, "ghost", "shop", {"targetRef": {"name": "ghost"}})
    policy = wait_for(
        k,
        operator,
        "ghost",
        "shop",
        lambda p: condition(p, "RecommendationsReady").get("reason") == "NoTargets",
    )
    assert policy["status"]["missingTargets"] == ["Deployment/ghost"]
    assert "ghost" in condition(policy, "RecommendationsReady")["message"]


def test_auto_mode_patches_the_deployment_and_a_new_replicaset_rolls_out(k, operator):
    spec = {"targetRef": {"name": "cart"}, "mode": "Auto", "interval": "30s", "auto": {"maxStepPercent": 300}}
    apply_policy(k, "cart", "shop", spec)
    policy = wait_for(k, operator, "cart", "shop", lambda p: condition(p, "Applied").get("status") == "True")
    rec = by_container(policy)[("cart", "app")]
    deployment = get(k, "deployment", "cart", "shop")
    resources = template_resources(deployment)["app"]
    assert resources["requests"]["memory"] == rec["recommended"]["requests"]["memory"]
    assert int(resources["requests"]["memory"].removesuffix("Mi")) > 512  # it was OOM-killed at 512Mi
    annotations = deployment["metadata"]["annotations"]
    assert annotations["rightsizer.io/applied-by"] == "RightSizePolicy/cart"
    assert json.loads(annotations["rightsizer.io/last-change"])["app"]["from"]["limits"]["memory"] == "512Mi"
    assert rec["autoApply"].startswith("applied at")

    def rolled_out() -> bool:
        """A new ReplicaSet with the new resources is the only one scaled up."""
        items = json.loads(k("get", "rs", "-n", "shop", "-l", "app=cart", "-o", "json").stdout)["items"]
        active = [rs for rs in items if rs["spec"]["replicas"] > 0]
        memory = [
            c["resources"]["requests"]["memory"]
            for rs in active
            for c in rs["spec"]["template"]["spec"]["containers"]
        ]
        return len(items) == 2 and memory == [resources["requests"]["memory"]]

    deadline = time.monotonic() + WAIT_SECONDS
    while not rolled_out() and time.monotonic() < deadline:
        time.sleep(1)
    assert rolled_out()
    events = k(
        "get", "events", "-n", "shop", "--field-selector", "involvedObject.name=cart,reason=RightSized"
    ).stdout
    assert "RightSizePolicy/cart" in events
    with_fields = json.loads(
        k("get", "deployment", "cart", "-n", "shop", "-o", "json", "--show-managed-fields").stdout
    )
    managers = [m["manager"] for m in with_fields["metadata"]["managedFields"]]
    assert "rightsizer" in managers


def test_a_change_below_the_minimum_is_not_applied(k, operator):
    deployment = get(k, "deployment", "cart", "shop")
    since = get(k, "rsp", "cart", "shop")["status"]["lastEvaluationTime"]
    time.sleep(1.1)
    # No cooldown any more: what is left between recommendation and Deployment is below 10%.
    k("patch", "rsp", "cart", "-n", "shop", "--type=merge", "-p", '{"spec": {"auto": {"cooldown": "1s"}}}')
    policy = wait_for(k, operator, "cart", "shop", evaluated_after(since))
    assert condition(policy, "Applied")["reason"] == "NoChangeNeeded"
    assert "below the minimum" in by_container(policy)[("cart", "app")]["autoApply"]
    after = get(k, "deployment", "cart", "shop")
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]


def test_a_limit_range_that_forbids_the_change_blocks_it(k, operator):
    limit_range = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "small-containers", "namespace": "batch"},
        "spec": {"limits": [{"type": "Container", "max": {"memory": "512Mi"}}]},
    }
    k("apply", "-f", "-", input=json.dumps(limit_range))
    before = get(k, "deployment", "worker", "batch")
    apply_policy(
        k, "worker", "batch", {"targetRef": {"name": "worker"}, "mode": "Auto", "profile": "background"}
    )
    policy = wait_for(
        k, operator, "worker", "batch", lambda p: condition(p, "Applied").get("reason") == "Blocked"
    )
    message = condition(policy, "Applied")["message"]
    assert "LimitRange small-containers" in message and "above the maximum 512Mi" in message
    assert "LimitRange" in by_container(policy)[("worker", "worker")]["autoApply"]
    after = get(k, "deployment", "worker", "batch")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    events = k("get", "events", "-n", "batch", "--field-selector", "reason=ChangeBlocked").stdout
    assert "small-containers" in events


def test_a_change_that_fits_no_node_is_not_applied(k, operator):
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "small-node"},
        "status": {
            "capacity": {"cpu": "1", "memory": "2Gi", "pods": "110"},
            "allocatable": {"cpu": "900m", "memory": "1536Mi", "pods": "110"},
        },
    }
    k("apply", "-f", "-", input=json.dumps(node))
    try:
        before = get(k, "deployment", "search", "shop")
        # search was throttled: it needs a full core, more than the only node can give.
        spec = {"targetRef": {"name": "search"}, "mode": "Auto", "auto": {"maxStepPercent": 1000}}
        apply_policy(k, "search", "shop", spec)
        policy = wait_for(
            k, operator, "search", "shop", lambda p: condition(p, "Applied").get("reason") == "Blocked"
        )
        assert "fit no node (largest: small-node with cpu 900m" in condition(policy, "Applied")["message"]
        after = get(k, "deployment", "search", "shop")
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
    finally:
        k("delete", "rsp", "search", "-n", "shop")
        k("delete", "node", "small-node")


def test_restarting_the_operator_does_not_apply_again(k, operator):
    deployment = get(k, "deployment", "cart", "shop")
    operator.restart()
    since = get(k, "rsp", "cart", "shop")["status"]["lastEvaluationTime"]
    time.sleep(1.1)
    k("patch", "rsp", "cart", "-n", "shop", "--type=merge", "-p", '{"spec": {"interval": "31s"}}')
    wait_for(k, operator, "cart", "shop", evaluated_after(since))
    after = get(k, "deployment", "cart", "shop")
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert after["metadata"]["annotations"] == deployment["metadata"]["annotations"]


def test_the_operator_cannot_read_secrets(k, operator):
    denied = kubectl("get", "secrets", "-n", "shop", kubeconfig=operator.kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


def test_prometheus_down_flips_the_condition_keeps_recommendations_and_patches_nothing(
    k, operator, prometheus
):
    cart_before = get(k, "deployment", "cart", "shop")
    prometheus.stop()
    k("patch", "rsp", "web", "-n", "shop", "--type=merge", "-p", '{"spec": {"interval": "31s"}}')
    k("patch", "rsp", "cart", "-n", "shop", "--type=merge", "-p", '{"spec": {"interval": "32s"}}')
    policy = wait_for(
        k, operator, "web", "shop", lambda p: condition(p, "PrometheusReachable").get("status") == "False"
    )
    assert "cannot connect to Prometheus" in condition(policy, "PrometheusReachable")["message"]
    assert len(policy["status"]["recommendations"]) == 2  # the last good ones are kept
    cart = wait_for(
        k, operator, "cart", "shop", lambda p: condition(p, "PrometheusReachable").get("status") == "False"
    )
    assert cart["status"]["consecutiveFailures"] >= 1
    after = get(k, "deployment", "cart", "shop")
    assert after["metadata"]["generation"] == cart_before["metadata"]["generation"]
    events = k("get", "events", "-n", "shop", "--field-selector", "reason=PrometheusUnreachable").stdout
    assert "PrometheusUnreachable" in events


def test_deleting_a_policy_leaves_the_deployments_as_they_are(k, operator):
    before = get(k, "deployment", "cart", "shop")
    k("delete", "rsp", "cart", "-n", "shop", "--wait=true", "--timeout=30s")
    time.sleep(3)
    after = get(k, "deployment", "cart", "shop")
    assert template_resources(after) == template_resources(before)
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]

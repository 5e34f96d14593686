"""The operator end to end: a real kube-apiserver with RBAC, a real Prometheus, the operator as the
ServiceAccount of deploy/, policies applied with kubectl.

Every test has a namespace of its own, with its own workloads and their generated history (the
demo's workloads, copied into it), so each sets up the state it checks and can run alone or in
any order. The one that stops Prometheus stops its own, with an operator of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from rightsizer.controller.api_session import WATCHED_RESOURCES
from rightsizer.controller.hpa_targets import TargetMoves, move_targets
from rightsizer.controller.kube import KubernetesCluster, PatchConflict
from rightsizer.hpa import TargetRetune, retuned_utilization
from rightsizer.quantity import parse
from rightsizer.settings import API_CONNECTIONS
from rightsizer.units import CPU, ceil_cpu, ceil_memory, format_quantity
from rightsizer.workload import WorkloadView
from rightsizer_demo.history import DAY, WorkloadSpec, demo_scenario, window_ending_now
from rightsizer_demo.manifests import deployment_manifests, namespace_manifests
from rightsizer_demo.prometheus import PrometheusServer
from tests.support.autoscalers import autoscaler_manifest
from tests.support.k8s import (
    ControlPlane,
    kubectl,
)
from tests.support.operator import OperatorProcess, install_identity
from tests.support.prometheus import start_demo_prometheus

pytestmark = [pytest.mark.k8s, pytest.mark.prometheus]

WAIT_SECONDS = 120
HISTORY_DAYS = 3
STEP_SECONDS = 60

# namespace -> the demo workloads copied into it
LAYOUT = {
    "e2e-recommend": ("web",),
    "e2e-young": ("new-feature",),
    "e2e-missing": (),
    "e2e-auto": ("cart",),
    "e2e-restart": ("web",),
    "e2e-minchange": ("web",),
    "e2e-limitrange": ("worker",),
    "e2e-nodefit": ("search",),
    "e2e-down": ("web",),
    "e2e-delete": ("cart", "web"),
    "e2e-hpa": ("search",),
}
DOWN = "e2e-down"


def e2e_workloads() -> list[WorkloadSpec]:
    start, end = window_ending_now(HISTORY_DAYS * DAY, STEP_SECONDS)
    demo = {w.name: w for w in demo_scenario(start, end)}
    return [replace(demo[name], namespace=ns) for ns, names in LAYOUT.items() for name in names]


@pytest.fixture(scope="module")
def workloads() -> list[WorkloadSpec]:
    return e2e_workloads()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, workloads) -> Iterator[PrometheusServer]:
    server = start_demo_prometheus(
        tmp_path_factory.mktemp("e2e-prometheus"), HISTORY_DAYS, STEP_SECONDS, workloads
    )
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
def identity(cluster, workloads, tmp_path_factory) -> Path:
    """The operator's ServiceAccount (deploy/), the CRD and the workloads, installed."""
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in LAYOUT]
    objects = namespaces + namespace_manifests(workloads) + deployment_manifests(workloads)
    objects += [autoscaler_manifest("e2e-hpa", "search-hpa", "search", cpu=70)]
    return install_identity(cluster.kubeconfig, objects, tmp_path_factory.mktemp("sa") / "sa.kubeconfig")


@pytest.fixture(scope="module")
def operator(identity, prometheus, tmp_path_factory) -> Iterator[OperatorProcess]:
    """The operator of every namespace but e2e-down (whose test runs its own, with its own Prometheus)."""
    watched = tuple(ns for ns in LAYOUT if ns != DOWN)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(identity, prometheus.url, log, namespaces=watched).start()
    try:
        yield process
    finally:
        process.stop()
        print(process.log_tail(200))


def hpa_target(k, name: str, namespace: str) -> int:
    hpa = get(k, "hpa", name, namespace)
    return int(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"])


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


def current_generation(policy: dict[str, Any]) -> bool:
    """Evaluated for the spec as it is now (a scheduled evaluation of the old spec does not count)."""
    return policy.get("status", {}).get("observedGeneration") == policy["metadata"]["generation"]


def by_container(policy: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["name"], r["container"]): r for r in policy["status"]["recommendations"]}


def template_resources(deployment: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: c.get("resources", {}) for c in deployment["spec"]["template"]["spec"]["containers"]}


def test_recommendations_appear_in_status_and_in_kubectl_get(k, operator):
    ns = "e2e-recommend"
    before = get(k, "deployment", "web", ns)
    apply_policy(k, "web", ns, {"targetRef": {"name": "web"}, "interval": "30s"})
    policy = wait_for(
        k, operator, "web", ns, lambda p: condition(p, "RecommendationsReady").get("status") == "True"
    )
    recs = by_container(policy)
    assert set(recs) == {("web", "app"), ("web", "log-shipper")}
    app = recs[("web", "app")]
    assert app["current"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert parse(app["recommended"]["requests"]["cpu"]) < 1  # over-provisioned
    assert app["evidence"]["pods"] == 3 and app["reason"]
    assert policy["status"]["observedGeneration"] == policy["metadata"]["generation"]
    assert condition(policy, "PrometheusReachable")["status"] == "True"
    assert condition(policy, "Applied")["reason"] == "RecommendMode"

    table = k("get", "rsp", "-n", ns).stdout
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert header == ["NAME", "MODE", "TARGETS", "READY", "APPLIED", "AGE"]
    assert row[:5] == ["web", "Recommend", "1", "2/2", "RecommendMode"]
    # Recommend mode never writes to workloads.
    assert get(k, "deployment", "web", ns)["metadata"]["generation"] == before["metadata"]["generation"]


def test_the_operator_tunes_malloc_at_start(operator):
    """controller/allocator.py: glibc's defaults kept about 80 MiB more with 1,000 policies."""
    assert "malloc tuned: MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_=131072" in operator.log_path.read_text()


def test_kopf_talks_to_the_api_server_over_a_bounded_session(operator):
    """controller/api_session.py: every other test here goes through it; its limit is the requests'
    connections and one per watch stream (7 resources in each of the 9 watched namespaces)."""
    watched = len(LAYOUT) - 1
    limit = API_CONNECTIONS + WATCHED_RESOURCES * watched
    assert f"API server connections: at most {limit}" in operator.log_path.read_text()


def test_too_little_history_is_insufficient_data_with_no_recommendation(k, operator):
    ns = "e2e-young"
    apply_policy(k, "new-feature", ns, {"targetRef": {"name": "new-feature"}, "mode": "Auto"})
    policy = wait_for(
        k, operator, "new-feature", ns, lambda p: condition(p, "InsufficientData").get("status") == "True"
    )
    assert "insufficient history" in condition(policy, "InsufficientData")["message"]
    assert condition(policy, "RecommendationsReady")["status"] == "False"
    (rec,) = policy["status"]["recommendations"]
    assert "recommended" not in rec
    assert get(k, "deployment", "new-feature", ns)["metadata"]["generation"] == 1


def test_a_missing_target_is_said_in_status(k, operator):
    ns = "e2e-missing"
    apply_policy(k, "ghost", ns, {"targetRef": {"name": "ghost"}})
    policy = wait_for(
        k, operator, "ghost", ns, lambda p: condition(p, "RecommendationsReady").get("reason") == "NoTargets"
    )
    assert policy["status"]["missingTargets"] == ["Deployment/ghost"]
    assert "ghost" in condition(policy, "RecommendationsReady")["message"]


def test_auto_mode_patches_the_deployment_and_a_new_replicaset_rolls_out(k, operator):
    ns = "e2e-auto"
    spec = {"targetRef": {"name": "cart"}, "mode": "Auto", "interval": "30s", "auto": {"maxStepPercent": 300}}
    apply_policy(k, "cart", ns, spec)
    policy = wait_for(k, operator, "cart", ns, lambda p: condition(p, "Applied").get("status") == "True")
    rec = by_container(policy)[("cart", "app")]
    deployment = get(k, "deployment", "cart", ns)
    resources = template_resources(deployment)["app"]
    assert resources["requests"]["memory"] == rec["recommended"]["requests"]["memory"]
    assert parse(resources["requests"]["memory"]) > parse("512Mi")  # it was OOM-killed at 512Mi
    annotations = deployment["metadata"]["annotations"]
    assert annotations["rightsizer.io/applied-by"] == "RightSizePolicy/cart"
    assert json.loads(annotations["rightsizer.io/last-change"])["app"]["from"]["limits"]["memory"] == "512Mi"
    assert rec["autoApply"].startswith("applied at")

    def rolled_out() -> bool:
        """A new ReplicaSet with the new resources is the only one scaled up."""
        items = json.loads(k("get", "rs", "-n", ns, "-l", "app=cart", "-o", "json").stdout)["items"]
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
        "get", "events", "-n", ns, "--field-selector", "involvedObject.name=cart,reason=RightSized"
    ).stdout
    assert "RightSizePolicy/cart" in events
    with_fields = json.loads(
        k("get", "deployment", "cart", "-n", ns, "-o", "json", "--show-managed-fields").stdout
    )
    managers = [m["manager"] for m in with_fields["metadata"]["managedFields"]]
    assert "rightsizer" in managers


def test_restarting_the_operator_does_not_forget_the_cooldown(k, operator):
    """Right after a change, with more steps to go (10% per step) and a 1h cooldown, a restarted
    operator reads the cooldown from the Deployment and applies nothing more."""
    ns = "e2e-restart"
    auto = {"maxStepPercent": 10, "cooldown": "1h", "canary": {"duration": "1s"}}
    apply_policy(k, "web", ns, {"targetRef": {"name": "web"}, "mode": "Auto", "auto": auto})
    wait_for(k, operator, "web", ns, lambda p: condition(p, "Applied").get("status") == "True")
    # The change is watched (1s), then done: only the cooldown stands between it and the next.
    wait_for(k, operator, "web", ns, lambda p: "change done" in condition(p, "Applied").get("message", ""))
    deployment = get(k, "deployment", "web", ns)
    operator.restart()
    k("patch", "rsp", "web", "-n", ns, "--type=merge", "-p", '{"spec": {"interval": "31s"}}')
    policy = wait_for(k, operator, "web", ns, current_generation)
    app = by_container(policy)[("web", "app")]
    # There is still something to apply: only the cooldown holds it back.
    assert app["recommended"]["requests"] != template_resources(deployment)["app"]["requests"]
    assert condition(policy, "Applied")["reason"] == "Blocked"
    assert "cooldown" in app["autoApply"]
    after = get(k, "deployment", "web", ns)
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert after["metadata"]["annotations"] == deployment["metadata"]["annotations"]


def _scaled(resources: dict[str, dict[str, str]], factor: Decimal) -> dict[str, dict[str, str]]:
    """Every quantity x factor, rounded up to what Kubernetes writes (5m, 1Mi)."""
    scaled: dict[str, dict[str, str]] = {}
    for kind, values in resources.items():
        scaled[kind] = {}
        for resource, text in values.items():
            amount = parse(text) * factor
            rounded = ceil_cpu(amount) if resource == CPU else ceil_memory(amount)
            scaled[kind][resource] = format_quantity(resource, rounded)
    return scaled


def wait_settled(k, name: str, namespace: str) -> dict[str, Any]:
    """The Deployment once its controller has rolled its template out (nothing Auto mode would wait for)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        deployment = get(k, "deployment", name, namespace)
        unsettled = WorkloadView.from_body(deployment).unsettled
        if unsettled is None:
            return deployment
        assert time.monotonic() < deadline, f"{namespace}/{name} never settled: {unsettled}"
        time.sleep(1)


def test_a_change_below_the_minimum_is_not_applied(k, operator):
    """The template is set 5% above the recommendation: Auto mode (minimum 10%) leaves it."""
    ns = "e2e-minchange"
    apply_policy(k, "web", ns, {"targetRef": {"name": "web"}})
    policy = wait_for(
        k, operator, "web", ns, lambda p: condition(p, "RecommendationsReady").get("status") == "True"
    )
    near = {
        name: _scaled(rec["recommended"], Decimal("1.05")) for (_, name), rec in by_container(policy).items()
    }
    containers = [{"name": name, "resources": resources} for name, resources in near.items()]
    k(
        "patch",
        "deployment",
        "web",
        "-n",
        ns,
        "-p",
        json.dumps({"spec": {"template": {"spec": {"containers": containers}}}}),
    )
    # Rolled out first: Auto mode would otherwise find it mid-rollout (Blocked), or read the old template.
    deployment = wait_settled(k, "web", ns)
    k("patch", "rsp", "web", "-n", ns, "--type=merge", "-p", '{"spec": {"mode": "Auto"}}')
    policy = wait_for(
        k, operator, "web", ns, lambda p: current_generation(p) and condition(p, "Applied")["status"]
    )
    assert condition(policy, "Applied")["reason"] == "NoChangeNeeded"
    for (_, name), rec in by_container(policy).items():
        assert rec["current"] == near[name], name  # evaluated against the template as patched
        assert rec["current"] != rec["recommended"], name  # a real difference, only below 10%
        assert "below the minimum of 10%" in rec["autoApply"], name
    assert get(k, "deployment", "web", ns)["metadata"]["generation"] == deployment["metadata"]["generation"]


def test_a_limit_range_that_forbids_the_change_blocks_it(k, operator):
    ns = "e2e-limitrange"
    limit_range = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "small-containers", "namespace": ns},
        "spec": {"limits": [{"type": "Container", "max": {"memory": "512Mi"}}]},
    }
    k("apply", "-f", "-", input=json.dumps(limit_range))
    before = get(k, "deployment", "worker", ns)
    apply_policy(k, "worker", ns, {"targetRef": {"name": "worker"}, "mode": "Auto", "profile": "background"})
    policy = wait_for(k, operator, "worker", ns, lambda p: condition(p, "Applied").get("reason") == "Blocked")
    message = condition(policy, "Applied")["message"]
    assert "LimitRange small-containers" in message and "above the maximum 512Mi" in message
    assert "LimitRange" in by_container(policy)[("worker", "worker")]["autoApply"]
    after = get(k, "deployment", "worker", ns)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    events = k("get", "events", "-n", ns, "--field-selector", "reason=ChangeBlocked").stdout
    assert "small-containers" in events


def test_a_change_that_fits_no_node_is_not_applied(k, operator):
    ns = "e2e-nodefit"
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "small-node"},
        "status": {
            "capacity": {"cpu": "1", "memory": "2Gi", "pods": "110"},
            "allocatable": {"cpu": "250m", "memory": "1536Mi", "pods": "110"},
        },
    }
    k("apply", "-f", "-", input=json.dumps(node))
    try:
        before = get(k, "deployment", "search", ns)
        # search was throttled: it needs about a full core; even the confident part of that, which
        # Auto mode applies, is more than its 250m of today, all that the only node can give.
        spec = {"targetRef": {"name": "search"}, "mode": "Auto", "auto": {"maxStepPercent": 1000}}
        apply_policy(k, "search", ns, spec)
        policy = wait_for(
            k, operator, "search", ns, lambda p: condition(p, "Applied").get("reason") == "Blocked"
        )
        assert "fit no node (largest: small-node with cpu 250m" in condition(policy, "Applied")["message"]
        after = get(k, "deployment", "search", ns)
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
    finally:
        k("delete", "rsp", "search", "-n", ns, "--ignore-not-found")
        k("delete", "node", "small-node")


def test_retune_moves_the_hpa_target_with_the_request(k, operator):
    """search is throttled: Auto mode raises its CPU request from 250m; with spec.hpa Retune its HPA's
    70% (175m a pod) is lowered so that it scales out at the same usage, by the operator's own
    ServiceAccount, and said in status and in an Event."""
    ns = "e2e-hpa"
    spec = {"targetRef": {"name": "search"}, "mode": "Auto", "hpa": "Retune", "auto": {"maxStepPercent": 300}}
    apply_policy(k, "search", ns, spec)
    policy = wait_for(k, operator, "search", ns, lambda p: condition(p, "Applied").get("status") == "True")
    deployment = get(k, "deployment", "search", ns)
    new = parse(template_resources(deployment)["app"]["requests"]["cpu"])
    assert new > Decimal("0.25")
    lowered = retuned_utilization(70, Decimal("0.25"), new)
    assert hpa_target(k, "search-hpa", ns) == lowered < 70
    record = json.loads(deployment["metadata"]["annotations"]["rightsizer.io/change"])
    assert record["autoscalers"][0] == {
        "hpa": "search-hpa",
        "resource": "cpu",
        "container": None,
        "before": 70,
        "after": lowered,
    }
    assert f"CPU utilization target 70% -> {lowered}%" in condition(policy, "Applied")["message"]
    events = k("get", "events", "-n", ns, "--field-selector", "reason=AutoscalerRetuned").stdout
    assert "search-hpa" in events
    hpa = json.loads(k("get", "hpa", "search-hpa", "-n", ns, "-o", "json", "--show-managed-fields").stdout)
    assert "rightsizer" in [m["manager"] for m in hpa["metadata"]["managedFields"]]


def test_an_hpa_target_somebody_else_changed_is_not_overwritten(k, identity):
    """The operator's HPA writes, as its ServiceAccount, on the real API server: the JSON patch's
    test of the old target refuses a target changed in between; a move is made once; a gone HPA
    is left alone."""
    ns = "e2e-hpa"
    k("apply", "-f", "-", input=json.dumps(autoscaler_manifest(ns, "other-hpa", "nothing", cpu=60)))
    previous = client.Configuration.get_default_copy()
    try:
        config.load_kube_config(config_file=str(identity))
        cluster = KubernetesCluster()
        path = "/spec/metrics/0/resource/target/averageUtilization"
        stale = [{"op": "test", "path": path, "value": 50}, {"op": "replace", "path": path, "value": 40}]
        with pytest.raises(PatchConflict, match="other-hpa changed while being patched"):
            cluster.patch_autoscaler(ns, "other-hpa", stale)
        assert hpa_target(k, "other-hpa", ns) == 60
        retune = TargetRetune("other-hpa", "cpu", None, 60, 45)
        assert move_targets(cluster, ns, [retune]).moved == (retune,)
        assert hpa_target(k, "other-hpa", ns) == 45
        assert move_targets(cluster, ns, [retune]) == TargetMoves()  # already there: nothing sent
        gone = move_targets(cluster, ns, [replace(retune, hpa="gone-hpa")])
        assert "the HorizontalPodAutoscaler is gone" in gone.left_alone[0][1] and not gone.failed
    finally:
        client.Configuration.set_default(previous)
        k("delete", "hpa", "other-hpa", "-n", ns)


def test_the_operator_cannot_read_secrets(k, operator):
    denied = kubectl("get", "secrets", "-n", "e2e-recommend", kubeconfig=operator.kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


def test_prometheus_down_flips_the_condition_keeps_recommendations_and_patches_nothing(
    k, identity, workloads, tmp_path
):
    """A change every 10 s is pending (10% steps, no cooldown to speak of) when Prometheus stops:
    the last recommendations stay in status, still different from the template, and nothing is
    patched from them; when Prometheus is back, the steps resume."""
    ns = DOWN
    (tmp_path / "prometheus").mkdir()
    server = start_demo_prometheus(tmp_path / "prometheus", HISTORY_DAYS, STEP_SECONDS, workloads)
    own = OperatorProcess(identity, server.url, tmp_path / "operator.log", namespaces=(ns,)).start()
    try:
        spec = {
            "targetRef": {"name": "web"},
            "mode": "Auto",
            "interval": "10s",
            "auto": {"maxStepPercent": 10, "cooldown": "1s", "canary": {"duration": "1s"}},
        }
        apply_policy(k, "web", ns, spec)
        wait_for(k, own, "web", ns, lambda p: condition(p, "Applied").get("status") == "True")
        server.stop()
        down = wait_for(
            k, own, "web", ns, lambda p: condition(p, "PrometheusReachable").get("status") == "False"
        )
        assert "cannot connect to Prometheus" in condition(down, "PrometheusReachable")["message"]
        # The change in flight is carried on (its record moves; a Deployment's generation counts its
        # annotations), but no new one starts: the template stays as it is, applied-at too.
        before = get(k, "deployment", "web", ns)
        failures = down["status"]["consecutiveFailures"]
        policy = wait_for(k, own, "web", ns, lambda p: p["status"]["consecutiveFailures"] >= failures + 3)
        app = by_container(policy)[("web", "app")]
        deployment = get(k, "deployment", "web", ns)
        assert app["recommended"]["requests"] != template_resources(deployment)["app"]["requests"]
        assert template_resources(deployment) == template_resources(before)
        applied_at = "rightsizer.io/applied-at"
        assert (
            deployment["metadata"]["annotations"][applied_at] == before["metadata"]["annotations"][applied_at]
        )
        events = k("get", "events", "-n", ns, "--field-selector", "reason=PrometheusUnreachable").stdout
        assert "PrometheusUnreachable" in events
        server.start()
        wait_for(k, own, "web", ns, lambda p: condition(p, "PrometheusReachable").get("status") == "True")
        deadline = time.monotonic() + WAIT_SECONDS
        while template_resources(get(k, "deployment", "web", ns)) == template_resources(before):
            assert time.monotonic() < deadline, f"the steps did not resume:\n{own.log_tail()}"
            time.sleep(1)
    finally:
        own.stop()
        server.stop()


def test_deleting_a_policy_rolls_its_change_in_flight_back_before_it_goes(k, operator):
    """A change in flight belongs to its policy: deleting the policy rolls it back (docs/operator.md,
    "The change machine"), and the policy goes once the template is as it was."""
    ns = "e2e-delete"
    before = template_resources(get(k, "deployment", "cart", ns))
    apply_policy(
        k, "cart", ns, {"targetRef": {"name": "cart"}, "mode": "Auto", "auto": {"maxStepPercent": 300}}
    )
    wait_for(k, operator, "cart", ns, lambda p: condition(p, "Applied").get("status") == "True")
    assert template_resources(get(k, "deployment", "cart", ns)) != before  # the change, in flight
    k("delete", "rsp", "cart", "-n", ns, "--wait=true", "--timeout=120s")
    after = get(k, "deployment", "cart", ns)
    assert template_resources(after) == before
    annotations = after["metadata"]["annotations"]
    assert "rightsizer.io/change" not in annotations
    assert json.loads(annotations["rightsizer.io/rolled-back"])["reason"] == "the policy was deleted"
    assert "rightsizer.io/backoff" not in annotations  # the change did not hurt: nothing backed off

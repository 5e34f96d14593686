"""Auto mode v2 on the real node: every workload kind resized in place with no restart, a canary
first, a canary that gets OOM-killed rolled back with the other pods never touched (across an
operator restart), a PodDisruptionBudget that allows no disruption blocking a rollout, and PodsOnly:
running pods resized, the template never edited, new pods given the change by the operator's
admission webhook; and ``spec.hpa: Retune``, the HorizontalPodAutoscalers' targets moved with the
requests (lowered before the pods change, raised once a change is done).

The operator runs inside the node's network namespace, as a pod would, so that the API server can
call its webhook (deploy/webhook's configuration, pointed at it with ``--admission-url``).

Scenarios start together (with test_node_loop's, on one node: tests/support/closed_loops.py), so
their minutes overlap, in namespaces of their own; each test reads the whole record
(``tests/support/scenario.py``), so it can run alone.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rightsizer.quantity import parse
from rightsizer.timestamps import parse_time
from tests.support.autoscalers import autoscaler_manifest
from tests.support.k8s import (
    INTERNAL_SERVER,
    ControlPlane,
    kubectl,
    serviceaccount_kubeconfig,
    wait_for_established_crd,
)
from tests.support.node import NodePrometheus, load_deployment
from tests.support.operator import OperatorProcess
from tests.support.scenario import (
    LABEL,
    LiveCluster,
    TemplateRecorder,
    condition,
    namespaces_deleted_on_exit,
    pod_template,
    shared,
    stopped_on_exit,
)

pytestmark = [pytest.mark.node, pytest.mark.k8s, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parent.parent
HISTORY = {"window": "10m", "minimum": "2m", "resolution": "30s"}
KINDS = "auto-kinds"
OOM = "auto-oom-canary"
PDB = "auto-pdb"
PODS_ONLY = "auto-pods-only"
HPA = "auto-hpa"
NAMESPACES = (KINDS, OOM, PDB, PODS_ONLY, HPA)
OVER = {"requests": {"cpu": "50m", "memory": "200Mi"}, "limits": {"cpu": "100m", "memory": "200Mi"}}
"""Over-provisioned for the load they run (20m and 24Mi): every change steps them down."""
IDLE = ["-cpu", "20m", "-memory", "24Mi"]
OOM_AFTER = 480
"""The OOM scenario's pods hold 50Mi for this many seconds, then 150Mi: by then the canary has been
sized (and capped at 64Mi of request, 96Mi of limit) on what it used before."""


def policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"mode": "Auto", "interval": "10s", "history": HISTORY, **spec},
    }


def with_template(manifest: dict[str, Any], kind: str, **spec: Any) -> dict[str, Any]:
    """A load Deployment's pod template inside a workload of another kind."""
    template = manifest["spec"]["template"]
    body: dict[str, Any] = {
        "apiVersion": "batch/v1" if kind == "CronJob" else "apps/v1",
        "kind": kind,
        "metadata": manifest["metadata"],
    }
    if kind == "CronJob":
        template["spec"]["restartPolicy"] = "Never"
        body["spec"] = {"jobTemplate": {"spec": {"template": template, "backoffLimit": 0}}, **spec}
    else:
        body["spec"] = {"selector": manifest["spec"]["selector"], "template": template, **spec}
    return body


def kinds_objects() -> list[dict[str, Any]]:
    ns = KINDS
    web = load_deployment(ns, "web", IDLE, OVER["requests"], OVER["limits"], replicas=2)
    db = with_template(
        load_deployment(ns, "db", IDLE, OVER["requests"], OVER["limits"]),
        "StatefulSet",
        replicas=2,
        serviceName="db",
    )
    agent = with_template(load_deployment(ns, "agent", IDLE, OVER["requests"], OVER["limits"]), "DaemonSet")
    report = with_template(
        load_deployment(ns, "report", [*IDLE, "-for", "50s"], OVER["requests"], OVER["limits"]),
        "CronJob",
        schedule="* * * * *",
        successfulJobsHistoryLimit=3,
    )
    objects = [web, db, agent, report]
    for workload in objects:
        workload["metadata"]["labels"].update({LABEL: "auto", "rightsize": "all-kinds"})
    spec = {
        "selector": {"matchLabels": {"rightsize": "all-kinds"}},
        "kinds": ["Deployment", "StatefulSet", "DaemonSet", "CronJob"],
        "auto": {"updateMode": "InPlace", "canary": {"duration": "15s"}, "maxStepPercent": 1000},
    }
    return [*objects, policy("all-kinds", ns, spec)]


def oom_objects() -> list[dict[str, Any]]:
    args = ["-cpu", "20m", "-memory", f"50Mi@{OOM_AFTER}s,150Mi@1h", "-memory-rate", "32Mi"]
    cart = load_deployment(
        OOM, "cart", args, {"cpu": "50m", "memory": "300Mi"}, {"memory": "300Mi"}, replicas=3
    )
    cart["metadata"]["labels"][LABEL] = "auto"
    spec = {
        "targetRef": {"name": "cart"},
        "auto": {"updateMode": "InPlace", "canary": {"duration": "8m"}, "maxStepPercent": 1000},
        "containerPolicies": [{"containerName": "app", "maxAllowed": {"memory": "64Mi"}}],
    }
    return [cart, policy("cart", OOM, spec)]


def pdb_objects() -> list[dict[str, Any]]:
    api = load_deployment(PDB, "api", IDLE, OVER["requests"], OVER["limits"], replicas=2)
    api["metadata"]["labels"][LABEL] = "auto"
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "api-never-down", "namespace": PDB},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "api"}}},
    }
    return [
        api,
        budget,
        policy("api", PDB, {"targetRef": {"name": "api"}, "auto": {"canary": {"duration": "15s"}}}),
    ]


def pods_only_objects() -> list[dict[str, Any]]:
    shop = load_deployment(PODS_ONLY, "shop", IDLE, OVER["requests"], OVER["limits"], replicas=2)
    shop["metadata"]["labels"][LABEL] = "auto"
    spec = {
        "targetRef": {"name": "shop"},
        "auto": {"updateMode": "PodsOnly", "canary": {"duration": "15s"}, "maxStepPercent": 1000},
    }
    return [shop, policy("shop", PODS_ONLY, spec)]


HOT = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "400m", "memory": "128Mi"}}
"""Under-provisioned in CPU for the 150m it burns: its CPU request goes up."""


def hpa_objects() -> list[dict[str, Any]]:
    """spec.hpa Retune: ``idle`` is stepped down (its HPA targets raised once each change is done),
    ``hot`` up (its HPA's target lowered before the canary is resized)."""
    idle = load_deployment(HPA, "idle", IDLE, OVER["requests"], OVER["limits"], replicas=2)
    hot = load_deployment(HPA, "hot", ["-cpu", "150m", "-memory", "24Mi"], HOT["requests"], HOT["limits"])
    rails = {"updateMode": "InPlace", "canary": {"duration": "15s"}, "maxStepPercent": 1000}
    policies = []
    for workload in (idle, hot):
        workload["metadata"]["labels"][LABEL] = "auto"
        name = workload["metadata"]["name"]
        policies.append(policy(name, HPA, {"targetRef": {"name": name}, "hpa": "Retune", "auto": rails}))
    return [
        idle,
        hot,
        *policies,
        autoscaler_manifest(HPA, "idle-hpa", "idle", cpu=80, memory=50),
        autoscaler_manifest(HPA, "hot-hpa", "hot", cpu=60),
    ]


@pytest.fixture(scope="module")
def live(closed_loop_scenarios: dict[str, Any]) -> LiveCluster:
    """The scenarios, started with test_node_loop's on one node (tests/support/closed_loops.py)."""
    handle: LiveCluster = closed_loop_scenarios["test_node_auto"]
    return handle


@contextmanager
def scenarios(node_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    """Start every scenario in a namespace of its own, and the operator (in the node's namespace)."""
    state = tmp_path_factory.mktemp("auto")

    def k(*args: str, input: str | None = None) -> Any:
        return kubectl(*args, kubeconfig=node_cluster.kubeconfig, input=input)

    k("apply", "-f", str(ROOT / "crds" / "rightsizepolicy.yaml"))
    wait_for_established_crd("rightsizepolicies.rightsizer.io", kubeconfig=node_cluster.kubeconfig)
    for manifest in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "webhook/rbac.yaml"):
        k("apply", "-f", str(ROOT / "deploy" / manifest))
    k("apply", "-f", str(ROOT / "deploy" / "webhook" / "mutatingwebhook.yaml"))
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in NAMESPACES]
    objects = [
        *namespaces,
        *kinds_objects(),
        *oom_objects(),
        *pdb_objects(),
        *pods_only_objects(),
        *hpa_objects(),
    ]
    with ExitStack() as started_here:
        namespaces_deleted_on_exit(started_here, node_cluster.kubeconfig, NAMESPACES)
        prometheus = shared(
            started_here, "prometheus", lambda: NodePrometheus(node_cluster, state / "prometheus").start()
        )
        k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        started = time.time()
        recorder = shared(started_here, "recorder", lambda: TemplateRecorder(node_cluster.kubeconfig).start())
        identity = serviceaccount_kubeconfig(
            node_cluster.kubeconfig,
            "rightsizer-system",
            "rightsizer",
            state / "sa.kubeconfig",
            server=INTERNAL_SERVER,
        )
        operator = OperatorProcess(
            identity,
            prometheus.inner_url,
            state / "operator.log",
            namespaces=NAMESPACES,
            netns=node_cluster.netns,
        )
        webhook = f"127.0.0.1:{operator.free_port()}"
        operator.extra_args = ("--admission-listen", webhook, "--admission-url", f"https://{webhook}")
        stopped_on_exit(started_here, operator.start())
        yield LiveCluster(node_cluster, prometheus, operator, recorder, started)


def pod_facts(pods: list[dict[str, Any]]) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """name -> (uid, restarts, the app container's resources as it runs them)."""
    facts = {}
    for pod in pods:
        (status,) = [s for s in pod["status"].get("containerStatuses") or [] if s["name"] == "app"] or [{}]
        facts[pod["metadata"]["name"]] = (
            pod["metadata"]["uid"],
            status.get("restartCount", 0),
            status.get("resources"),
        )
    return facts


def operator_writes(live: LiveCluster, namespace: str, workload: str) -> list[str]:
    """The operator's writes to a workload, its ReplicaSets and its pods: ``verb resource/name``."""
    kinds = ("deployments", "statefulsets", "daemonsets", "replicasets", "pods")
    mine = []
    for write in live.writes_in_order(namespace):
        resource, name = write.split()[1].split("/")[0], write.rsplit("/", 1)[1]
        if resource in kinds and (name == workload or name.startswith(f"{workload}-")):
            mine.append(write)
    return mine


# ---------------------------------------------------------------- a canary that regresses


def test_a_canary_that_gets_oom_killed_is_rolled_back_and_the_other_pods_never_touched(
    live: LiveCluster,
) -> None:
    """cart is capped at 64Mi of memory request on what its pods used while they held 50Mi (the
    confident part of that, in place: no CPU limit added, since a rollback could not remove it);
    8 minutes in, they hold 150Mi. The canary is OOM-killed; the operator is restarted while the
    canary is watched, and still rolls it back, in place, from what the annotation kept.

    First in the module: it must see the canary while it is watched, minutes after the start."""
    ns = OOM
    original = live.wait(ns, "cart's three pods to run", lambda: _cart_pods(live, 3), 180)

    def canary() -> dict[str, Any] | None:
        changes = live.get("rsp", "cart", ns).get("status", {}).get("changes") or []
        return next((c for c in changes if c.get("phase") == "Canary"), None)

    watching = live.wait(ns, "a canary change in flight", canary, OOM_AFTER)
    record = json.loads(live.get("deployment", "cart", ns)["metadata"]["annotations"]["rightsizer.io/change"])
    assert record["before"]["app"]["limits"]["memory"] == "300Mi"  # the rollback point
    live.operator.restart()  # mid-canary

    def rolled_back() -> dict[str, Any] | None:
        found = condition(live.get("rsp", "cart", ns), "RolledBack")
        return found if found.get("status") == "True" else None

    rolled = live.wait(ns, "the rollback", rolled_back, 600)
    canary_pod = watching["canaryPod"]
    assert canary_pod in rolled["message"] and "OOM-killed" in rolled["message"]
    assert "not put back" not in rolled["message"], rolled["message"]
    deployment = live.get("deployment", "cart", ns)
    annotations = deployment["metadata"]["annotations"]
    assert "rightsizer.io/change" not in annotations
    assert "memory-down" in json.loads(annotations["rightsizer.io/backoff"])
    # Applied once: the change started once, across the restart.
    assert annotations["rightsizer.io/applied-at"] == record["startedAt"]
    starts = [e for e in live.events(ns, "Applied") if "canary pod" in e["message"]]
    assert len(starts) == 1, [e["message"] for e in starts]
    # The template was never changed, and the pods other than the canary never touched.
    assert live.recorder.history(ns, "Deployment", "cart")[-1][1]["app"]["limits"]["memory"] == "300Mi"
    assert len(live.recorder.history(ns, "Deployment", "cart")) == 1
    now = pod_facts(live.pods(ns, "app=cart"))
    for name, (uid, restarts, resources) in original.items():
        if name == canary_pod:
            continue
        assert now[name] == (uid, restarts, resources), f"{name} was touched:\n{live.describe(ns)}"
    canary_spec = next(p for p in live.pods(ns, "app=cart") if p["metadata"]["name"] == canary_pod)
    assert canary_spec["spec"]["containers"][0]["resources"]["limits"]["memory"] == "300Mi"  # put back
    on_workload = live.events(ns, "RolledBack")
    assert {e["involvedObject"]["kind"] for e in on_workload} == {"RightSizePolicy", "Deployment"}
    assert parse_time(rolled["lastTransitionTime"]).timestamp() > live.started


def _cart_pods(live: LiveCluster, count: int) -> dict[str, tuple[str, int, dict[str, Any]]] | None:
    pods = [p for p in live.pods(OOM, "app=cart") if p["status"].get("phase") == "Running"]
    return pod_facts(pods) if len(pods) == count else None


# ---------------------------------------------------------------- every kind, in place


def test_every_kind_is_resized_in_place_with_no_restart_and_its_template_follows(live: LiveCluster) -> None:
    ns = KINDS
    long_running = {"Deployment": "web", "StatefulSet": "db", "DaemonSet": "agent"}
    before = live.wait(ns, "the pods of web, db and agent to run", lambda: _running(live, ns, 5), 180)

    def done() -> bool:
        status = live.get("rsp", "all-kinds", ns).get("status", {})
        changed = {
            kind: len(live.recorder.history(ns, kind, name)) >= 2
            for kind, name in {**long_running, "CronJob": "report"}.items()
        }
        return all(changed.values()) and not status.get("changes")

    live.wait(ns, "a change of every kind, done", done, 720)
    after = pod_facts(live.pods(ns, "app in (web, db, agent)"))
    for name, (uid, restarts, _) in before.items():
        assert name in after, f"pod {name} was replaced:\n{live.describe(ns)}"
        assert after[name][0] == uid and after[name][1] == restarts, (
            f"pod {name} restarted:\n{live.describe(ns)}"
        )
    for kind, name in long_running.items():
        template = live.recorder.history(ns, kind, name)[-1][1]["app"]
        assert parse(template["requests"]["memory"]) < parse("200Mi"), (kind, template)
        for pod, (_, _, running) in after.items():
            if pod.startswith(f"{name}-"):
                assert running == template, f"{pod} runs {running}, the template says {template}"
    # Nothing rolled out: one ReplicaSet with pods, the StatefulSet and the DaemonSet on one revision.
    replicasets = json.loads(live.k("get", "rs", "-n", ns, "-l", "app=web", "-o", "json").stdout)["items"]
    assert len([rs for rs in replicasets if rs["status"].get("replicas", 0) > 0]) == 1
    db = live.get("statefulset", "db", ns)["status"]
    assert db["currentRevision"] == db["updateRevision"]
    agent = live.get("daemonset", "agent", ns)
    assert agent["status"]["updatedNumberScheduled"] == agent["status"]["desiredNumberScheduled"] == 1
    assert agent["spec"]["updateStrategy"]["type"] == "RollingUpdate"  # put back after the switch
    cronjob = pod_template(live.get("cronjob", "report", ns))["spec"]["containers"][0]["resources"]
    assert parse(cronjob["requests"]["memory"]) < parse("200Mi")
    # The canary went first: for the Deployment, one pod resized before the other.
    started = [e for e in live.events(ns, "Applied") if "Deployment/web" in e["message"]]
    assert any("canary pod web-" in e["message"] for e in started), [e["message"] for e in started]
    progressed = [e for e in live.events(ns, "ChangeProgressed") if "Deployment/web" in e["message"]]
    assert any("healthy for 15s: 1 more pod(s) resized in place" in e["message"] for e in progressed)
    # What one in-place change of a 2-pod Deployment cost (docs/operator.md has the figures): from
    # the decision to the template that follows every resized pod, and the operator's writes.
    decided = min(parse_time(e["metadata"]["creationTimestamp"]).timestamp() for e in started)
    followed = live.recorder.history(ns, "Deployment", "web")[1][0]
    writes = operator_writes(live, ns, "web")
    print(
        f"measured: Deployment/web, 2 pods: decision to every pod resized and the template following: "
        f"{followed - decided:.0f}s, with a 15s canary; {len(writes)} API writes: {writes}",
        file=sys.stderr,
    )
    # The change's record (written first), the canary's resize, the Resizing phase, the other pod's
    # resize, the Template phase, the Deployment paused, the ReplicaSet's template, the Deployment's
    # template (resumed), the record removed: nothing written twice.
    assert len(writes) <= 9, writes


def _running(
    live: LiveCluster, namespace: str, count: int
) -> dict[str, tuple[str, int, dict[str, Any]]] | None:
    pods = [
        p
        for p in live.pods(namespace, "app in (web, db, agent)")
        if p["status"].get("phase") == "Running"
        and all(s.get("ready") for s in p["status"].get("containerStatuses") or [{}])
    ]
    return pod_facts(pods) if len(pods) == count else None


# ---------------------------------------------------------------- a budget that allows no disruption


def test_a_budget_that_allows_no_disruption_blocks_a_rollout_and_status_says_so(live: LiveCluster) -> None:
    ns = PDB

    def blocked() -> dict[str, Any] | None:
        applied = condition(live.get("rsp", "api", ns), "Applied")
        return (
            applied
            if applied.get("reason") == "Blocked" and "PodDisruptionBudget" in applied.get("message", "")
            else None
        )

    applied = live.wait(ns, "the change to be blocked by the budget", blocked, 420)
    assert "api-never-down allows no disruption" in applied["message"]
    assert "updateMode InPlace" in applied["message"]
    assert len(live.recorder.history(ns, "Deployment", "api")) == 1  # never patched
    assert live.get("deployment", "api", ns)["metadata"]["generation"] == 1


# ---------------------------------------------------------------- PodsOnly: never the template


def test_pods_only_resizes_running_pods_and_new_pods_get_the_change_from_the_webhook(
    live: LiveCluster,
) -> None:
    ns = PODS_ONLY
    before = live.wait(ns, "shop's two pods to run", lambda: _shop_pods(live, 2), 180)

    def done() -> dict[str, Any] | None:
        status = live.get("rsp", "shop", ns).get("status", {})
        annotations = live.get("deployment", "shop", ns)["metadata"].get("annotations") or {}
        finished = "rightsizer.io/pod-resources" in annotations and "rightsizer.io/change" not in annotations
        return annotations if finished and not status.get("changes") else None

    annotations = live.wait(ns, "the PodsOnly change, done", done, 600)
    given = json.loads(annotations["rightsizer.io/pod-resources"])["app"]
    assert parse(given["requests"]["memory"]) < parse("200Mi"), given
    # The running pods run it, never restarted; the template still says what its owner wrote.
    after = pod_facts(live.pods(ns, "app=shop"))
    for name, (uid, restarts, _) in before.items():
        assert after[name][:2] == (uid, restarts), f"{name} replaced or restarted:\n{live.describe(ns)}"
        assert after[name][2] == given, f"{name} runs {after[name][2]}, not {given}"
    assert len(live.recorder.history(ns, "Deployment", "shop")) == 1, "the template was edited"
    assert pod_template(live.get("deployment", "shop", ns))["spec"]["containers"][0]["resources"] == OVER
    # A new pod (a scale-up) is given the change at admission.
    live.k("scale", "deployment", "shop", "-n", ns, "--replicas=3")
    new = live.wait(
        ns,
        "a third pod",
        lambda: [p for p in live.pods(ns, "app=shop") if p["metadata"]["name"] not in before],
        120,
    )
    (pod,) = new
    assert pod["spec"]["containers"][0]["resources"] == given, live.describe(ns)
    assert pod_template(live.get("deployment", "shop", ns))["spec"]["containers"][0]["resources"] == OVER


def _shop_pods(live: LiveCluster, count: int) -> dict[str, tuple[str, int, dict[str, Any]]] | None:
    pods = [
        p
        for p in live.pods(PODS_ONLY, "app=shop")
        if p["status"].get("phase") == "Running"
        and all(s.get("ready") for s in p["status"].get("containerStatuses") or [{}])
    ]
    return pod_facts(pods) if len(pods) == count else None


# ---------------------------------------------------------------- spec.hpa: Retune


def test_retune_keeps_each_hpa_scaling_out_at_the_same_usage_a_pod(live: LiveCluster) -> None:
    """hot's CPU request goes up from 50m: its HPA's 60% (30m a pod) is lowered first, before any pod
    is resized. idle's memory request is stepped down from 200Mi: its HPA's 50% memory target (100Mi a
    pod) is raised once the change is done; its 80% CPU target (40m a pod) moves only if its CPU
    request does. Between changes, each target times the template's request is the scale-out point
    its owner chose, within the whole-percent rounding (measured: 60% of 50m -> 27% of 110m, 50% of
    200Mi -> 189% of 53Mi)."""
    ns = HPA

    def hot_lowered() -> dict[str, Any] | None:
        cpu = _targets(live, "hot-hpa")["cpu"]
        return live.get("deployment", "hot", ns) if cpu < 60 else None

    deployment = live.wait(ns, "hot's HPA target lowered", hot_lowered, 600)
    record = json.loads(deployment["metadata"]["annotations"].get("rightsizer.io/change") or "{}")
    if record:  # still in flight: the HPA's target is the one the change set
        (retune,) = record["autoscalers"]
        assert retune["before"] == 60 and retune["after"] == _targets(live, "hot-hpa")["cpu"]
    writes = live.writes_in_order(ns)
    first_resize = next(i for i, w in enumerate(writes) if w.startswith("patch pods/resize/hot-"))
    assert writes.index("patch horizontalpodautoscalers/hot-hpa") < first_resize, writes

    # Once each change is done (a raised target is set last), target x request is the scale-out point.
    idle = _settled_targets(live, "idle", "idle-hpa", "memory", 50)
    hot = _settled_targets(live, "hot", "hot-hpa", "cpu", 60)
    for (targets, requests), points in ((idle, {"cpu": "40m", "memory": "100Mi"}), (hot, {"cpu": "30m"})):
        for resource, point in points.items():
            scales_out_at = Decimal(targets[resource]) / 100 * parse(requests[resource])
            assert abs(scales_out_at - parse(point)) <= Decimal("0.02") * parse(point), (targets, requests)
    retuned = live.events(ns, "AutoscalerRetuned")  # on the policies, named as their workloads
    assert {e["involvedObject"]["name"] for e in retuned} == {"idle", "hot"}, [e["message"] for e in retuned]


def _settled_targets(
    live: LiveCluster, workload: str, hpa: str, moved: str, original: int
) -> tuple[dict[str, int], dict[str, str]]:
    """The HPA's targets and the template's requests, once the ``moved`` target left ``original``
    and no change is in flight (the workload read before and after the HPA, unchanged)."""

    def settled() -> tuple[dict[str, int], dict[str, str]] | None:
        before = live.get("deployment", workload, HPA)
        if "rightsizer.io/change" in (before["metadata"].get("annotations") or {}):
            return None
        targets = _targets(live, hpa)
        after = live.get("deployment", workload, HPA)
        if after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]:
            return None
        requests = pod_template(after)["spec"]["containers"][0]["resources"]["requests"]
        return (targets, requests) if targets[moved] != original else None

    return live.wait(HPA, f"{hpa}'s {moved} target moved, no change in flight", settled, 900)


def _targets(live: LiveCluster, name: str) -> dict[str, int]:
    hpa = live.get("hpa", name, HPA)
    return {
        m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]
    }

"""Auto mode on a real node where it broke (issue 15), and what no test had seen it do:

- auto-deferred: a rollback whose resize back the kubelet defers (the memory the canary's change
  freed was taken by another pod): the canary is evicted and recreated with its old resources, never
  OOM-killed again at the lowered limit, and the direction backed off (``cooldown: 1s``, so the
  cooldown hides nothing);
- auto-once: one OOM kill, in place, followed by many evaluations: memory raised exactly once;
- auto-down: Prometheus stopped while the canary is watched, and the canary OOM-killed: rolled back
  anyway;
- auto-fallback: InPlaceOrRollout rolls out what in place cannot take (a QoS class change, a
  ``resizePolicy: RestartContainer``);
- auto-ready: a pod not ready for 40 s at a time is no regression, one not ready for 90 s is;
- auto-throttle: a canary CFS-throttled above the threshold (through the real Prometheus) is rolled back.

The scenarios start with test_node_auto's and test_node_loop's, on one node
(tests/support/closed_loops.py), so their minutes overlap. Every test reads the whole record, never
only what it sees once it starts looking.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rightsizer.quantity import parse
from rightsizer.timestamps import parse_time
from tests.support.gate import PrometheusGate
from tests.support.k8s import ControlPlane, kubectl, serviceaccount_kubeconfig, wait_for_established_crd
from tests.support.node import LOAD_IMAGE, NodePrometheus, load_deployment
from tests.support.operator import OperatorProcess
from tests.support.scenario import (
    LABEL,
    LiveCluster,
    TemplateRecorder,
    condition,
    namespaces_deleted_on_exit,
    shared,
    stopped_on_exit,
)

pytestmark = [pytest.mark.node, pytest.mark.k8s, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parent.parent
HISTORY = {"window": "10m", "minimum": "2m", "resolution": "30s"}
DEFERRED, ONCE, DOWN, FALLBACK, READY, THROTTLE = (
    "auto-deferred",
    "auto-once",
    "auto-down",
    "auto-fallback",
    "auto-ready",
    "auto-throttle",
)
WATCHED = (DEFERRED, ONCE, FALLBACK, READY, THROTTLE)
"""The namespaces of the module's operator (auto-down has its own, reaching Prometheus through a gate)."""
SPIKE_AFTER = 600
"""auto-deferred's and auto-down's pods hold 50Mi this many seconds, then 150Mi: by then their
canary runs a memory limit of 96Mi (maxAllowed 64Mi of request) and is OOM-killed."""
LEFT_FREE = "500Mi"
"""What auto-deferred's taker leaves free of the node's allocatable memory: room for the other
scenarios' new pods (at most 400Mi), not for the canary's resize back (+900Mi or so)."""


def policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"mode": "Auto", "interval": "10s", "history": HISTORY, **spec},
    }


def labelled(workload: dict[str, Any]) -> dict[str, Any]:
    workload["metadata"]["labels"][LABEL] = "rollback"
    return workload


def spiking(namespace: str, replicas: int, memory: str) -> dict[str, Any]:
    """``cart``: 5m and 50Mi, then 150Mi from ``SPIKE_AFTER`` s, requesting ``memory`` (its limit too)."""
    args = ["-cpu", "5m", "-memory", f"50Mi@{SPIKE_AFTER}s,150Mi@1h", "-memory-rate", "32Mi"]
    resources = {"cpu": "5m", "memory": memory}
    return labelled(
        load_deployment(namespace, "cart", args, resources, {"memory": memory}, replicas=replicas)
    )


CANARY_OOM = {
    "targetRef": {"name": "cart"},
    # cooldown 1s: after the rollback only the back-off holds memory-down back. CPU is pinned at the
    # 5m its pods request (no CPU limit), so that no other change starts in its stead; the shared
    # node's CPU is near its allocatable in requests, so the scenarios of this module request little.
    "cpu": {"noLimit": True},
    "auto": {
        "updateMode": "InPlace",
        "canary": {"duration": "10m"},
        "maxStepPercent": 1000,
        "cooldown": "1s",
    },
    "containerPolicies": [
        {"containerName": "app", "minAllowed": {"cpu": "5m"}, "maxAllowed": {"cpu": "5m", "memory": "64Mi"}}
    ],
}


def deferred_objects() -> list[dict[str, Any]]:
    """One pod requesting 1Gi, lowered in place to about 100Mi (the confident part, within a step of
    1000%); a taker then fills the node's memory (``taker``)."""
    # The kill counts for the whole session (an hour's window): on a slow node the eviction and the
    # recreated pod come more than 10 minutes after it (CI: killed 13:13, checked after 13:23).
    deferred = {**CANARY_OOM, "history": {**HISTORY, "window": "60m"}}
    return [spiking(DEFERRED, 1, "1Gi"), policy("cart", DEFERRED, deferred)]


def taker(memory: int, seconds: int) -> dict[str, Any]:
    """A Job of one pod requesting ``memory`` bytes for ``seconds``: what the scheduler gives the room
    a lowered pod freed (a Pending pod of another workload, in issue 15)."""
    container = {
        "name": "app",
        "image": LOAD_IMAGE,
        "imagePullPolicy": "Never",
        "args": ["-cpu", "5m", "-for", f"{seconds}s"],
        "resources": {"requests": {"cpu": "5m", "memory": str(memory)}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "taker", "namespace": DEFERRED},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [container],
                }
            },
        },
    }


def once_objects() -> list[dict[str, Any]]:
    """40Mi under a 64Mi limit, 100Mi after 4 minutes: one OOM kill, then memory raised in place well
    before the restarted container reaches 100Mi again. CPU pinned, no CPU limit: only memory moves."""
    args = ["-cpu", "5m", "-memory", "40Mi@240s,100Mi@1h", "-memory-rate", "32Mi"]
    api = labelled(load_deployment(ONCE, "api", args, {"cpu": "5m", "memory": "48Mi"}, {"memory": "64Mi"}))
    spec = {
        "targetRef": {"name": "api"},
        # The kill counts for the whole session (an hour's window), whenever the test looks.
        "history": {**HISTORY, "window": "60m"},
        "cpu": {"noLimit": True},
        "auto": {
            "updateMode": "InPlace",
            "canary": {"duration": "15s"},
            "maxStepPercent": 1000,
            "cooldown": "1s",
        },
        "containerPolicies": [
            {"containerName": "app", "minAllowed": {"cpu": "5m"}, "maxAllowed": {"cpu": "5m"}}
        ],
    }
    return [api, policy("api", ONCE, spec)]


def down_objects() -> list[dict[str, Any]]:
    return [spiking(DOWN, 1, "300Mi"), policy("cart", DOWN, CANARY_OOM)]


def fallback_objects() -> list[dict[str, Any]]:
    """Two over-provisioned pods in place cannot take: Guaranteed (requests = limits: the change's
    limit ratio makes it Burstable), and memory resized only by a restart."""
    idle = ["-cpu", "5m", "-memory", "24Mi"]
    same = {"cpu": "10m", "memory": "200Mi"}
    guaranteed = labelled(load_deployment(FALLBACK, "guaranteed", idle, same, same))
    restarting = labelled(
        load_deployment(FALLBACK, "restarting", idle, {"cpu": "5m", "memory": "200Mi"}, {"memory": "200Mi"})
    )
    restarting["spec"]["template"]["spec"]["containers"][0]["resizePolicy"] = [
        {"resourceName": "memory", "restartPolicy": "RestartContainer"}
    ]
    for workload in (guaranteed, restarting):
        workload["metadata"]["labels"]["rightsize"] = "fallback"
    spec = {
        "selector": {"matchLabels": {"rightsize": "fallback"}},
        "auto": {"updateMode": "InPlaceOrRollout", "canary": {"duration": "15s"}, "maxStepPercent": 1000},
    }
    return [guaranteed, restarting, policy("fallback", FALLBACK, spec)]


def ready_objects() -> list[dict[str, Any]]:
    """``brief`` fails its readiness probe 40 s in every 140 s, ``long`` 90 s in every 190 s: both
    within the canary's 4 minutes of watch."""
    objects: list[dict[str, Any]] = []
    for name, unready in (("brief", "0@100s,1@40s"), ("long", "0@100s,1@90s")):
        args = ["-cpu", "5m", "-memory", "24Mi", "-unready", unready]
        workload = labelled(
            load_deployment(
                READY, name, args, {"cpu": "5m", "memory": "200Mi"}, {"cpu": "20m", "memory": "200Mi"}
            )
        )
        workload["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
            "httpGet": {"path": "/healthz", "port": 8080},
            "periodSeconds": 2,
            "failureThreshold": 1,
        }
        spec = {
            "targetRef": {"name": name},
            "auto": {"updateMode": "InPlace", "canary": {"duration": "4m"}, "maxStepPercent": 1000},
        }
        objects += [workload, policy(name, READY, spec)]
    return objects


def throttle_objects() -> list[dict[str, Any]]:
    """20m under a 200m limit; the request pinned at 5m (the node's CPU is short, in requests and in
    use), so the change lowers the limit to 15m (the profile's 3x): the canary is throttled, and
    rolled back."""
    args = ["-cpu", "20m", "-memory", "24Mi"]
    batch = labelled(
        load_deployment(
            THROTTLE, "batch", args, {"cpu": "5m", "memory": "64Mi"}, {"cpu": "200m", "memory": "64Mi"}
        )
    )
    spec = {
        "targetRef": {"name": "batch"},
        "auto": {"updateMode": "InPlace", "canary": {"duration": "5m"}, "maxStepPercent": 1000},
        "containerPolicies": [
            {"containerName": "app", "minAllowed": {"cpu": "5m"}, "maxAllowed": {"cpu": "5m"}}
        ],
    }
    return [batch, policy("batch", THROTTLE, spec)]


class Actor:
    """What a scenario does to the cluster at its moment (a taker created, Prometheus stopped),
    in a thread started with the scenarios, whatever test runs then; what it saw goes in ``facts``,
    read by its test when it runs (a failure is raised there)."""

    def __init__(self, name: str, act: Callable[[dict[str, Any]], None]) -> None:
        self.facts: dict[str, Any] = {}
        self._error: BaseException | None = None
        self._act = act
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Actor:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._act(self.facts)
        except BaseException as error:  # kept for the test to raise
            self._error = error

    def result(self, timeout: float) -> dict[str, Any]:
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        assert not self._thread.is_alive(), (
            f"{self._thread.name} still acting after {timeout:.0f}s: {self.facts}"
        )
        return self.facts


@dataclass
class Rollbacks(LiveCluster):
    """The scenarios' cluster, with the Prometheus and operator of auto-down and the actors."""

    down_prometheus: PrometheusGate = field(kw_only=True)
    """auto-down's way to Prometheus, closed while its canary is watched."""
    down_operator: OperatorProcess = field(kw_only=True)
    actors: dict[str, Actor] = field(default_factory=dict, kw_only=True)

    def evaluations_after(self, namespace: str, policy: str, moment: float, count: int) -> None:
        """Wait until the policy was evaluated ``count`` times after ``moment``."""
        seen: set[str] = set()

        def enough() -> bool:
            last = self.get("rsp", policy, namespace).get("status", {}).get("lastEvaluationTime")
            if last and parse_time(last).timestamp() > moment:
                seen.add(last)
            return len(seen) >= count

        self.wait(namespace, f"{count} evaluations", enough, 60 + 20 * count)


@pytest.fixture(scope="module")
def live(closed_loop_scenarios: dict[str, Any]) -> Rollbacks:
    handle: Rollbacks = closed_loop_scenarios["test_node_rollback"]
    return handle


@contextmanager
def scenarios(node_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollbacks]:
    """Start every scenario in a namespace of its own, the module's operator and auto-down's (whose
    way to the node's Prometheus, shared with the other modules, is a gate it can close)."""
    state = tmp_path_factory.mktemp("rollback")

    def k(*args: str, input: str | None = None) -> Any:
        return kubectl(*args, kubeconfig=node_cluster.kubeconfig, input=input)

    k("apply", "-f", str(ROOT / "crds" / "rightsizepolicy.yaml"))
    wait_for_established_crd("rightsizepolicies.rightsizer.io", kubeconfig=node_cluster.kubeconfig)
    for manifest in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        k("apply", "-f", str(ROOT / "deploy" / manifest))
    namespaces = (*WATCHED, DOWN)
    objects = [
        *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces),
        *deferred_objects(),
        *once_objects(),
        *down_objects(),
        *fallback_objects(),
        *ready_objects(),
        *throttle_objects(),
    ]
    with ExitStack() as started_here:
        namespaces_deleted_on_exit(started_here, node_cluster.kubeconfig, namespaces)
        prometheus = shared(
            started_here, "prometheus", lambda: NodePrometheus(node_cluster, state / "prometheus").start()
        )
        k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        started = time.time()
        recorder = shared(started_here, "recorder", lambda: TemplateRecorder(node_cluster.kubeconfig).start())
        down_prometheus = stopped_on_exit(started_here, PrometheusGate(prometheus.url).start())
        identity = serviceaccount_kubeconfig(
            node_cluster.kubeconfig, "rightsizer-system", "rightsizer", state / "sa.kubeconfig"
        )
        operator = stopped_on_exit(
            started_here,
            OperatorProcess(identity, prometheus.url, state / "operator.log", namespaces=WATCHED).start(),
        )
        down_operator = stopped_on_exit(
            started_here,
            OperatorProcess(identity, down_prometheus.url, state / "down.log", namespaces=(DOWN,)).start(),
        )
        live = Rollbacks(
            node_cluster,
            prometheus,
            operator,
            recorder,
            started,
            down_prometheus=down_prometheus,
            down_operator=down_operator,
        )
        live.extra_logs["auto-down's operator"] = lambda: down_operator.log_tail(60)
        live.actors[DEFERRED] = Actor("taker", lambda facts: take_the_room(live, facts)).start()
        live.actors[DOWN] = Actor(
            "prometheus-down", lambda facts: stop_prometheus_mid_canary(live, facts)
        ).start()
        yield live


# ---------------------------------------------------------------- helpers


def running_resources(pod: dict[str, Any]) -> dict[str, Any]:
    (status,) = [s for s in pod["status"].get("containerStatuses") or [] if s["name"] == "app"] or [{}]
    return status.get("resources") or {}


def canary_in_flight(live: Rollbacks, namespace: str, policy_name: str, memory: str) -> dict[str, Any] | None:
    """The change in flight once its canary runs a memory limit lower than ``memory`` (the kubelet
    says so)."""
    changes = live.get("rsp", policy_name, namespace).get("status", {}).get("changes") or []
    change = next((c for c in changes if c.get("phase") in ("Canary", "Resizing", "Template", "Watch")), None)
    if change is None:
        return None
    pods = {p["metadata"]["name"]: p for p in live.pods(namespace)}
    canary = pods.get(change.get("canaryPod", ""))
    limit = (running_resources(canary).get("limits") or {}).get("memory") if canary else None
    return change if limit and parse(limit) < parse(memory) else None


def rolled_back(live: Rollbacks, namespace: str, policy_name: str) -> dict[str, Any] | None:
    found = condition(live.get("rsp", policy_name, namespace), "RolledBack")
    return found if found.get("status") == "True" else None


def free_memory(live: Rollbacks) -> int:
    """The node's allocatable memory no scheduled pod requests (bytes)."""
    (node,) = json.loads(live.k("get", "nodes", "-o", "json").stdout)["items"]
    allocatable = int(parse(node["status"]["allocatable"]["memory"]))
    pods = json.loads(live.k("get", "pods", "-A", "-o", "json").stdout)["items"]
    requested = sum(
        int(parse(c.get("resources", {}).get("requests", {}).get("memory", "0")))
        for p in pods
        if p["spec"].get("nodeName") and p["status"].get("phase") not in ("Succeeded", "Failed")
        for c in p["spec"]["containers"]
    )
    return allocatable - requested


def kills_at(live: Rollbacks, namespace: str, policy_name: str, limit: str) -> list[dict[str, Any]]:
    kills = live.get("rsp", policy_name, namespace).get("status", {}).get("observedOOMKills") or []
    return [k for k in kills if k.get("memoryLimit") == limit]


# ---------------------------------------------------------------- a rollback the kubelet defers


def take_the_room(live: Rollbacks, facts: dict[str, Any]) -> None:
    """auto-deferred's actor: once the canary runs the lowered memory, a taker fills the node's memory
    (what the scheduler gives a Pending pod, in issue 15), until well after the canary's rollback began;
    then what the rollback said while the resize back was Deferred."""
    ns = DEFERRED
    change = live.wait(
        ns,
        "the canary running the lowered memory",
        lambda: canary_in_flight(live, ns, "cart", "1Gi"),
        SPIKE_AFTER - 30,
    )
    canary = change["canaryPod"]
    (pod,) = [p for p in live.pods(ns) if p["metadata"]["name"] == canary]
    started = parse_time(pod["status"]["startTime"]).timestamp()
    # The room is held from just before the spike to a little after the eviction (2 minutes into the
    # rollback): the other scenarios' new pods wait for memory no longer than that.
    time.sleep(max(0.0, started + SPIKE_AFTER - 40 - time.time()))
    room = free_memory(live) - int(parse(LEFT_FREE))
    live.k("apply", "-f", "-", input=json.dumps(taker(room, int(started + SPIKE_AFTER + 200 - time.time()))))
    facts.update(canary=canary, lowered=running_resources(pod)["limits"]["memory"], taken=room)

    def deferred() -> dict[str, Any] | None:
        changes = live.get("rsp", "cart", ns).get("status", {}).get("changes") or []
        rolling = next((c for c in changes if c.get("phase") == "RollingBack"), None)
        return rolling if rolling and "Deferred" in rolling.get("message", "") else None

    facts["waiting"] = live.wait(
        ns, "the rollback waiting on a Deferred resize back", deferred, SPIKE_AFTER + 300
    )
    facts["condition"] = condition(live.get("rsp", "cart", ns), "RolledBack")


def test_a_deferred_resize_back_is_resolved_by_an_eviction_and_the_pod_runs_its_old_memory_again(
    live: Rollbacks,
) -> None:
    """Issue 15's full node: the canary is lowered from 1Gi to about 100Mi; a taker fills
    the node's memory; the canary is OOM-killed at the lowered limit; its resize back is Deferred. Two
    minutes into the rollback it is evicted, recreated with 1Gi once the taker is gone, and never
    killed again at the lowered limit."""
    ns = DEFERRED
    facts = live.actors[ns].result(SPIKE_AFTER + 900)
    canary, waiting = facts["canary"], facts["waiting"]
    assert canary in waiting["message"] and "OOM-killed" in waiting["rollingBack"], waiting
    assert facts["condition"]["reason"] == "RollingBack", facts["condition"]
    rolled = live.wait(ns, "the rollback, over", lambda: rolled_back(live, ns, "cart"), 600)

    def recreated() -> dict[str, Any] | None:
        pods = [p for p in live.pods(ns, "app=cart") if running_resources(p)]
        return pods[0] if len(pods) == 1 and pods[0]["metadata"]["name"] != canary else None

    now = live.wait(ns, "the canary evicted and its pod recreated, running", recreated, 300)
    assert running_resources(now)["limits"]["memory"] == "1Gi", live.describe(ns)
    assert f"create pods/eviction/{canary}" in live.writes_in_order(ns)
    assert parse_time(rolled["lastTransitionTime"]).timestamp() > live.started
    assert len(kills_at(live, ns, "cart", facts["lowered"])) == 1, live.describe(ns)
    # Backed off (cooldown 1s: only the back-off holds it): no change starts again.
    applied_at = live.get("deployment", "cart", ns)["metadata"]["annotations"]["rightsizer.io/applied-at"]
    live.evaluations_after(ns, "cart", time.time(), 6)
    deployment = live.get("deployment", "cart", ns)
    assert deployment["metadata"]["annotations"]["rightsizer.io/applied-at"] == applied_at
    assert "rightsizer.io/change" not in deployment["metadata"]["annotations"]
    assert "memory-down" in json.loads(deployment["metadata"]["annotations"]["rightsizer.io/backoff"])


# ---------------------------------------------------------------- one kill, one raise


def test_one_oom_kill_raises_memory_exactly_once_however_many_evaluations_follow(live: Rollbacks) -> None:
    """The kill, seen again at every evaluation after the pod was resized in place, stays one kill at
    the limit it was killed under: memory is raised once after it, never again (cooldown 1s: nothing
    else holds a second raise back). A change before the kill (the recommendation may raise the limit
    a little first) does not count, and is not rolled back for a kill under the limit it raised."""
    ns = ONCE

    def raised() -> tuple[float, dict[str, Any]] | None:
        kills = live.get("rsp", "api", ns).get("status", {}).get("observedOOMKills") or []
        if not kills:
            return None
        killed_at = parse_time(kills[0]["finishedAt"]).timestamp()
        for seen, resources in live.recorder.history(ns, "Deployment", "api"):
            limit = parse(resources["app"]["limits"]["memory"])
            if seen >= killed_at and limit > parse(kills[0]["memoryLimit"]):
                return seen, kills[0]
        return None

    raised_at, kill = live.wait(ns, "memory raised after the OOM kill", raised, 600)
    live.evaluations_after(ns, "api", raised_at, 12)
    after = [r["app"] for seen, r in live.recorder.history(ns, "Deployment", "api") if seen >= raised_at]
    assert len(after) == 1, f"memory raised more than once after the kill: {after}\n{live.describe(ns)}"
    assert live.get("rsp", "api", ns)["status"]["observedOOMKills"] == [kill]
    assert condition(live.get("rsp", "api", ns), "RolledBack").get("status") != "True", live.describe(ns)


# ---------------------------------------------------------------- Prometheus down


def stop_prometheus_mid_canary(live: Rollbacks, facts: dict[str, Any]) -> None:
    """auto-down's actor: Prometheus stopped once the canary runs the lowered memory, started again
    once the change is rolled back (or the wait is over)."""
    ns = DOWN
    live.wait(
        ns,
        "the canary running the lowered memory",
        lambda: canary_in_flight(live, ns, "cart", "300Mi"),
        SPIKE_AFTER - 30,
    )
    live.down_prometheus.stop()
    facts["stopped"] = time.time()
    try:
        facts["rolled"] = live.wait(
            ns, "the rollback", lambda: rolled_back(live, ns, "cart"), SPIKE_AFTER + 300
        )
        facts["reachable"] = condition(live.get("rsp", "cart", ns), "PrometheusReachable")
    finally:
        live.down_prometheus.start()
        facts["restarted"] = time.time()


def test_a_canary_oom_killed_while_prometheus_is_down_is_rolled_back_anyway(live: Rollbacks) -> None:
    ns = DOWN
    facts = live.actors[ns].result(SPIKE_AFTER + 900)
    rolled, reachable = facts["rolled"], facts["reachable"]
    assert "OOM-killed" in rolled["message"], rolled
    assert facts["stopped"] < parse_time(rolled["lastTransitionTime"]).timestamp() < facts["restarted"]
    assert reachable["status"] == "False", f"judged with Prometheus down: {reachable}"
    for pod in live.pods(ns, "app=cart"):
        assert running_resources(pod)["limits"]["memory"] == "300Mi", live.describe(ns)


# ---------------------------------------------------------------- what in place cannot take


def test_in_place_or_rollout_rolls_out_a_qos_change_and_a_restarting_resize(live: Rollbacks) -> None:
    ns = FALLBACK

    def both_done() -> list[dict[str, Any]] | None:
        status = live.get("rsp", "fallback", ns).get("status", {})
        histories = [live.recorder.history(ns, "Deployment", n) for n in ("guaranteed", "restarting")]
        return (
            live.events(ns, "Applied")
            if all(len(h) >= 2 for h in histories) and not status.get("changes")
            else None
        )

    applied = live.wait(ns, "both changes, rolled out and done", both_done, 600)
    messages = " | ".join(e["message"] for e in applied)
    assert "Deployment/guaranteed" in messages and "the QoS class of pod guaranteed-" in messages, messages
    assert "container app has resizePolicy RestartContainer for memory" in messages, messages
    assert messages.count("rolled out instead of resized in place") >= 2, messages
    for name in ("guaranteed", "restarting"):
        template = live.recorder.history(ns, "Deployment", name)[-1][1]["app"]
        for pod in live.pods(ns, f"app={name}"):
            assert running_resources(pod) == template, live.describe(ns)


# ---------------------------------------------------------------- readiness, both sides of 60 s


def test_readiness_lost_for_40s_is_no_regression_and_for_90s_is(live: Rollbacks) -> None:
    ns = READY
    rolled = live.wait(ns, "long's rollback", lambda: rolled_back(live, ns, "long"), 720)
    assert "not ready for" in rolled["message"], rolled
    seconds = re.search(r"not ready for (\d+)s", rolled["message"])
    assert seconds and 60 <= int(seconds.group(1)) < 90, rolled["message"]

    def brief_done() -> bool:
        status = live.get("rsp", "brief", ns).get("status", {})
        return len(live.recorder.history(ns, "Deployment", "brief")) >= 2 and not status.get("changes")

    live.wait(ns, "brief's change, done", brief_done, 900)
    assert condition(live.get("rsp", "brief", ns), "RolledBack").get("status") != "True"
    unready_while_watched = [e for e in live.events(ns, "ChangeDone") if "Deployment/brief" in e["message"]]
    assert unready_while_watched, live.describe(ns)


# ---------------------------------------------------------------- CFS throttling, judged by Prometheus


def test_a_canary_throttled_above_the_threshold_is_rolled_back(live: Rollbacks) -> None:
    ns = THROTTLE
    rolled = live.wait(ns, "the rollback", lambda: rolled_back(live, ns, "batch"), 900)
    assert "CFS-throttled" in rolled["message"], rolled
    template = live.recorder.history(ns, "Deployment", "batch")[-1][1]["app"]
    assert template["limits"]["cpu"] == "200m", template
    for pod in live.pods(ns, "app=batch"):
        assert running_resources(pod)["limits"]["cpu"] == "200m", live.describe(ns)

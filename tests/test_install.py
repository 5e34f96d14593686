"""A real install on the real node: the image built from the Dockerfile, `kubectl apply -k` as a user.

The operator image is built with podman (hack/images/operator.sh, cached) and imported into the
node's containerd under the name deploy/ runs. deploy/ is applied through an overlay that only
points it at this test's Prometheus (docs/deploy.md: how users change the URL), which runs inside
the cluster's network namespace on the node's address, where pods reach it. The pods reach the API
server through the `kubernetes` Service (kube-proxy on the node), as in any cluster.

Two replicas run with leader election. The leader is killed (SIGKILL through containerd: no
chance to release its Lease), then the next leader is deleted the way Kubernetes stops a pod
(SIGTERM: it releases the Lease). Each time the other replica takes over, and the one change Auto
mode made is never made again. Times are printed (docs/deploy.md has them), never asserted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from rightsizer.apply import APPLIED_AT
from rightsizer.timestamps import parse_time
from tests.support.image import (
    OPERATOR_IMAGE,
    build_operator_image,
    container_pid,
    import_image,
    kill_container,
)
from tests.support.k8s import ControlPlane, kubectl, wait_for_established_crd
from tests.support.node import NodePrometheus, load_deployment

pytestmark = [pytest.mark.node, pytest.mark.k8s, pytest.mark.prometheus]

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SYSTEM = "rightsizer-system"
SHOP = "shop"
MIN_SAMPLES = 110
"""The engine wants 100 working-set samples of a container before it recommends (1 s scrape here)."""
T = TypeVar("T")


@dataclass
class Install:
    cluster: ControlPlane
    prometheus: NodePrometheus
    applied: float
    """Wall-clock time of `kubectl apply -k`."""
    measured: dict[str, float] = field(default_factory=dict)

    def k(self, *args: str, check: bool = True) -> Any:
        return kubectl(*args, kubeconfig=self.cluster.kubeconfig, check=check)

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.k("get", *args, "-o", "json").stdout)

    def pods(self) -> list[dict[str, Any]]:
        items = self.get("pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=rightsizer")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def running_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods()
            if p["status"].get("phase") == "Running"
            and all(c.get("ready") for c in p["status"].get("containerStatuses", []))
        ]

    def leader(self) -> str | None:
        """The pod holding the Lease (its identity is `<pod name>_<process id>`)."""
        result = self.k("get", "lease", "rightsizer", "-n", SYSTEM, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        holder = json.loads(result.stdout)["spec"].get("holderIdentity") or ""
        return holder.rsplit("_", 1)[0] or None

    def log(self, pod: str, previous: bool = False) -> str:
        args = ["logs", "-n", SYSTEM, pod, *(["--previous"] if previous else [])]
        return self.k(*args, check=False).stdout

    def policy_status(self) -> dict[str, Any]:
        return self.get("rsp", "web", "-n", SHOP).get("status") or {}

    def web(self) -> dict[str, Any]:
        return self.get("deployment", "web", "-n", SHOP)

    def describe(self) -> str:
        names = [p["metadata"]["name"] for p in self.pods()]
        pods = "\n".join(f"--- {name}\n{self.log(name)[-3000:]}" for name in names)
        status = json.dumps(self.policy_status(), indent=1)[-3000:]
        return f"leader: {self.leader()}\npolicy status: {status}\npods and logs:\n{pods}"

    def wait(self, what: str, check: Callable[[], T | None], timeout: float = 300) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(1)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.describe()}")

    def report(self, name: str, seconds: float) -> None:
        self.measured[name] = seconds
        print(f"measured: {name}: {seconds:.1f}s", file=sys.stderr)


def node_ip(cluster: ControlPlane) -> str:
    node = json.loads(kubectl("get", "node", "-o", "json", kubeconfig=cluster.kubeconfig).stdout)["items"][0]
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def overlay(directory: Path, prometheus_url: str) -> Path:
    """What a user writes to point deploy/ at their Prometheus: a kustomization with one patch."""
    directory.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, directory)],
        "patches": [
            {
                "target": {"kind": "Deployment", "name": "rightsizer"},
                "patch": yaml.safe_dump(
                    [
                        {
                            "op": "replace",
                            "path": "/spec/template/spec/containers/0/args/2",
                            "value": prometheus_url,
                        }
                    ]
                ),
            }
        ],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return directory


POLICY = {
    "apiVersion": "rightsizer.io/v1alpha1",
    "kind": "RightSizePolicy",
    "metadata": {"name": "web", "namespace": SHOP},
    "spec": {
        "targetRef": {"name": "web"},
        "mode": "Auto",
        "interval": "10s",
        "history": {"window": "10m", "minimum": "1m", "resolution": "15s"},
        # One change, watched for half an hour: its record, not a cooldown (1s), is what keeps a second
        # one from starting, so a new leader that applied it again would be seen doing so.
        "auto": {"cooldown": "1s", "canary": {"duration": "30m"}},
    },
}


@pytest.fixture(scope="module")
def install(node_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """The workload and its history first (the engine needs minutes of it), then the image, then
    `kubectl apply -k` and a policy, as a user would, timed to the first recommendation."""
    k = node_cluster.kubeconfig
    kubectl("create", "namespace", SHOP, kubeconfig=k)
    web = load_deployment(
        SHOP,
        "web",
        ["-cpu", "50m", "-memory", "32Mi"],
        {"cpu": "400m", "memory": "256Mi"},
        {"memory": "256Mi"},
    )
    kubectl("apply", "-f", "-", input=json.dumps(web), kubeconfig=k)
    prometheus = NodePrometheus(
        node_cluster,
        tmp_path_factory.mktemp("prometheus"),
        scrape_interval="1s",
        listen_ip=node_ip(node_cluster),
    ).start()
    try:
        archive = build_operator_image()
        importing = time.monotonic()
        import_image(node_cluster, archive)
        print(f"measured: ctr images import: {time.monotonic() - importing:.1f}s", file=sys.stderr)
        samples = (
            'sum(count_over_time(container_memory_working_set_bytes{namespace="shop",container="app"}[10m]))'
        )
        deadline = time.monotonic() + 600
        while not any(float(r["value"][1]) >= MIN_SAMPLES for r in prometheus.query(samples)):
            assert time.monotonic() < deadline, f"Prometheus never held {MIN_SAMPLES} samples of shop/web"
            time.sleep(2)

        applied = time.time()
        kubectl(
            "apply",
            "-k",
            str(overlay(tmp_path_factory.mktemp("overlay"), prometheus.inner_url)),
            kubeconfig=k,
        )
        wait_for_established_crd("rightsizepolicies.rightsizer.io", kubeconfig=k)
        kubectl("apply", "-f", "-", input=json.dumps(POLICY), kubeconfig=k)
        install = Install(node_cluster, prometheus, applied)

        def recommended() -> bool:
            recommendations = install.policy_status().get("recommendations") or []
            return any(r.get("recommended") for r in recommendations)

        install.wait("the first recommendation in the policy's status", recommended)
        install.report("kubectl apply -k to the first recommendation", time.time() - applied)
        yield install
    finally:
        prometheus.stop()


def test_the_operator_runs_as_pods_of_the_built_image_restricted_and_as_its_service_account(
    install: Install,
) -> None:
    install.wait("two operator pods running", lambda: len(install.running_pods()) == 2)
    namespace = install.get("namespace", SYSTEM)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for pod in install.running_pods():
        assert pod["spec"]["serviceAccountName"] == "rightsizer"
        (status,) = pod["status"]["containerStatuses"]
        assert status["image"] == OPERATOR_IMAGE
        # The process itself, seen from the host: the image's non-root user, a read-only root.
        pid = container_pid(install.cluster, status["containerID"].split("://", 1)[1])
        uids = next(
            line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
        )
        assert uids.split()[1:] == ["65532"] * 4
        root_mount = next(line.split() for line in Path(f"/proc/{pid}/mounts").read_text().splitlines())
        assert root_mount[1] == "/" and "ro" in root_mount[3].split(","), root_mount
        log = install.log(pod["metadata"]["name"])
        assert "Forbidden" not in log and " 403" not in log, log


def test_it_reads_prometheus_inside_the_cluster_and_writes_recommendations(install: Install) -> None:
    status = install.policy_status()
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["PrometheusReachable"]["status"] == "True"
    assert conditions["RecommendationsReady"]["status"] == "True", conditions["RecommendationsReady"]
    (recommendation,) = status["recommendations"]
    assert recommendation["recommended"]["requests"]["cpu"]


def test_one_replica_leads_and_the_other_stands_by(install: Install) -> None:
    install.wait("two operator pods running", lambda: len(install.running_pods()) == 2)
    leader = install.wait("a leader", install.leader)
    names = {p["metadata"]["name"] for p in install.running_pods()}
    assert leader in names
    (standby,) = names - {leader}
    install.wait("the leader's evaluation in its log", lambda: "evaluated:" in install.log(leader) or None)
    assert "evaluated:" not in install.log(standby), "the standby evaluated a policy"


def applied_once(install: Install) -> tuple[str, dict[str, Any]]:
    """The Auto change on web: its applied-at annotation and the resources it gave the template.
    (Not ``metadata.generation``: a Deployment's counts annotation changes too, and Auto mode
    moves its change's record in an annotation as the change goes on.)"""
    install.wait(
        "Auto mode to patch web", lambda: APPLIED_AT in (install.web()["metadata"].get("annotations") or {})
    )
    deployment = install.web()
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    return deployment["metadata"]["annotations"][APPLIED_AT], resources


def evaluated_after(install: Install, moment: float, evaluations: int = 2) -> None:
    """Wait until the policy was evaluated ``evaluations`` times after ``moment`` (the 10 s interval)."""
    seen: set[str] = set()

    def enough() -> bool:
        last = install.policy_status().get("lastEvaluationTime")
        if last and parse_time(last).timestamp() > moment:
            seen.add(last)
        return len(seen) >= evaluations

    install.wait(f"{evaluations} evaluations by the new leader", enough)


def handover(install: Install, old_leader: str, stop: Callable[[], None], name: str) -> str:
    """Stop the leader with ``stop``; wait for the other pod to hold the Lease and evaluate. Returns it."""
    applied_at, resources = applied_once(install)
    stopped = time.time()
    stop()
    install.wait("another pod to take the Lease", lambda: install.leader() not in (None, old_leader))
    new_leader = install.leader()
    assert new_leader is not None
    install.report(f"{name}: to the Lease held by the other replica", time.time() - stopped)
    install.wait("the new leader's first evaluation", lambda: "evaluated:" in install.log(new_leader) or None)
    evaluated_after(install, stopped)
    install.report(f"{name}: to two evaluations by the new leader", time.time() - stopped)
    # Nothing applied twice: the one change stands, carried on from its record (started once), no
    # second patch, no second rollout.
    assert applied_once(install) == (applied_at, resources), install.describe()
    record = json.loads(install.web()["metadata"]["annotations"]["rightsizer.io/change"])
    assert record["startedAt"] == applied_at, record
    replica_sets = install.get("replicasets", "-n", SHOP, "-l", "app=web")["items"]
    assert len(replica_sets) == 2, "one rollout: the template before and after the one change"
    return new_leader


def test_killing_the_leader_hands_over_and_nothing_is_applied_twice(install: Install) -> None:
    install.wait("two operator pods running", lambda: len(install.running_pods()) == 2)
    leader = install.wait("a leader", install.leader)
    pod = install.get("pod", leader, "-n", SYSTEM)
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    new_leader = handover(install, leader, lambda: kill_container(install.cluster, container), "SIGKILL")
    assert new_leader != leader
    # The killed container is restarted in its pod and stands by.
    restarted = install.wait(
        "the killed container to restart",
        lambda: (
            install.get("pod", leader, "-n", SYSTEM)["status"]["containerStatuses"][0]["restartCount"] >= 1
        ),
    )
    assert restarted
    assert "evaluated:" in install.log(leader, previous=True)


def test_deleting_the_leader_pod_releases_the_lease(install: Install) -> None:
    install.wait("two operator pods running", lambda: len(install.running_pods()) == 2)
    leader = install.wait("a leader", install.leader)
    new_leader = handover(
        install,
        leader,
        lambda: install.k("delete", "pod", leader, "-n", SYSTEM, "--wait=false"),
        "kubectl delete pod",
    )
    assert new_leader != leader

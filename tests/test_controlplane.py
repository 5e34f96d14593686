"""The loopback control plane (hack/k8s) works: API ready, RBAC on, controllers running, clean stop.

Starts etcd + kube-apiserver + kube-controller-manager once for this module (building them on the
first run, see docs/controlplane.md), or uses the cluster named by RIGHTSIZER_TEST_KUBECONFIG.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.k8s import (
    ControlPlane,
    kubectl,
    process_running,
    serviceaccount_kubeconfig,
)

pytestmark = pytest.mark.k8s

T = TypeVar("T")


@pytest.fixture
def namespace(cluster: ControlPlane) -> Iterator[str]:
    name = f"cp-test-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name, kubeconfig=cluster.kubeconfig)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", kubeconfig=cluster.kubeconfig, check=False)


def wait_for(what: str, predicate: Callable[[], T | None], timeout: float = 60, interval: float = 0.5) -> T:
    """Poll ``predicate`` until it returns something truthy; return that, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def test_readyz(cluster: ControlPlane) -> None:
    result = kubectl("get", "--raw", "/readyz", kubeconfig=cluster.kubeconfig)
    assert result.stdout.strip() == "ok"
    assert cluster.server.startswith("https://")


def test_rbac_forbids_unbound_serviceaccount(cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    admin = cluster.kubeconfig
    kubectl("create", "serviceaccount", "nobody", "-n", namespace, kubeconfig=admin)
    sa_config = serviceaccount_kubeconfig(admin, namespace, "nobody", tmp_path / "nobody.kubeconfig")

    # The token authenticates (TokenRequest API works) ...
    whoami = kubectl("auth", "whoami", "-o", "json", kubeconfig=sa_config)
    username = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{namespace}:nobody"

    # ... but without a RoleBinding RBAC denies it, while the admin may.
    denied = kubectl("get", "secrets", "-n", namespace, kubeconfig=sa_config, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower(), denied.stderr
    kubectl("get", "secrets", "-n", namespace, kubeconfig=admin)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
        resources:
          requests: {cpu: 10m, memory: 16Mi}
"""


def test_deployment_makes_replicaset_and_pods(cluster: ControlPlane, namespace: str) -> None:
    admin = cluster.kubeconfig
    kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT, kubeconfig=admin)

    def items(kind: str) -> list[dict]:
        out = kubectl("get", kind, "-n", namespace, "-l", "app=web", "-o", "json", kubeconfig=admin).stdout
        return json.loads(out)["items"]

    replicasets = wait_for("the ReplicaSet of Deployment web", lambda: items("replicasets"))
    assert len(replicasets) == 1
    owner = replicasets[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Deployment", "web")

    def two_pods() -> list[dict] | None:
        pods = items("pods")
        return pods if len(pods) == 2 else None

    pods = wait_for("2 Pods of Deployment web", two_pods)
    for pod in pods:
        assert pod["metadata"]["ownerReferences"][0]["name"] == replicasets[0]["metadata"]["name"]
        # No nodes and no scheduler: the Pods exist but never run.
        assert pod["status"].get("phase") == "Pending"


def test_stop_leaves_no_processes(cluster: ControlPlane) -> None:
    """Runs last in this module: it stops the shared control plane."""
    if not cluster.managed:
        pytest.skip("RIGHTSIZER_TEST_KUBECONFIG names an existing cluster; nothing to stop")
    pids = cluster.pids()
    assert sorted(pids) == ["etcd", "kube-apiserver", "kube-controller-manager"]
    assert all(process_running(pid) for pid in pids.values())

    cluster.stop()

    still = {name: pid for name, pid in pids.items() if process_running(pid)}
    assert not still, f"still running after stop(): {still}"
    cluster.stop()  # idempotent

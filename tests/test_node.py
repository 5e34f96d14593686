"""The real node of hack/k8s/start.sh --node: pods run with the resources they ask for, on real
cgroups, and the cluster's traffic never leaves loopback or the network namespace made for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s import (
    EXISTING_NODE_ENV,
    HACK_DIR,
    ControlPlane,
    ControlPlaneError,
    kubectl,
    start_control_plane,
)
from tests.support.node import load_deployment

pytestmark = [pytest.mark.node, pytest.mark.k8s]


def wait_for_running(
    cluster: ControlPlane, namespace: str, selector: str, timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pods = json.loads(
            kubectl(
                "get", "pods", "-n", namespace, "-l", selector, "-o", "json", kubeconfig=cluster.kubeconfig
            ).stdout
        )["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        if running:
            return running[0]
        time.sleep(1)
    pytest.fail(
        f"no pod {selector} Running in {timeout}s: {json.dumps([p['status'] for p in pods], indent=1)}"
    )


def test_the_node_is_ready_and_a_pod_of_the_load_image_runs_with_its_cgroup_limits(
    node_cluster: ControlPlane,
) -> None:
    k = node_cluster.kubeconfig
    node = json.loads(kubectl("get", "node", node_cluster.node_name or "", "-o", "json", kubeconfig=k).stdout)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    kubectl("create", "namespace", "node-check", kubeconfig=k)
    deployment = load_deployment(
        "node-check",
        "load",
        ["-cpu", "100m", "-memory", "16Mi"],
        {"cpu": "100m", "memory": "32Mi"},
        {"cpu": "200m", "memory": "64Mi"},
    )
    kubectl("apply", "-f", "-", input=json.dumps(deployment), kubeconfig=k)
    pod = wait_for_running(node_cluster, "node-check", "app=load")
    # The kubelet set the pod's cgroups from its resources (cgroup v1 here: one hierarchy each).
    uid = pod["metadata"]["uid"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("//")[1]
    cgroup = f"kubepods/burstable/pod{uid}/{container_id}"
    assert (
        Path(f"/sys/fs/cgroup/cpu/{cgroup}/cpu.cfs_quota_us").read_text().strip() == "20000"
    )  # 200m of 100ms
    assert Path(f"/sys/fs/cgroup/cpu/{cgroup}/cpu.shares").read_text().strip() == "102"  # 100m x 1024 / 1000
    assert int(Path(f"/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes").read_text()) == 64 * 1024 * 1024
    logs = kubectl("logs", "-n", "node-check", pod["metadata"]["name"], kubeconfig=k).stdout
    assert "load: cpu 100m" in logs  # the API server reaches the kubelet for logs


def test_the_cluster_is_reached_only_through_loopback(node_cluster: ControlPlane) -> None:
    assert node_cluster.server.startswith("https://127.0.0.1:")
    assert node_cluster.netns is not None
    node = json.loads(
        kubectl(
            "get", "node", node_cluster.node_name or "", "-o", "json", kubeconfig=node_cluster.kubeconfig
        ).stdout
    )
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    # The node's address lives only inside the namespace: the host has no interface with it...
    host_addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    assert f" {node_ip}/" not in host_addresses
    inside = subprocess.run(
        ["nsenter", f"--net={node_cluster.netns}", "ip", "-o", "addr"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f" {node_ip}/" in inside
    # ... and no route out of the namespace: nothing started in it can reach past this machine.
    routes = subprocess.run(
        ["nsenter", f"--net={node_cluster.netns}", "ip", "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert routes.strip() == ""


def test_without_root_the_node_fails_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """start.sh, run as nobody, refuses with the reason; so does the tests' fixture (never a skip).

    nobody runs a copy of start.sh in a directory of its own that it may read: the checkout may sit
    where nobody cannot reach it (a clone in root's home directory, mode 700), and then the test would
    measure that, not the script's refusal."""
    state = tmp_path / "state"
    with tempfile.TemporaryDirectory(prefix="rightsizer-noroot-", dir="/tmp") as readable:
        os.chmod(readable, 0o755)
        start = Path(readable) / "start.sh"
        shutil.copy(HACK_DIR / "start.sh", start)
        start.chmod(0o755)
        script = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(start), "--node", str(state)],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
    assert script.returncode == 1, script.stderr
    assert "the node needs root" in script.stderr
    assert not state.exists()  # nothing was started or written
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    monkeypatch.delenv(EXISTING_NODE_ENV, raising=False)
    with pytest.raises(ControlPlaneError, match=r"the real node needs root.*never skipped"):
        start_control_plane(state, node=True)
    assert not state.exists()

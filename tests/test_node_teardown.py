"""Stopping the real node leaves the host as it was: no process, cgroup, mount, network namespace
or state directory of the node is left behind (a leftover would break the next start)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.k8s import ControlPlane, ControlPlaneError, kubectl, process_running, start_control_plane
from tests.support.node import load_deployment

pytestmark = [pytest.mark.node, pytest.mark.k8s]

HOST_PATHS = (
    "/var/lib/kubelet",
    "/run/containerd",
    "/var/log/containers",
    "/var/log/pods",
    "/run/xtables.lock",
)


def kubepods_cgroups() -> list[str]:
    return [str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")]


def mounts_under(path: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


def test_stop_removes_every_process_cgroup_mount_and_namespace(tmp_path: Path) -> None:
    existed = {path: os.path.exists(path) for path in HOST_PATHS}
    cluster: ControlPlane = start_control_plane(tmp_path / "node", node=True)
    try:
        assert cluster.state_dir is not None and cluster.netns is not None
        kubectl("create", "namespace", "teardown", kubeconfig=cluster.kubeconfig)
        deployment = load_deployment(
            "teardown",
            "load",
            ["-cpu", "50m", "-memory", "8Mi"],
            {"cpu": "50m"},
            {"memory": "32Mi"},
            replicas=2,
        )
        kubectl("apply", "-f", "-", input=json.dumps(deployment), kubeconfig=cluster.kubeconfig)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = json.loads(
                kubectl("get", "pods", "-n", "teardown", "-o", "json", kubeconfig=cluster.kubeconfig).stdout
            )["items"]
            if len([p for p in pods if p["status"].get("phase") == "Running"]) == 2:
                break
            time.sleep(1)
        else:
            pytest.fail("the pods never ran")
        pids = cluster.pids()
        assert {"kubelet", "containerd", "kube-scheduler", "kube-proxy", "forward-apiserver"} <= set(pids)
        assert kubepods_cgroups() and mounts_under(cluster.state_dir)
        netns = cluster.netns
    finally:
        cluster.stop()

    assert not [name for name, pid in pids.items() if process_running(pid)]
    shims = subprocess.run(
        ["pgrep", "-f", str(cluster.state_dir)], capture_output=True, text=True, check=False
    )
    assert shims.stdout.strip() == "", "a containerd shim or another process of the node still runs"
    assert kubepods_cgroups() == []
    assert mounts_under(cluster.state_dir) == []
    assert not os.path.exists(netns)
    netns_list = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert Path(netns).name not in netns_list
    for path, was_there in existed.items():
        assert os.path.exists(path) == was_there, path
    for leftover in ("containerd", "kubelet", "cni", "pod-logs"):
        assert not (cluster.state_dir / leftover).exists(), leftover


def test_empty_kubepods_cgroups_left_by_a_killed_node_are_removed_at_the_next_start(tmp_path: Path) -> None:
    # What a node killed before stop.sh ran leaves: the kubelet's cgroups, with nothing in them.
    leftovers = [Path(f"/sys/fs/cgroup/{h}/kubepods/burstable/pod-left-over") for h in ("cpu", "memory")]
    for leftover in leftovers:
        leftover.mkdir(parents=True)
    cluster = start_control_plane(tmp_path / "node", node=True)
    try:
        assert not any(leftover.exists() for leftover in leftovers)
        assert kubepods_cgroups(), "the new kubelet made its own"
    finally:
        cluster.stop()
    assert kubepods_cgroups() == []


def test_a_leftover_kubepods_cgroup_that_holds_a_process_stops_the_start_and_names_it(tmp_path: Path) -> None:
    leftover = Path("/sys/fs/cgroup/pids/kubepods/stray")
    leftover.mkdir(parents=True)
    stray = subprocess.Popen(["sleep", "600"])
    try:
        (leftover / "cgroup.procs").write_text(str(stray.pid))
        with pytest.raises(ControlPlaneError, match=rf"still hold processes \({stray.pid} "):
            start_control_plane(tmp_path / "node", node=True)
        assert stray.poll() is None, "the start must not kill what it did not start"
        assert not (tmp_path / "node" / "kube-apiserver.pid").exists(), "nothing was started"
    finally:
        stray.kill()
        stray.wait()
        deadline = time.monotonic() + 30
        while leftover.parent.exists():
            subprocess.run(["find", str(leftover.parent), "-depth", "-type", "d", "-delete"], check=False)
            assert time.monotonic() < deadline, f"could not remove {leftover.parent}"
            time.sleep(0.2)

"""The operator's fenced writes against a real kube-apiserver (``controller/kube.KubernetesCluster``):
a guarded ``pods/resize`` (JSON patch with ``test`` operations), a guarded relabel, an eviction of
one pod by its uid, a workload patch carrying a stale resourceVersion, an Event posted at once. What
``tests/support/fake_cluster`` assumes of the API server, checked on the real one."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config

from rightsizer.change_steps import Resize
from rightsizer.controller.change_executor import resize_operations
from rightsizer.controller.handlers import _post
from rightsizer.controller.kube import KubernetesCluster, PatchConflict, ResizeRefused
from rightsizer.controller.outcome import Event
from rightsizer.pods import PodView
from rightsizer.workload import resources_of
from tests.support.k8s import ControlPlane, kubectl

pytestmark = pytest.mark.k8s

RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}


@pytest.fixture(scope="module")
def api(cluster: ControlPlane) -> KubernetesCluster:
    config.load_kube_config(config_file=str(cluster.kubeconfig))
    return KubernetesCluster()


@pytest.fixture
def namespace(cluster: ControlPlane) -> Iterator[str]:
    name = f"writes-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name, kubeconfig=cluster.kubeconfig)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", kubeconfig=cluster.kubeconfig, check=False)


def pod(cluster: ControlPlane, namespace: str, name: str = "web-0") -> PodView:
    """A pod bound to a node that does not run it (no kubelet here): the API server keeps it as it is."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"controller-revision-hash": "web-1"}},
        "spec": {
            "nodeName": "nowhere",
            "containers": [{"name": "app", "image": "registry.invalid/app:1", "resources": RESOURCES}],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(body), kubeconfig=cluster.kubeconfig)
    return PodView.from_body(read(cluster, namespace, "pod", name))


def read(cluster: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(
        kubectl("get", kind, name, "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig).stdout
    )


def test_a_guarded_resize_changes_the_pods_spec_and_a_stale_one_is_a_conflict(api, cluster, namespace):
    seen = pod(cluster, namespace)
    smaller = resources_of(
        {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}}
    )
    api.resize_pod(namespace, seen.name, resize_operations(Resize(seen, {"app": smaller})))
    (container,) = read(cluster, namespace, "pod", seen.name)["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "32Mi"},
        "limits": {"cpu": "100m", "memory": "32Mi"},
    }
    # The same resize decided from what the pod asked for before: its test fails.
    with pytest.raises(PatchConflict):
        api.resize_pod(namespace, seen.name, resize_operations(Resize(seen, {"app": smaller})))


def test_a_resize_that_would_change_the_qos_class_is_refused(api, cluster, namespace):
    seen = pod(cluster, namespace)
    guaranteed = resources_of(
        {"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}
    )
    with pytest.raises(ResizeRefused, match=r"(?i)qos"):
        api.resize_pod(namespace, seen.name, resize_operations(Resize(seen, {"app": guaranteed})))


def test_a_guarded_relabel_and_a_stale_one(api, cluster, namespace):
    seen = pod(cluster, namespace)
    path = "/metadata/labels/controller-revision-hash"
    guard = [{"op": "test", "path": "/metadata/uid", "value": seen.uid}]
    api.label_pod(
        namespace,
        seen.name,
        [
            *guard,
            {"op": "test", "path": path, "value": "web-1"},
            {"op": "replace", "path": path, "value": "web-2"},
        ],
    )
    assert (
        read(cluster, namespace, "pod", seen.name)["metadata"]["labels"]["controller-revision-hash"]
        == "web-2"
    )
    with pytest.raises(PatchConflict):
        api.label_pod(
            namespace,
            seen.name,
            [
                *guard,
                {"op": "test", "path": path, "value": "web-1"},
                {"op": "replace", "path": path, "value": "web-3"},
            ],
        )


def test_an_eviction_names_the_pod_by_its_uid(api, cluster, namespace):
    seen = pod(cluster, namespace)
    with pytest.raises(PatchConflict):
        api.evict_pod(namespace, seen.name, "another-uid")
    api.evict_pod(namespace, seen.name, seen.uid)
    gone = kubectl(
        "get", "pod", seen.name, "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig, check=False
    )
    assert gone.returncode != 0 or json.loads(gone.stdout)["metadata"].get("deletionTimestamp")
    api.evict_pod(namespace, "never-was", "uid")  # a pod gone already: nothing to do


def test_a_workload_patch_with_a_stale_resource_version_is_a_conflict(api, cluster, namespace):
    kubectl(
        "create",
        "deployment",
        "web",
        "--image=registry.invalid/web:1",
        "-n",
        namespace,
        kubeconfig=cluster.kubeconfig,
    )
    version = read(cluster, namespace, "deployment", "web")["metadata"]["resourceVersion"]
    patch = {"metadata": {"resourceVersion": version, "annotations": {"rightsizer.io/change": "x"}}}
    newer = api.patch_workload("Deployment", namespace, "web", patch)
    assert newer != version
    with pytest.raises(PatchConflict):
        api.patch_workload("Deployment", namespace, "web", patch)


def test_an_event_is_posted_at_once_about_the_policy_or_its_target(api, cluster, namespace):
    """``handlers._post`` writes the Event from the handler's thread, before the handler returns (an
    operator stopped right after a change started lost the change's Events with Kopf's queue)."""
    policy = {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": "web", "namespace": namespace, "uid": str(uuid.uuid4())},
    }
    seen = pod(cluster, namespace)
    target = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": seen.name, "namespace": namespace}}
    logger = logging.getLogger("test")
    started = "Deployment/web: canary pod web-0 resized in place"
    _post(api, Event("Normal", "Applied", started), policy, logger)
    _post(api, Event("Warning", "RightSized", "x" * 2000, target), policy, logger)
    listed = json.loads(
        kubectl("get", "events", "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig).stdout
    )["items"]
    by_reason = {e["reason"]: e for e in listed}
    applied = by_reason["Applied"]
    assert applied["involvedObject"]["kind"] == "RightSizePolicy"
    assert applied["involvedObject"]["uid"] == policy["metadata"]["uid"]
    assert applied["message"] == started
    assert applied["source"]["component"] == "rightsizer"
    sized = by_reason["RightSized"]
    assert (sized["type"], sized["involvedObject"]["name"]) == ("Warning", seen.name)
    assert len(sized["message"]) == 1024


def test_an_event_the_api_server_refuses_is_logged_and_the_evaluation_goes_on(api, namespace, caplog):
    policy = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "no-such-namespace"},
    }
    _post(api, Event("Normal", "Applied", "lost"), policy, logging.getLogger("test"))
    assert "could not post the Event Applied 'lost'" in caplog.text

"""PodsOnly's webhook: the resources a workload's pods were resized to, kept in its annotation, go to
its new pods; nothing else in the pod changes, and pods of other workloads are left as they are."""

from __future__ import annotations

from typing import Any

import kopf

from rightsizer.admission import POD_RESOURCES, mutated_containers, pod_resources, pod_resources_annotation
from rightsizer.controller.handlers import mutate_pod
from rightsizer.model import Resources
from rightsizer.quantity import parse
from rightsizer.workload import WorkloadView

TARGET = {
    "app": Resources({"cpu": parse("100m"), "memory": parse("64Mi")}, {"memory": parse("96Mi")}),
    "proxy": Resources({"cpu": parse("10m")}, {}),
}


def workload(name: str = "web", annotations: dict[str, str] | None = None) -> WorkloadView:
    return WorkloadView.from_body(
        {
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop", "annotations": annotations or {}},
            "spec": {"template": {"spec": {"containers": [{"name": "app"}]}}},
            "status": {},
        }
    )


def pod(owner: str = "web-7d9f8b6c5d") -> dict[str, Any]:
    return {
        "metadata": {
            "generateName": f"{owner}-",
            "labels": {"pod-template-hash": owner.rsplit("-", 1)[1]},
            "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}],
        },
        "spec": {
            "initContainers": [{"name": "proxy", "restartPolicy": "Always", "image": "p"}],
            "containers": [
                {"name": "app", "image": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "other", "image": "o", "resources": {"requests": {"cpu": "5m"}}},
            ],
        },
    }


def test_the_annotation_reads_back_and_a_broken_one_means_nothing():
    text = pod_resources_annotation(TARGET)
    assert pod_resources({POD_RESOURCES: text}) == TARGET
    assert pod_resources({POD_RESOURCES: "{not json"}) is None
    assert pod_resources({}) is None


def test_only_the_targeted_containers_get_new_resources():
    changed = mutated_containers(pod()["spec"], TARGET)
    assert changed["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"memory": "96Mi"},
    }
    assert changed["containers"][1] == pod()["spec"]["containers"][1]  # untouched, still in the list
    assert changed["initContainers"][0]["resources"] == {"requests": {"cpu": "10m"}}
    assert changed["containers"][0]["image"] == "a"
    assert (
        mutated_containers(
            changed["containers"] and {"containers": changed["containers"]}, {"app": TARGET["app"]}
        )
        == {}
    )


def test_the_handler_patches_pods_of_a_podsonly_workload_only():
    annotated = workload(annotations={POD_RESOURCES: pod_resources_annotation(TARGET)})
    patch = kopf.Patch()
    mutate_pod(pod(), "shop", patch, [annotated])
    assert patch["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    untouched = kopf.Patch()
    mutate_pod(pod("cart-5c4b8d9f7x"), "shop", untouched, [annotated])  # another workload's pod
    assert dict(untouched) == {}
    plain = kopf.Patch()
    mutate_pod(pod(), "shop", plain, [workload()])  # no annotation: as the template says
    assert dict(plain) == {}

"""Every kind rightsizer sizes, read from its object: containers, sidecars, init containers, and
whether its controller has caught up; and the patch that changes its pod template."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rightsizer.controller.adopt import template_patch
from rightsizer.model import ContainerKey, Resources
from rightsizer.planning import ContainerChange
from rightsizer.quantity import parse
from rightsizer.workload import WorkloadView

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POD_SPEC = {
    "initContainers": [
        {"name": "migrate", "resources": {"requests": {"cpu": "1"}}},
        {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
    ],
    "containers": [{"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}],
}


def body(
    kind: str, spec: dict[str, Any], status: dict[str, Any] | None = None, generation: int = 1
) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "w", "namespace": "ns", "generation": generation, "resourceVersion": "9"},
        "spec": spec,
        "status": {"observedGeneration": generation, **(status or {})},
    }


def test_native_sidecars_are_sized_and_init_containers_listed_apart():
    workload = WorkloadView.from_body(
        body(
            "Deployment",
            {"replicas": 2, "template": {"spec": POD_SPEC}},
            {"replicas": 2, "updatedReplicas": 2},
        )
    )
    assert list(workload.containers) == ["proxy", "app"]
    assert workload.sidecars == {"proxy"}
    assert list(workload.init_containers) == ["migrate"]
    assert workload.init_containers["migrate"].requests == {"cpu": parse("1")}


def test_a_cronjob_is_read_through_its_job_template():
    cronjob = WorkloadView.from_body(
        body(
            "CronJob",
            {
                "schedule": "0 3 * * *",
                "jobTemplate": {"spec": {"parallelism": 3, "template": {"spec": POD_SPEC}}},
            },
        )
    )
    assert list(cronjob.containers) == ["proxy", "app"]
    assert cronjob.replicas == 3
    assert cronjob.unsettled is None  # a template change only affects the jobs to come
    assert cronjob.reference()["apiVersion"] == "batch/v1"


def test_a_statefulset_mid_rollout_is_unsettled_until_its_revisions_agree():
    spec = {"replicas": 3, "template": {"spec": POD_SPEC}}
    rolling = WorkloadView.from_body(
        body("StatefulSet", spec, {"currentRevision": "db-1", "updateRevision": "db-2", "updatedReplicas": 1})
    )
    assert rolling.unsettled == "rollout in progress (1/3 pods updated)"
    settled = WorkloadView.from_body(
        body("StatefulSet", spec, {"currentRevision": "db-2", "updateRevision": "db-2"})
    )
    assert settled.unsettled is None and settled.strategy == "RollingUpdate"


def test_a_daemonset_counts_the_pods_it_should_run():
    spec = {"template": {"spec": POD_SPEC}, "updateStrategy": {"type": "OnDelete"}}
    rolling = WorkloadView.from_body(
        body("DaemonSet", spec, {"desiredNumberScheduled": 4, "updatedNumberScheduled": 3})
    )
    assert rolling.replicas == 4 and rolling.strategy == "OnDelete"
    assert rolling.unsettled == "rollout in progress (3/4 pods updated)"
    unseen = WorkloadView.from_body(
        body("DaemonSet", spec, generation=2) | {"status": {"observedGeneration": 1}}
    )
    assert unseen.unsettled == "DaemonSet controller has not observed the latest spec yet"


def change(workload: WorkloadView, container: str, requests: dict[str, str]) -> ContainerChange:
    key = ContainerKey("ns", workload.kind.name, "w", container)
    after = Resources({k: parse(v) for k, v in requests.items()}, {})
    return ContainerChange(key, workload.containers[container], after, "because")


def test_the_patch_follows_each_kind_to_its_pod_template_and_sidecars_to_init_containers():
    cronjob = WorkloadView.from_body(
        body("CronJob", {"jobTemplate": {"spec": {"template": {"spec": POD_SPEC}}}})
    )
    patch = template_patch(
        cronjob, (change(cronjob, "app", {"cpu": "300m"}), change(cronjob, "proxy", {"cpu": "20m"}))
    )
    pod_spec = patch["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["containers"] == [
        {"name": "app", "resources": {"requests": {"cpu": "300m", "memory": None}, "limits": {}}}
    ]
    assert pod_spec["initContainers"] == [
        {"name": "proxy", "resources": {"requests": {"cpu": "20m"}, "limits": {}}}
    ]
    statefulset = WorkloadView.from_body(body("StatefulSet", {"template": {"spec": POD_SPEC}}))
    assert (
        "containers"
        in template_patch(statefulset, (change(statefulset, "app", {"cpu": "1"}),))["spec"]["template"][
            "spec"
        ]
    )

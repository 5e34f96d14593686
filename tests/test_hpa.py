"""HorizontalPodAutoscalers on CPU or memory utilization: the request they scale on is kept, or
their target re-tuned so that they scale out at the same usage (``rightsizer.hpa``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from rightsizer.hpa import (
    KEEP_REQUEST,
    RETUNE,
    Autoscaler,
    ScalingMetric,
    TargetRetune,
    from_state_metrics,
    retuned_utilization,
    retunes_for_change,
    target_patch,
    with_autoscalers,
)
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.promql import QueryScope, autoscaler_query
from rightsizer.units import MIB

D = Decimal


def hpa_body(*metrics: dict[str, Any], kind: str = "Deployment", name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"namespace": "shop", "name": "web-hpa"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": list(metrics),
        },
    }


def cpu_utilization(percent: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}},
    }


def rec(
    container: str = "app",
    current: tuple[str, str] = ("1", "1Gi"),
    recommended: tuple[str, str] = ("0.75", "400Mi"),
    limits: tuple[str, str] = ("2.25", "600Mi"),
    name: str = "web",
) -> Recommendation:
    """A recommendation for shop/Deployment/<name>/<container>: cores and Mi/Gi written out."""

    def amount(text: str) -> Decimal:
        if text.endswith("Gi"):
            return D(text[:-2]) * 1024 * MIB
        return D(text[:-2]) * MIB if text.endswith("Mi") else D(text)

    key = ContainerKey("shop", "Deployment", name, container)
    now = Resources({"cpu": amount(current[0]), "memory": amount(current[1])}, {})
    new = Resources(
        {"cpu": amount(recommended[0]), "memory": amount(recommended[1])},
        {"cpu": amount(limits[0]), "memory": amount(limits[1])},
    )
    return Recommendation(key, now, new, "Burstable", "sized", {"cpuPeakTime": "563m"}, (), confident=new)


WEB_HPA = Autoscaler.from_body(hpa_body(cpu_utilization(60)))


def test_an_hpa_object_is_read_for_its_target_and_utilization_metrics() -> None:
    body = hpa_body(
        cpu_utilization(60),
        {
            "type": "ContainerResource",
            "containerResource": {
                "name": "memory",
                "container": "app",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        },
        # Not about a request: left out.
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "500m"}},
        },
        {
            "type": "Pods",
            "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}},
        },
    )
    hpa = Autoscaler.from_body(body)
    assert (hpa.namespace, hpa.name, hpa.target_kind, hpa.target_name) == (
        "shop",
        "web-hpa",
        "Deployment",
        "web",
    )
    assert hpa.metrics == (ScalingMetric("cpu", 60), ScalingMetric("memory", 80, "app"))
    assert hpa.scales(ContainerKey("shop", "Deployment", "web", "app"))
    assert not hpa.scales(ContainerKey("shop", "StatefulSet", "web", "app"))
    assert not hpa.scales(ContainerKey("other", "Deployment", "web", "app"))


def test_keep_request_leaves_the_cpu_request_and_says_why() -> None:
    (kept,) = with_autoscalers([rec()], [WEB_HPA], KEEP_REQUEST)
    assert kept.recommended is not None and kept.confident is not None
    # CPU request kept at 1 core; its limit is still the usage's 2250m; memory sized as usual.
    assert kept.recommended.requests == {"cpu": D(1), "memory": 400 * MIB}
    assert kept.recommended.limits == {"cpu": D("2.25"), "memory": 600 * MIB}
    assert kept.confident.requests["cpu"] == D(1)
    assert kept.warnings == (
        "cpu request left at 1: HorizontalPodAutoscaler web-hpa scales on 60% CPU utilization of it",
    )
    assert kept.evidence["horizontalPodAutoscalers"] == [
        {"name": "web-hpa", "resource": "cpu", "averageUtilization": 60}
    ]
    assert kept.evidence["cpuPeakTime"] == "563m"


def test_a_kept_request_above_the_recommended_limit_raises_the_limit_to_it() -> None:
    """A request of 2 cores, usage calling for 300m / 900m: the limit cannot stay below the request."""
    (kept,) = with_autoscalers(
        [rec(current=("2", "1Gi"), recommended=("0.3", "400Mi"), limits=("0.9", "600Mi"))],
        [WEB_HPA],
        KEEP_REQUEST,
    )
    assert kept.recommended is not None
    assert (kept.recommended.requests["cpu"], kept.recommended.limits["cpu"]) == (D(2), D(2))


def test_other_workloads_and_other_resources_are_untouched() -> None:
    other = rec(name="cart")
    recs = with_autoscalers([rec(), other], [WEB_HPA], KEEP_REQUEST)
    assert recs[1] == other
    assert recs[0].recommended is not None and recs[0].recommended.requests["memory"] == 400 * MIB


def test_a_pod_metric_keeps_every_container_and_a_container_metric_only_its_own() -> None:
    sidecar = rec(
        "log-shipper", current=("0.1", "128Mi"), recommended=("0.02", "64Mi"), limits=("0.06", "96Mi")
    )
    pod_wide = with_autoscalers([rec(), sidecar], [WEB_HPA], KEEP_REQUEST)
    assert [r.recommended.requests["cpu"] for r in pod_wide if r.recommended] == [D(1), D("0.1")]
    container_hpa = Autoscaler(
        "shop", "web-hpa", "Deployment", "web", (ScalingMetric("memory", 80, container="app"),)
    )
    only_app = with_autoscalers([rec(), sidecar], [container_hpa], KEEP_REQUEST)
    assert [r.recommended.requests["memory"] for r in only_app if r.recommended] == [1024 * MIB, 64 * MIB]
    assert only_app[0].warnings == (
        "memory request left at 1Gi: HorizontalPodAutoscaler web-hpa scales on 80% memory utilization "
        "of container app of it",
    )
    assert only_app[1].warnings == ()


def test_no_recommendation_stays_none_and_no_request_is_said() -> None:
    young = Recommendation(
        ContainerKey("shop", "Deployment", "web", "app"), Resources(), None, None, "young", {}
    )
    assert with_autoscalers([young], [WEB_HPA], KEEP_REQUEST) == [young]
    unset = rec()
    unset = Recommendation(
        unset.key, Resources({"memory": 1024 * MIB}), unset.recommended, "Burstable", "", {}
    )
    (said,) = with_autoscalers([unset], [WEB_HPA], KEEP_REQUEST)
    assert said.recommended == unset.recommended  # the engine's request lets the HPA work at all
    assert said.warnings[0].endswith("but the container has no CPU request: the HPA cannot compute it")


@pytest.mark.parametrize(
    ("old", "old_request", "new_request", "new"),
    [
        (60, D(1), D("0.75"), 80),  # 600m a pod: 80% of 750m
        (80, D("0.25"), D(1), 20),  # 200m a pod: 20% of 1 core
        (70, D("0.5"), D("0.3"), 117),  # 350m: 116.7% of 300m, above 100 is allowed
        (50, D("0.3"), D("0.7"), 21),  # 150m: 21.4% of 700m
        (1, D("0.1"), D(4), 1),  # 1m: 0.025%, at least 1
    ],
)
def test_the_retuned_target_scales_out_at_the_same_usage(
    old: int, old_request: Decimal, new_request: Decimal, new: int
) -> None:
    assert retuned_utilization(old, old_request, new_request) == new


def test_retune_keeps_the_recommendation_and_says_what_the_target_would_become() -> None:
    (retuned,) = with_autoscalers([rec()], [WEB_HPA], RETUNE)
    assert retuned.recommended == rec().recommended
    assert retuned.warnings == (
        "HorizontalPodAutoscaler web-hpa scales on 60% CPU utilization: with the cpu request of a pod "
        "1 -> 750m, its target would become 80% to scale out at the same 600m a pod",
    )
    assert retuned.evidence["horizontalPodAutoscalers"] == [
        {"name": "web-hpa", "resource": "cpu", "averageUtilization": 60, "retunedUtilization": 80}
    ]


def test_retune_of_a_pod_metric_sums_the_containers_requests() -> None:
    """Pod utilization is summed usage over summed requests: 1 + 100m at 60% is 660m a pod; the
    new requests 750m + 20m make it 660 / 770 = 85.7%."""
    sidecar = rec(
        "log-shipper", current=("0.1", "128Mi"), recommended=("0.02", "64Mi"), limits=("0.06", "96Mi")
    )
    app, side = with_autoscalers([rec(), sidecar], [WEB_HPA], RETUNE)
    assert app.evidence["horizontalPodAutoscalers"][0]["retunedUtilization"] == 86
    assert side.warnings == app.warnings
    assert "1100m -> 770m" in app.warnings[0] and "same 660m a pod" in app.warnings[0]


def test_kube_state_metrics_rows_become_autoscalers() -> None:
    rows = [
        {"namespace": "shop", "horizontalpodautoscaler": "web", "metric_name": "memory", "value": 80.0}
        | {"scaletargetref_kind": "Deployment", "scaletargetref_name": "web"},
        {"namespace": "shop", "horizontalpodautoscaler": "web", "metric_name": "cpu", "value": 60.0}
        | {"scaletargetref_kind": "Deployment", "scaletargetref_name": "web"},
    ]
    (hpa,) = from_state_metrics(rows)
    assert (hpa.name, hpa.target_kind, hpa.target_name) == ("web", "Deployment", "web")
    # kube-state-metrics does not name a ContainerResource metric's container: the pod's, every container.
    assert hpa.metrics == (ScalingMetric("cpu", 60), ScalingMetric("memory", 80))
    assert from_state_metrics([]) == []


def test_the_hpa_query_escapes_label_values() -> None:
    query = autoscaler_query(QueryScope(('a"} or vector(1) #',), 3600))
    assert 'namespace="a\\"} or vector(1) #"' in query
    assert 'metric_target_type="utilization"' in query and 'metric_name=~"cpu|memory"' in query
    assert "group_left (scaletargetref_kind, scaletargetref_name)" in query


# ---------------------------------------------------------------- Auto mode: the targets to move


def cores(cpu: str, memory: str = "1Gi") -> Resources:
    """Requests of ``cpu`` cores and ``memory`` (Mi or Gi)."""
    unit = 1024 * MIB if memory.endswith("Gi") else MIB
    return Resources(requests={"cpu": D(cpu), "memory": D(memory[:-2]) * unit})


WEB = ContainerKey("shop", "Deployment", "web", "")


def test_a_raised_pod_request_lowers_the_target_to_scale_out_at_the_same_usage() -> None:
    """Pod utilization: 1 + 100m at 60% scales out at 660m a pod; with the app at 1.5 cores, 660m
    is 41.25% of 1.6 cores: 41."""
    before = {"app": cores("1"), "log-shipper": cores("0.1", "64Mi")}
    (retune,) = retunes_for_change([WEB_HPA], WEB, before, {"app": cores("1.5")})
    assert retune == TargetRetune("web-hpa", "cpu", None, 60, 41)
    assert retune.lowers
    assert retune.describe() == "HorizontalPodAutoscaler web-hpa: CPU utilization target 60% -> 41%"
    assert retune.describe(back=True).endswith("41% -> 60%")
    assert TargetRetune.from_dict(retune.to_dict()) == retune


def test_a_lowered_container_request_raises_its_container_target() -> None:
    """A ContainerResource metric counts its own container: 80% of 1Gi is 819.2Mi; of 512Mi, 160%."""
    hpa = Autoscaler("shop", "web-hpa", "Deployment", "web", (ScalingMetric("memory", 80, container="app"),))
    before = {"app": cores("1", "1Gi"), "log-shipper": cores("0.1", "64Mi")}
    changed = {"app": cores("1", "512Mi"), "log-shipper": cores("0.1", "32Mi")}
    (retune,) = retunes_for_change([hpa], WEB, before, changed)
    assert retune == TargetRetune("web-hpa", "memory", "app", 80, 160)
    assert not retune.lowers


def test_targets_that_do_not_move_are_not_retuned() -> None:
    other = Autoscaler("shop", "api-hpa", "Deployment", "api", (ScalingMetric("cpu", 60),))
    before = {"app": cores("1")}
    # another workload's HPA; a request that stays; a change within the rounding (60 x 1 / 1.005 = 59.7)
    assert retunes_for_change([other], WEB, before, {"app": cores("2")}) == ()
    assert retunes_for_change([WEB_HPA], WEB, before, {"app": cores("1", "2Gi")}) == ()
    assert retunes_for_change([WEB_HPA], WEB, before, {"app": cores("1.005")}) == ()
    # a container without a CPU request: the HPA cannot compute its utilization, nothing to keep
    no_cpu = {"app": Resources(requests={"memory": D(MIB)})}
    assert retunes_for_change([WEB_HPA], WEB, no_cpu, {"app": cores("1")}) == ()


def test_the_patch_tests_the_old_target_before_it_replaces_it() -> None:
    body = hpa_body(
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue"}}},
        cpu_utilization(60),
    )
    retune = TargetRetune("web-hpa", "cpu", None, 60, 41)
    operations, moved, left_alone = target_patch(body, [retune])
    path = "/spec/metrics/1/resource/target/averageUtilization"
    assert operations == [
        {"op": "test", "path": path, "value": 60},
        {"op": "replace", "path": path, "value": 41},
    ]
    assert moved == [retune] and left_alone == []
    # Back: from 41 to 60; and already where it should be, nothing to do (a retry).
    assert target_patch(hpa_body(cpu_utilization(41)), [retune], back=True)[0][1]["value"] == 60
    assert target_patch(hpa_body(cpu_utilization(41)), [retune]) == ([], [], [])


def test_a_target_somebody_else_changed_is_left_alone_and_said() -> None:
    retune = TargetRetune("web-hpa", "cpu", None, 60, 41)
    operations, moved, ((alone, why),) = target_patch(hpa_body(cpu_utilization(55)), [retune])
    assert operations == [] and moved == [] and alone == retune
    assert why == (
        "HorizontalPodAutoscaler web-hpa: CPU utilization target 60% -> 41% not made: the target is 55%, "
        "not 60%; somebody else changed it, so rightsizer leaves it alone"
    )
    memory_only = hpa_body(
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 60}},
        }
    )
    assert "the target is gone" in target_patch(memory_only, [retune])[2][0][1]

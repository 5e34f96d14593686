"""An evaluation of a policy whose target a HorizontalPodAutoscaler scales on CPU utilization: the
request is kept (KeepRequest, also in Auto mode's patch) or the HPA's new target is given (Retune),
as the operator runs it against the demo's real Prometheus (``tests/test_evaluate.py``'s fakes)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from rightsizer.controller.evaluate import evaluate
from rightsizer.controller.outcome import Outcome
from rightsizer.hpa import Autoscaler, retuned_utilization
from rightsizer.promql import LabelConfig
from rightsizer.quantity import parse
from tests.test_evaluate import AUTO, NOW, FakeCluster, deployments, entries, manifests, policy, prometheus

pytestmark = pytest.mark.prometheus
__all__ = ["manifests", "prometheus"]  # module fixtures of test_evaluate, used here


def cpu_hpa(target: str, percent: int) -> Autoscaler:
    """What the operator's index holds for an autoscaling/v2 HPA on ``target``'s CPU utilization."""
    return Autoscaler.from_body(
        {
            "metadata": {"namespace": "shop", "name": f"{target}-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": percent},
                        },
                    }
                ],
            },
        }
    )


def run_with(prometheus, manifests, spec: dict[str, Any], hpa: Autoscaler, cluster: FakeCluster) -> Outcome:
    return evaluate(
        policy(spec),
        deployments(manifests, "shop"),
        [],
        prometheus,
        cluster,
        LabelConfig(),
        NOW,
        autoscalers=[hpa],
    )


def test_the_cpu_request_an_hpa_scales_on_is_left_alone_and_status_says_why(prometheus, manifests):
    cluster = FakeCluster()
    outcome = run_with(prometheus, manifests, {"targetRef": {"name": "web"}}, cpu_hpa("web", 60), cluster)
    app, shipper = entries(outcome)["web/app"], entries(outcome)["web/log-shipper"]
    # web's app would go from 1 core down (docs: 745m); its HPA scales on the pod's CPU utilization,
    # so both containers keep their CPU requests; memory is sized as usual.
    assert app["recommended"]["requests"]["cpu"] == "1"
    assert shipper["recommended"]["requests"]["cpu"] == "100m"
    assert parse(app["recommended"]["requests"]["memory"]) < parse("1Gi")
    assert (
        "cpu request left at 1: HorizontalPodAutoscaler web-hpa scales on 60% CPU utilization of it"
        in (app["warnings"])
    )
    assert app["evidence"]["horizontalPodAutoscalers"] == [
        {"name": "web-hpa", "resource": "cpu", "averageUtilization": 60}
    ]
    assert outcome.status["readyContainers"] == "2/2" and cluster.patches == []


def test_without_the_hpa_the_same_request_is_lowered(prometheus, manifests):
    """The control: the same evaluation without an HPA lowers web's CPU request."""
    outcome = evaluate(
        policy({"targetRef": {"name": "web"}}),
        deployments(manifests, "shop"),
        [],
        prometheus,
        FakeCluster(),
        LabelConfig(),
        NOW,
    )
    assert parse(entries(outcome)["web/app"]["recommended"]["requests"]["cpu"]) < 1
    assert "horizontalPodAutoscalers" not in entries(outcome)["web/app"]["evidence"]


def test_retune_in_recommend_mode_gives_the_target_that_scales_out_at_the_same_usage(prometheus, manifests):
    spec = {"targetRef": {"name": "web"}, "hpa": "Retune"}
    outcome = run_with(prometheus, manifests, spec, cpu_hpa("web", 60), FakeCluster())
    app, shipper = entries(outcome)["web/app"], entries(outcome)["web/log-shipper"]
    new = parse(app["recommended"]["requests"]["cpu"]) + parse(shipper["recommended"]["requests"]["cpu"])
    assert new < Decimal("1.1")  # the request is lowered as recommended ...
    (entry,) = app["evidence"]["horizontalPodAutoscalers"]
    # ... and the target raised: 60% of 1100m (660m a pod) is the same usage as the new target of
    # the new sum.
    assert entry["retunedUtilization"] == retuned_utilization(60, Decimal("1.1"), new) > 60
    assert any("same 660m a pod" in warning for warning in app["warnings"])


def test_auto_mode_patches_the_limits_but_not_the_cpu_request_the_hpa_scales_on(prometheus, manifests):
    """search is throttled under its 500m limit: without an HPA Auto mode raises its CPU request from
    250m (to 640m) and its limit (to 1920m); with one on its CPU utilization, the limit alone."""
    spec = {**AUTO, "targetRef": {"name": "search"}, "hpa": "Retune"}
    plain = FakeCluster()
    evaluate(policy(spec), deployments(manifests, "shop"), [], prometheus, plain, LabelConfig(), NOW)
    ((_, _, _, plain_patch),) = plain.patches
    before = plain_patch["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert before["requests"]["cpu"] != "250m"
    cluster = FakeCluster()
    outcome = run_with(prometheus, manifests, spec, cpu_hpa("search", 70), cluster)
    ((_, _, name, patch),) = cluster.patches
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    search = entries(outcome)["search/app"]
    assert name == "search"
    # Auto mode does not patch HPAs: Retune keeps the request there, and says so.
    assert container["resources"]["requests"]["cpu"] == "250m"
    assert container["resources"]["limits"]["cpu"] == search["confident"]["limits"]["cpu"]
    assert container["resources"]["limits"]["cpu"] == before["limits"]["cpu"] != "500m"
    assert any(w.endswith("so it keeps the request)") for w in search["warnings"])

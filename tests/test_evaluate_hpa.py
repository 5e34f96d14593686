"""An evaluation of a policy whose target a HorizontalPodAutoscaler scales on CPU utilization: the
request is kept (KeepRequest, also in Auto mode's patch) or the HPA's new target is given (Retune),
as the operator runs it against the demo's real Prometheus (``tests/test_evaluate.py``'s fakes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from rightsizer.controller.evaluate import evaluate
from rightsizer.controller.kube import PatchConflict
from rightsizer.controller.outcome import Outcome
from rightsizer.hpa import Autoscaler, retuned_utilization
from rightsizer.model import Resources
from rightsizer.pods import PodContainer, PodView
from rightsizer.promql import LabelConfig
from rightsizer.quantity import parse
from rightsizer.timestamps import format_time
from rightsizer.units import MIB
from tests.support.autoscalers import autoscaler_manifest
from tests.test_evaluate import AUTO, NOW, FakeCluster, deployments, entries, manifests, policy, prometheus

pytestmark = pytest.mark.prometheus
__all__ = ["manifests", "prometheus"]  # module fixtures of test_evaluate, used here


def cpu_hpa(target: str, percent: int) -> Autoscaler:
    """What the operator's index holds for ``hpa_body(target, percent)``."""
    return Autoscaler.from_body(hpa_body(target, percent))


def hpa_body(target: str, percent: int) -> dict[str, Any]:
    """An autoscaling/v2 HPA of Deployment ``target`` on ``percent`` CPU utilization, as the API gives it."""
    return autoscaler_manifest("shop", f"{target}-hpa", target, cpu=percent)


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
    250m (to 640m) and its limit (to 1920m); with one on its CPU utilization (KeepRequest, the
    default), the limit alone."""
    spec = {**AUTO, "targetRef": {"name": "search"}}
    plain = FakeCluster()
    evaluate(policy(spec), deployments(manifests, "shop"), [], prometheus, plain, LabelConfig(), NOW)
    ((_, _, _, plain_patch),) = plain.patches
    before = plain_patch["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert before["requests"]["cpu"] != "250m"
    cluster = FakeCluster(autoscaler_items={"search-hpa": hpa_body("search", 70)})
    outcome = run_with(prometheus, manifests, spec, cpu_hpa("search", 70), cluster)
    ((kind, _, name, patch),) = cluster.patches  # the HPA is not touched
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    search = entries(outcome)["search/app"]
    assert (kind, name) == ("Deployment", "search")
    assert container["resources"]["requests"]["cpu"] == "250m"
    assert container["resources"]["limits"]["cpu"] == search["confident"]["limits"]["cpu"]
    assert container["resources"]["limits"]["cpu"] == before["limits"]["cpu"] != "500m"
    assert any(w.startswith("cpu request left at 250m") for w in search["warnings"])


# ---------------------------------------------------------------- Auto mode with spec.hpa: Retune

RETUNE_SEARCH = {**AUTO, "targetRef": {"name": "search"}, "hpa": "Retune"}


def target_of(cluster: FakeCluster, name: str) -> int:
    return cluster.autoscaler_items[name]["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]


def test_retune_lowers_the_hpa_target_before_the_request_goes_up(prometheus, manifests):
    """search's CPU request goes up from 250m: its HPA's 70% (175m a pod) becomes 70 x 250m / new,
    set first, so that no pod runs the higher request under the old target (it would scale out later).
    The change's record is written before anything else, so an operator stopped in between knows."""
    cluster = FakeCluster(autoscaler_items={"search-hpa": hpa_body("search", 70)})
    outcome = run_with(prometheus, manifests, RETUNE_SEARCH, cpu_hpa("search", 70), cluster)
    assert [(kind, name) for kind, _, name, _ in cluster.patches] == [
        ("Deployment", "search"),
        ("HorizontalPodAutoscaler", "search-hpa"),
        ("Deployment", "search"),
    ]
    recorded, template = cluster.patches[0][3], cluster.patches[2][3]
    assert "spec" not in recorded  # the record alone: the template is patched after the HPA
    new = parse(template["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    assert new > Decimal("0.25")
    lowered = retuned_utilization(70, Decimal("0.25"), new)
    assert target_of(cluster, "search-hpa") == lowered < 70
    record = json.loads(recorded["metadata"]["annotations"]["rightsizer.io/change"])
    assert record["autoscalers"] == [
        {"hpa": "search-hpa", "resource": "cpu", "container": None, "before": 70, "after": lowered}
    ]
    applied = {c["type"]: c for c in outcome.status["conditions"]}["Applied"]
    assert (
        f"HorizontalPodAutoscaler search-hpa: CPU utilization target 70% -> {lowered}%" in applied["message"]
    )
    retuned = [e.message for e in outcome.events if e.reason == "AutoscalerRetuned"]
    assert retuned == [
        f"HorizontalPodAutoscaler search-hpa: CPU utilization target 70% -> {lowered}%: with the requests of "
        "Deployment/search it scales out at the same usage"
    ]


def test_retune_waits_when_the_hpa_cannot_be_patched(prometheus, manifests):
    """Without the HPA retuned, a raised request would move its scale-out point: the template is not
    patched, and the change waits (the HPA retried at every evaluation, up to the rollout's deadline)."""
    cluster = FakeCluster(
        autoscaler_items={"search-hpa": hpa_body("search", 70)},
        autoscaler_fail_with=ApiException(status=403, reason="Forbidden"),
    )
    outcome = run_with(prometheus, manifests, RETUNE_SEARCH, cpu_hpa("search", 70), cluster)
    ((kind, _, _, recorded),) = cluster.patches
    assert kind == "Deployment" and "spec" not in recorded and target_of(cluster, "search-hpa") == 70
    (change,) = outcome.status["changes"]
    assert change["phase"] == "Rollout"
    assert (
        "HorizontalPodAutoscaler search-hpa not patched: 403 Forbidden, retried at the next evaluation"
        in (change["message"])
    )


def test_a_record_that_cannot_be_written_touches_nothing_else(prometheus, manifests):
    cluster = FakeCluster(
        autoscaler_items={"search-hpa": hpa_body("search", 70)},
        fail_with=PatchConflict("Deployment shop/search changed while being evaluated"),
    )
    outcome = run_with(prometheus, manifests, RETUNE_SEARCH, cpu_hpa("search", 70), cluster)
    assert cluster.patches == [] and target_of(cluster, "search-hpa") == 70
    applied = {c["type"]: c for c in outcome.status["conditions"]}["Applied"]
    assert applied["reason"] == "Blocked" and "retried at the next evaluation" in applied["message"]


def test_a_target_somebody_else_changed_is_left_alone(prometheus, manifests):
    """The index still says 70%, the HPA now says 65%: rightsizer does not overwrite it, says so,
    and the change goes ahead without it."""
    cluster = FakeCluster(autoscaler_items={"search-hpa": hpa_body("search", 65)})
    outcome = run_with(prometheus, manifests, RETUNE_SEARCH, cpu_hpa("search", 70), cluster)
    assert [kind for kind, *_ in cluster.patches] == ["Deployment", "Deployment"]
    assert target_of(cluster, "search-hpa") == 65
    (warning,) = [e for e in outcome.events if e.reason == "AutoscalerLeftAlone"]
    assert "the target is 65%, not 70%; somebody else changed it" in warning.message


# ---------------------------------------------------------------- a Retune change in flight


def evaluate_in_flight(
    prometheus, manifests, retune: dict[str, Any], cluster: FakeCluster, pods: list[PodView] | None = None
) -> Outcome:
    """An evaluation of search with ``in_flight(retune)``, its HPA in the index at the target it has."""
    percent = target_of(cluster, "search-hpa")
    return evaluate(
        policy(RETUNE_SEARCH),
        deployments(manifests, "shop", search=in_flight(retune)),
        pods or [],
        prometheus,
        cluster,
        LabelConfig(),
        NOW,
        autoscalers=[cpu_hpa("search", percent)],
    )


BEFORE = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}
AFTER = {"requests": {"cpu": "400m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}


def in_flight(retune: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """An edit of search's body: a change rolled out (its template holds it), watched for an hour
    already, that moves ``retune`` (a TargetRetune as the change record keeps it)."""
    started = format_time(NOW - timedelta(hours=1))
    change = {
        "version": 2,
        "policy": "p",
        "method": "Rollout",
        "phase": "Watch",
        "startedAt": started,
        "phaseStartedAt": started,
        "before": {"app": BEFORE},
        "after": {"app": AFTER},
        "reason": "test",
        "autoscalers": [retune],
    }

    def edit(body: dict[str, Any]) -> None:
        body["metadata"].setdefault("annotations", {})["rightsizer.io/change"] = json.dumps(change)
        body["spec"]["template"]["spec"]["containers"][0]["resources"] = AFTER

    return edit


def test_a_raised_target_is_set_when_the_change_is_done(prometheus, manifests):
    """The requests went down (70% -> 90%): the HPA is retuned last, as the change is done (until
    then the pods scaled out sooner, never later)."""
    retune = {"hpa": "search-hpa", "resource": "cpu", "container": None, "before": 70, "after": 90}
    cluster = FakeCluster(autoscaler_items={"search-hpa": hpa_body("search", 70)})
    outcome = evaluate_in_flight(prometheus, manifests, retune, cluster)
    assert [kind for kind, *_ in cluster.patches] == ["HorizontalPodAutoscaler", "Deployment"]
    assert target_of(cluster, "search-hpa") == 90
    assert cluster.patches[1][3]["metadata"]["annotations"]["rightsizer.io/change"] is None
    applied = {c["type"]: c for c in outcome.status["conditions"]}["Applied"]
    assert "change done" in applied["message"]
    retuned = [e.message for e in outcome.events if e.reason == "AutoscalerRetuned"]
    assert any("CPU utilization target 70% -> 90%" in m for m in retuned), retuned


def test_a_rollback_puts_the_target_back(prometheus, manifests):
    """A pod the change reached restarts: the template goes back with the record (in one patch),
    then the lowered target."""
    retune = {"hpa": "search-hpa", "resource": "cpu", "container": None, "before": 70, "after": 44}
    cluster = FakeCluster(autoscaler_items={"search-hpa": hpa_body("search", 44)})
    after = Resources(
        requests={"cpu": Decimal("0.4"), "memory": 512 * MIB},
        limits={"cpu": Decimal("0.5"), "memory": 1024 * MIB},
    )
    restarted = PodView(
        "shop",
        "search-1",
        "Deployment",
        "search",
        running=True,
        ready=True,
        containers={"app": PodContainer(after, after, restarts=1)},
    )
    outcome = evaluate_in_flight(prometheus, manifests, retune, cluster, [restarted])
    assert [kind for kind, *_ in cluster.patches] == ["Deployment", "HorizontalPodAutoscaler"]
    back = cluster.patches[0][3]
    assert back["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "250m"
    assert json.loads(back["metadata"]["annotations"]["rightsizer.io/change"])["phase"] == "RollingBack"
    assert target_of(cluster, "search-hpa") == 70
    rolled = {c["type"]: c for c in outcome.status["conditions"]}["RolledBack"]
    assert rolled["reason"] == "RollingBack" and "restarted 1 time(s)" in rolled["message"]
    retuned = [e.message for e in outcome.events if e.reason == "AutoscalerRetuned"]
    assert any("CPU utilization target 44% -> 70%" in m for m in retuned), retuned

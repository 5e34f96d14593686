"""Auto-mode planning: minimum change, step cap, cooldown, rollout state, and the patch itself."""

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rightsizer.apply import APPLIED_AT, describe, plan_changes
from rightsizer.controller.adopt import template_patch
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.planning import WorkloadHistory, plan_step
from rightsizer.quantity import parse
from rightsizer.rails import AutoRails
from rightsizer.workload import WorkloadView

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def res(requests=None, limits=None):
    return Resources(
        {k: parse(v) for k, v in (requests or {}).items()}, {k: parse(v) for k, v in (limits or {}).items()}
    )


def deployment(annotations=None, paused=False, **status):
    body = {
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u1",
            "resourceVersion": "42",
            "generation": 2,
            "annotations": annotations or {},
        },
        "spec": {
            "replicas": 2,
            "paused": paused,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}},
                        {"name": "log-shipper"},
                    ]
                }
            },
        },
        "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, **status},
    }
    return WorkloadView.from_body(body)


def rec(container, current, recommended):
    key = ContainerKey("shop", "Deployment", "web", container)
    return Recommendation(key, current, recommended, "Burstable", "because", {})


CURRENT = res({"cpu": "100m", "memory": "256Mi"})


def test_a_significant_change_is_planned():
    target = res({"cpu": "150m", "memory": "300Mi"}, {"cpu": "450m", "memory": "450Mi"})
    plan = plan_changes(deployment(), [rec("app", CURRENT, target)], AutoRails(), NOW)
    assert plan.blocked is None
    (change,) = plan.changes
    assert change.after == target


def test_changes_below_the_minimum_are_skipped():
    close = res({"cpu": "105m", "memory": "260Mi"})
    plan = plan_changes(deployment(), [rec("app", CURRENT, close)], AutoRails(min_change_percent=10), NOW)
    assert plan.changes == ()
    assert plan.skipped == {
        ContainerKey("shop", "Deployment", "web", "app"): "change below the minimum of 10%"
    }


def test_steps_are_capped():
    huge = res({"cpu": "1", "memory": "64Mi"})
    plan = plan_changes(deployment(), [rec("app", CURRENT, huge)], AutoRails(max_step_percent=50), NOW)
    (change,) = plan.changes
    assert change.after.to_quantities()["requests"] == {"cpu": "150m", "memory": "171Mi"}  # x1.5 and /1.5
    assert "step capped at 50%" in change.reason


def test_cooldown_blocks_until_it_has_passed():
    recent = {APPLIED_AT: (NOW - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    target = res({"cpu": "200m"})
    plan = plan_changes(
        deployment(recent), [rec("app", CURRENT, target)], AutoRails(cooldown_seconds=3600), NOW
    )
    assert plan.blocked.startswith("cooldown")
    later = plan_changes(
        deployment(recent), [rec("app", CURRENT, target)], AutoRails(cooldown_seconds=300), NOW
    )
    assert later.blocked is None


def test_mid_rollout_and_paused_deployments_are_not_touched():
    target = res({"cpu": "200m"})
    rolling = plan_changes(deployment(updatedReplicas=1), [rec("app", CURRENT, target)], AutoRails(), NOW)
    assert rolling.blocked == "rollout in progress (1/2 pods updated)"
    # Every pod of the new template is up, but one of the old ones still runs.
    old_pods = plan_changes(deployment(replicas=3), [rec("app", CURRENT, target)], AutoRails(), NOW)
    assert old_pods.blocked == "rollout in progress (1 old pods remain)"
    stale = plan_changes(deployment(observedGeneration=1), [rec("app", CURRENT, target)], AutoRails(), NOW)
    assert "not observed" in stale.blocked
    paused = plan_changes(deployment(paused=True), [rec("app", CURRENT, target)], AutoRails(), NOW)
    assert paused.blocked == "Deployment is paused" and paused.changes == ()


def test_no_recommendation_means_no_change():
    plan = plan_changes(deployment(), [rec("app", CURRENT, None)], AutoRails(), NOW)
    assert plan.changes == ()
    assert plan.skipped[ContainerKey("shop", "Deployment", "web", "app")].startswith("no recommendation")


def test_patch_touches_only_the_changed_container_and_says_what_moved():
    before = res({"cpu": "100m"}, {"cpu": "1"})
    target = res({"cpu": "200m", "memory": "300Mi"}, {"memory": "450Mi"})
    plan = plan_changes(deployment(), [rec("app", before, target)], AutoRails(), NOW)
    patch = template_patch(deployment(), plan.changes)
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container == {
        "name": "app",
        "resources": {
            "requests": {"cpu": "200m", "memory": "300Mi"},
            "limits": {"cpu": None, "memory": "450Mi"},  # the CPU limit is removed explicitly
        },
    }
    assert set(patch) == {"spec"}
    assert (
        describe(plan.changes[0])
        == "app: requests cpu 100m->200m, memory none->300Mi; limits cpu 1->none, memory none->450Mi"
    )


def test_adding_or_removing_a_limit_always_counts_however_small_the_rest():
    with_limit = res({"cpu": "100m", "memory": "256Mi"}, {"cpu": "300m"})
    plan = plan_changes(
        deployment(), [rec("app", CURRENT, with_limit)], AutoRails(min_change_percent=50), NOW
    )
    assert [c.container for c in plan.changes] == ["app"]  # a CPU limit is added: applied
    without = plan_changes(
        deployment(), [rec("app", with_limit, CURRENT)], AutoRails(min_change_percent=50), NOW
    )
    assert [c.container for c in without.changes] == ["app"]  # and removed: applied too


def test_steps_smaller_than_the_minimum_change_still_move_a_large_change():
    """10% steps against a 10% minimum: a step down is 1/1.1 (-9%), below the minimum on its own;
    the change as a whole is what counts, so the steps go on."""
    far_below = res({"cpu": "20m", "memory": "64Mi"})
    rails = AutoRails(min_change_percent=10, max_step_percent=10)
    (change,) = plan_changes(deployment(), [rec("app", CURRENT, far_below)], rails, NOW).changes
    assert change.after.to_quantities()["requests"] == {
        "cpu": "95m",
        "memory": "233Mi",
    }  # 100m/1.1, 256Mi/1.1


def test_auto_mode_goes_only_as_far_as_the_confident_part():
    """Thin evidence: the recommendation says 40m, the evidence is sure only of 70m (the upper bound)."""
    recommended = res({"cpu": "40m", "memory": "128Mi"})
    confident = res({"cpu": "70m", "memory": "200Mi"})
    thin = replace(rec("app", CURRENT, recommended), confident=confident)
    (change,) = plan_changes(deployment(), [thin], AutoRails(), NOW).changes
    assert change.after == confident
    assert "the confident part only" in change.reason


def test_a_confident_part_below_the_minimum_is_skipped_and_says_why():
    recommended = res({"cpu": "40m", "memory": "128Mi"})
    thin = replace(rec("app", CURRENT, recommended), confident=res({"cpu": "95m", "memory": "250Mi"}))
    plan = plan_changes(deployment(), [thin], AutoRails(min_change_percent=10), NOW)
    assert plan.changes == ()
    (why,) = plan.skipped.values()
    assert why.startswith("the confident part of the change is below the minimum of 10%")


def test_a_confident_part_equal_to_the_recommendation_is_the_whole_change():
    recommended = res({"cpu": "40m", "memory": "128Mi"})
    sure = replace(rec("app", CURRENT, recommended), confident=recommended)
    (change,) = plan_changes(deployment(), [sure], AutoRails(max_step_percent=1000), NOW).changes
    assert change.after == recommended and change.reason == "because"


def test_the_rails_replay_offline_from_a_pure_function_without_the_kubernetes_client():
    """``planning.plan_step`` (what ``rightsizer backtest`` replays) imports neither Kopf nor the
    Kubernetes client, and holds a backed-off direction back while its back-off lasts."""
    code = (
        "import sys, rightsizer.planning; "
        "assert not {'kubernetes', 'kopf'} & set(sys.modules), sorted(m for m in sys.modules if 'kube' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    down = res({"cpu": "50m", "memory": "128Mi"})
    history = WorkloadHistory(backed_off={"memory-down": NOW + timedelta(hours=1)})
    (change,) = plan_step([rec("app", CURRENT, down)], AutoRails(), NOW, history).changes
    assert change.after.requests == {"cpu": parse("50m"), "memory": parse("256Mi")}  # memory held back
    plan = plan_step([rec("app", CURRENT, down)], AutoRails(), NOW + timedelta(hours=2), history)
    assert plan.changes[0].after.requests["memory"] == parse("128Mi")  # the back-off is over
    recent = WorkloadHistory(last_applied_at=NOW - timedelta(minutes=5))
    assert plan_step([rec("app", CURRENT, down)], AutoRails(), NOW, recent).blocked.startswith("cooldown")

"""Auto mode's change machine on a cluster that keeps its objects (``tests/support/fake_cluster``):
every method and kind to the end, rollbacks that land only when the pods run the old resources
(evicting a pod whose resize back stays Deferred), deadlines and their outcomes, and changes judged
whatever else fails (Prometheus unreachable, the policy no longer carrying them)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from rightsizer.change import CHANGE, Change, Method, Phase
from rightsizer.controller import adopt
from rightsizer.pod_progress import holds
from tests.support.change_runs import BEFORE, LARGER, SMALLER, ChangeRun, resources

# ---------------------------------------------------------------- to the end, every method and kind


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_an_in_place_change_reaches_every_pod_without_a_restart_and_the_template_follows(kind):
    run = ChangeRun.of(kind, "InPlace")
    before = {p.name: p.uid for p in run.pods()}
    started = run.evaluate()
    assert started.applied and "canary pod" in started.applied
    assert run.record().phase is Phase.CANARY
    run.until(lambda outcome: not run.in_flight())
    assert {p.name: p.uid for p in run.pods()} == before, "a pod was replaced"
    assert all(holds(r, resources(SMALLER)) for r in run.running().values())
    assert holds(run.template(), resources(SMALLER))
    assert "ChangeDone" in [e.reason for o in run.outcomes for e in o.events]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "CronJob"])
def test_a_rollout_replaces_the_pods_and_is_done_when_they_run_the_change(kind):
    run = ChangeRun.of(kind, "Rollout")
    run.evaluate()
    assert holds(run.template(), resources(SMALLER))
    run.until(lambda outcome: not run.in_flight())
    assert all(holds(r, resources(SMALLER)) for r in run.running().values())


def test_pods_only_never_edits_the_template_and_sizes_from_what_the_pods_run():
    run = ChangeRun.of("Deployment", "PodsOnly")
    run.until(lambda outcome: not run.in_flight())
    assert holds(run.template(), resources(BEFORE))
    assert all(holds(r, resources(SMALLER)) for r in run.running().values())
    quiet = run.evaluate()  # what the pods run is the recommendation: nothing more to do
    assert not quiet.applied and not run.in_flight(), quiet


# ---------------------------------------------------------------- rollbacks that land


def test_an_oom_killed_canary_is_rolled_back_in_place_and_its_direction_backed_off():
    run = ChangeRun.of("Deployment", "InPlace")
    run.evaluate()
    canary = run.record().canary_pod
    run.evaluate()  # the canary runs the change
    run.oom_kill(canary)
    rolling = run.evaluate()
    assert rolling.rolled_back and "OOM-killed" in rolling.rolled_back
    assert run.record().phase is Phase.ROLLING_BACK
    assert set(json.loads(run.annotations()["rightsizer.io/backoff"])) == {"cpu-down", "memory-down"}
    over = run.until(lambda outcome: outcome.rollback_over)
    assert not run.in_flight()
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())
    assert "every pod runs the resources from before" in over.rollback_over
    # Backed off: the same recommendation starts nothing (cooldown 1s: only the back-off holds it).
    for _ in range(5):
        again = run.evaluate()
        assert not again.applied and not run.in_flight(), again


def test_a_rollback_whose_resize_back_stays_deferred_evicts_the_pod_and_is_over_when_it_runs_the_old_ones():
    """Issue 15: lowering the canary freed room the scheduler gave another pod; the resize back is
    Deferred. The rollback is not over while the pod runs the lowered resources; after the
    deadline the pod is evicted and recreated from the template with the old ones."""
    run = ChangeRun.of("Deployment", "InPlace")
    run.evaluate()
    canary = run.record().canary_pod
    run.evaluate()
    run.cluster.full_for_all = True  # from now on, no resize gets through
    run.oom_kill(canary)
    run.evaluate()
    waiting = run.evaluate()
    assert run.record().phase is Phase.ROLLING_BACK and not waiting.rollback_over
    assert canary in waiting.in_flight.message and "Deferred" in waiting.in_flight.message
    assert holds(run.running()[canary], resources(SMALLER))  # still the lowered limit
    over = run.until(lambda outcome: outcome.rollback_over, evaluations=20)
    assert canary not in run.running(), "evicted"
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())
    evictions = [w for w in run.cluster.writes if w.target == f"pods/eviction/{canary}"]
    assert len(evictions) == 1
    assert over.rollback_over
    elapsed = [o for o in run.outcomes if o.in_flight and "evicted" in o.in_flight.message]
    assert elapsed, "the eviction is said, naming the pod"


def test_an_eviction_a_budget_refuses_waits_and_is_reported_stuck_once_then_retried():
    run = ChangeRun.of("Deployment", "InPlace")
    run.evaluate()
    canary = run.record().canary_pod
    run.evaluate()
    run.cluster.full_for_all = True
    run.cluster.evictions_refused = True
    run.oom_kill(canary)
    run.evaluate()
    for _ in range(80):
        run.evaluate()
    stuck = [e for o in run.outcomes for e in o.events if e.reason == "RollbackStuck"]
    assert len(stuck) == 1 and canary in stuck[0].message and stuck[0].target is not None
    assert run.record().phase is Phase.ROLLING_BACK  # never given up
    run.cluster.evictions_refused = False  # the budget allows it again
    run.until(lambda outcome: outcome.rollback_over, evaluations=5)
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())


# ---------------------------------------------------------------- forward resizes that do not land


def test_a_deferred_canary_is_rolled_back_in_place_mode_after_the_deadline():
    run = ChangeRun.of("Deployment", "InPlace", target=LARGER)
    run.cluster.full = True
    started = run.now
    run.evaluate()
    rolling = run.until(lambda outcome: outcome.rolled_back, 20)
    decided = run.now - timedelta(seconds=run.interval)
    assert decided - started >= timedelta(seconds=120)  # RESIZE_DEADLINE_SECONDS
    assert "not carried out within 120s" in rolling.rolled_back and "Deferred" in rolling.rolled_back
    run.until(lambda outcome: not run.in_flight())
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())


def test_a_deferred_canary_falls_back_to_a_rollout_in_in_place_or_rollout_mode():
    run = ChangeRun.of("Deployment", "InPlaceOrRollout", target=LARGER)
    run.cluster.full = True
    run.evaluate()
    fell = run.until(lambda outcome: run.record() is not None and run.record().method is Method.ROLLOUT, 20)
    assert "rolled out instead of resized in place" in fell.applied
    run.cluster.full = False
    run.until(lambda outcome: not run.in_flight())
    assert all(holds(r, resources(LARGER)) for r in run.running().values())


# ---------------------------------------------------------------- judged whatever else fails


def test_with_prometheus_unreachable_an_oom_kill_still_rolls_back_and_the_watch_waits():
    run = ChangeRun.of("Deployment", "InPlace")
    run.throttled = None
    run.evaluate()
    for _ in range(5):
        waiting = run.evaluate()  # past the 30 s canary: waits for the throttling judgement
    assert run.record().phase is Phase.CANARY
    assert "Prometheus unreachable" in waiting.in_flight.message
    run.oom_kill(run.record().canary_pod)
    rolled = run.evaluate()
    assert rolled.rolled_back and "OOM-killed" in rolled.rolled_back


def test_a_policy_that_no_longer_carries_a_change_rolls_it_back_without_back_off():
    run = ChangeRun.of("Deployment", "InPlace")
    run.evaluate()
    run.evaluate()
    run.stop = "the policy's mode is Recommend"
    rolled = run.evaluate()
    assert rolled.rolled_back and "Recommend" in rolled.rolled_back
    run.until(lambda outcome: not run.in_flight())
    assert "rightsizer.io/backoff" not in run.annotations()
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())


def test_a_record_of_the_first_version_is_read_and_carried_on():
    old = {
        "policy": "p",
        "method": "InPlace",
        "phase": "Rollout",
        "startedAt": "2026-11-23T11:59:00Z",
        "phaseStartedAt": "2026-11-23T11:59:30Z",
        "before": {"app": BEFORE},
        "after": {"app": SMALLER},
        "reason": "because",
        "canaryPod": "web-a",
        "restarts": {"web-a": 0},
        "templateDone": False,
        "settled": False,
    }
    change = Change.from_annotations({CHANGE: json.dumps(old)})
    assert change.phase is Phase.RESIZING and change.pods["web-a"].restarts == 0
    watch = {**old, "method": "Rollout", "phase": "Watch", "settled": False}
    assert Change.from_annotations({CHANGE: json.dumps(watch)}).phase is Phase.ROLLOUT


# ---------------------------------------------------------------- every wait ends


def test_a_rollout_whose_new_pods_stay_pending_is_rolled_back_after_its_deadline():
    run = ChangeRun.of("Deployment", "Rollout", target=LARGER)
    run.cluster.unschedulable = True  # the new template's pods fit no node
    started = run.now
    run.evaluate()
    rolling = run.until(lambda outcome: outcome.rolled_back, 80)
    assert "the rollout did not finish within 600s" in rolling.rolled_back
    assert run.now - started >= timedelta(seconds=600)
    assert "cpu-up" in json.loads(run.annotations()["rightsizer.io/backoff"])
    run.cluster.unschedulable = False
    run.until(lambda outcome: not run.in_flight(), 20)
    assert holds(run.template(), resources(BEFORE))


@pytest.mark.parametrize(
    ("mode", "ends"), [("InPlace", Phase.ROLLING_BACK), ("InPlaceOrRollout", Phase.ROLLOUT)]
)
def test_a_canary_resize_the_api_server_refuses_is_resolved_at_once(mode, ends):
    """403 (RBAC), an admission webhook: no wait for it to change its mind."""
    run = ChangeRun.of("Deployment", mode)
    run.cluster.refuse_resizes = "pods/resize is forbidden"
    outcome = run.evaluate()
    assert run.record().phase is ends
    said = outcome.rolled_back or outcome.applied
    assert "the API server refused the resize: pods/resize is forbidden" in said


def test_a_template_that_cannot_be_made_to_match_is_rolled_back_after_its_deadline():
    run = ChangeRun.of("Deployment", "InPlace")
    run.cluster.replicasets_lag = True  # the ReplicaSet controller never catches up
    adopt.OBSERVE_TIMEOUT_SECONDS, timeout = 0.0, adopt.OBSERVE_TIMEOUT_SECONDS
    try:
        rolling = run.until(lambda outcome: outcome.rolled_back, 60)
    finally:
        adopt.OBSERVE_TIMEOUT_SECONDS = timeout
    assert "not made to match within 300s" in rolling.rolled_back
    assert "rightsizer.io/backoff" not in run.annotations()
    run.until(lambda outcome: not run.in_flight(), 20)
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())
    assert holds(run.template(), resources(BEFORE))


def test_a_change_that_raises_memory_carries_on_through_an_oom_kill_under_its_larger_limit():
    run = ChangeRun.of("Deployment", "InPlace", target=LARGER)
    run.evaluate()
    run.evaluate()
    run.oom_kill(run.record().canary_pod)
    carried = run.until(lambda outcome: not run.in_flight())
    assert not any(o.rolled_back for o in run.outcomes), carried
    assert all(holds(r, resources(LARGER)) for r in run.running().values())


def test_a_decrease_whose_rollout_finds_no_room_is_rolled_back_without_backing_off():
    """A decrease stuck behind a surge pod on a full node is tried again; an increase is held back."""
    run = ChangeRun.of("Deployment", "Rollout", target=SMALLER)
    run.cluster.unschedulable = True
    run.evaluate()
    rolling = run.until(lambda outcome: outcome.rolled_back, 80)
    assert "the rollout did not finish within 600s" in rolling.rolled_back
    assert "rightsizer.io/backoff" not in run.annotations()

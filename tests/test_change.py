"""Auto mode's change record: kept in an annotation, read back whole; how far a pod got; what counts
as a regression (judged from when the change reached each pod); which directions a rollback backs off."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rightsizer.apply import backoff_annotation, backoff_until
from rightsizer.change import CHANGE, Change, Method, Phase, PodMark, Rollback
from rightsizer.change_machine import watched
from rightsizer.change_steps import Observed
from rightsizer.model import Resources
from rightsizer.planning import directions, undoable_in_place, without_backed_off
from rightsizer.pod_progress import Exposure, PodState, Watched, exposure, pod_state, regression
from rightsizer.pods import PodView
from rightsizer.qos import pod_qos_class
from rightsizer.quantity import parse
from rightsizer.timestamps import format_time
from rightsizer.workload import WorkloadView

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=5)


def res(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> Resources:
    return Resources(
        {k: parse(v) for k, v in (requests or {}).items()}, {k: parse(v) for k, v in (limits or {}).items()}
    )


BEFORE = {"app": res({"cpu": "200m", "memory": "200Mi"}, {"cpu": "400m", "memory": "200Mi"})}
AFTER = {"app": res({"cpu": "100m", "memory": "100Mi"}, {"cpu": "300m", "memory": "150Mi"})}


def change(**overrides: Any) -> Change:
    values: dict[str, Any] = dict(
        policy="web",
        method=Method.IN_PLACE,
        phase=Phase.CANARY,
        started_at=format_time(STARTED),
        phase_started_at=format_time(STARTED),
        before=BEFORE,
        after=AFTER,
        reason="over-provisioned",
        canary_pod="web-a",
        pods={"web-a": PodMark(1, format_time(STARTED))},
    )
    values.update(overrides)
    return Change(**values)


def pod(
    name: str = "web-a",
    desired: dict[str, str] | None = None,
    actual: dict[str, str] | None = None,
    *,
    restarts: int = 1,
    ready: bool = True,
    conditions: list[dict[str, Any]] | None = None,
    last_state: dict[str, Any] | None = None,
) -> PodView:
    wanted = desired or {
        "requests": {"cpu": "200m", "memory": "200Mi"},
        "limits": {"cpu": "400m", "memory": "200Mi"},
    }
    running = actual or wanted
    ready_condition = {"type": "Ready", "status": "True" if ready else "False"}
    if not ready:
        ready_condition["lastTransitionTime"] = format_time(NOW - timedelta(seconds=90))
    return PodView.from_body(
        {
            "metadata": {"namespace": "shop", "name": name},
            "spec": {"containers": [{"name": "app", "resources": wanted}]},
            "status": {
                "phase": "Running",
                "conditions": [ready_condition, *(conditions or [])],
                "containerStatuses": [
                    {
                        "name": "app",
                        "resources": running,
                        "restartCount": restarts,
                        "lastState": last_state or {},
                    }
                ],
            },
        }
    )


AFTER_Q = {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"cpu": "300m", "memory": "150Mi"}}
BEFORE_Q = {"requests": {"cpu": "200m", "memory": "200Mi"}, "limits": {"cpu": "400m", "memory": "200Mi"}}


def test_the_record_reads_back_whole_and_an_unreadable_one_is_not_dropped():
    record = change(
        fell_back="no", strategy={"type": "RollingUpdate"}, rollback=Rollback("hurt", ("cpu-down",))
    )
    assert Change.from_annotations({CHANGE: record.to_annotation()}) == record
    assert Change.from_annotations({}) is None
    with pytest.raises(ValueError, match="fix or remove it by hand"):
        Change.from_annotations({CHANGE: '{"policy": "web"}'})


def test_how_far_a_pod_got():
    assert pod_state(pod(), AFTER)[0] is PodState.NOT_STARTED
    assert (
        pod_state(pod(desired=AFTER_Q, actual=BEFORE_Q), AFTER)[0] is PodState.PENDING
    )  # asked, not applied yet
    assert pod_state(pod(desired=AFTER_Q, actual=AFTER_Q), AFTER)[0] is PodState.RESIZED
    infeasible = [
        {
            "type": "PodResizePending",
            "status": "True",
            "reason": "Infeasible",
            "message": "Node didn't have enough capacity",
        }
    ]
    state, why = pod_state(pod(desired=AFTER_Q, actual=BEFORE_Q, conditions=infeasible), AFTER)
    assert state is PodState.INFEASIBLE and "enough capacity" in why


def oom(at: datetime) -> dict[str, Any]:
    return {"terminated": {"reason": "OOMKilled", "finishedAt": format_time(at)}}


def reached(*pods: PodView, since: datetime = STARTED, restarts: int = 1) -> list[Watched]:
    return [Watched(p, restarts, since) for p in pods]


def test_an_oom_kill_after_the_change_reached_the_pod_is_a_regression_one_before_is_not():
    after_start = pod(last_state=oom(STARTED + timedelta(minutes=1)), restarts=1)
    assert "OOM-killed" in regression(reached(after_start), {}, 0.05, NOW)
    before_start = pod(last_state=oom(STARTED - timedelta(minutes=1)), restarts=1)
    assert regression(reached(before_start), {}, 0.05, NOW) is None
    # Killed after the change began but before it reached this pod: not the change's doing.
    assert regression(reached(after_start, since=STARTED + timedelta(minutes=2)), {}, 0.05, NOW) is None


def test_more_restarts_and_throttling_are_regressions():
    assert "restarted 2 time(s)" in regression(reached(pod(restarts=3)), {}, 0.05, NOW)
    assert "CFS-throttled 20%" in regression(reached(pod()), {"web-a": 0.2}, 0.05, NOW)
    assert regression(reached(pod()), {"web-a": 0.01}, 0.05, NOW) is None


def test_readiness_lost_for_60s_is_a_regression_59s_is_not():
    """The pod stopped being ready 90 s before NOW (``pod(ready=False)``)."""
    unready = pod(ready=False)
    assert "not ready for 90s" in regression(reached(unready), {}, 0.05, NOW)
    assert "not ready for 60s" in regression(reached(unready), {}, 0.05, NOW - timedelta(seconds=30))
    assert regression(reached(unready), {}, 0.05, NOW - timedelta(seconds=31)) is None
    # Not ready since before the change reached it: counted from when it did.
    assert regression(reached(unready, since=NOW - timedelta(seconds=59)), {}, 0.05, NOW) is None


def test_without_throttling_shares_the_api_signals_are_still_judged():
    """Prometheus unreachable (None): an OOM kill, restarts and readiness still count."""
    killed = pod(last_state=oom(STARTED + timedelta(minutes=1)), restarts=1)
    assert "OOM-killed" in regression(reached(killed), None, 0.05, NOW)
    assert regression(reached(pod()), None, 0.05, NOW) is None


def test_rollbacks_back_off_the_directions_they_undo():
    assert directions(BEFORE, AFTER) == {"cpu-down", "memory-down"}
    record = backoff_annotation({}, {"memory-down"}, NOW, 3600)
    assert backoff_until({"rightsizer.io/backoff": record}) == {"memory-down": NOW + timedelta(hours=1)}
    expired = json.dumps({"cpu-up": format_time(NOW - timedelta(seconds=1))})
    assert set(
        json.loads(backoff_annotation({"rightsizer.io/backoff": expired}, {"memory-down"}, NOW, 60))
    ) == {"memory-down"}
    kept, held = without_backed_off(BEFORE["app"], AFTER["app"], {"memory-down"})
    assert held == ["memory"]
    assert kept.requests == {"cpu": parse("100m"), "memory": parse("200Mi")}  # CPU moves, memory stays
    assert kept.limits == {"cpu": parse("300m"), "memory": parse("200Mi")}


def test_a_pods_qos_class_counts_every_container():
    guaranteed = res({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})
    assert pod_qos_class([guaranteed, guaranteed]) == "Guaranteed"
    assert pod_qos_class([guaranteed, res({"cpu": "1"})]) == "Burstable"
    assert pod_qos_class([res(), res()]) == "BestEffort"


def test_in_place_a_limit_is_changed_never_added_or_removed_so_a_rollback_can_undo_it():
    """Kubernetes adds limits in place but never removes one: a limit added by a change could not
    be taken away by its rollback."""
    before = Resources({"cpu": parse("100m"), "memory": parse("300Mi")}, {"memory": parse("300Mi")})
    after = Resources(
        {"cpu": parse("55m"), "memory": parse("104Mi")}, {"cpu": parse("165m"), "memory": parse("115Mi")}
    )
    shaped, left_out = undoable_in_place(before, after)
    assert shaped == Resources(after.requests, {"memory": parse("115Mi")})
    assert left_out == ("cpu limit 165m not added",)
    # A limit the change would drop is kept, raised to the request when the request passes it.
    dropped = Resources({"cpu": parse("2"), "memory": parse("200Mi")}, {"memory": parse("200Mi")})
    with_cpu_limit = Resources(before.requests, {"cpu": parse("1"), "memory": parse("300Mi")})
    shaped, left_out = undoable_in_place(with_cpu_limit, dropped)
    assert shaped.limits == {"cpu": parse("2"), "memory": parse("200Mi")}
    assert left_out == ("cpu limit kept (a limit cannot be removed in place)",)
    # Values that only change pass unchanged.
    assert undoable_in_place(with_cpu_limit, with_cpu_limit) == (with_cpu_limit, ())


def test_the_canary_phase_watches_the_canary_only_then_every_pod_the_change_reached():
    asked = {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"cpu": "300m", "memory": "150Mi"}}
    canary, other = pod("web-a", desired=asked), pod("web-b", desired=asked, restarts=4)
    seen = Observed(deployment_view(), (canary, other, pod("web-c")), NOW)
    assert [w.pod.name for w in watched(change(), seen)] == ["web-a"]
    resizing = change(phase=Phase.RESIZING, pods={"web-a": PodMark(1, format_time(STARTED))})
    assert [w.pod.name for w in watched(resizing, seen)] == ["web-a", "web-b"]  # web-c: not reached
    # web-b is not marked (a pod a rollout made, or the webhook gave the change): every restart counts.
    assert "pod web-b: restarted 4 time(s)" in regression(watched(resizing, seen), {}, 0.05, NOW)


def deployment_view() -> WorkloadView:
    return WorkloadView.from_body(
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "resources": BEFORE_Q}]}}},
        }
    )


def test_a_kill_or_throttling_the_change_cannot_have_caused_is_not_its_regression():
    """A change that raises memory is not rolled back for an OOM kill under its larger limit (the
    container was too small before: rolled back and backed off, it would crash-loop at the old
    limit), nor for the restart that kill made; throttling counts only under a CPU limit it lowered.
    Seen on the real node: 64Mi -> 73Mi, killed at 73Mi, rolled back to 64Mi with memory-up backed off."""
    raised = {"app": res({"memory": "48Mi"}, {"memory": "73Mi"})}
    kept = {"app": res({"memory": "48Mi"}, {"memory": "64Mi"})}
    exposed = exposure(kept, raised)
    assert exposed == Exposure(frozenset(), cpu=False)
    killed = pod(last_state=oom(STARTED + timedelta(minutes=1)), restarts=2)
    assert regression(reached(killed), {}, 0.05, NOW, exposed) is None
    assert "OOM-killed" in regression(reached(killed), {}, 0.05, NOW, exposure(raised, kept))
    assert regression(reached(pod()), {"web-a": 0.5}, 0.05, NOW, exposed) is None
    assert "CFS-throttled" in regression(reached(pod()), {"web-a": 0.5}, 0.05, NOW, exposure(BEFORE, AFTER))
    # A restart with no kill to account for it is a regression whatever the change did.
    assert "restarted 1 time(s)" in regression(reached(pod(restarts=2)), {}, 0.05, NOW, exposed)

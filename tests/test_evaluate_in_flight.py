"""Changes in flight are judged at every evaluation whatever else fails: with Prometheus unreachable
(OOM kills, restarts and readiness come from the API), and when the policy no longer carries them
(mode Recommend, the workload no longer selected, the policy unreadable or deleted: rolled back,
without back-off). ``evaluate`` as the operator runs it, against a cluster that keeps its objects."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from rightsizer.change import CHANGE, Phase
from rightsizer.controller.deletion import release
from rightsizer.controller.evaluate import evaluate, sized_from
from rightsizer.controller.outcome import Outcome, PolicyObject
from rightsizer.pod_progress import holds
from rightsizer.policy import parse_policy
from rightsizer.promql import LabelConfig
from rightsizer.settings import DELETION_DEADLINE_SECONDS
from rightsizer.source import PrometheusSource, PrometheusUnavailable
from tests.support.change_runs import BEFORE, SMALLER, ChangeRun, resources

SPEC = {
    "targetRef": {"name": "web"},
    "mode": "Auto",
    "auto": {"updateMode": "InPlace", "canary": {"duration": "30s"}},
}


class Unreachable:
    """A Prometheus that cannot be reached (what ``PrometheusSource`` raises, at once)."""

    url = "http://prometheus.invalid:9090"

    def fetch(self, *args: Any) -> Any:
        raise PrometheusUnavailable(f"cannot connect to Prometheus at {self.url}")

    def throttled_shares(self, *args: Any) -> Any:
        raise PrometheusUnavailable(f"cannot connect to Prometheus at {self.url}")


@pytest.fixture
def down() -> Unreachable:
    return Unreachable()


def in_flight() -> ChangeRun:
    """web's in-place change, its canary resized and running the change."""
    run = ChangeRun.of("Deployment", "InPlace")
    run.evaluate()
    run.evaluate()
    assert run.record().phase is Phase.CANARY
    return run


def evaluated(
    run: ChangeRun, prometheus: PrometheusSource, spec: dict[str, Any], status: dict[str, Any]
) -> Outcome:
    outcome = evaluate(
        PolicyObject("p", "shop", "uid-p", 1, spec, status),
        run.cluster.views(),
        run.cluster.pod_views(),
        prometheus,
        run.cluster,
        LabelConfig(),
        run.now,
    )
    run.now += timedelta(seconds=10)
    run.cluster.settle()
    return outcome


def until_over(run: ChangeRun, prometheus: PrometheusSource, spec: dict[str, Any]) -> Outcome:
    status: dict[str, Any] = {}
    for _ in range(30):
        outcome = evaluated(run, prometheus, spec, status)
        status = outcome.status
        if not run.in_flight():
            return outcome
    raise AssertionError(f"still in flight: {status.get('changes')}")


def conditions(outcome: Outcome) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in outcome.status["conditions"]}


def test_with_prometheus_unreachable_an_oom_killed_canary_is_rolled_back(down):
    run = in_flight()
    canary = run.record().canary_pod
    run.oom_kill(canary)
    outcome = evaluated(run, down, SPEC, {})
    assert conditions(outcome)["PrometheusReachable"]["status"] == "False"
    assert conditions(outcome)["RolledBack"]["reason"] == "RollingBack"
    assert "OOM-killed" in conditions(outcome)["RolledBack"]["message"]
    (change,) = outcome.status["changes"]
    assert change["phase"] == "RollingBack" and change["rollingBack"].startswith(f"pod {canary}")
    over = until_over(run, down, SPEC)
    assert conditions(over)["RolledBack"]["status"] == "True"
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())


def test_with_prometheus_unreachable_a_watch_that_is_over_waits_for_the_throttling_judgement(down):
    run = in_flight()
    status: dict[str, Any] = {}
    for _ in range(5):  # past the 30 s canary
        outcome = evaluated(run, down, SPEC, status)
        status = outcome.status
    (change,) = outcome.status["changes"]
    assert change["phase"] == "Canary" and "CFS throttling is not judged" in change["message"]
    assert change["deadline"]  # then rolled back, without back-off (UNJUDGED_DEADLINE_SECONDS)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({**SPEC, "mode": "Recommend"}, "the policy's mode is Recommend"),
        ({**SPEC, "targetRef": {"name": "api"}}, "Deployment/web is no longer selected by the policy"),
        ({**SPEC, "interval": "often"}, "the policy is invalid: spec.interval"),
    ],
    ids=["recommend", "left-the-policy", "invalid"],
)
def test_a_change_its_policy_no_longer_carries_is_rolled_back_without_back_off(down, spec, why):
    run = in_flight()
    outcome = evaluated(run, down, spec, {})
    (change,) = outcome.status["changes"]
    assert change["phase"] == "RollingBack" and change["rollingBack"].startswith(why)
    until_over(run, down, spec)
    assert "rightsizer.io/backoff" not in run.annotations()
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())
    assert holds(run.template(), resources(BEFORE))


def test_a_deleted_policys_changes_are_rolled_back_before_it_goes():
    run = in_flight()
    policy = PolicyObject("p", "shop", "uid-p", 1, {}, {})
    deleted_at = run.now
    for _ in range(10):
        released = release(
            policy, deleted_at, run.now, run.cluster, run.cluster.views(), run.cluster.pod_views(), ()
        )
        run.now += timedelta(seconds=10)
        run.cluster.settle()
        if not released.in_flight:
            break
    assert not released.in_flight and not run.in_flight()
    assert all(holds(r, resources(BEFORE)) for r in run.running().values())
    assert json.loads(run.annotations()["rightsizer.io/rolled-back"])["reason"] == "the policy was deleted"


def test_a_deleted_policys_change_that_cannot_be_rolled_back_in_time_is_released_and_said():
    run = in_flight()
    canary = run.record().canary_pod
    run.cluster.full_for_all = True  # the resize back never lands
    run.cluster.evictions_refused = True  # and the eviction is refused
    policy = PolicyObject("p", "shop", "uid-p", 1, {}, {})
    release(policy, run.now, run.now, run.cluster, run.cluster.views(), run.cluster.pod_views(), ())
    run.cluster.settle()
    later = run.now + timedelta(seconds=DELETION_DEADLINE_SECONDS)
    released = release(policy, run.now, later, run.cluster, run.cluster.views(), run.cluster.pod_views(), ())
    assert not released.in_flight and CHANGE not in run.annotations()
    (event,) = released.events
    assert event.reason == "RollbackAbandoned" and canary in event.message and event.target is not None


def test_pods_only_sizes_from_what_its_pods_run_not_from_the_template():
    run = ChangeRun.of("Deployment", "PodsOnly")
    run.until(lambda outcome: not run.in_flight())
    spec = parse_policy({**SPEC, "auto": {"updateMode": "PodsOnly"}})
    assert holds(sized_from(run.workload(), spec)["app"], resources(SMALLER))
    assert holds(sized_from(run.workload(), parse_policy(SPEC))["app"], resources(BEFORE))

"""OOM kills seen in pod statuses and remembered in a policy's status: one kill is one kill, counted
once and at the limit it was killed under, however the pod is resized after; a policy keeps only
its own targets' kills."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rightsizer.engine import recommend
from rightsizer.model import ContainerKey, ContainerUsage, Resources
from rightsizer.oomkills import observe, with_observed
from rightsizer.pods import PodView
from rightsizer.quantity import parse
from rightsizer.settings import RecommendationSettings
from rightsizer.timestamps import format_time

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KILLED_AT = format_time(NOW - timedelta(minutes=3))
WINDOW = 3600
CART = {("Deployment", "cart")}
KEY = ContainerKey("shop", "Deployment", "cart", "app")


def killed_pod(limit: str, name: str = "cart-5d8f7b9c6d-x2x4q", owner: str = "cart") -> PodView:
    """A pod of Deployment ``owner`` whose app container was OOM-killed at ``KILLED_AT`` and now runs
    with a memory limit of ``limit`` (in its spec and, as the kubelet reports it, its status)."""
    resources = {"requests": {"memory": "64Mi"}, "limits": {"memory": limit}}
    body: dict[str, Any] = {
        "metadata": {
            "namespace": "shop",
            "name": name,
            "labels": {"pod-template-hash": "5d8f7b9c6d"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{owner}-5d8f7b9c6d", "controller": True}],
        },
        "spec": {"containers": [{"name": "app", "resources": resources}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "app",
                    "resources": resources,
                    "restartCount": 1,
                    "lastState": {"terminated": {"reason": "OOMKilled", "finishedAt": KILLED_AT}},
                }
            ],
        },
    }
    return PodView.from_body(body)


def test_one_kill_seen_again_after_in_place_resizes_is_one_kill_at_its_first_limit():
    """The ratchet of issue 15: the kill at 96Mi, seen again after the pod was resized to 192Mi and
    then 384Mi, stays one kill at 96Mi."""
    status: list[dict[str, Any]] = []
    for limit in ("96Mi", "192Mi", "384Mi"):
        kills = observe("shop", status, [killed_pod(limit)], NOW, WINDOW, CART)
        status = [kill.to_status() for kill in kills]
    assert status == [
        {
            "kind": "Deployment",
            "name": "cart",
            "container": "app",
            "pod": "cart-5d8f7b9c6d-x2x4q",
            "finishedAt": KILLED_AT,
            "memoryLimit": "96Mi",
        }
    ]
    usage = with_observed(ContainerUsage(), observe("shop", status, [killed_pod("384Mi")], NOW, WINDOW, CART))
    assert usage.oom_kills == 1
    assert usage.oom_killed_memory_bytes == float(parse("96Mi"))


def test_memory_is_raised_once_for_one_kill_however_many_evaluations_see_it():
    """The engine's answer to the kill does not grow as the pod is resized to what it recommended."""
    settings = RecommendationSettings()
    status: list[dict[str, Any]] = []
    limit = "96Mi"
    recommended = []
    for _ in range(4):
        kills = observe("shop", status, [killed_pod(limit)], NOW, WINDOW, CART)
        status = [kill.to_status() for kill in kills]
        current = Resources({"memory": parse("64Mi")}, {"memory": parse(limit)})
        rec = recommend(KEY, with_observed(ContainerUsage(), kills), current, settings)
        assert rec.recommended is not None
        recommended.append(rec.recommended.requests["memory"])
        limit = rec.recommended.to_quantities()["limits"]["memory"]  # resized in place to it
    assert len(set(recommended)) == 1, recommended


def test_a_new_kill_of_the_same_container_is_another_kill():
    first = observe("shop", [], [killed_pod("96Mi")], NOW, WINDOW, CART)
    later = killed_pod("192Mi", name="cart-5d8f7b9c6d-zzzzz")
    both = observe("shop", [k.to_status() for k in first], [later], NOW, WINDOW, CART)
    assert [(k.pod, k.memory_limit_bytes) for k in both] == [
        ("cart-5d8f7b9c6d-x2x4q", parse("96Mi")),
        ("cart-5d8f7b9c6d-zzzzz", parse("192Mi")),
    ]
    assert with_observed(ContainerUsage(), both).oom_kills == 2


def test_a_policy_keeps_only_its_own_targets_kills():
    other = killed_pod("128Mi", name="search-5d8f7b9c6d-aaaaa", owner="search")
    remembered = [
        {
            "kind": "Deployment",
            "name": "search",
            "container": "app",
            "pod": "search-1",
            "finishedAt": KILLED_AT,
        }
    ]
    kills = observe("shop", remembered, [killed_pod("96Mi"), other], NOW, WINDOW, CART)
    assert {(k.key.kind, k.key.name) for k in kills} == {("Deployment", "cart")}


def test_kills_older_than_the_window_are_forgotten():
    kills = observe("shop", [], [killed_pod("96Mi")], NOW + timedelta(seconds=WINDOW), WINDOW, CART)
    assert kills == []

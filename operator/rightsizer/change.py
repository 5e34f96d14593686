"""Auto mode's changes in flight: what is being changed, how far it got, and whether it hurt.

A change is written into the workload's ``rightsizer.io/change`` annotation *before* anything is
changed, and stays there until it is done or rolled back: an operator restart neither forgets the
rollback point (``before``) nor applies the change twice. Pure functions only; the controller reads
the pods and sends the patches (``controller/autoapply.py``).

A change goes through phases:

- ``Canary``: one pod is resized in place and watched for ``auto.canary.duration``;
- ``Rollout``: the other pods are resized in place;
- ``Watch``: every pod runs the new resources (and the template says so), watched once more for the
  canary duration before the change counts as done. A change made by a rollout (``method``
  ``Rollout``) starts here.

A regression (an OOM kill, more restarts, readiness lost, CFS throttling above the policy's
threshold) in a watched pod rolls the change back and backs that direction off for a while.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from rightsizer.hpa import TargetRetune
from rightsizer.model import Resources
from rightsizer.pods import PodView
from rightsizer.quantity import parse
from rightsizer.timestamps import format_time, parse_time
from rightsizer.units import RESOURCES, format_quantity
from rightsizer.workload import ANNOTATION_PREFIX

CHANGE = ANNOTATION_PREFIX + "change"
BACKOFF = ANNOTATION_PREFIX + "backoff"
READINESS_GRACE_SECONDS = 60
"""A pod not ready for this long after the change reached it has lost its readiness (a probe that
fails once in a while is not a regression)."""


class Method(StrEnum):
    """How a change reaches the pods."""

    IN_PLACE = "InPlace"
    """``pods/resize`` of the running pods, then the template is made to match without a rollout."""
    ROLLOUT = "Rollout"
    """The template is patched and the workload's controller replaces the pods."""
    PODS_ONLY = "PodsOnly"
    """``pods/resize`` of the running pods; the template is never edited: new pods get the resources
    from the admission webhook (``admission.POD_RESOURCES``)."""


class Phase(StrEnum):
    CANARY = "Canary"
    ROLLOUT = "Rollout"
    WATCH = "Watch"


class PodState(StrEnum):
    """What became of one pod in an in-place change."""

    RESIZED = "Resized"
    PENDING = "Pending"
    INFEASIBLE = "Infeasible"
    NOT_STARTED = "NotStarted"


@dataclass(frozen=True)
class Change:
    policy: str
    method: Method
    phase: Phase
    started_at: str
    phase_started_at: str
    before: dict[str, Resources]
    """The rollback point: each changed container's resources before the change."""
    after: dict[str, Resources]
    reason: str
    canary_pod: str | None = None
    restarts: dict[str, int] = field(default_factory=dict)
    """Each pod's container restarts when it was changed: more later is a regression."""
    fell_back: str | None = None
    """Why an in-place change became a rollout (InPlaceOrRollout), if it did."""
    template_done: bool = False
    """The pod template already holds ``after`` (in-place: made to match after the pods)."""
    settled: bool = False
    """A rollout's pods have all been replaced (its watch counts from then)."""
    strategy: dict[str, Any] | None = None
    """A StatefulSet's or DaemonSet's update strategy, kept while it is switched to OnDelete."""
    pod_resources_before: str | None = None
    """PodsOnly: the ``rightsizer.io/pod-resources`` annotation before the change (put back on rollback)."""
    autoscalers: tuple[TargetRetune, ...] = ()
    """``spec.hpa: Retune``: the HPA targets that move with the requests (put back on rollback)."""

    def to_annotation(self) -> str:
        return json.dumps(
            {
                "policy": self.policy,
                "method": self.method.value,
                "phase": self.phase.value,
                "startedAt": self.started_at,
                "phaseStartedAt": self.phase_started_at,
                "before": {c: r.to_quantities() for c, r in self.before.items()},
                "after": {c: r.to_quantities() for c, r in self.after.items()},
                "reason": self.reason,
                "canaryPod": self.canary_pod,
                "restarts": self.restarts,
                "fellBack": self.fell_back,
                "templateDone": self.template_done,
                "settled": self.settled,
                "strategy": self.strategy,
                "podResourcesBefore": self.pod_resources_before,
                "autoscalers": [retune.to_dict() for retune in self.autoscalers],
            },
            sort_keys=True,
        )

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> Change | None:
        """The change in flight, or None. A record that cannot be read raises ``ValueError``: it is
        the rollback point, and silently dropping it would lose it."""
        text = annotations.get(CHANGE)
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(
                policy=raw["policy"],
                method=Method(raw["method"]),
                phase=Phase(raw["phase"]),
                started_at=raw["startedAt"],
                phase_started_at=raw["phaseStartedAt"],
                before={c: _resources(r) for c, r in raw["before"].items()},
                after={c: _resources(r) for c, r in raw["after"].items()},
                reason=raw.get("reason", ""),
                canary_pod=raw.get("canaryPod"),
                restarts={p: int(n) for p, n in (raw.get("restarts") or {}).items()},
                fell_back=raw.get("fellBack"),
                template_done=bool(raw.get("templateDone")),
                settled=bool(raw.get("settled")),
                strategy=raw.get("strategy"),
                pod_resources_before=raw.get("podResourcesBefore"),
                autoscalers=tuple(TargetRetune.from_dict(r) for r in raw.get("autoscalers") or []),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"annotation {CHANGE} cannot be read ({error}): fix or remove it by hand"
            ) from None

    def next_phase(self, phase: Phase, now: datetime, **changes: Any) -> Change:
        return replace(self, phase=phase, phase_started_at=format_time(now), **changes)

    def watched_long_enough(self, now: datetime, duration_seconds: int) -> bool:
        return (now - parse_time(self.phase_started_at)).total_seconds() >= duration_seconds


def _resources(raw: dict[str, dict[str, str]]) -> Resources:
    return Resources(
        requests={r: parse(v) for r, v in (raw.get("requests") or {}).items()},
        limits={r: parse(v) for r, v in (raw.get("limits") or {}).items()},
    )


def restarts_of(pod: PodView) -> int:
    return sum(container.restarts for container in pod.containers.values())


def pod_state(pod: PodView, target: dict[str, Resources]) -> tuple[PodState, str]:
    """How far ``pod`` is from running with ``target`` (container -> resources), with why."""
    asked = all(_holds(pod.containers[c].desired, r) for c, r in target.items() if c in pod.containers)
    if not asked:
        return PodState.NOT_STARTED, "not resized yet"
    if pod.resize_pending and pod.resize_pending.startswith("Infeasible"):
        return PodState.INFEASIBLE, pod.resize_pending
    running = all(
        pod.containers[c].actual is not None and _holds(pod.containers[c].actual, r)  # type: ignore[arg-type]
        for c, r in target.items()
        if c in pod.containers
    )
    if running:
        return PodState.RESIZED, "running with the new resources"
    return PodState.PENDING, pod.resize_pending or "the kubelet has not applied it yet"


def undoable_in_place(before: Resources, after: Resources) -> tuple[Resources, tuple[str, ...]]:
    """``after`` as an in-place change can take it and a rollback can undo it, with what was left out.

    Kubernetes resizes a running container's existing requests and limits, and adds limits, but
    never removes one in place ("resource limits cannot be removed"). A limit added in place could
    not be taken away by a rollback, so it is not added; a limit ``after`` drops is kept where it
    is (raised to the request if the request passes it). The rest of the change goes ahead.
    """
    limits: dict[str, Decimal] = {}
    left_out = []
    for resource in RESOURCES:
        old, new = before.limits.get(resource), after.limits.get(resource)
        if old is None:
            if new is not None:
                left_out.append(f"{resource} limit {format_quantity(resource, new)} not added")
            continue
        if new is None:
            left_out.append(f"{resource} limit kept (a limit cannot be removed in place)")
            new = old
        request = after.requests.get(resource)
        limits[resource] = max(new, request) if request is not None else new
    return Resources(dict(after.requests), limits), tuple(left_out)


def _holds(resources: Resources, target: Resources) -> bool:
    """The same requests and limits as ``target``, resource by resource (absent where it is absent)."""
    return all(
        getattr(resources, kind).get(r) == getattr(target, kind).get(r)
        for kind in ("requests", "limits")
        for r in RESOURCES
    )


def regression(
    change: Change,
    pods: list[PodView],
    throttled: dict[str, float],
    throttling_threshold: float,
    now: datetime,
) -> str | None:
    """Why the change hurt the pods it reached, or None.

    Watched: the canary in the Canary phase, every pod after. A pod hurts when one of its
    containers was OOM-killed after the change, restarted more than when it was changed (a pod the
    change created: at all), stopped being ready for ``READINESS_GRACE_SECONDS`` while running,
    or was CFS-throttled (``throttled``: pod -> share of periods since the phase started) above
    the policy's threshold.
    """
    started = parse_time(change.started_at)
    watched = [p for p in pods if change.phase is not Phase.CANARY or p.name == change.canary_pod]
    for pod in watched:
        if pod.deleting:
            continue
        kills = [k for k in pod.oom_kills if parse_time(k.finished_at) > started]
        if kills:
            return f"pod {pod.name}: container {kills[0].container} OOM-killed at {kills[0].finished_at}"
        more = restarts_of(pod) - change.restarts.get(pod.name, 0)
        if more > 0:
            return f"pod {pod.name}: restarted {more} time(s) since the change"
        unready = pod.unready_since and (now - parse_time(pod.unready_since)).total_seconds()
        if pod.running and unready and unready >= READINESS_GRACE_SECONDS:
            return f"pod {pod.name}: not ready for {unready:.0f}s"
        share = throttled.get(pod.name)
        if share is not None and share > throttling_threshold:
            return f"pod {pod.name}: CFS-throttled {share:.0%} of periods (above {throttling_threshold:.0%})"
    return None


def directions(before: dict[str, Resources], after: dict[str, Resources]) -> set[str]:
    """The directions a change moves requests in: ``cpu-up``, ``memory-down``..."""
    moves = set()
    for container, target in after.items():
        for resource in RESOURCES:
            old, new = (
                before.get(container, Resources()).requests.get(resource),
                target.requests.get(resource),
            )
            if old is not None and new is not None and new != old:
                moves.add(f"{resource}-{'up' if new > old else 'down'}")
    return moves


def backoff_until(annotations: dict[str, str]) -> dict[str, datetime]:
    """Directions backed off after a rollback, and until when (an unreadable record backs off nothing)."""
    try:
        raw = json.loads(annotations.get(BACKOFF) or "{}")
        return {direction: parse_time(until) for direction, until in raw.items()}
    except (ValueError, AttributeError):
        return {}


def backoff_annotation(annotations: dict[str, str], moves: set[str], now: datetime, seconds: int) -> str:
    """The backoff record with ``moves`` backed off for ``seconds`` more (expired entries dropped)."""
    kept = {d: t for d, t in backoff_until(annotations).items() if t > now}
    kept.update(dict.fromkeys(moves, now + timedelta(seconds=seconds)))
    return json.dumps({d: format_time(t) for d, t in sorted(kept.items())})


def without_backed_off(
    before: Resources, after: Resources, backed_off: set[str]
) -> tuple[Resources, list[str]]:
    """``after`` with every resource that moves in a backed-off direction kept as it is."""
    requests, limits, held = dict(after.requests), dict(after.limits), []
    for resource in RESOURCES:
        old, new = before.requests.get(resource), after.requests.get(resource)
        if old is None or new is None or old == new:
            continue
        if f"{resource}-{'up' if new > old else 'down'}" in backed_off:
            held.append(resource)
            for values, source in ((requests, before.requests), (limits, before.limits)):
                values.pop(resource, None)
                if resource in source:
                    values[resource] = source[resource]
    return Resources(requests, limits), held

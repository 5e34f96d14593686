"""Auto mode's change record: what is being changed, how far it got, and the rollback point.

A change is written into the workload's ``rightsizer.io/change`` annotation *before* anything is
changed, and every phase it enters is written there before that phase's effects, until it is done
or rolled back (the record removed). An operator restart (or a new leader) reads it and carries on
where the change was: it neither forgets the rollback point (``before``) nor applies the change
twice, and a rollback interrupted half way goes on rolling back. ``change_machine`` moves it on.

Records written before the phases were named as they are now (no ``version``) are read too: their
``Rollout`` phase of an in-place change is ``Resizing``, a rolled-out change's unsettled ``Watch``
is ``Rollout``, and the restarts they kept per pod are the pods' marks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from rightsizer.hpa import TargetRetune
from rightsizer.model import Resources
from rightsizer.quantity import parse
from rightsizer.timestamps import format_time, parse_time
from rightsizer.workload import ANNOTATION_PREFIX

CHANGE = ANNOTATION_PREFIX + "change"
ROLLED_BACK = ANNOTATION_PREFIX + "rolled-back"
RECORD_VERSION = 2


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
    """Where a change is (docs/operator.md, "The phases of a change"). Done is the record's removal."""

    CANARY = "Canary"
    """In place: one pod resized and watched for ``auto.canary.duration``."""
    RESIZING = "Resizing"
    """In place: every other pod resized, until each runs the new resources."""
    TEMPLATE = "Template"
    """In place (not PodsOnly): the pod template made to match, without a rollout."""
    ROLLOUT = "Rollout"
    """By rollout: the template patched, until the workload's controller has replaced every pod."""
    WATCH = "Watch"
    """Every pod runs the new resources, watched once more for the canary duration."""
    ROLLING_BACK = "RollingBack"
    """The resources from ``before`` put back, until every pod runs them again."""


@dataclass(frozen=True)
class PodMark:
    """What the record keeps of a pod the change reached."""

    restarts: int
    """Its containers' restarts when the change reached it: more later is a regression."""
    since: str
    """When the change reached it (its resize was sent, or it was seen running the change)."""


@dataclass(frozen=True)
class Rollback:
    """Why a change is rolled back, and what that backs off."""

    reason: str
    directions: tuple[str, ...] = ()
    """The directions backed off (``memory-down``...); none when the change did not hurt (its canary
    went away, its policy stopped carrying it)."""
    reported_stuck: bool = False
    """The Warning that a pod cannot be put back (its eviction refused past the deadline) was posted."""


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
    pods: dict[str, PodMark] = field(default_factory=dict)
    fell_back: str | None = None
    """Why an in-place change became a rollout (InPlaceOrRollout), if it did."""
    strategy: dict[str, Any] | None = None
    """What the template's adoption puts back: a StatefulSet's or DaemonSet's update strategy, kept
    while it is switched to OnDelete; a Deployment's ``paused``, kept while it is paused."""
    pod_resources_before: str | None = None
    """PodsOnly: the ``rightsizer.io/pod-resources`` annotation before the change (put back on rollback)."""
    autoscalers: tuple[TargetRetune, ...] = ()
    """``spec.hpa: Retune``: the HPA targets that move with the requests (put back on rollback)."""
    rollback: Rollback | None = None
    """Set when the change entered ``RollingBack``."""

    def to_annotation(self) -> str:
        raw: dict[str, Any] = {
            "version": RECORD_VERSION,
            "policy": self.policy,
            "method": self.method.value,
            "phase": self.phase.value,
            "startedAt": self.started_at,
            "phaseStartedAt": self.phase_started_at,
            "before": {c: r.to_quantities() for c, r in self.before.items()},
            "after": {c: r.to_quantities() for c, r in self.after.items()},
            "reason": self.reason,
            "canaryPod": self.canary_pod,
            "pods": {
                name: {"restarts": m.restarts, "since": m.since} for name, m in sorted(self.pods.items())
            },
            "fellBack": self.fell_back,
            "strategy": self.strategy,
            "podResourcesBefore": self.pod_resources_before,
            "autoscalers": [retune.to_dict() for retune in self.autoscalers],
        }
        if self.rollback is not None:
            raw["rollback"] = {
                "reason": self.rollback.reason,
                "directions": list(self.rollback.directions),
                "reportedStuck": self.rollback.reported_stuck,
            }
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_annotations(cls, annotations: dict[str, str]) -> Change | None:
        """The change in flight, or None. A record that cannot be read raises ``ValueError``: it is
        the rollback point, and silently dropping it would lose it."""
        text = annotations.get(CHANGE)
        if not text:
            return None
        try:
            raw = json.loads(text)
            return _from_raw(raw) if raw.get("version") == RECORD_VERSION else _from_first_version(raw)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"annotation {CHANGE} cannot be read ({error}): fix or remove it by hand"
            ) from None

    def entering(self, phase: Phase, now: datetime, **changes: Any) -> Change:
        """The record as it enters ``phase`` now."""
        return replace(self, phase=phase, phase_started_at=format_time(now), **changes)

    def seconds_in_phase(self, now: datetime) -> float:
        return (now - parse_time(self.phase_started_at)).total_seconds()

    def marked(self, marks: dict[str, PodMark]) -> Change:
        """The record with more pods marked as reached (those already marked keep their mark)."""
        return replace(self, pods={**marks, **self.pods})


def _from_raw(raw: dict[str, Any]) -> Change:
    rollback = raw.get("rollback")
    return Change(
        policy=raw["policy"],
        method=Method(raw["method"]),
        phase=Phase(raw["phase"]),
        started_at=raw["startedAt"],
        phase_started_at=raw["phaseStartedAt"],
        before={c: _resources(r) for c, r in raw["before"].items()},
        after={c: _resources(r) for c, r in raw["after"].items()},
        reason=raw.get("reason", ""),
        canary_pod=raw.get("canaryPod"),
        pods={
            name: PodMark(int(mark["restarts"]), str(mark["since"]))
            for name, mark in raw.get("pods", {}).items()
        },
        fell_back=raw.get("fellBack"),
        strategy=raw.get("strategy"),
        pod_resources_before=raw.get("podResourcesBefore"),
        autoscalers=tuple(TargetRetune.from_dict(r) for r in raw.get("autoscalers") or []),
        rollback=(
            Rollback(
                rollback["reason"],
                tuple(rollback.get("directions") or ()),
                bool(rollback.get("reportedStuck")),
            )
            if rollback
            else None
        ),
    )


def _from_first_version(raw: dict[str, Any]) -> Change:
    """A record of the first version: phases Canary, Rollout (in place: the other pods), Watch (with
    ``templateDone`` and ``settled``), and ``restarts`` per pod."""
    method = Method(raw["method"])
    phase = {"Canary": Phase.CANARY, "Rollout": Phase.RESIZING, "Watch": Phase.WATCH}[raw["phase"]]
    if method is Method.ROLLOUT and phase is Phase.WATCH and not raw.get("settled"):
        phase = Phase.ROLLOUT
    since = raw["phaseStartedAt"]
    marks = {pod: {"restarts": n, "since": since} for pod, n in (raw.get("restarts") or {}).items()}
    return _from_raw({**raw, "method": method.value, "phase": phase.value, "pods": marks})


def _resources(raw: dict[str, dict[str, str]]) -> Resources:
    return Resources(
        requests={r: parse(v) for r, v in (raw.get("requests") or {}).items()},
        limits={r: parse(v) for r, v in (raw.get("limits") or {}).items()},
    )

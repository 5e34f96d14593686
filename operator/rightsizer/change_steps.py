"""The vocabulary of Auto mode's change machine (``change_machine``, ``change_rollback``): what it is
given (``Observed``, ``Judge``), what one step of it decides (``Step``: a record write, effects, and
the record's removal), and what status says of a change in flight (``ChangeStatus``). Pure values.

A step is carried out in order by the controller (``controller/change_executor.py``): first the
record (``write``), fenced, so that a phase is recorded before anything of it happens; then the
effects; then, only if every effect succeeded, ``finish`` (the record removed: the change is done or
rolled back). A step whose record write fails does nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from rightsizer.change import Change
from rightsizer.hpa import Autoscaler, TargetRetune
from rightsizer.model import Resources
from rightsizer.pod_progress import pod_state
from rightsizer.pods import PodView
from rightsizer.settings import (
    EVICTION_DEADLINE_SECONDS,
    RESIZE_DEADLINE_SECONDS,
    ROLLOUT_DEADLINE_SECONDS,
    TEMPLATE_DEADLINE_SECONDS,
    UNJUDGED_DEADLINE_SECONDS,
)
from rightsizer.timestamps import format_time, parse_time
from rightsizer.workload import WorkloadView

MAX_PODS_IN_STATUS = 20
"""Per-pod detail of a change in status is capped (a DaemonSet may run on 1,000 nodes); counts are not."""


@dataclass(frozen=True)
class Deadlines:
    """How long each wait of a change may last (``settings.py``: the defaults, and what passing each does)."""

    resize: int = RESIZE_DEADLINE_SECONDS
    eviction: int = EVICTION_DEADLINE_SECONDS
    rollout: int = ROLLOUT_DEADLINE_SECONDS
    template: int = TEMPLATE_DEADLINE_SECONDS
    unjudged: int = UNJUDGED_DEADLINE_SECONDS


@dataclass(frozen=True)
class Judge:
    """What carrying a change on takes from the policy that owns it."""

    canary_seconds: int
    throttling_threshold: float
    backoff_seconds: int
    update_mode: str
    deadlines: Deadlines = field(default_factory=Deadlines)
    stop: str | None = None
    """Why the policy no longer carries the change (mode Recommend, invalid, deleted, the workload
    no longer selected): a change going forward is then rolled back, without back-off."""


@dataclass(frozen=True)
class Observed:
    """The workload and its pods as the operator sees them now."""

    workload: WorkloadView
    pods: tuple[PodView, ...]
    """Its pods, those being deleted left out."""
    now: datetime
    throttled: Mapping[str, float] | None = None
    """Pod -> share of CFS periods throttled since the phase began; None when Prometheus could not say."""
    autoscalers: tuple[Autoscaler, ...] = ()
    """The namespace's HPAs as the operator's index has them (the targets a change moves, read there)."""
    rollout_blocked: str | None = None
    """Why a rollout may not take the workload's pods down now (a PodDisruptionBudget), if it may not."""

    def pod(self, name: str | None) -> PodView | None:
        return next((p for p in self.pods if p.name == name), None)

    def running(self) -> list[PodView]:
        return [p for p in self.pods if p.running]


# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class Resize:
    """``pods/resize`` of one pod's containers to ``target``, guarded by a test of what it asks for now."""

    pod: PodView
    target: dict[str, Resources]


@dataclass(frozen=True)
class Evict:
    """The Eviction API on one pod (PodDisruptionBudgets respected), guarded by its uid."""

    pod: PodView


@dataclass(frozen=True)
class MoveTargets:
    """HPA targets set to their new value (``back``: to the one they had), each a guarded JSON patch."""

    retunes: tuple[TargetRetune, ...]
    back: bool = False


@dataclass(frozen=True)
class PatchTemplate:
    """A rollout: the pod template's containers set to ``target`` (the workload's controller replaces
    the pods), fenced by the workload's resourceVersion."""

    target: dict[str, Resources]


@dataclass(frozen=True)
class AdoptTemplate:
    """The template made to hold ``target``, which the pods already run, without a rollout
    (``controller/adopt.py``). ``record`` is the record as it stands (a StatefulSet's strategy is kept
    in it while switched); ``then`` the record the last patch writes (None: left as it is)."""

    target: dict[str, Resources]
    record: Change
    then: Change | None = None


Effect = Resize | Evict | MoveTargets | PatchTemplate | AdoptTemplate


@dataclass(frozen=True)
class RecordWrite:
    """One fenced patch of the workload: the record (None: removed), annotations written with it,
    and for a rollout the template's containers."""

    record: Change | None
    annotations: dict[str, str | None] = field(default_factory=dict)
    template: dict[str, Resources] | None = None


# ---------------------------------------------------------------- what a step says


class StepKind(StrEnum):
    STARTED = "Started"
    MOVED_ON = "MovedOn"
    WAITING = "Waiting"
    ROLLING_BACK = "RollingBack"
    """A rollback began (its record written)."""
    DONE = "Done"
    ROLLED_BACK = "RolledBack"
    """A rollback is over: every pod runs what it ran before."""


@dataclass(frozen=True)
class Notice:
    """An Event to post: on the policy, and with ``on_workload`` on the workload too."""

    warning: bool
    reason: str
    message: str
    on_workload: bool = False


@dataclass(frozen=True)
class PodProgress:
    name: str
    state: str
    message: str


@dataclass(frozen=True)
class ChangeStatus:
    """A change in flight as ``status.changes[]`` shows it."""

    workload: str
    method: str
    phase: str
    started_at: str
    phase_started_at: str
    message: str
    pods: tuple[PodProgress, ...] = ()
    deadline: str | None = None
    """When the wait the change is in ends (``message`` says what happens then)."""
    canary_pod: str | None = None
    fell_back: str | None = None
    rolling_back: str | None = None
    """Why the change is being rolled back."""

    def to_status(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for pod in self.pods:
            counts[pod.state] = counts.get(pod.state, 0) + 1
        entry: dict[str, Any] = {
            "workload": self.workload,
            "method": self.method,
            "phase": self.phase,
            "startedAt": self.started_at,
            "phaseStartedAt": self.phase_started_at,
            "message": self.message,
            "podCounts": counts,
            "pods": [
                {"name": p.name, "state": p.state, "message": p.message}
                for p in self.pods[:MAX_PODS_IN_STATUS]
            ],
        }
        optional = {
            "deadline": self.deadline,
            "canaryPod": self.canary_pod,
            "fellBack": self.fell_back,
            "rollingBack": self.rolling_back,
        }
        entry.update({key: value for key, value in optional.items() if value})
        return entry


@dataclass(frozen=True)
class Report:
    """What a step says: its kind, a message, the change in flight after it (None once it is over),
    and Events."""

    kind: StepKind
    message: str
    status: ChangeStatus | None = None
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class Step:
    write: RecordWrite | None
    effects: tuple[Effect, ...] = ()
    finish: RecordWrite | None = None
    report: Report = Report(StepKind.WAITING, "")
    on_success: Report | None = None
    """What the step says instead of ``report`` when every effect (and ``finish``) succeeded."""
    stop_on_failure: bool = True
    """Forward steps stop at the first effect that fails (a resize must not follow an HPA target that
    could not be lowered); a rollback does all it can."""


# ---------------------------------------------------------------- helpers


def status_of(
    change: Change,
    seen: Observed,
    message: str,
    target: Mapping[str, Resources],
    deadline: datetime | None = None,
) -> ChangeStatus:
    """The change as status shows it, each running pod's state against ``target``."""
    pods = tuple(
        PodProgress(p.name, state.value, why)
        for p in sorted(seen.pods, key=lambda p: p.name)
        for state, why in [pod_state(p, target)]
    )
    return ChangeStatus(
        workload=seen.workload.reference_name,
        method=change.method.value,
        phase=change.phase.value,
        started_at=change.started_at,
        phase_started_at=change.phase_started_at,
        message=message,
        pods=pods,
        deadline=format_time(deadline) if deadline else None,
        canary_pod=change.canary_pod,
        fell_back=change.fell_back,
        rolling_back=change.rollback.reason if change.rollback else None,
    )


def after_seconds(start: str, seconds: int) -> datetime:
    return parse_time(start) + timedelta(seconds=seconds)

"""Rolling a change back: the phase ``RollingBack``, from its first step to every pod running what it
ran before. Pure; part of the change machine (``change_machine`` starts a rollback here).

The record enters ``RollingBack`` (with the back-off, and for PodsOnly the resources new pods get put
back) before anything is put back, so an operator stopped half way resumes the rollback, never the
change. Then, at every evaluation until it is over:

- the template: a rollout's is patched back (in the same patch as the record), an in-place change's
  made to hold the old resources again without a rollout; a template somebody else changed since is
  left as they wrote it;
- each pod that asks for the change is resized back; one whose resize back the kubelet has not carried
  out ``Deadlines.resize`` after the rollback began (``Deferred``: its node gave the room to another
  pod) is evicted once the template holds the old resources, and is recreated with them. A
  PodDisruptionBudget that refuses the eviction (429) makes it wait: it is tried again at every
  evaluation, and past ``Deadlines.eviction`` a Warning ``RollbackStuck`` names the pods;
- each HPA target the change moved goes back (unless somebody else changed it).

It is over when every running pod runs the old resources and no pod asks for the new ones: only then
is the record removed, ``RolledBack`` said, and the back-off counted from the start.
"""

from __future__ import annotations

import json
from dataclasses import replace

from rightsizer.admission import POD_RESOURCES
from rightsizer.apply import BACKOFF, backoff_annotation
from rightsizer.change import ROLLED_BACK, Change, Method, Phase, Rollback
from rightsizer.change_steps import (
    AdoptTemplate,
    Effect,
    Evict,
    Judge,
    MoveTargets,
    Notice,
    Observed,
    PatchTemplate,
    RecordWrite,
    Report,
    Resize,
    Step,
    StepKind,
    after_seconds,
    status_of,
)
from rightsizer.change_targets import at_value, template_state
from rightsizer.planning import directions
from rightsizer.pod_progress import asks, runs
from rightsizer.pods import PodView
from rightsizer.timestamps import format_time


def roll_back(
    change: Change, seen: Observed, judge: Judge, reason: str, *, back_off: bool, increases_only: bool = False
) -> Step:
    """The first step of a rollback: the record enters ``RollingBack`` (a rollout's template goes back
    in the same patch), then whatever can be put back now is. ``back_off``: its directions are held
    back for the policy's back-off (``increases_only``: only those that ask the nodes for more)."""
    moves = sorted(directions(change.before, change.after)) if back_off else []
    if increases_only:
        moves = [move for move in moves if move.endswith("-up")]
    record = change.entering(Phase.ROLLING_BACK, seen.now, rollback=Rollback(reason, tuple(moves)))
    annotations: dict[str, str | None] = {}
    if moves:
        annotations[BACKOFF] = backoff_annotation(
            seen.workload.annotations, set(moves), seen.now, judge.backoff_seconds
        )
    if change.method is Method.PODS_ONLY:
        annotations[POD_RESOURCES] = change.pod_resources_before
    template = None
    if change.method is Method.ROLLOUT and template_state(change, seen.workload) == "after":
        template = change.before
    write = RecordWrite(record, annotations, template)
    in_template = template is None and template_state(change, seen.workload) == "after"
    effects, _ = _putting_back(record, seen, template_back=in_template, evict=False)
    backed = f"; {', '.join(moves)} backed off for {judge.backoff_seconds}s" if moves else ""
    message = f"rolling back ({reason}){backed}"
    notices = (
        Notice(True, "RollingBack", f"{seen.workload.reference_name}: {message}"),
        Notice(True, "RollingBack", message, on_workload=True),
    )
    status = status_of(record, seen, message, change.before)
    report = Report(StepKind.ROLLING_BACK, message, status, notices)
    return Step(write, tuple(effects), report=report, stop_on_failure=False)


def rolling_back(change: Change, seen: Observed, judge: Judge) -> Step:
    """A later step: put back what is not yet; over when nothing is left to put back or wait for."""
    assert change.rollback is not None
    in_template = template_state(change, seen.workload) == "after"
    evict_from = after_seconds(change.phase_started_at, judge.deadlines.resize)
    effects, waiting = _putting_back(change, seen, template_back=in_template, evict=seen.now >= evict_from)
    if not effects and not waiting:
        return _over(change, seen)
    stuck_at = after_seconds(change.phase_started_at, _stuck_after(change, judge))
    message = f"rolling back ({change.rollback.reason}): waiting for {'; '.join(waiting) or 'the writes'}"
    if seen.now >= stuck_at and waiting:
        return _stuck(change, seen, effects, message)
    status = status_of(change, seen, message, change.before, deadline=stuck_at)
    return Step(None, tuple(effects), report=Report(StepKind.WAITING, message, status), stop_on_failure=False)


def _stuck_after(change: Change, judge: Judge) -> int:
    """Seconds into the rollback after which pods still not put back are reported stuck."""
    if change.method is Method.ROLLOUT:
        return judge.deadlines.rollout
    return judge.deadlines.resize + judge.deadlines.eviction


def _template_back(change: Change) -> Effect:
    if change.method is Method.ROLLOUT:
        return PatchTemplate(change.before)
    return AdoptTemplate(change.before, change)


def _putting_back(
    change: Change, seen: Observed, *, template_back: bool, evict: bool
) -> tuple[list[Effect], list[str]]:
    """The effects that put pods, the template (``template_back``: it holds the new resources) and
    HPA targets back now, and what is still waited for. Pods go first: they are what hurts."""
    effects: list[Effect] = []
    waiting: list[str] = []
    for pod in sorted(seen.pods, key=lambda p: p.name):
        effect, wait = _pod_back(change, pod, template_restored=not template_back, evict=evict)
        effects += [effect] if effect else []
        waiting += [wait] if wait else []
    if template_back:
        effects.append(_template_back(change))
        waiting.append("the template to hold the old resources")
    if change.method is Method.ROLLOUT and seen.workload.unsettled:
        waiting.append(f"the rollout back: {seen.workload.unsettled}")
    back = tuple(r for r in change.autoscalers if at_value(seen.autoscalers, r) == r.after)
    if back:
        effects.append(MoveTargets(back, back=True))
    return effects, waiting


def _pod_back(
    change: Change, pod: PodView, *, template_restored: bool, evict: bool
) -> tuple[Effect | None, str | None]:
    """What puts one pod back (a resize, or an eviction), and what is waited for on it."""
    if asks(pod, change.after) and not asks(pod, change.before):
        if change.method is Method.ROLLOUT:
            return None, f"pod {pod.name} to be replaced by the rollout back"
        if pod.running:
            return Resize(pod, change.before), f"pod {pod.name} resized back"
        if template_restored:
            return Evict(pod), f"pod {pod.name} (not running) evicted, to be recreated from the template"
        return None, f"pod {pod.name} (not running) asks for the new resources"
    if not (pod.running and asks(pod, change.before)) or runs(pod, change.before):
        return None, None  # put back already, or never reached, or not ours (another template)
    why = pod.resize_pending or "the kubelet has not applied the resize back yet"
    if change.method is Method.ROLLOUT:
        return None, f"pod {pod.name}: {why}"
    if evict and template_restored:
        return Evict(pod), f"pod {pod.name} evicted ({why}), to be recreated with the old resources"
    return None, f"pod {pod.name}: {why}"


def _over(change: Change, seen: Observed) -> Step:
    assert change.rollback is not None
    rolled = {
        "at": format_time(seen.now),
        "reason": change.rollback.reason,
        "directions": list(change.rollback.directions),
    }
    finish = RecordWrite(None, {ROLLED_BACK: json.dumps(rolled)})
    message = f"rolled back ({change.rollback.reason}): every pod runs the resources from before the change"
    notices = (
        Notice(True, "RolledBack", f"{seen.workload.reference_name}: {message}"),
        Notice(True, "RolledBack", message, on_workload=True),
    )
    removing = f"rolling back ({change.rollback.reason}): every pod put back; the record is removed"
    waiting = Report(StepKind.WAITING, removing, status_of(change, seen, removing, change.before))
    return Step(
        None, finish=finish, report=waiting, on_success=Report(StepKind.ROLLED_BACK, message, None, notices)
    )


def _stuck(change: Change, seen: Observed, effects: list[Effect], message: str) -> Step:
    """Past the rollback's deadline with pods not put back: said once (a Warning), and tried on."""
    assert change.rollback is not None
    status = status_of(change, seen, f"{message} (stuck: tried again at every evaluation)", change.before)
    if change.rollback.reported_stuck:
        return Step(
            None,
            tuple(effects),
            report=Report(StepKind.WAITING, status.message, status),
            stop_on_failure=False,
        )
    reported = replace(change, rollback=replace(change.rollback, reported_stuck=True))
    write = RecordWrite(reported)
    notice = Notice(True, "RollbackStuck", f"{seen.workload.reference_name}: {message}", on_workload=True)
    report = Report(StepKind.WAITING, status.message, status, (notice,))
    return Step(write, tuple(effects), report=report, stop_on_failure=False)

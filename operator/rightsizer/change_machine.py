"""Auto mode's change machine: one pure step at a time, from the record and what is observed now.

``begin`` starts a change (its record, written first, and its first effects); ``advance`` moves a
change in flight on by one step: (record, observed workload and pods, the policy's judge, now) ->
(next record, effects, report). The controller carries a step out (``controller/change_executor.py``)
and writes nothing else. The phases (``change.Phase``), each written to the record before its effects:

- ``Canary`` (in place): one ready pod resized; once it runs the new resources it is watched for the
  canary duration. Its resize not carried out within ``Deadlines.resize`` (``Deferred``), or
  ``Infeasible``, or refused by the API server: InPlaceOrRollout falls back to a rollout, the other
  modes roll back. The canary gone: rolled back, without back-off.
- ``Resizing`` (in place): the other pods resized (and pods started since); each with the same
  deadline and outcome as the canary's.
- ``Template`` (InPlace): the template made to match, without a rollout; not done within
  ``Deadlines.template``: rolled back, without back-off.
- ``Rollout`` (by rollout): the template patched; the workload not settled with every pod running the
  new resources within ``Deadlines.rollout``: rolled back.
- ``Watch``: every pod runs the new resources, watched once more for the canary duration; then done
  (the HPA targets a change raises are set last, then the record removed).
- ``RollingBack``: ``change_rollback``.

In every phase but ``RollingBack`` a regression of a pod the change reached (an OOM kill of a
container whose memory it lowered, a restart, readiness lost for 60 s, CFS throttling above the
threshold under a CPU limit it lowered: ``pod_progress.Exposure``) rolls the change back, backing its
directions off; OOM kills, restarts and readiness come from the API and are judged even when
Prometheus is unreachable, and a watch that would end without throttling judged waits for it (up
to ``Deadlines.unjudged``, then rolled back without back-off). A template somebody else changed, or
a policy that no longer carries the change (``Judge.stop``), rolls it back without back-off.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from rightsizer.admission import POD_RESOURCES, pod_resources, pod_resources_annotation
from rightsizer.apply import APPLIED_AT, APPLIED_BY, LAST_CHANGE, describe
from rightsizer.change import Change, Method, Phase, PodMark
from rightsizer.change_rollback import roll_back, rolling_back
from rightsizer.change_steps import (
    AdoptTemplate,
    Effect,
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
from rightsizer.hpa import TargetRetune
from rightsizer.planning import ContainerChange
from rightsizer.pod_progress import PodState, Watched, exposure, pod_state, regression, restarts_of
from rightsizer.pods import PodView
from rightsizer.rails import IN_PLACE_OR_ROLLOUT
from rightsizer.timestamps import format_time, parse_time
from rightsizer.workload import CRONJOB

# ---------------------------------------------------------------- starting


def begin(
    policy: str,
    method: Method,
    changes: tuple[ContainerChange, ...],
    seen: Observed,
    *,
    retunes: tuple[TargetRetune, ...] = (),
    fell_back: str | None = None,
) -> Step:
    """A change's first step: its record (with the audit annotations) written before anything else."""
    started = format_time(seen.now)
    record = Change(
        policy=policy,
        method=method,
        phase=Phase.CANARY,
        started_at=started,
        phase_started_at=started,
        before={c.container: c.before for c in changes},
        after={c.container: c.after for c in changes},
        reason="; ".join(c.reason for c in changes),
        fell_back=fell_back,
        autoscalers=retunes,
    )
    audit: dict[str, str | None] = {
        APPLIED_AT: started,
        APPLIED_BY: f"RightSizePolicy/{policy}",
        LAST_CHANGE: _last_change(changes),
    }
    summary = "; ".join(describe(c) for c in changes)
    if method is Method.ROLLOUT:
        return _begin_rollout(record, seen, audit, summary)
    if seen.workload.kind is CRONJOB:
        return _begin_for_new_pods(record, seen, audit, summary)
    return _begin_in_place(record, seen, audit, summary)


def _begin_rollout(record: Change, seen: Observed, audit: dict[str, str | None], summary: str) -> Step:
    """A rollout: the template patched with the record, or after lowering HPA targets if any."""
    record = record.entering(Phase.ROLLOUT, seen.now)
    lower = tuple(r for r in record.autoscalers if r.lowers)
    how = "template patched" if seen.workload.kind is CRONJOB else "rolled out"
    detail = f" ({record.fell_back})" if record.fell_back else ""
    if lower:
        write = RecordWrite(record, audit)
        effects: tuple[Effect, ...] = (MoveTargets(lower), PatchTemplate(record.after))
    else:
        write = RecordWrite(record, audit, template=record.after)
        effects = ()
    return _started(record, seen, write, effects, f"{summary} ({how}{detail})")


def _begin_for_new_pods(record: Change, seen: Observed, audit: dict[str, str | None], summary: str) -> Step:
    """PodsOnly for a CronJob: the jobs to come get the resources from the webhook, and are watched."""
    before = seen.workload.annotations.get(POD_RESOURCES)
    record = record.entering(Phase.WATCH, seen.now, pod_resources_before=before)
    given = pod_resources_annotation({**(pod_resources(seen.workload.annotations) or {}), **record.after})
    write = RecordWrite(record, {**audit, POD_RESOURCES: given})
    return _started(record, seen, write, (), f"{summary} (the jobs to come, through the admission webhook)")


def _begin_in_place(record: Change, seen: Observed, audit: dict[str, str | None], summary: str) -> Step:
    """In place: the canary (the first ready pod by name) marked in the record, then resized."""
    canary = min((p for p in seen.pods if p.running and p.ready), key=lambda p: p.name)
    record = record.entering(
        Phase.CANARY,
        seen.now,
        canary_pod=canary.name,
        pods={canary.name: PodMark(restarts_of(canary), record.started_at)},
        pod_resources_before=seen.workload.annotations.get(POD_RESOURCES),
    )
    lower = tuple(r for r in record.autoscalers if r.lowers)
    effects: tuple[Effect, ...] = (*([MoveTargets(lower)] if lower else []), Resize(canary, record.after))
    write = RecordWrite(record, audit)
    return _started(record, seen, write, effects, f"{summary} (canary pod {canary.name} resized in place)")


def _started(
    record: Change, seen: Observed, write: RecordWrite, effects: tuple[Effect, ...], text: str
) -> Step:
    name = seen.workload.reference_name
    notices = (
        Notice(False, "Applied", f"{name}: {text}"),
        Notice(False, "RightSized", text, on_workload=True),
    )
    report = Report(StepKind.STARTED, text, status_of(record, seen, text, record.after), notices)
    return Step(write, effects, report=report)


def _last_change(changes: tuple[ContainerChange, ...]) -> str:
    record = {
        c.container: {"from": c.before.to_quantities(), "to": c.after.to_quantities(), "reason": c.reason}
        for c in changes
    }
    return json.dumps(record, sort_keys=True)


# ---------------------------------------------------------------- moving on


def advance(change: Change, seen: Observed, judge: Judge) -> Step:
    """The next step of a change in flight."""
    if change.phase is Phase.ROLLING_BACK:
        return rolling_back(change, seen, judge)
    if judge.stop:
        return roll_back(change, seen, judge, judge.stop, back_off=False)
    if template_state(change, seen.workload) not in _TEMPLATE_EXPECTED[(change.method, change.phase)]:
        why = f"the template of {seen.workload.reference_name} was changed by somebody else"
        return roll_back(change, seen, judge, why, back_off=False)
    exposed = exposure(change.before, change.after)
    hurt = regression(watched(change, seen), seen.throttled, judge.throttling_threshold, seen.now, exposed)
    if hurt:
        return roll_back(change, seen, judge, hurt, back_off=True)
    return _PHASES[change.phase](change, seen, judge)


_TEMPLATE_EXPECTED = {
    (Method.IN_PLACE, Phase.CANARY): {"before"},
    (Method.IN_PLACE, Phase.RESIZING): {"before"},
    (Method.IN_PLACE, Phase.TEMPLATE): {"before", "after"},
    (Method.IN_PLACE, Phase.WATCH): {"after"},
    (Method.PODS_ONLY, Phase.CANARY): {"before", "after", "other"},
    (Method.PODS_ONLY, Phase.RESIZING): {"before", "after", "other"},
    (Method.PODS_ONLY, Phase.WATCH): {"before", "after", "other"},
    (Method.ROLLOUT, Phase.ROLLOUT): {"before", "after"},
    (Method.ROLLOUT, Phase.WATCH): {"after"},
}
"""What the template's changed containers may hold in each phase of each method (PodsOnly never
edits the template, and sizes from what its pods run, not from it)."""


def watched(change: Change, seen: Observed) -> list[Watched]:
    """The pods a regression is looked for in: the canary in the Canary phase, else every pod that
    asks for the change; with the restarts they had and when the change reached them."""
    started = parse_time(change.started_at)
    pods = [p for p in seen.pods if pod_state(p, change.after)[0] is not PodState.NOT_STARTED]
    if change.phase is Phase.CANARY:
        pods = [p for p in pods if p.name == change.canary_pod]
    marks = change.pods
    return [
        Watched(p, marks[p.name].restarts, parse_time(marks[p.name].since))
        if p.name in marks
        else Watched(p, 0, started)
        for p in pods
    ]


def throttling_window(change: Change, seen: Observed) -> tuple[list[str], int] | None:
    """The pods whose CFS throttling judges the change now, and over how many seconds (since the
    phase began); None when there is nothing to ask Prometheus."""
    if change.phase is Phase.ROLLING_BACK:
        return None
    seconds = int(change.seconds_in_phase(seen.now))
    pods = [w.pod.name for w in watched(change, seen) if w.pod.running]
    return (pods, seconds) if pods and seconds >= 10 else None


def _canary(change: Change, seen: Observed, judge: Judge) -> Step:
    canary = seen.pod(change.canary_pod)
    if canary is None or not canary.running:
        return roll_back(change, seen, judge, f"canary pod {change.canary_pod} is gone", back_off=False)
    state, why = pod_state(canary, change.after)
    deadline = _resize_deadline(change, canary, judge)
    if state is PodState.INFEASIBLE or (state is not PodState.RESIZED and seen.now >= deadline):
        return cannot_resize(
            change, seen, judge, f"canary pod {canary.name}: {_not_resized(state, why, judge)}"
        )
    if state is PodState.NOT_STARTED:
        effects = (*_lowered(change, seen), Resize(canary, change.after))
        return _waiting(change, seen, f"canary pod {canary.name}: resize sent", deadline, effects)
    if state is not PodState.RESIZED:
        return _waiting(change, seen, f"canary pod {canary.name}: {why}", deadline)
    watched_for = int(change.seconds_in_phase(seen.now))
    end = after_seconds(change.phase_started_at, judge.canary_seconds)
    if seen.now < end:
        message = (
            f"canary pod {canary.name} runs the new resources; "
            f"watched {watched_for}s of {judge.canary_seconds}s"
        )
        return _waiting(change, seen, message, end)
    if seen.throttled is None:
        return _unjudged(change, seen, judge, end)
    return _to_resizing(change, seen, judge)


def _to_resizing(change: Change, seen: Observed, judge: Judge) -> Step:
    rest = [p for p in seen.running() if pod_state(p, change.after)[0] is PodState.NOT_STARTED]
    record = change.entering(Phase.RESIZING, seen.now).marked(_marks(rest, seen.now))
    annotations: dict[str, str | None] = {}
    if change.method is Method.PODS_ONLY:  # from now on new pods get the new resources too
        given = {**(pod_resources(seen.workload.annotations) or {}), **change.after}
        annotations[POD_RESOURCES] = pod_resources_annotation(given)
    message = (
        f"canary pod {change.canary_pod} healthy for {judge.canary_seconds}s: "
        f"{len(rest)} more pod(s) resized in place"
    )
    effects = tuple(Resize(p, change.after) for p in rest)
    return _moved_on(record, seen, RecordWrite(record, annotations), effects, message)


def _resizing(change: Change, seen: Observed, judge: Judge) -> Step:
    if pending := _resize_pods(change, seen, judge):
        return pending
    if change.method is Method.PODS_ONLY:
        record = change.entering(Phase.WATCH, seen.now)
        message = "every pod resized in place; the template is left as it is"
        return _moved_on(record, seen, RecordWrite(record), (), message)
    record = change.entering(Phase.TEMPLATE, seen.now)
    message = "every pod resized in place: the template is made to match (no rollout)"
    step = _moved_on(record, seen, RecordWrite(record), _adopt(record, seen), message)
    return replace(step, on_success=_template_done(record, seen))


def _template(change: Change, seen: Observed, judge: Judge) -> Step:
    if pending := _resize_pods(change, seen, judge):
        return pending
    deadline = after_seconds(change.phase_started_at, judge.deadlines.template)
    if seen.now >= deadline:
        why = (
            f"the template of {seen.workload.reference_name} not made to match "
            f"within {judge.deadlines.template}s"
        )
        return roll_back(change, seen, judge, why, back_off=False)
    step = _waiting(
        change, seen, "making the template match the pods (no rollout)", deadline, _adopt(change, seen)
    )
    return replace(step, on_success=_template_done(change, seen))


def _template_done(change: Change, seen: Observed) -> Report:
    watching = change.entering(Phase.WATCH, seen.now)
    done = "every pod resized in place; the template now says so too (no rollout)"
    return _moved_on(watching, seen, None, (), done).report


def _adopt(change: Change, seen: Observed) -> tuple[Effect, ...]:
    return (AdoptTemplate(change.after, change, then=change.entering(Phase.WATCH, seen.now)),)


def _rollout(change: Change, seen: Observed, judge: Judge) -> Step:
    deadline = after_seconds(change.phase_started_at, judge.deadlines.rollout)
    if template_state(change, seen.workload) == "before":
        effects = (*_lowered(change, seen), PatchTemplate(change.after))
        return _waiting(change, seen, "the template is patched", deadline, effects)
    lagging = _not_rolled_out(change, seen)
    if lagging and seen.now >= deadline:
        why = f"the rollout did not finish within {judge.deadlines.rollout}s: {lagging}"
        # An increase that found no room is held back; a decrease stuck behind a surge is not.
        return roll_back(change, seen, judge, why, back_off=True, increases_only=True)
    if lagging:
        return _waiting(change, seen, f"rolling out: {lagging}", deadline)
    record = change.entering(Phase.WATCH, seen.now, pods=_marks(_reached(change, seen), seen.now))
    message = "rolled out: every pod runs the new resources; watching them"
    return _moved_on(record, seen, RecordWrite(record), (), message)


def _not_rolled_out(change: Change, seen: Observed) -> str | None:
    """What a rollout still waits for: the controller to settle, pods to run the new resources."""
    if seen.workload.unsettled:
        return seen.workload.unsettled
    if seen.workload.kind is CRONJOB:
        return None  # the jobs to come get it; the jobs running keep what they started with
    # Pods not running yet ask for the change (a rollout made them): nothing else can run on them.
    # Pods a rollout cannot place keep the workload unsettled (old pods stay), up to the deadline.
    lagging = [p.name for p in seen.running() if pod_state(p, change.after)[0] is not PodState.RESIZED]
    return f"pod(s) {', '.join(lagging)} do not run the new resources yet" if lagging else None


def _watch(change: Change, seen: Observed, judge: Judge) -> Step:
    if seen.workload.kind is CRONJOB:
        pass  # its jobs to come get the change; the pods of jobs running keep what they started with
    elif change.method is Method.ROLLOUT:
        if lagging := _not_rolled_out(change, seen):
            return _waiting(change, seen, f"watching: {lagging}", None)
    elif pending := _resize_pods(change, seen, judge):
        return pending
    end = after_seconds(change.phase_started_at, judge.canary_seconds)
    if seen.now < end:
        watched_for = int(change.seconds_in_phase(seen.now))
        return _waiting(change, seen, f"watching every pod: {watched_for}s of {judge.canary_seconds}s", end)
    if seen.throttled is None:
        return _unjudged(change, seen, judge, end)
    return _done(change, seen, judge)


def _done(change: Change, seen: Observed, judge: Judge) -> Step:
    """The watch is over: the HPA targets the change raises are set last, then the record removed."""
    raised = tuple(
        r for r in change.autoscalers if not r.lowers and at_value(seen.autoscalers, r) == r.before
    )
    finish = RecordWrite(None)
    message = f"change done, every pod watched for {judge.canary_seconds}s"
    notices = (Notice(False, "ChangeDone", f"{seen.workload.reference_name}: {message}"),)
    waiting = Report(
        StepKind.WAITING, f"{message}; the record is removed", status_of(change, seen, message, change.after)
    )
    effects = (MoveTargets(raised),) if raised else ()
    return Step(
        None, effects, finish=finish, report=waiting, on_success=Report(StepKind.DONE, message, None, notices)
    )


_PHASES: dict[Phase, Callable[[Change, Observed, Judge], Step]] = {
    Phase.CANARY: _canary,
    Phase.RESIZING: _resizing,
    Phase.TEMPLATE: _template,
    Phase.ROLLOUT: _rollout,
    Phase.WATCH: _watch,
}


# ---------------------------------------------------------------- pods that cannot be resized


def cannot_resize(change: Change, seen: Observed, judge: Judge, why: str) -> Step:
    """A pod of an in-place change cannot be resized (not accepted, Deferred past the deadline,
    Infeasible, refused): InPlaceOrRollout rolls the change out instead, if a rollout may take the
    pods down; otherwise the change is rolled back, backing its directions off."""
    if change.method is Method.IN_PLACE and judge.update_mode == IN_PLACE_OR_ROLLOUT and not change.fell_back:
        obstacle = _rollout_obstacle(seen)
        if obstacle is None:
            return _fall_back(change, seen, why)
        why += f"; not rolled out instead: {obstacle}"
    return roll_back(change, seen, judge, why, back_off=True)


def _rollout_obstacle(seen: Observed) -> str | None:
    if seen.workload.strategy == "OnDelete":
        return "updateStrategy OnDelete replaces no pod for a new template"
    return seen.rollout_blocked


def _fall_back(change: Change, seen: Observed, why: str) -> Step:
    """InPlaceOrRollout: the template patched with the record in one write; the workload's controller
    replaces every pod, those resized already too."""
    record = change.entering(
        Phase.ROLLOUT,
        seen.now,
        method=Method.ROLLOUT,
        fell_back=f"rolled out instead of resized in place: {why}",
        pods={},
        canary_pod=None,
    )
    write = RecordWrite(record, template=change.after)
    assert record.fell_back is not None
    return _moved_on(record, seen, write, (), record.fell_back)


def _resize_pods(change: Change, seen: Observed, judge: Judge) -> Step | None:
    """In place, after the canary: pods not asking for the change yet are resized (pods started
    since marked first); a pod not resized within the deadline, or Infeasible, is resolved
    (``cannot_resize``). A step when something is to be done or waited for, else None."""
    running = seen.running()
    states = {p.name: pod_state(p, change.after) for p in running}
    for pod in running:
        state, why = states[pod.name]
        if state is PodState.INFEASIBLE or (
            state is not PodState.RESIZED and seen.now >= _resize_deadline(change, pod, judge)
        ):
            return cannot_resize(change, seen, judge, f"pod {pod.name}: {_not_resized(state, why, judge)}")
    resend = [p for p in running if states[p.name][0] is PodState.NOT_STARTED]
    waiting = [p for p in running if states[p.name][0] is not PodState.RESIZED]
    if not waiting:
        return None
    deadline = min(_resize_deadline(change, p, judge) for p in waiting)
    new = [p for p in resend if p.name not in change.pods]
    record = change.marked(_marks(new, seen.now))
    write = RecordWrite(record) if new else None
    effects = tuple(Resize(p, change.after) for p in resend)
    done = len(running) - len(waiting)
    message = f"resizing in place: {done} of {len(running)} pod(s) run the new resources"
    if new:
        message += f"; {len(new)} pod(s) started since resized too"
    return Step(
        write,
        effects,
        report=Report(StepKind.WAITING, message, status_of(record, seen, message, change.after, deadline)),
    )


def _resize_deadline(change: Change, pod: PodView, judge: Judge) -> datetime:
    """When a pod's resize must have been carried out: from when the change reached it (a pod not
    marked yet, from the phase's start)."""
    mark = change.pods.get(pod.name)
    return after_seconds(mark.since if mark else change.phase_started_at, judge.deadlines.resize)


def _not_resized(state: PodState, why: str, judge: Judge) -> str:
    if state is PodState.INFEASIBLE:
        return f"the resize is infeasible ({why})"
    if state is PodState.NOT_STARTED:
        return f"the resize was not accepted within {judge.deadlines.resize}s"
    return f"the resize was not carried out within {judge.deadlines.resize}s ({why})"


# ---------------------------------------------------------------- helpers


def _unjudged(change: Change, seen: Observed, judge: Judge, watch_end: datetime) -> Step:
    """The watch is over but CFS throttling cannot be judged (Prometheus unreachable): it waits for
    Prometheus, up to the deadline, then the change is rolled back without back-off."""
    deadline = after_seconds(format_time(watch_end), judge.deadlines.unjudged)
    if seen.now >= deadline:
        why = (
            f"CFS throttling could not be judged for {judge.deadlines.unjudged}s after the watch "
            "(Prometheus unreachable)"
        )
        return roll_back(change, seen, judge, why, back_off=False)
    message = "watched long enough, but CFS throttling is not judged (Prometheus unreachable): waiting for it"
    return _waiting(change, seen, message, deadline)


def _lowered(change: Change, seen: Observed) -> tuple[Effect, ...]:
    """The HPA targets a change lowers that are not lowered yet (set before any pod changes)."""
    lower = tuple(r for r in change.autoscalers if r.lowers and at_value(seen.autoscalers, r) == r.before)
    return (MoveTargets(lower),) if lower else ()


def _reached(change: Change, seen: Observed) -> list[PodView]:
    return [p for p in seen.running() if pod_state(p, change.after)[0] is not PodState.NOT_STARTED]


def _marks(pods: list[PodView], now: datetime) -> dict[str, PodMark]:
    return {p.name: PodMark(restarts_of(p), format_time(now)) for p in pods}


def _waiting(
    change: Change, seen: Observed, message: str, deadline: datetime | None, effects: tuple[Effect, ...] = ()
) -> Step:
    status = status_of(change, seen, message, change.after, deadline)
    return Step(None, effects, report=Report(StepKind.WAITING, message, status))


def _moved_on(
    record: Change, seen: Observed, write: RecordWrite | None, effects: tuple[Effect, ...], message: str
) -> Step:
    text = f"{seen.workload.reference_name}: {message}"
    status = status_of(record, seen, message, record.after)
    report = Report(StepKind.MOVED_ON, message, status, (Notice(False, "ChangeProgressed", text),))
    return Step(write, effects, report=report)

"""A deleted policy's changes in flight: rolled back before the policy goes.

Nothing else would carry them on (a change is owned by the policy that started it), so Kopf's
deletion handler holds the policy (its finalizer) and rolls them back step by step, as an
evaluation would with the policy no longer carrying them (``AutoContext.stopped``), until no record
of the policy is left, at most ``DELETION_DEADLINE_SECONDS``: past it, the records still there are
removed, and a Warning on each workload names the pods left running the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rightsizer.change import CHANGE, Change
from rightsizer.controller.autoapply import AutoContext, carry_changes, owns_change
from rightsizer.controller.kube import Cluster, PatchConflict
from rightsizer.controller.outcome import Event, PolicyObject
from rightsizer.controller.workload_writer import WorkloadWriter
from rightsizer.hpa import Autoscaler
from rightsizer.pod_progress import asks, runs
from rightsizer.pods import PodView
from rightsizer.settings import DELETION_DEADLINE_SECONDS
from rightsizer.workload import WorkloadView

DELETED = "the policy was deleted"


@dataclass
class Released:
    """What one look at a deleted policy did: Events to post, and the workloads still changing."""

    events: list[Event] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)


def release(
    policy: PolicyObject,
    deleted_at: datetime,
    now: datetime,
    cluster: Cluster,
    workloads: list[WorkloadView],
    pods: list[PodView],
    autoscalers: Sequence[Autoscaler],
) -> Released:
    """Roll back the deleted policy's changes by a step; past the deadline, abandon them."""
    released = Released()
    ctx = AutoContext.stopped(cluster, policy, now, autoscalers, DELETED)
    if (now - deleted_at).total_seconds() >= DELETION_DEADLINE_SECONDS:
        for workload in workloads:
            if owns_change(workload, policy.name):
                _abandon(workload, pods, ctx, released)
        return released
    for change in carry_changes(ctx, [], workloads, pods, None):
        released.events += change.events
        if change.in_flight:
            released.in_flight.append(f"{change.in_flight.workload}: {change.in_flight.message}")
    return released


def _abandon(workload: WorkloadView, pods: list[PodView], ctx: AutoContext, released: Released) -> None:
    change = Change.from_annotations(workload.annotations)
    assert change is not None
    mine = [p for p in pods if (p.owner_kind, p.owner_name) == (workload.kind.name, workload.name)]
    left = [p.name for p in mine if not p.deleting and (asks(p, change.after) or not runs(p, change.before))]
    try:
        WorkloadWriter(ctx.cluster, workload).patch({"metadata": {"annotations": {CHANGE: None}}})
    except PatchConflict as error:
        released.in_flight.append(f"{workload.reference_name}: its record not removed: {error}")
        return
    running = f"pods {', '.join(left)} still ask for it or run it" if left else "no pod runs it any more"
    message = (
        f"RightSizePolicy/{ctx.policy_name} was deleted and its change could not be rolled back within "
        f"{DELETION_DEADLINE_SECONDS}s: {running}; its record is removed"
    )
    released.events.append(Event("Warning", "RollbackAbandoned", message, workload.reference()))

"""How a planned change reaches the pods (``auto.updateMode``). Pure: the workload and its pods come
in as views. (The shape an in-place change must take so that its rollback can undo it is planned
with the rest of the rails: ``planning.undoable_in_place``.)
"""

from __future__ import annotations

from rightsizer.change import Method
from rightsizer.planning import ContainerChange
from rightsizer.pods import PodView
from rightsizer.qos import pod_qos_class
from rightsizer.rails import IN_PLACE, PODS_ONLY, ROLLOUT
from rightsizer.units import RESOURCES
from rightsizer.workload import CRONJOB, WorkloadView


def method_for(
    workload: WorkloadView, pods: list[PodView], changes: tuple[ContainerChange, ...], mode: str
) -> tuple[Method | None, str | None]:
    """How the change goes, and why not in place when it cannot (None: it may not go at all)."""
    if mode == PODS_ONLY:
        if workload.kind is CRONJOB:
            return Method.PODS_ONLY, None  # no running pod to resize: the jobs to come get them
        obstacle = in_place_obstacle(pods, changes)
        return (Method.PODS_ONLY, None) if obstacle is None else (None, f"cannot resize in place: {obstacle}")
    if mode == ROLLOUT or workload.kind is CRONJOB:
        # A CronJob's template only reaches the jobs to come: nothing to resize.
        return _rollout(workload, None)
    obstacle = in_place_obstacle(pods, changes)
    if obstacle is None:
        return Method.IN_PLACE, None
    if mode == IN_PLACE:
        return (
            None,
            f"cannot resize in place: {obstacle} (auto.updateMode InPlaceOrRollout would roll it out)",
        )
    return _rollout(workload, f"rolled out instead of resized in place: {obstacle}")


def _rollout(workload: WorkloadView, fell_back: str | None) -> tuple[Method | None, str | None]:
    """A rollout, unless the workload's update strategy is OnDelete: its controller then replaces no
    pod for a template change, and the change would wait for somebody to delete them."""
    if workload.strategy == "OnDelete":
        return None, (
            f"{workload.reference_name} has updateStrategy OnDelete: a new template reaches no pod until "
            "its pods are deleted; use auto.updateMode InPlace"
        )
    return Method.ROLLOUT, fell_back


def in_place_obstacle(pods: list[PodView], changes: tuple[ContainerChange, ...]) -> str | None:
    """Why the running pods cannot be resized in place to ``changes``, or None."""
    ready = [p for p in pods if p.running and p.ready]
    if not ready:
        return "no running, ready pod to resize"
    after = {c.container: c.after for c in changes}
    for pod in ready:
        before = {name: c.desired for name, c in pod.containers.items()}
        old, new = pod_qos_class(before.values()), pod_qos_class({**before, **after}.values())
        if old != new:
            return f"the QoS class of pod {pod.name} would change from {old} to {new}"
        for change in changes:
            container = pod.containers.get(change.container)
            moved = {r for r in RESOURCES if _moves(change, r)}
            restarting = sorted(moved & set(container.restart_on_resize)) if container else []
            if restarting:
                resources = ", ".join(restarting)
                return f"container {change.container} has resizePolicy RestartContainer for {resources}"
    return None


def _moves(change: ContainerChange, resource: str) -> bool:
    return any(
        getattr(change.before, kind).get(resource) != getattr(change.after, kind).get(resource)
        for kind in ("requests", "limits")
    )

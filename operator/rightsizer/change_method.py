"""How a planned change reaches the pods (``auto.updateMode``), and the shape an in-place change must
take so that its rollback can undo it. Pure: the workload and its pods come in as views.
"""

from __future__ import annotations

from decimal import Decimal

from rightsizer.change import Method
from rightsizer.model import Resources
from rightsizer.planning import ContainerChange
from rightsizer.pods import PodView
from rightsizer.qos import pod_qos_class
from rightsizer.rails import IN_PLACE, PODS_ONLY, ROLLOUT
from rightsizer.units import RESOURCES, format_quantity
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

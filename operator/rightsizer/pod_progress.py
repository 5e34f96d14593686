"""How far a pod got in a change, and whether the change hurt it. Pure: pods come in as ``PodView``.

A pod *asks for* resources when its spec says them (what a resize or a new template sets) and *runs*
them when the kubelet reports them in ``status.containerStatuses[].resources``: a change, and a
rollback, is done only when every pod runs what it should, never when the spec merely says it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rightsizer.model import Resources
from rightsizer.pods import PodView
from rightsizer.timestamps import parse_time
from rightsizer.units import CPU, MEMORY, RESOURCES

READINESS_GRACE_SECONDS = 60
"""A pod not ready for this long after the change reached it has lost its readiness (a probe that
fails once in a while is not a regression)."""


class PodState(StrEnum):
    """What became of one pod, against the resources it should run."""

    RESIZED = "Resized"
    """It runs them."""
    PENDING = "Pending"
    """It asks for them; the kubelet has not applied them yet (``Deferred``, in progress)."""
    INFEASIBLE = "Infeasible"
    """It asks for them; the kubelet says its node can never fit them."""
    NOT_STARTED = "NotStarted"
    """It does not ask for them (not resized yet, or created from another template)."""
    UNSCHEDULED = "Unscheduled"
    """It is not running (not scheduled yet, or its containers not started): nothing runs on it."""


def holds(resources: Resources, target: Resources) -> bool:
    """The same requests and limits as ``target``, resource by resource (absent where it is absent)."""
    return all(
        getattr(resources, kind).get(r) == getattr(target, kind).get(r)
        for kind in ("requests", "limits")
        for r in RESOURCES
    )


def asks(pod: PodView, target: Mapping[str, Resources]) -> bool:
    """Its spec says ``target`` (container -> resources) for every container of it the pod has."""
    return all(holds(pod.containers[c].desired, r) for c, r in target.items() if c in pod.containers)


def runs(pod: PodView, target: Mapping[str, Resources]) -> bool:
    """The kubelet reports it running ``target`` for every container of it the pod has."""
    return all(
        (actual := pod.containers[c].actual) is not None and holds(actual, r)
        for c, r in target.items()
        if c in pod.containers
    )


def pod_state(pod: PodView, target: Mapping[str, Resources]) -> tuple[PodState, str]:
    """How far ``pod`` is from running ``target``, with why."""
    if not asks(pod, target):
        return PodState.NOT_STARTED, "not resized yet"
    if not pod.running:
        return PodState.UNSCHEDULED, f"{pod.phase or 'not running'}: no container runs yet"
    if runs(pod, target):
        return PodState.RESIZED, "runs the resources"
    if pod.resize_pending and pod.resize_pending.startswith("Infeasible"):
        return PodState.INFEASIBLE, pod.resize_pending
    return PodState.PENDING, pod.resize_pending or "the kubelet has not applied them yet"


def restarts_of(pod: PodView) -> int:
    return sum(container.restarts for container in pod.containers.values())


@dataclass(frozen=True)
class Exposure:
    """What a change can have hurt. An OOM kill is the change's doing only in a container whose memory
    limit it lowered (or, with no limit, whose request it lowered): a container killed under a limit
    the change kept or raised was too small before, and the kill, remembered in status, raises its
    memory at the next change (rolling a raise back, and backing memory-up off, would leave it
    crash-looping). CFS throttling is the doing of a lowered CPU limit only (the quota is the limit)."""

    memory: frozenset[str] = frozenset()
    """Containers whose memory the change lowered."""
    cpu: bool = False
    """The change lowered (or added) a CPU limit."""


def exposure(before: Mapping[str, Resources], after: Mapping[str, Resources]) -> Exposure:
    memory = set()
    cpu = False
    for name, new in after.items():
        old = before.get(name, Resources())
        old_limit, new_limit = old.limits.get(MEMORY), new.limits.get(MEMORY)
        if new_limit is None:
            old_request, new_request = old.requests.get(MEMORY), new.requests.get(MEMORY)
            lowered = new_request is not None and (old_request is None or new_request < old_request)
        else:
            lowered = old_limit is None or new_limit < old_limit
        if lowered:
            memory.add(name)
        old_cpu, new_cpu = old.limits.get(CPU), new.limits.get(CPU)
        cpu = cpu or (new_cpu is not None and (old_cpu is None or new_cpu < old_cpu))
    return Exposure(frozenset(memory), cpu)


@dataclass(frozen=True)
class Watched:
    """A pod the change reached, with the restarts it had and when the change reached it."""

    pod: PodView
    restarts: int
    since: datetime


def regression(
    watched: list[Watched],
    throttled: Mapping[str, float] | None,
    threshold: float,
    now: datetime,
    exposed: Exposure | None = None,
) -> str | None:
    """Why the change hurt a pod it reached, or None.

    A pod hurts when one of its containers was OOM-killed after the change reached it, restarted
    more than it had then, stopped being ready for ``READINESS_GRACE_SECONDS`` since then while
    running, or was CFS-throttled (``throttled``: pod -> share of periods since the phase began)
    above the policy's threshold. Throttling comes from Prometheus; the rest from the API, so it is
    judged even when ``throttled`` is None (Prometheus unreachable). With ``exposed``, kills and
    throttling the change cannot have caused are not its regressions (``Exposure``), nor are the
    restarts those kills made.
    """
    for seen in watched:
        hurt = _hurt(seen, throttled, threshold, now, exposed)
        if hurt:
            return f"pod {seen.pod.name}: {hurt}"
    return None


def _hurt(
    seen: Watched,
    throttled: Mapping[str, float] | None,
    threshold: float,
    now: datetime,
    exposed: Exposure | None,
) -> str | None:
    pod = seen.pod
    kills = [k for k in pod.oom_kills if parse_time(k.finished_at) > seen.since]
    theirs = [k for k in kills if exposed is None or k.container in exposed.memory]
    if theirs:
        return f"container {theirs[0].container} OOM-killed at {theirs[0].finished_at}"
    more = restarts_of(pod) - seen.restarts
    if more > 0 and not kills:  # restarts the kills of containers it did not shrink made are theirs
        return f"restarted {more} time(s) since the change"
    if pod.running and pod.unready_since:
        unready = (now - max(parse_time(pod.unready_since), seen.since)).total_seconds()
        if unready >= READINESS_GRACE_SECONDS:
            return f"not ready for {unready:.0f}s"
    share = (throttled or {}).get(pod.name)
    if share is not None and share > threshold and (exposed is None or exposed.cpu):
        return f"CFS-throttled {share:.0%} of periods (above {threshold:.0%})"
    return None

"""OOM kills the operator saw in pod statuses, remembered in the policy's status.

A pod's status shows only its containers' last termination, and a pod deleted by a rollout takes
even that with it: the OOM kill that made rightsizer raise memory would be forgotten at the next
evaluation, memory would be lowered back to the peak the killed container reached, and it would
be killed again. So every kill seen is kept in ``status.observedOOMKills`` for the history window
and counts as evidence as long as it is in the window, wherever its pod went.

One kill is one kill: it is identified by its pod, its container and when it ended
(``finishedAt``), and the memory limit it was killed under is the one seen the first time the kill
was seen, never read again. The pod's limit later is not the kill's: an in-place resize changes the
limit of the running pod (spec and ``status.containerStatuses[].resources``) while its last
termination stays the same, and reading the limit again made one kill at 96Mi count as kills at
192Mi, 384Mi ... and memory double at every evaluation.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rightsizer.model import ContainerKey, ContainerUsage
from rightsizer.pods import PodView
from rightsizer.quantity import QuantityError, parse
from rightsizer.timestamps import parse_time
from rightsizer.units import format_memory

MAX_KEPT_PER_CONTAINER = 10
"""Enough to count a crash loop; bounded so a status never grows with a container's restarts."""


@dataclass(frozen=True)
class ObservedOomKill:
    key: ContainerKey
    finished_at: str
    pod: str
    memory_limit_bytes: Decimal | None
    """The limit it was killed under, as seen at first sight (not part of the kill's identity)."""

    @property
    def identity(self) -> tuple[ContainerKey, str, str]:
        """What makes two sightings one kill: the container (of its workload), the pod, the end."""
        return self.key, self.pod, self.finished_at

    def to_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": self.key.kind,
            "name": self.key.name,
            "container": self.key.container,
            "pod": self.pod,
            "finishedAt": self.finished_at,
        }
        if self.memory_limit_bytes is not None:
            entry["memoryLimit"] = format_memory(self.memory_limit_bytes)
        return entry

    @classmethod
    def from_status(cls, namespace: str, entry: dict[str, Any]) -> ObservedOomKill | None:
        try:
            limit = parse(entry["memoryLimit"]) if "memoryLimit" in entry else None
            key = ContainerKey(namespace, entry["kind"], entry["name"], entry["container"])
            return cls(key, entry["finishedAt"], entry["pod"], limit)
        except (KeyError, QuantityError):
            return None  # an entry someone edited by hand: dropped, not fatal


def observe(
    namespace: str,
    remembered: Iterable[dict[str, Any]],
    pods: Iterable[PodView],
    now: datetime,
    window_seconds: int,
    targets: Collection[tuple[str, str]],
) -> list[ObservedOomKill]:
    """The kills remembered and the kills in the pods' statuses now, of the ``targets`` (kind, name)
    only and within the history window; a kill seen before keeps the limit it was first seen with."""
    kills: dict[tuple[ContainerKey, str, str], ObservedOomKill] = {}
    for entry in remembered:
        kill = ObservedOomKill.from_status(namespace, entry)
        if kill is not None:
            kills.setdefault(kill.identity, kill)
    for pod in pods:
        if pod.owner_kind is None or pod.owner_name is None:
            continue
        for seen in pod.oom_kills:
            key = ContainerKey(namespace, pod.owner_kind, pod.owner_name, seen.container)
            kill = ObservedOomKill(key, seen.finished_at, pod.name, seen.memory_limit_bytes)
            kills.setdefault(kill.identity, kill)
    oldest = now - timedelta(seconds=window_seconds)
    recent = [
        k
        for k in kills.values()
        if (k.key.kind, k.key.name) in targets and parse_time(k.finished_at) >= oldest
    ]
    kept: list[ObservedOomKill] = []
    for key in sorted({k.key for k in recent}):
        newest_first = sorted((k for k in recent if k.key == key), key=lambda k: k.finished_at, reverse=True)
        kept.extend(newest_first[:MAX_KEPT_PER_CONTAINER])
    return sorted(kept, key=lambda k: (k.key, k.finished_at, k.pod))


def with_observed(usage: ContainerUsage, kills: Iterable[ObservedOomKill]) -> ContainerUsage:
    """Usage whose OOM-kill count and killed-at memory include the kills seen through the API."""
    kills = list(kills)
    if not kills:
        return usage
    limits = [float(k.memory_limit_bytes) for k in kills if k.memory_limit_bytes is not None]
    killed_at = max([*limits, usage.oom_killed_memory_bytes or 0.0]) or None
    return replace(usage, oom_kills=max(usage.oom_kills, len(kills)), oom_killed_memory_bytes=killed_at)

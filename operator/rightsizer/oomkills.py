"""OOM kills the operator saw in pod statuses, remembered in the policy's status.

A pod's status shows only its containers' last termination, and a pod deleted by a rollout takes
even that with it: the OOM kill that made rightsizer raise memory would be forgotten at the next
evaluation, memory would be lowered back to the peak the killed container reached, and it would
be killed again. So every kill seen is kept in ``status.observedOOMKills`` for the history window
and counts as evidence as long as it is in the window, wherever its pod went.
"""

from __future__ import annotations

from collections.abc import Iterable
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


@dataclass(frozen=True, order=True)
class ObservedOomKill:
    key: ContainerKey
    finished_at: str
    pod: str
    memory_limit_bytes: Decimal | None

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
) -> list[ObservedOomKill]:
    """The kills remembered and the kills in the pods' statuses now, within the history window."""
    kills = {k for k in (ObservedOomKill.from_status(namespace, e) for e in remembered) if k is not None}
    for pod in pods:
        if pod.owner_kind is None or pod.owner_name is None:
            continue
        for kill in pod.oom_kills:
            key = ContainerKey(namespace, pod.owner_kind, pod.owner_name, kill.container)
            kills.add(ObservedOomKill(key, kill.finished_at, pod.name, kill.memory_limit_bytes))
    oldest = now - timedelta(seconds=window_seconds)
    recent = [k for k in kills if parse_time(k.finished_at) >= oldest]
    kept: list[ObservedOomKill] = []
    for key in sorted({k.key for k in recent}):
        newest_first = sorted((k for k in recent if k.key == key), key=lambda k: k.finished_at, reverse=True)
        kept.extend(newest_first[:MAX_KEPT_PER_CONTAINER])
    return sorted(kept)


def with_observed(usage: ContainerUsage, kills: Iterable[ObservedOomKill]) -> ContainerUsage:
    """Usage whose OOM-kill count and killed-at memory include the kills seen through the API."""
    kills = list(kills)
    if not kills:
        return usage
    limits = [float(k.memory_limit_bytes) for k in kills if k.memory_limit_bytes is not None]
    killed_at = max([*limits, usage.oom_killed_memory_bytes or 0.0]) or None
    return replace(usage, oom_kills=max(usage.oom_kills, len(kills)), oom_killed_memory_bytes=killed_at)

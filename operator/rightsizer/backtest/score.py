"""What requests and limits met in the usage of a stretch of rows (pod, bucket): pure numpy.

CPU is judged per 5-minute window (the engine's CPU window), as the engine reads a bucket: of its
windows (those the pod ran), one ran at the bucket's peak and the others at the mean of the rest
(``peaks.cpu_peak_time``), so a window above a limit is one the history shows above it, not a guess
from the mean. Memory is judged on the bucket's highest working-set sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rightsizer.backtest.timeline import CFS_PERIODS_PER_SECOND, Timeline
from rightsizer.model import Resources
from rightsizer.units import CPU, MEMORY

GIB = 1024**3


@dataclass(frozen=True)
class RowScores:
    """Per row of a stretch, under one set of resources."""

    windows: np.ndarray
    """CPU windows the pod ran in the bucket."""
    over_limit: np.ndarray
    """Of them, windows above the CPU limit (throttled: CFS caps a window's mean at the limit)."""
    over_request: np.ndarray
    memory_over: np.ndarray
    """The bucket's highest working set is above the memory limit (bool)."""
    core_hours: np.ndarray
    gib_hours: np.ndarray
    periods: np.ndarray
    """CFS periods the pod ran in the bucket (10 a second)."""


def score(
    tl: Timeline, rows: slice, resources: Resources, bucket_seconds: int, windows_per_bucket: int
) -> RowScores:
    coverage = tl.coverage[rows]
    count = np.clip(np.round(coverage * windows_per_bucket), 1, windows_per_bucket)
    peak = np.nan_to_num(tl.cpu_peak[rows])
    mean = np.where(np.isnan(tl.cpu_mean[rows]), peak, tl.cpu_mean[rows])
    rest = np.clip((count * mean - peak) / np.maximum(count - 1, 1), 0.0, peak)
    hours = coverage * bucket_seconds / 3600

    def above(amount: object) -> np.ndarray:
        if amount is None:
            return np.zeros(len(count))
        level = float(amount)  # type: ignore[arg-type]
        windows: np.ndarray = (peak > level).astype(float) + (count - 1) * (rest > level)
        return windows

    memory_limit = resources.limits.get(MEMORY)
    memory = tl.memory_max[rows]
    return RowScores(
        windows=count,
        over_limit=above(resources.limits.get(CPU)),
        over_request=above(resources.requests.get(CPU)),
        memory_over=(memory > float(memory_limit))
        if memory_limit is not None
        else np.zeros(len(count), bool),
        core_hours=hours * float(resources.requests.get(CPU, 0)),
        gib_hours=hours * float(resources.requests.get(MEMORY, 0)) / GIB,
        periods=coverage * bucket_seconds * CFS_PERIODS_PER_SECOND,
    )


def throttled_share(tl: Timeline, rows: slice, resources: Resources, scores: RowScores) -> np.ndarray:
    """Each row's share of CFS periods throttled: measured where the pod really ran under the limit in
    force, else the share of its windows above that limit."""
    limit = resources.limits.get(CPU)
    estimate = scores.over_limit / scores.windows
    if limit is None:
        return np.zeros(len(estimate))
    real_limit = tl.pod_cpu_limit[tl.pod[rows]]
    same = np.round(real_limit * 1000) == round(float(limit) * 1000)
    periods = np.nan_to_num(tl.cfs_periods[rows])
    measured = np.divide(
        np.nan_to_num(tl.cfs_throttled[rows]), periods, out=np.zeros(len(periods)), where=periods > 0
    )
    share: np.ndarray = np.where(same & (periods > 0), measured, estimate)
    return share


@dataclass
class Tally:
    """What one set of resources over time met, summed over a container's rows."""

    core_hours: float = 0.0
    gib_hours: float = 0.0
    cpu_windows: float = 0.0
    cpu_over_limit: float = 0.0
    cpu_over_request: float = 0.0
    memory_over_limit_hours: float = 0.0
    oom_kills: int = 0

    def add(self, scores: RowScores, kills: int, bucket_seconds: int) -> None:
        self.core_hours += float(scores.core_hours.sum())
        self.gib_hours += float(scores.gib_hours.sum())
        self.cpu_windows += float(scores.windows.sum())
        self.cpu_over_limit += float(scores.over_limit.sum())
        self.cpu_over_request += float(scores.over_request.sum())
        self.memory_over_limit_hours += float(scores.memory_over.sum()) * bucket_seconds / 3600
        self.oom_kills += kills

    def cost(self, cpu_per_core_hour: float, memory_per_gib_hour: float) -> float:
        return self.core_hours * cpu_per_core_hour + self.gib_hours * memory_per_gib_hour

    def share(self, windows: float) -> float:
        return windows / self.cpu_windows if self.cpu_windows else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "coreHours": round(self.core_hours, 2),
            "gibHours": round(self.gib_hours, 2),
            "oomKills": self.oom_kills,
            "memoryOverLimitHours": round(self.memory_over_limit_hours, 2),
            "cpuWindows": int(self.cpu_windows),
            "cpuWindowsOverLimit": int(self.cpu_over_limit),
            "cpuWindowsOverRequest": int(self.cpu_over_request),
        }


class KillCounter:
    """Would-be OOM kills of one container's pods: a kill where a pod's bucket goes above the memory
    limit in force after one that was not (a kill restarts the container; while the usage that
    followed stays above, it is one episode, counted once: the container's life after a kill that did
    not happen is not in the data), and a real OOM kill under a limit as low as the one it had or
    lower (it was killed at its own limit: it would have been at one no higher)."""

    def __init__(self, bucket_seconds: int, killed_at: float | None) -> None:
        self.bucket_seconds = bucket_seconds
        self.killed_at = killed_at
        self.last_over: dict[int, tuple[float, float]] = {}
        """Per pod: the time and limit of its last bucket above the limit."""

    def kills(self, tl: Timeline, rows: slice, limit: float | None, memory_over: np.ndarray) -> np.ndarray:
        """Kills per row of the stretch, counting it as seen (call in time order)."""
        counted = np.zeros(len(memory_over))
        real = tl.oom_kills[rows]
        real_counts = limit is not None and self.killed_at is not None and limit <= self.killed_at * 1.0001
        candidates = np.flatnonzero(memory_over | ((real > 0) if real_counts else False))
        first = rows.start or 0
        for index in candidates:
            row = first + int(index)
            pod, time = int(tl.pod[row]), float(tl.time[row])
            if memory_over[index]:
                previous = self.last_over.get(pod)
                assert limit is not None
                continuing = (
                    previous is not None
                    and previous[1] == limit
                    and time - previous[0] <= self.bucket_seconds
                )
                self.last_over[pod] = (time, limit)
                if not continuing:
                    counted[index] = 1
            if real_counts and real[index] > 0:
                counted[index] = max(counted[index], real[index])
        return counted

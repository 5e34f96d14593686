"""One workload container's span as arrays, and what an evaluation at a moment of it sees.

Rows are (pod, bucket) pairs sorted by time, as the engine's history has them, with the per-bucket
series the replay adds (``operator_parts.SPAN_QUERIES``). An evaluation at ``t`` sees only the rows of
``(t - window, t]``: the engine gets exactly the history the operator would have had then, with the
throttling and OOM kills of that window only, never anything after ``t``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rightsizer.backtest.operator_parts import SpanData
from rightsizer.collect import WorkloadContainer
from rightsizer.model import ContainerKey, ContainerUsage, HistoryGrid, PodThrottling, Resources

CFS_PERIODS_PER_SECOND = 10
"""The kernel's CFS period is 100 ms."""


@dataclass
class Timeline:
    """A workload container's rows over the span, and what the replay found in them so far."""

    key: ContainerKey
    today: Resources
    """Its resources now (the newest pod's): the replay starts from them, and is scored against them."""
    usage: ContainerUsage
    """Over the whole span: where it came from (``owner_source``) and the memory OOM kills were at."""
    pods: np.ndarray
    """Pod names; ``pod`` indexes them."""
    pod: np.ndarray
    time: np.ndarray
    cpu_mean: np.ndarray
    cpu_peak: np.ndarray
    memory_mean: np.ndarray
    samples: np.ndarray
    coverage: np.ndarray
    memory_max: np.ndarray
    cfs_periods: np.ndarray
    cfs_throttled: np.ndarray
    oom_kills: np.ndarray
    """Real OOM kills (restarts after which the reason was OOMKilled) in the row's bucket."""
    pod_cpu_limit: np.ndarray
    """The CPU limit each pod really ran under (cores; NaN: none or not known)."""
    # What the replay found, row by row, under the resources it had in force (filled as it goes).
    sim_kills: np.ndarray = field(init=False)
    sim_kill_limit: np.ndarray = field(init=False)
    sim_periods: np.ndarray = field(init=False)
    sim_throttled: np.ndarray = field(init=False)
    sim_cpu_limit: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        rows = len(self.time)
        self.sim_kills = np.zeros(rows)
        self.sim_kill_limit = np.full(rows, np.nan)
        self.sim_periods = np.zeros(rows)
        self.sim_throttled = np.zeros(rows)
        self.sim_cpu_limit = np.full(rows, np.nan)

    def rows(self, after: float, until: float) -> slice:
        """The rows of the buckets ending in ``(after, until]``."""
        return slice(
            int(np.searchsorted(self.time, after, side="right")),
            int(np.searchsorted(self.time, until, side="right")),
        )

    def usage_at(
        self, end: float, window_seconds: int, bucket_seconds: int, cpu_window_seconds: int
    ) -> ContainerUsage:
        """What the operator's batch would have held of this container at ``end``: the rows of its
        window, their throttling (the pods' real CFS periods under their real limits, and the replay's
        estimate under the limits it set where they differ) and the OOM kills the replay counted."""
        rows = self.rows(end - window_seconds, end)
        pods = self.pod[rows]
        history = pd.DataFrame(
            {
                "pod": self.pods[pods],
                "time": self.time[rows],
                "cpu_mean": self.cpu_mean[rows],
                "cpu_peak": self.cpu_peak[rows],
                "memory_mean": self.memory_mean[rows],
                "samples": self.samples[rows],
                "coverage": self.coverage[rows],
            }
        )
        kills = self.sim_kills[rows]
        killed = int(kills.sum())
        peaks = self.memory_max[rows]
        peak = float(np.nanmax(peaks)) if np.isfinite(peaks).any() else None
        return ContainerUsage(
            history=history,
            grid=HistoryGrid(end, window_seconds, bucket_seconds, cpu_window_seconds),
            throttling=tuple(self._throttling(rows)),
            memory_peak_bytes=peak,
            oom_kills=killed,
            oom_killed_memory_bytes=float(np.nanmax(self.sim_kill_limit[rows][kills > 0]))
            if killed
            else None,
            owner_source=self.usage.owner_source,
        )

    def _throttling(self, rows: slice) -> Iterator[PodThrottling]:
        pods = self.pod[rows]
        count = len(self.pods)
        real_periods = np.bincount(pods, np.nan_to_num(self.cfs_periods[rows]), count)
        real_throttled = np.bincount(pods, np.nan_to_num(self.cfs_throttled[rows]), count)
        for index in np.flatnonzero(real_periods > 0):
            limit = self.pod_cpu_limit[index]
            yield PodThrottling(
                str(self.pods[index]),
                None if np.isnan(limit) else float(limit),
                float(real_periods[index]),
                float(real_throttled[index]),
            )
        simulated = self.sim_periods[rows] > 0
        if not simulated.any():
            return
        millicores = np.round(self.sim_cpu_limit[rows][simulated] * 1000).astype(np.int64)
        keys, group = np.unique(pods[simulated].astype(np.int64) << 32 | millicores, return_inverse=True)
        periods = np.bincount(group, self.sim_periods[rows][simulated], len(keys))
        throttled = np.bincount(group, self.sim_throttled[rows][simulated], len(keys))
        for position, packed in enumerate(keys.tolist()):
            pod, limit = packed >> 32, packed & 0xFFFFFFFF
            yield PodThrottling(
                str(self.pods[pod]), limit / 1000, float(periods[position]), float(throttled[position])
            )


def timelines(span: SpanData) -> list[Timeline]:
    """A timeline per workload container of the span, in ``collect``'s order."""
    extra = span.per_bucket
    by_container = (
        {key: group for key, group in extra.groupby(["namespace", "container"])} if len(extra) else {}
    )
    found = []
    for item in span.containers:
        found.append(_timeline(item, by_container.get((item.key.namespace, item.key.container))))
    return found


def _timeline(item: WorkloadContainer, extra: pd.DataFrame | None) -> Timeline:
    history = item.usage.history
    columns = ["memory_max", "cfs_periods", "cfs_throttled", "oom_restarts"]
    if extra is not None:
        history = history.merge(extra[["pod", "time", *columns]], on=["pod", "time"], how="left")
    else:
        history = history.assign(**{name: np.nan for name in columns})
    history = history.sort_values(["time", "pod"], kind="stable").reset_index(drop=True)
    codes, pods = pd.factorize(history["pod"])
    limits = {t.pod: t.limit_cores for t in item.usage.throttling}
    pod_limit = np.array([np.nan if limits.get(p) is None else limits[p] for p in pods], dtype=float)
    memory_max = history["memory_max"].to_numpy(float)
    memory_max = np.where(np.isnan(memory_max), history["memory_mean"].to_numpy(float), memory_max)
    return Timeline(
        key=item.key,
        today=item.current,
        usage=item.usage,
        pods=np.asarray(pods, dtype=object),
        pod=codes.astype(int),
        time=history["time"].to_numpy(float),
        cpu_mean=history["cpu_mean"].to_numpy(float),
        cpu_peak=history["cpu_peak"].to_numpy(float),
        memory_mean=history["memory_mean"].to_numpy(float),
        samples=history["samples"].to_numpy(float),
        coverage=history["coverage"].to_numpy(float),
        memory_max=memory_max,
        cfs_periods=history["cfs_periods"].to_numpy(float),
        cfs_throttled=history["cfs_throttled"].to_numpy(float),
        oom_kills=np.nan_to_num(history["oom_restarts"].to_numpy(float)),
        pod_cpu_limit=pod_limit,
    )

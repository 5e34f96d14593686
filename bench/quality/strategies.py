"""The competitors, computed from the learning ground truth (pandas): what is set today, KRR, a VPA.

The ground truth has every raw sample, so the peaks here are exact; KRR itself reads its memory peak
through a ``[336h:75s]`` subquery and would see less (see docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from rightsizer.model import ContainerKey
from rightsizer_demo.history import DAY, MIB

from .allocation import Allocation, Allocations

KEY_COLUMNS = ["namespace", "kind", "workload", "container"]
"""Ground-truth columns naming a workload container (rightsizer's ``ContainerKey``)."""

KRR_CPU_PERCENTILE = 0.95
KRR_MEMORY_BUFFER = 0.15
KRR_MIN_CPU = 0.010
"""``--cpu-min`` default: 10 millicores."""
KRR_MIN_MEMORY = 100 * MIB
"""``--mem-min`` default: 100 MB."""
KRR_MIN_POINTS = 100

VPA_CPU_PERCENTILE = 0.9
VPA_MEMORY_PERCENTILE = 0.9
VPA_SAFETY_MARGIN = 0.15
VPA_HALF_LIFE_SECONDS = DAY
VPA_POD_MIN_CPU = 0.025
VPA_POD_MIN_MEMORY = 250 * MIB
VPA_OOM_BUMP_RATIO = 0.2
VPA_OOM_MIN_BUMP = 100 * MIB
VPA_MIN_SAMPLE_WEIGHT = 0.1
"""A CPU sample weighs its container's CPU request in cores, at least this much."""


@dataclass(frozen=True)
class ExponentialHistogram:
    """VPA's histogram: bucket ``i`` starts at ``first * (ratio**i - 1) / (ratio - 1)`` (buckets 5% apart)."""

    first_bucket: float
    ratio: float = 1.05

    def bucket(self, values: np.ndarray) -> np.ndarray:
        """The bucket index of each value (values below the first bucket size go to bucket 0)."""
        scaled = np.maximum(values, 0.0) * (self.ratio - 1) / self.first_bucket + 1
        return np.floor(np.log(scaled) / math.log(self.ratio)).astype(int)

    def start(self, bucket: int) -> float:
        return self.first_bucket * (self.ratio**bucket - 1) / (self.ratio - 1)

    def percentile(self, values: np.ndarray, weights: np.ndarray, q: float) -> float:
        """The end of the bucket where the cumulative weight reaches ``q`` of the total, as VPA answers."""
        buckets = self.bucket(values)
        totals = np.bincount(buckets, weights=weights)
        reached = int(np.searchsorted(np.cumsum(totals), q * totals.sum()))
        return self.start(reached + 1)


VPA_CPU_HISTOGRAM = ExponentialHistogram(first_bucket=0.01)
VPA_MEMORY_HISTOGRAM = ExponentialHistogram(first_bucket=1e7)


def container_key(values: tuple[str, str, str, str]) -> ContainerKey:
    """A ``ContainerKey`` from the values of ``KEY_COLUMNS``."""
    namespace, kind, workload, container = values
    return ContainerKey(namespace, kind, workload, container)


def current_allocations(learning: pd.DataFrame) -> Allocations:
    """The requests and limits in force at the end of learning (those of each container's newest pod)."""
    last = learning.sort_values("timestamp").groupby(KEY_COLUMNS, sort=True).tail(1)
    return {
        container_key(tuple(row[c] for c in KEY_COLUMNS)): Allocation.from_truth(
            row["cpu_request"], row["memory_request"], row["cpu_limit"], row["memory_limit"]
        )
        for _, row in last.iterrows()
    }


def krr_simple(
    learning: pd.DataFrame, current: Allocations, *, memory_subquery_step: int | None = None
) -> Allocations:
    """KRR ``simple``: CPU request = p95 of usage (busiest pod), no CPU limit; memory request = limit =
    max x 1.15; at least 10m / 100Mi. Fewer than 100 points: no recommendation (what is set stays).

    The memory max is over raw samples unless ``memory_subquery_step`` is given: then over the points of a
    ``[...:<step>s]`` subquery, as KRR's own query reads it.
    """
    per_pod = learning.groupby([*KEY_COLUMNS, "pod"], sort=True).apply(
        lambda rows: _krr_pod_usage(rows, memory_subquery_step), include_groups=False
    )
    per_container = per_pod.groupby(KEY_COLUMNS, sort=True).agg(
        cpu=("cpu", "max"), memory=("memory", "max"), points=("points", "sum")
    )
    result: Allocations = {}
    for values, row in per_container.iterrows():
        key = container_key(values)
        if row["points"] < KRR_MIN_POINTS:
            result[key] = replace(current[key], note="too few points: allocation kept")
            continue
        memory = max(row["memory"] * (1 + KRR_MEMORY_BUFFER), KRR_MIN_MEMORY)
        result[key] = Allocation(max(row["cpu"], KRR_MIN_CPU), memory, None, memory)
    return result


def subquery_points(times: np.ndarray, values: np.ndarray, step: int) -> np.ndarray:
    """What a ``[range:step]`` subquery sees of a gauge: at every multiple of ``step`` from the first to the
    last sample, the latest sample at or before it (the samples in between are skipped)."""
    points = np.arange(-(-times[0] // step) * step, times[-1] + 1, step)
    if not points.size:
        return values[-1:]
    return values[np.searchsorted(times, points, side="right") - 1]


def vpa_like(learning: pd.DataFrame, current: Allocations) -> Allocations:
    """A VPA recommender's target: decayed-histogram p90 x 1.15 of CPU usage and of per-day memory peaks
    (OOM kills bump the day's peak), pod minimums split over the containers, limits in proportion."""
    end = learning["timestamp"].max()
    containers_per_pod = learning.groupby(["namespace", "workload"])["container"].nunique()
    result: Allocations = {}
    for values, rows in learning.groupby(KEY_COLUMNS, sort=True):
        key = container_key(values)
        share = 1 / containers_per_pod[(key.namespace, key.name)]
        cpu = max(_vpa_cpu_target(rows, end), VPA_POD_MIN_CPU * share)
        memory = max(_vpa_memory_target(rows, end), VPA_POD_MIN_MEMORY * share)
        now = current[key]
        result[key] = Allocation(
            cpu,
            memory,
            proportional_limit(now.cpu_limit, now.cpu_request, cpu),
            proportional_limit(now.memory_limit, now.memory_request, memory),
        )
    return result


def proportional_limit(limit: float | None, request: float, recommended: float) -> float | None:
    """VPA keeps the limit/request ratio: no limit stays none, a limit without a request follows it."""
    if limit is None:
        return None
    if request <= 0:
        return recommended
    return recommended * limit / request


def decay_weights(timestamps: pd.Series, end: pd.Timestamp, half_life_seconds: float) -> np.ndarray:
    """Exponential decay: a sample ``half_life_seconds`` older than ``end`` weighs half as much."""
    age = (end - timestamps).dt.total_seconds().to_numpy()
    return np.power(0.5, age / half_life_seconds)


def daily_peaks(rows: pd.DataFrame) -> pd.DataFrame:
    """Per pod and 24 h window from its first sample: the memory peak, the window's last timestamp and
    whether an OOM kill happened in it, plus the memory request then (for VPA's OOM bump)."""
    rows = rows.sort_values("timestamp")
    first = rows.groupby("pod")["timestamp"].transform("min")
    window = ((rows["timestamp"] - first).dt.total_seconds() // DAY).astype(int)
    return (
        rows.assign(window=window)
        .groupby(["pod", "window"], sort=True)
        .agg(
            peak=("memory_bytes", "max"),
            timestamp=("timestamp", "max"),
            oom=("oom_kill", "any"),
            request=("memory_request", "max"),
        )
        .reset_index()
    )


def oom_bumped(peak: float, request: float) -> float:
    """VPA's sample after an OOM kill: max(+20%, +100Mi) above the larger of the request and the peak."""
    used = max(peak, 0.0 if math.isnan(request) else request)
    return max(used * (1 + VPA_OOM_BUMP_RATIO), used + VPA_OOM_MIN_BUMP)


def _vpa_cpu_target(rows: pd.DataFrame, end: pd.Timestamp) -> float:
    weights = decay_weights(rows["timestamp"], end, VPA_HALF_LIFE_SECONDS) * np.maximum(
        rows["cpu_request"].fillna(0).to_numpy(), VPA_MIN_SAMPLE_WEIGHT
    )
    p90 = VPA_CPU_HISTOGRAM.percentile(rows["cpu_cores"].to_numpy(), weights, VPA_CPU_PERCENTILE)
    return p90 * (1 + VPA_SAFETY_MARGIN)


def _vpa_memory_target(rows: pd.DataFrame, end: pd.Timestamp) -> float:
    peaks = daily_peaks(rows)
    values = [
        oom_bumped(peak, request) if oom else peak
        for peak, oom, request in zip(peaks["peak"], peaks["oom"], peaks["request"], strict=True)
    ]
    weights = decay_weights(peaks["timestamp"], end, VPA_HALF_LIFE_SECONDS)
    p90 = VPA_MEMORY_HISTOGRAM.percentile(np.asarray(values), weights, VPA_MEMORY_PERCENTILE)
    return p90 * (1 + VPA_SAFETY_MARGIN)


def _krr_pod_usage(rows: pd.DataFrame, memory_subquery_step: int | None) -> pd.Series:
    rows = rows.sort_values("timestamp")
    memory = rows["memory_bytes"].to_numpy(dtype=float)
    if memory_subquery_step is not None:
        times = rows["timestamp"].dt.as_unit("s").astype("int64").to_numpy()
        memory = subquery_points(times, memory, memory_subquery_step)
    return pd.Series(
        {
            "cpu": rows["cpu_cores"].quantile(KRR_CPU_PERCENTILE),
            "memory": memory.max(),
            "points": float(len(rows)),
        }
    )

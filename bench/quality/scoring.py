"""Scoring an allocation against what containers did in the scoring period. Pure functions (numpy, pandas).

CPU is scored on demand (``cpu_demand_cores``: what a container wanted, before any limit), so an allocation
is judged on what would have happened under it, not under the limits in force when the history was made.

Memory is scored on the working set the container would have had under the scored allocation. The
generator documents it as ``(base + growth * age) * noise`` with ``age`` counted from the container's last
start. The ground truth gives ``age`` (its OOM kills restart it) and therefore ``noise`` at every sample;
from the start of the scoring period the allocation is applied in place (no restart, as an in-place resize
does), so the container keeps growing from where it was, and every time its working set goes above the
allocation's memory limit it is OOM-killed and starts over at ``age`` 0, exactly as the generator does.
Replaying the limits in force reproduces the ground truth's own OOM kills (see the tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from rightsizer.model import ContainerKey
from rightsizer_demo.history import DAY, UsageModel

from .allocation import Allocation, Allocations
from .scenarios import ModelKey
from .strategies import KEY_COLUMNS, container_key

PEAK_WINDOW_SECONDS = 300
"""Peak-time CPU is measured on 5-minute averages, as rightsizer's ``cpuPeakTime`` (``rate(...[5m])``)."""
PEAK_PERCENTILE = 0.95
BUSY_HOUR_SECONDS = 3600
"""Busy-hour CPU is the mean usage of each pod's busiest hour (a rolling 60-minute window) of each day."""
TARGET_BAND = (0.70, 0.80)
"""Peak-time CPU as a share of the request: the rule of thumb's 70-80%."""


@dataclass(frozen=True)
class PodTrace:
    """One pod's container over the scoring period: CPU demand and what its working set is made of."""

    key: ContainerKey
    pod: str
    times: np.ndarray
    """Epoch seconds of the samples."""
    cpu_demand: np.ndarray
    memory_noise: np.ndarray
    """The multiplicative noise of each working-set sample."""
    memory_age: float
    """Seconds since the container's last start, at the first sample."""
    memory_base: float
    memory_growth_per_second: float

    def working_set(self, ages: np.ndarray) -> np.ndarray:
        """The working set at each sample for the given container ages (seconds)."""
        return (self.memory_base + self.memory_growth_per_second * ages) * self.memory_noise


@dataclass(frozen=True)
class ContainerScore:
    """How one allocation did for one workload container (all its pods) in the scoring period."""

    key: ContainerKey
    allocation: Allocation
    pods: int
    replicas: float
    """Pods alive on average (pods x time / the scoring period): what requests are reserved for."""
    samples: int
    cpu_slack: float
    """Mean over samples of the unused share of the CPU request, ``max(0, 1 - usage / request)``."""
    above_request: float
    """Share of samples whose CPU demand is above the request."""
    above_limit: float
    """Share of samples whose CPU demand is above the limit (throttled); 0 without a limit."""
    oom_kills: int
    killed_pods: int
    peak_to_request: float
    """p95 of 5-minute CPU usage (all pods) / request."""
    peak_to_request_raw: float
    """p95 of CPU usage at the samples' own resolution (all pods) / request."""
    above_memory_request: float
    """Share of samples whose working set is above the memory request (first evicted under node pressure)."""
    busy_to_request: float
    """Median over pods and days of the day's busiest hour of CPU usage (rolling 60-minute mean) / request."""
    worst_pod_above_limit: float
    """The largest share, over pods, of a pod's samples whose CPU demand is above the limit (0: no limit)."""


@dataclass(frozen=True)
class StrategyScore:
    """One strategy over all containers: the benchmark table's row."""

    reserved_cpu: float
    """Sum of CPU requests x replicas (pods alive on average), cores."""
    reserved_memory: float
    """Sum of memory requests x replicas, bytes."""
    cpu_slack: float
    above_request: float
    above_limit: float
    above_memory_request: float
    oom_kills: float
    killed_containers: float
    """Pod containers OOM-killed at least once."""
    peak_median: float
    """Median over workload containers of ``peak_to_request``."""
    peak_median_raw: float
    """Median over workload containers of ``peak_to_request_raw``."""
    in_band: float
    """Workload containers whose ``peak_to_request`` is inside ``TARGET_BAND``."""
    containers: float


def container_ages(times: np.ndarray, restarted: np.ndarray) -> np.ndarray:
    """Seconds since the container's last start: its first sample, or the last sample flagged as an OOM
    kill (the sample of a kill is the new container's first, as in the generator)."""
    starts = np.concatenate(([times[0]], times[restarted]))
    return (times - starts[np.cumsum(restarted)]).astype(float)


def pod_traces(
    truth: pd.DataFrame, models: Mapping[ModelKey, UsageModel], start: pd.Timestamp
) -> dict[ContainerKey, list[PodTrace]]:
    """The scoring-period traces of every pod container, by workload container.

    ``truth`` must begin at or before every pod's start (ages are counted from a pod's first sample) and
    run through the scoring period, which begins at ``start``.
    """
    traces: dict[ContainerKey, list[PodTrace]] = {}
    for values, rows in truth.groupby([*KEY_COLUMNS, "pod"], sort=True):
        key, pod = container_key(values[:4]), str(values[4])
        trace = _pod_trace(key, pod, rows.sort_values("timestamp"), models[_model_key(key)], start)
        if trace is not None:
            traces.setdefault(key, []).append(trace)
    return traces


def replay_memory(trace: PodTrace, memory_limit: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The working set under ``memory_limit`` and the samples at which the container is OOM-killed.

    The container keeps its age from before the scoring period; above the limit it is killed, and the
    sample of the kill is the new container's first (age 0), as in the generator.
    """
    kills = np.zeros(len(trace.times), dtype=bool)
    ages = trace.memory_age + (trace.times - trace.times[0]).astype(float)
    if memory_limit is None:
        return trace.working_set(ages), kills
    first = 0
    while (over := np.flatnonzero(trace.working_set(ages)[first:] > memory_limit)).size:
        kill = first + int(over[0])
        kills[kill] = True
        ages[kill:] = trace.times[kill:] - trace.times[kill]
        first = kill + 1
    return trace.working_set(ages), kills


def replay_oom_kills(trace: PodTrace, memory_limit: float | None) -> np.ndarray:
    """The samples at which the container is OOM-killed under ``memory_limit`` (True = killed)."""
    return replay_memory(trace, memory_limit)[1]


def peak_window_means(times: np.ndarray, usage: np.ndarray, window: int = PEAK_WINDOW_SECONDS) -> np.ndarray:
    """Mean usage of each ``window``-second window (aligned to the epoch) that has samples."""
    _, index = np.unique(times // window, return_inverse=True)
    return np.bincount(index, weights=usage) / np.bincount(index)


def busy_hours(times: np.ndarray, usage: np.ndarray, window: int = BUSY_HOUR_SECONDS) -> np.ndarray:
    """Per UTC day with a whole window of samples, the highest mean usage over ``window`` seconds."""
    step = int(np.median(np.diff(times))) if len(times) > 1 else window
    length = max(1, window // step)
    if len(usage) < length:
        return np.array([])
    means = np.convolve(usage, np.ones(length) / length, mode="valid")
    days = times[length - 1 :] // DAY
    return pd.Series(means).groupby(days).max().to_numpy()


def cpu_usage(demand: np.ndarray, limit: float | None) -> np.ndarray:
    """What the container gets: its demand, capped at the CPU limit when there is one."""
    return demand if limit is None else np.minimum(demand, limit)


def score_container(traces: Sequence[PodTrace], allocation: Allocation) -> ContainerScore:
    """Score one workload container's pods under ``allocation``."""
    demand = np.concatenate([t.cpu_demand for t in traces])
    usage = cpu_usage(demand, allocation.cpu_limit)
    request = allocation.cpu_request
    windows = np.concatenate(
        [peak_window_means(t.times, cpu_usage(t.cpu_demand, allocation.cpu_limit)) for t in traces]
    )
    memory = [replay_memory(t, allocation.memory_limit) for t in traces]
    working_set = np.concatenate([m[0] for m in memory])
    kills = [int(m[1].sum()) for m in memory]
    has_request = request > 0
    busy = np.concatenate(
        [busy_hours(t.times, cpu_usage(t.cpu_demand, allocation.cpu_limit)) for t in traces]
    )
    limit = allocation.cpu_limit
    worst = 0.0 if limit is None else max(float((t.cpu_demand > limit).mean()) for t in traces)
    return ContainerScore(
        key=traces[0].key,
        allocation=allocation,
        pods=len(traces),
        replicas=len(demand) / max(len(t.times) for t in traces),
        samples=len(demand),
        cpu_slack=float(np.clip(1 - usage / request, 0, 1).mean()) if has_request else math.nan,
        above_request=float((demand > request).mean()),
        above_limit=0.0 if allocation.cpu_limit is None else float((demand > allocation.cpu_limit).mean()),
        oom_kills=sum(kills),
        killed_pods=sum(1 for k in kills if k),
        peak_to_request=float(np.quantile(windows, PEAK_PERCENTILE)) / request if has_request else math.nan,
        peak_to_request_raw=float(np.quantile(usage, PEAK_PERCENTILE)) / request if has_request else math.nan,
        above_memory_request=float((working_set > allocation.memory_request).mean()),
        busy_to_request=float(np.median(busy)) / request if has_request and busy.size else math.nan,
        worst_pod_above_limit=worst,
    )


def score_strategy(
    traces: Mapping[ContainerKey, Sequence[PodTrace]], allocations: Allocations
) -> list[ContainerScore]:
    """Score every workload container that has pods in the scoring period."""
    return [score_container(traces[key], allocations[key]) for key in sorted(traces)]


def summarize(scores: Sequence[ContainerScore]) -> StrategyScore:
    """Totals over containers; shares are weighted by samples."""
    samples = np.array([s.samples for s in scores], dtype=float)
    peaks = np.array([s.peak_to_request for s in scores])
    low, high = TARGET_BAND
    return StrategyScore(
        reserved_cpu=sum(s.allocation.cpu_request * s.replicas for s in scores),
        reserved_memory=sum(s.allocation.memory_request * s.replicas for s in scores),
        cpu_slack=_weighted([s.cpu_slack for s in scores], samples),
        above_request=_weighted([s.above_request for s in scores], samples),
        above_limit=_weighted([s.above_limit for s in scores], samples),
        above_memory_request=_weighted([s.above_memory_request for s in scores], samples),
        oom_kills=sum(s.oom_kills for s in scores),
        killed_containers=sum(s.killed_pods for s in scores),
        peak_median=float(np.nanmedian(peaks)),
        peak_median_raw=float(np.nanmedian([s.peak_to_request_raw for s in scores])),
        in_band=int(((peaks >= low) & (peaks <= high)).sum()),
        containers=len(scores),
    )


def mean_score(scores: Sequence[StrategyScore]) -> StrategyScore:
    """Field by field mean (over seeds)."""
    return StrategyScore(
        **{f.name: float(np.mean([getattr(s, f.name) for s in scores])) for f in fields(StrategyScore)}
    )


def _weighted(values: Sequence[float], weights: np.ndarray) -> float:
    array = np.asarray(values, dtype=float)
    known = ~np.isnan(array)
    return float((array[known] * weights[known]).sum() / weights[known].sum())


def _model_key(key: ContainerKey) -> ModelKey:
    return (key.namespace, key.name, key.container)


def _pod_trace(
    key: ContainerKey, pod: str, rows: pd.DataFrame, model: UsageModel, start: pd.Timestamp
) -> PodTrace | None:
    """One pod container's scoring-period trace, or None when the pod is gone by ``start``."""
    times = rows["timestamp"].dt.as_unit("s").astype("int64").to_numpy()
    ages = container_ages(times, rows["oom_kill"].to_numpy(dtype=bool))
    growth = model.memory_growth_bytes_per_day / DAY
    noise = rows["memory_bytes"].to_numpy(dtype=float) / (model.memory_base_bytes + growth * ages)
    scored = (rows["timestamp"] >= start).to_numpy()
    if not scored.any():
        return None
    first = int(np.argmax(scored))
    return PodTrace(
        key=key,
        pod=pod,
        times=times[scored],
        cpu_demand=rows["cpu_demand_cores"].to_numpy(dtype=float)[scored],
        memory_noise=noise[scored],
        memory_age=float(ages[first]),
        memory_base=model.memory_base_bytes,
        memory_growth_per_second=growth,
    )

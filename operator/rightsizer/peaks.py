"""What a workload container's bucketed history says: peak-time CPU, memory levels, growth, spread.

Pure numpy/pandas over ``ContainerUsage.history`` (one row per pod and bucket). Every pod counts by
how long it ran: a pod's bucket weighs the share of the bucket it covered, so a canary that ran 15
minutes is 15 minutes of evidence among the days of the others, not a pod as heavy as any other.

Days are the 24-hour periods counted back from the evaluation time (the whole window when it is
shorter than a day). A day weighs ``0.5 ** (age / half_life)`` times the share of it the pods covered.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rightsizer.duration import format_duration
from rightsizer.model import HistoryGrid
from rightsizer.settings import DAY_SECONDS, RecommendationSettings


@dataclass(frozen=True)
class Daily:
    """One value per day of history, with the day's weight (recency x coverage); newest day first."""

    values: np.ndarray
    weights: np.ndarray
    coverage: np.ndarray
    """The share of each day that some pod covered."""

    def quantile(self, q: float) -> float:
        return weighted_quantile(self.values, self.weights, q)

    @property
    def days(self) -> int:
        return len(self.values)

    @property
    def covered_days(self) -> float:
        """Days counted by how much of each the pods covered (a day begun an hour ago is 1/24)."""
        return float(self.coverage.sum())

    def stability(self, low: float, high: float) -> float:
        """1 minus the spread between two percentiles of the days, relative to the higher one:
        1 when every day looks alike, 0 when the low days are nothing next to the high ones."""
        top = self.quantile(high)
        if self.days < 2 or top <= 0:
            return 1.0
        return float(np.clip(1 - (top - self.quantile(low)) / top, 0.0, 1.0))


@dataclass(frozen=True)
class CpuPeakTime:
    """Peak-time CPU of a workload container (cores) and the days it comes from."""

    cores: float
    """``peak_day_percentile`` of the days' peak times: what the request is sized from."""
    daily: Daily
    """Each day's peak time: the larger of its ``cpu_percentile`` of CPU windows and its busiest
    sustained bucket."""
    source: str
    """What set the peak time of the day the result comes from: ``p95`` (of the CPU windows), or
    ``busiest 30m`` (the busiest sustained bucket: a nightly batch, busy less than 72 minutes a day)."""
    maximum: float
    """The highest CPU window of any pod (cores), throttled pods as measured."""


@dataclass(frozen=True)
class MemoryLevels:
    """The working set of a workload container (bytes)."""

    level: float
    """``memory_percentile`` of the hourly mean working sets, pooled over pods by time and weighted
    by recency: the level the request covers."""
    peak: float
    """The highest sample of the window, any pod, however old: the limit never goes below it."""
    growth_per_second: float
    """Steady growth of the pods' current containers (0 when there is none to speak of)."""
    daily: Daily
    """Each day's highest hourly mean working set."""


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total (the inverted CDF)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, q * cumulative[-1] * (1 - 1e-12)))
    return float(values[order][min(index, len(values) - 1)])


def grouped_quantile(
    groups: np.ndarray, values: np.ndarray, weights: np.ndarray, q: float
) -> tuple[np.ndarray, np.ndarray]:
    """``weighted_quantile`` of each group at once: (the groups, sorted; their quantiles)."""
    order = np.lexsort((values, groups))
    groups, values, weights = groups[order], values[order], weights[order]
    unique, starts = np.unique(groups, return_index=True)
    sizes = np.diff(np.append(starts, len(groups)))
    cumulative = np.cumsum(weights)
    before = np.concatenate(([0.0], cumulative))[starts]
    totals = np.concatenate(([0.0], cumulative))[starts + sizes] - before
    within = cumulative - np.repeat(before, sizes)
    reached = within >= np.repeat(q * totals * (1 - 1e-12), sizes)
    first = np.minimum.reduceat(np.where(reached, np.arange(len(groups)), len(groups) - 1), starts)
    return unique, values[first]


def day_index(times: np.ndarray, grid: HistoryGrid) -> np.ndarray:
    """0 for buckets ending in the last 24 hours (the last window, when shorter), 1 the day before..."""
    return np.floor((grid.end - times) / _period(grid)).astype(int)


def cpu_peak_time(
    history: pd.DataFrame,
    grid: HistoryGrid,
    settings: RecommendationSettings,
    throttled_pods: Collection[str] = (),
) -> CpuPeakTime | None:
    """Peak-time CPU: per day, the larger of the ``cpu_percentile`` of all pods' CPU windows and the
    busiest sustained bucket; then the ``peak_day_percentile`` of the days.

    A bucket holds ``n`` CPU windows of which the history keeps the highest and the mean: it counts
    as one window at its peak and the others at the mean of the rest, so a bucket's mean and peak
    are both kept exactly. Windows of ``throttled_pods`` count ``throttling_limit_bump`` higher:
    their usage was capped by the limit and understates demand.
    """
    measured = history["cpu_peak"].to_numpy(float)
    rows = ~np.isnan(measured)
    if not rows.any():
        return None
    measured = measured[rows]
    throttled = np.isin(history["pod"].to_numpy()[rows], list(throttled_pods))
    bump = np.where(throttled, settings.throttling_limit_bump, 1.0)
    peak = measured * bump
    means = history["cpu_mean"].to_numpy(float)[rows]
    mean = np.where(np.isnan(means), measured, means) * bump
    coverage = history["coverage"].to_numpy(float)[rows]
    times = history["time"].to_numpy(float)[rows]
    n = grid.cpu_windows_per_bucket
    count = np.clip(np.round(coverage * n), 1, n)
    rest = np.clip((count * mean - peak) / np.maximum(count - 1, 1), 0.0, peak)
    days = day_index(times, grid)
    multiple = count > 1
    day_of_window = np.concatenate([days, days[multiple]])
    window_values = np.concatenate([peak, rest[multiple]])
    window_weights = np.concatenate([np.ones(len(peak)), (count - 1)[multiple]])
    day_list, percentile = grouped_quantile(
        day_of_window, window_values, window_weights, settings.cpu_percentile
    )
    busy = np.zeros(len(day_list))
    if grid.bucket_seconds >= settings.sustained_load_seconds:
        # A bucket's sustained level: the median pod by time (a minority pod, a canary or one hot
        # replica, does not make the workload busy), the day's busiest bucket.
        bucket_times, level = grouped_quantile(times, mean, coverage, 0.5)
        busy_days, busiest = _grouped_max(day_index(bucket_times, grid), level)
        busy = busiest[np.searchsorted(busy_days, day_list)]
    # To the nanocore: 200m x 1.5 is 300m, not 300.00000000000006m (which rounds up to 305m).
    values = np.round(np.maximum(percentile, busy), 9)
    daily = _daily(day_list, values, history, grid, settings)
    cores = daily.quantile(settings.peak_day_percentile)
    chosen = int(np.flatnonzero(values == cores)[0])
    if busy[chosen] > percentile[chosen]:
        source = f"busiest {format_duration(grid.bucket_seconds)}"
    else:
        source = f"p{settings.cpu_percentile * 100:g}"
    return CpuPeakTime(cores, daily, source, float(measured.max()))


def memory_levels(
    history: pd.DataFrame, grid: HistoryGrid, settings: RecommendationSettings, peak: float | None
) -> MemoryLevels | None:
    """The recent working-set level, the current growth and the days' levels; ``peak`` is the
    window's highest sample. None without working-set samples, or when they are all zero."""
    means = history["memory_mean"].to_numpy(float)
    rows = ~np.isnan(means) & (history["samples"].to_numpy(float) > 0)
    if not rows.any() or not peak or means[rows].max() <= 0:
        return None
    times = history["time"].to_numpy(float)[rows]
    means = means[rows]
    recency = np.power(0.5, (grid.end - times) / settings.half_life_seconds)
    level = weighted_quantile(
        means, history["coverage"].to_numpy(float)[rows] * recency, settings.memory_percentile
    )
    days, highest = _grouped_max(day_index(times, grid), means)
    return MemoryLevels(
        level=level,
        peak=max(peak, level),
        growth_per_second=memory_growth(history["pod"].to_numpy()[rows], times, means, settings),
        daily=_daily(days, highest, history, grid, settings),
    )


def memory_growth(
    pod_names: np.ndarray, all_times: np.ndarray, all_means: np.ndarray, settings: RecommendationSettings
) -> float:
    """Bytes per second the pods' current containers grow by, the median over the pods running now
    (the history's rows with working-set samples: each one's pod, time and mean working set).

    A pod's current container is its history since the working set last dropped by more than a
    quarter from one bucket to the next (a restart). Its growth is the slope of a straight line
    through the mean working sets of its last ``memory_trend_window``, when that line explains at
    least ``memory_trend_min_fit`` of their variance and they span at least half the window; else 0.
    """
    pods, _ = pd.factorize(pod_names)
    known = pods >= 0
    if not known.any():
        return 0.0
    now = np.nanmax(all_times)
    pods, all_times, all_means = pods[known], all_times[known], all_means[known]
    last = np.full(pods.max() + 1, np.nan)
    np.fmax.at(last, pods, all_times)  # each pod's last bucket (NaN skipped, as pandas' max does)
    slopes = []
    for pod in np.flatnonzero(last == now):  # the pods running now
        rows = np.flatnonzero(pods == pod)
        rows = rows[np.argsort(all_times[rows], kind="stable")]
        times, means = all_times[rows], all_means[rows]
        restarts = np.flatnonzero(means[1:] < 0.75 * means[:-1])
        since = restarts[-1] + 1 if restarts.size else 0
        recent = times >= times[-1] - settings.memory_trend_window_seconds
        keep = recent & (np.arange(len(times)) >= since)
        slopes.append(_fitted_slope(times[keep], means[keep], settings))
    return float(np.median(slopes)) if slopes else 0.0


def _fitted_slope(times: np.ndarray, values: np.ndarray, settings: RecommendationSettings) -> float:
    if len(times) < 3 or times[-1] - times[0] < settings.memory_trend_window_seconds / 2:
        return 0.0
    slope, intercept = np.polyfit(times - times[0], values, 1)
    residual = values - (slope * (times - times[0]) + intercept)
    variance = float(np.var(values))
    fit = 1 - float(np.var(residual)) / variance if variance > 0 else 0.0
    return float(slope) if slope > 0 and fit >= settings.memory_trend_min_fit else 0.0


def _grouped_max(groups: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(groups, return_inverse=True)
    highest = np.full(len(unique), -np.inf)
    np.maximum.at(highest, inverse, values)
    return unique, highest


def _daily(
    days: np.ndarray,
    values: np.ndarray,
    history: pd.DataFrame,
    grid: HistoryGrid,
    settings: RecommendationSettings,
) -> Daily:
    """``values`` of ``days``, each weighing its recency x its coverage (the share of its buckets in
    which some pod ran)."""
    period = _period(grid)
    times, per_time = np.unique(history["time"].to_numpy(float), return_inverse=True)
    covered = np.full(len(times), np.nan)
    np.fmax.at(covered, per_time, history["coverage"].to_numpy(float))  # per bucket, the most any pod ran
    bucket_days, per_day = np.unique(day_index(times, grid), return_inverse=True)
    coverage = np.bincount(per_day, weights=covered) / max(1, period // grid.bucket_seconds)
    share = np.clip(coverage[np.searchsorted(bucket_days, days)], 0.0, 1.0)
    return Daily(values, np.power(0.5, days * period / settings.half_life_seconds) * share, share)


def _period(grid: HistoryGrid) -> int:
    return min(DAY_SECONDS, grid.window_seconds)

"""What a workload container's bucketed history says: peak-time CPU, memory levels, growth, spread.

Pure numpy/pandas over ``ContainerUsage.history`` (one row per pod and bucket). Every pod counts by
how long it ran: a pod's bucket weighs the share of the bucket it covered, so a canary that ran 15
minutes is 15 minutes of evidence among the days of the others, not a pod as heavy as any other.

Days are the 24-hour periods counted back from the evaluation time (the whole window when it is
shorter than a day). CPU pools the windows of the days since the load last changed (``load_change_days``);
the days' own values (``Daily``), each weighing ``0.5 ** (age / half_life)`` times the share of it the pods
covered, give the bounds and the confidence.
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
    """What the request is sized from: ``percentile``, or the typical day's busiest half hour when
    that is a load the percentile's request would throttle (``recurring_load``)."""
    daily: Daily
    """Each day's peak time (its ``cpu_percentile`` of CPU windows, or its load in the half hour of
    the day that set ``cores``): the bounds and the confidence."""
    source: str
    """What set the peak time: ``p95`` (of the CPU windows), or ``busiest 30m`` (the busiest half hour
    of the typical day: a nightly batch, busy less than 72 minutes a day)."""
    maximum: float
    """The highest CPU window of any pod (cores), throttled pods as measured."""
    percentile: float
    """The ``cpu_percentile`` of all pods' CPU windows over the days pooled."""
    days: float
    """The days pooled, counted by how much of each the pods covered."""
    changed: bool
    """Those days are the ones since the load stepped up or down (``load_change_days``)."""


@dataclass(frozen=True)
class MemoryLevels:
    """The working set of a workload container (bytes)."""

    level: float
    """``memory_percentile`` of the half-hourly mean working sets of the window, pooled over pods by
    the time they ran: the level the request covers."""
    peak: float
    """The highest sample of the window, any pod, however old: the limit never goes below it."""
    growth_per_second: float
    """Steady growth of the pods' current containers (0 when there is none to speak of)."""
    daily: Daily
    """Each day's highest half-hourly mean working set."""
    typical: float
    """The median half-hourly mean working set: the level spikes are measured from."""
    swing: float
    """How far the peak rose above the highest half-hourly mean: samples swing above the mean of
    their half hour (a garbage collector's sawtooth, bursts of work) by at least this much at the top."""


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
    """Peak-time CPU: the ``cpu_percentile`` of all pods' CPU windows over the days since the load last
    changed (``days_since_change``; all the days when it did not), or the busiest half hour of the
    typical day when the percentile's request would throttle it (``busiest_time_of_day``).

    A bucket holds ``n`` CPU windows of which the history keeps the highest and the mean: it counts
    as one window at its peak and the others at the mean of the rest, so a bucket's mean and peak
    are both kept exactly. Windows of ``throttled_pods`` count ``throttling_limit_bump`` higher:
    their usage was capped by the limit and understates demand.
    """
    rows = history[history["cpu_peak"].notna()]
    if rows.empty:
        return None
    bump = np.where(rows["pod"].isin(list(throttled_pods)), settings.throttling_limit_bump, 1.0)
    peak = rows["cpu_peak"].to_numpy(float) * bump
    mean = rows["cpu_mean"].fillna(rows["cpu_peak"]).to_numpy(float) * bump
    coverage = rows["coverage"].to_numpy(float)
    times = rows["time"].to_numpy(float)
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
    # To the nanocore: 200m x 1.5 is 300m, not 300.00000000000006m (which rounds up to 305m).
    percentile = np.round(percentile, 9)
    since = days_since_change(percentile, settings.load_change_days)
    last_day = day_list[since - 1]
    pooled = day_of_window <= last_day
    pooled_percentile = round(
        weighted_quantile(window_values[pooled], window_weights[pooled], settings.cpu_percentile), 9
    )
    cores, values, source = pooled_percentile, percentile, f"p{settings.cpu_percentile * 100:g}"
    if grid.bucket_seconds >= settings.sustained_load_seconds:
        # A bucket's sustained level: the median pod by time (a minority pod, a canary or one hot
        # replica, does not make the workload busy).
        bucket_times, level = grouped_quantile(times, mean, coverage, 0.5)
        kept = day_index(bucket_times, grid) <= last_day
        busiest, slot = busiest_time_of_day(bucket_times[kept], level[kept], grid, settings)
        if busiest > throttled_multiple(settings) * cores:
            in_slot = time_of_day(bucket_times, grid) == slot
            slot_days, slot_levels = _grouped_max(day_index(bucket_times[in_slot], grid), level[in_slot])
            on_day = np.zeros(len(day_list))
            on_day[np.isin(day_list, slot_days)] = slot_levels[np.isin(slot_days, day_list)]
            values = np.maximum(percentile, np.round(on_day, 9))
            cores, source = round(busiest, 9), f"busiest {format_duration(grid.bucket_seconds)}"
    daily = _daily(day_list, values, history, grid, settings)
    return CpuPeakTime(
        cores=cores,
        daily=daily,
        source=source,
        maximum=float(rows["cpu_peak"].max()),
        percentile=pooled_percentile,
        days=float(daily.coverage[:since].sum()),
        changed=since < len(day_list),
    )


def days_since_change(values: np.ndarray, least: int) -> int:
    """How many of the newest days to pool (``values``: one a day, newest first): those since the load
    last stepped up or down, when at least ``least`` of the newest days are all below, or all above,
    the ``least`` or more days before them; else all of them. Where several splits would do, the one
    with the widest gap between the two sides (a step is one clean gap; days that happen to be low
    just before it leave a narrow one).

    One day apart is not a step (a quiet Sunday, a load test), and on days that vary by chance, the
    newest two being below (or above) all twelve before them happens about once in 45 histories: the
    days of a steady load are all pooled, and the more of them, the steadier their percentile."""
    since, widest = len(values), 0.0
    top = float(values.max()) if len(values) else 0.0
    for newest in range(least, len(values) - least + 1):
        recent, before = values[:newest], values[newest:]
        gap = max(before.min() - recent.max(), recent.min() - before.max())
        if gap > widest:
            since, widest = newest, float(gap)
    return since if top > 0 else len(values)


def time_of_day(times: np.ndarray, grid: HistoryGrid) -> np.ndarray:
    """Which bucket of the day (counted back from the evaluation time) each bucket end is."""
    per_day = max(1, _period(grid) // grid.bucket_seconds)
    return np.round(((grid.end - times) % _period(grid)) / grid.bucket_seconds).astype(int) % per_day


def busiest_time_of_day(
    bucket_times: np.ndarray, levels: np.ndarray, grid: HistoryGrid, settings: RecommendationSettings
) -> tuple[float, int]:
    """The busiest half hour of the typical day: for each bucket of the day (the same time every day),
    the ``peak_day_percentile`` of its days' levels; the highest, and which bucket of the day it is.

    A load that comes back at the same time every day (a nightly batch, a daily report) is in the
    typical day; the busiest half hour of each day, on real machines most often a burst at a time of
    its own, is not."""
    slots, typical = grouped_quantile(
        time_of_day(bucket_times, grid), levels, np.ones(len(levels)), settings.peak_day_percentile
    )
    busiest = int(np.argmax(typical))
    return float(typical[busiest]), int(slots[busiest])


def throttled_multiple(settings: RecommendationSettings) -> float:
    """How far above the percentile a load must be for the percentile's request to throttle it: the
    limit goes at most the band (``cpu_limit_ratio_max``) above a request of percentile / target, so a
    load below band / target times the percentile runs under the limit (4 / 0.75: 5.3x)."""
    band = max(settings.cpu_limit_ratio_max, settings.cpu_limit_ratio or 1.0)
    return band / settings.cpu_target_utilization


def memory_levels(
    history: pd.DataFrame, grid: HistoryGrid, settings: RecommendationSettings, peak: float | None
) -> MemoryLevels | None:
    """The working-set level, the typical level, the swing above the means, the current growth and the
    days' levels; ``peak`` is the window's highest sample. None without working-set samples, or when
    they are all zero.

    Every half hour of the window counts alike (by the time the pods ran): memory is not compressible,
    and a level the container held in the window is one it may hold again (the recent days alone
    under-sized real machines, docs/recommendations.md)."""
    rows = history[history["memory_mean"].notna() & (history["samples"] > 0)]
    if rows.empty or not peak or rows["memory_mean"].max() <= 0:
        return None
    times = rows["time"].to_numpy(float)
    means = rows["memory_mean"].to_numpy(float)
    coverage = rows["coverage"].to_numpy(float)
    level = weighted_quantile(means, coverage, settings.memory_percentile)
    days, highest = _grouped_max(day_index(times, grid), means)
    peak = max(peak, level)
    return MemoryLevels(
        level=level,
        peak=peak,
        growth_per_second=memory_growth(rows, settings),
        daily=_daily(days, highest, history, grid, settings),
        typical=weighted_quantile(means, coverage, 0.5),
        swing=max(0.0, peak - float(means.max())),
    )


def memory_growth(history: pd.DataFrame, settings: RecommendationSettings) -> float:
    """Bytes per second the pods' current containers grow by, the median over the pods running now.

    A pod's current container is its history since the working set last dropped by more than a
    quarter from one bucket to the next (a restart). Its growth is the slope of a straight line
    through the mean working sets of its last ``memory_trend_window``, when that line explains at
    least ``memory_trend_min_fit`` of their variance and they span at least half the window; else 0.
    """
    pods, _ = pd.factorize(history["pod"])
    known = pods >= 0
    pods, all_times = pods[known], history["time"].to_numpy(float)[known]
    all_means = history["memory_mean"].to_numpy(float)[known]
    if not len(pods):
        return 0.0
    last = np.full(pods.max() + 1, np.nan)
    np.fmax.at(last, pods, all_times)  # each pod's last bucket (NaN skipped, as pandas' max does)
    slopes = []
    for pod in np.flatnonzero(last == history["time"].max()):  # the pods running now
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

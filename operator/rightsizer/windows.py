"""A bucket's CPU mean and peak from two cheap queries, and the buckets where those are not the tiled
windows' values and have to be asked for as such (pure numpy).

The history's CPU values are tiled increases (``promql.tiled_rate``): a window's is the counter's last
sample in it minus its last sample before it, or, where that fails (the counter's first window, a reset,
a gap), the increase within the window. Asked for as such, every CPU window of 14 days is a binary
expression evaluated in a subquery, which cost Prometheus 7.5 s for 357 containers (docs/benchmarks.md).

Where a pod's samples come steadily, a window's tiled increase is just the difference of the counter's
last sample in it and in the window before. So the first round of queries asks only for the counter at
each bucket end (``cpu_counter``, the bare selector) and for the most each bucket's windows grew
(``cpu_increase``: ``idelta`` of the counter at each window's end, in a subquery, ``max_over_time`` of
those): functions Prometheus evaluates series by series, without matching labels at every window.
From them, per series and bucket ``k``: the mean is ``(counter(k) - counter(k-1)) / bucket`` and the peak
``cpu_increase(k) / window``, the very same floating-point operations on the very same samples as the
tiled expressions, wherever the bucket is *regular*:

- the pod-container's working-set samples (scraped with the CPU counter) are as many in bucket ``k`` and
  ``k-1`` as in the most of its buckets around (``REGULAR_SPAN``): no sample is missing, so the pod ran
  through both buckets, every window has a sample and a sample before it within the lookback, and no
  stale marker (a failed scrape) lies between;
- those samples are at least 3 to a CPU window and at most ``MAX_SPACING_SECONDS`` apart;
- the counter is there at both bucket ends and did not go down in the bucket or the one before, and
  the windows' increases are there and not negative (no reset).

Every other bucket of a pod that has CPU series (its first and last, those around a gap, a reset, a
change of scrape interval, a missing sample) is *irregular*: its values are asked for in a second round,
with the tiled expressions themselves at that bucket's end (``promql.QueryScope.exact_cpu_query``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REGULAR_SPAN = 6
"""Buckets on each side whose most samples a regular bucket must have (3 hours of 30-minute buckets)."""
MAX_SPACING_SECONDS = 100
"""Samples further apart than this (or a third of the CPU window) make no bucket regular."""


@dataclass(frozen=True)
class CpuBuckets:
    """Per pod-container and bucket: the CPU mean and peak (cores; NaN where there are none) and whether
    they are only placeholders, to be replaced by the tiled expressions' values."""

    mean: np.ndarray
    peak: np.ndarray
    irregular: np.ndarray


def cpu_buckets(
    counter: np.ndarray,
    increase: np.ndarray | None,
    series_key: np.ndarray,
    samples: np.ndarray,
    bucket_seconds: int,
    window_seconds: int,
) -> CpuBuckets:
    """``counter`` (series x buckets + 1: the counter at the end of every bucket and of the one before the
    first), ``increase`` (the same shape: ``cpu_increase``; None when a bucket is one CPU window, and the
    peak is the mean), ``series_key`` (each series' pod-container, an index into ``samples``),
    ``samples`` (pod-containers x buckets + 1: working-set samples, 0 for none). The first bucket is
    irregular: whether the one before it was is not known."""
    keys, columns = samples.shape
    buckets = columns - 1
    before, after = counter[:, :-1], counter[:, 1:]
    with np.errstate(invalid="ignore"):
        mean = (after - before) / bucket_seconds
        steady = ~np.isnan(before) & ~np.isnan(after) & (after >= before)
        previous_steady = np.zeros_like(steady)
        previous_steady[:, 1:] = steady[:, :-1]
        steady &= previous_steady
        if increase is None:
            peak = mean
            involved = ~np.isnan(before) | ~np.isnan(after)
        else:
            grown = increase[:, 1:]
            peak = grown / window_seconds
            steady &= ~np.isnan(grown) & (grown >= 0)
            involved = ~np.isnan(before) | ~np.isnan(after) | ~np.isnan(grown)
    unsteady = np.zeros((keys, buckets), dtype=bool)
    np.logical_or.at(unsteady, series_key, involved & ~steady)
    has_cpu = np.zeros((keys, buckets), dtype=bool)
    np.logical_or.at(has_cpu, series_key, involved)
    irregular = has_cpu & (unsteady | ~_full(samples, bucket_seconds, window_seconds))
    return CpuBuckets(_fold(mean, series_key, keys), _fold(peak, series_key, keys), irregular)


def _full(samples: np.ndarray, bucket_seconds: int, window_seconds: int) -> np.ndarray:
    """Per pod-container and bucket: as many samples in it and the bucket before as the most of the
    buckets around, and enough of them (see the module's docstring)."""
    span = 2 * REGULAR_SPAN + 1
    padded = np.pad(samples, ((0, 0), (REGULAR_SPAN, REGULAR_SPAN)))
    most = np.lib.stride_tricks.sliding_window_view(padded, span, axis=1).max(axis=2)[:, 1:]
    spacing = min(window_seconds / 3, MAX_SPACING_SECONDS)
    enough = math.ceil(bucket_seconds / spacing) + 1
    full: np.ndarray = (samples[:, :-1] == most) & (samples[:, 1:] == most) & (most >= enough)
    return full


def _fold(values: np.ndarray, series_key: np.ndarray, keys: int) -> np.ndarray:
    """The largest value of each pod-container's series (NaN where none has one), as ``max by``."""
    folded = np.full((keys, values.shape[1]), np.nan)
    np.fmax.at(folded, series_key, values)
    return folded

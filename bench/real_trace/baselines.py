"""The other strategies, computed from the trace itself: KRR ``simple``, a VPA-like recommender, the seed
rule and an oracle that sees the scoring days.

Each gives one allocation per VM: a frame indexed by ``vm`` with ``cpu_request`` and ``cpu_limit``
(cores), ``memory_request`` and ``memory_limit`` (MiB); a NaN limit is none. The rules are those of the
issue's table (issue 16); VPA's histogram, half-life and margins are the quality benchmark's
(``bench/quality/strategies.py``), and its floors (25m, 250Mi a pod) and KRR's (10m, 100Mi) are left
out, as in the issue's table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from bench.quality.strategies import (
    KRR_CPU_PERCENTILE,
    KRR_MEMORY_BUFFER,
    VPA_CPU_HISTOGRAM,
    VPA_CPU_PERCENTILE,
    VPA_HALF_LIFE_SECONDS,
    VPA_MEMORY_HISTOGRAM,
    VPA_MEMORY_PERCENTILE,
    VPA_SAFETY_MARGIN,
)

from .trace import DAY

MIB = 1024 * 1024
ALLOCATION_COLUMNS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
SEED_CPU_PERCENTILE = 0.95
SEED_CPU_TARGET = 0.75
SEED_CPU_LIMIT_RATIO = 3.0
SEED_MEMORY_LIMIT_RATIO = 2.0
"""The seed rule: CPU p95 / 0.75 with a limit 3x the request; memory the peak, its limit 2x."""
ORACLE_CPU_PERCENTILE = 0.95


def allocation(
    cpu_request: pd.Series, cpu_limit: pd.Series | None, memory_request: pd.Series, memory_limit: pd.Series
) -> pd.DataFrame:
    """One strategy's allocations as a frame (``cpu_limit`` None: no CPU limit anywhere)."""
    frame = pd.DataFrame({"cpu_request": cpu_request, "memory_request": memory_request})
    frame["cpu_limit"] = np.nan if cpu_limit is None else cpu_limit
    frame["memory_limit"] = memory_limit
    frame.index.name = "vm"
    return frame[list(ALLOCATION_COLUMNS)].astype(float)


def krr_simple(learning: pd.DataFrame) -> pd.DataFrame:
    """CPU: the p95 of the samples (linear, as Prometheus' ``quantile_over_time``), no limit; memory: the
    peak x 1.15, request and limit."""
    per_vm = learning.groupby("vm")
    memory = per_vm["memory_mib"].max() * (1 + KRR_MEMORY_BUFFER)
    return allocation(per_vm["cpu_cores"].quantile(KRR_CPU_PERCENTILE), None, memory, memory)


def seed_rule(learning: pd.DataFrame) -> pd.DataFrame:
    """CPU: the p95 / 0.75, limit 3x; memory: the peak, limit 2x (rightsizer's first engine, issue 16)."""
    per_vm = learning.groupby("vm")
    cpu = per_vm["cpu_cores"].quantile(SEED_CPU_PERCENTILE) / SEED_CPU_TARGET
    peak = per_vm["memory_mib"].max()
    return allocation(cpu, cpu * SEED_CPU_LIMIT_RATIO, peak, peak * SEED_MEMORY_LIMIT_RATIO)


def oracle(scoring: pd.DataFrame) -> pd.DataFrame:
    """What the scoring days used, without headroom: CPU their p95, memory their peak (request = limit)."""
    per_vm = scoring.groupby("vm")
    peak = per_vm["memory_mib"].max()
    return allocation(per_vm["cpu_cores"].quantile(ORACLE_CPU_PERCENTILE), None, peak, peak)


def vpa_like(learning: pd.DataFrame) -> pd.DataFrame:
    """VPA's recommender target: CPU the p90 of a decaying histogram of the samples (half-life 24 h),
    memory the p90 of the days' peaks (24 h windows from the VM's first sample, decaying alike), each
    x 1.15; no CPU limit, the memory limit at the request."""
    end = float(learning["ts"].max())
    cpu, memory = {}, {}
    for vm, rows in learning.groupby("vm"):
        ts = rows["ts"].to_numpy(float)
        weights = _decay(ts, end)
        cpu[vm] = VPA_CPU_HISTOGRAM.percentile(rows["cpu_cores"].to_numpy(float), weights, VPA_CPU_PERCENTILE)
        day = (ts - ts[0]) // DAY
        peaks = rows.groupby(day).agg(peak=("memory_mib", "max"), last=("ts", "max"))
        peak_bytes = peaks["peak"].to_numpy(float) * MIB
        memory[vm] = VPA_MEMORY_HISTOGRAM.percentile(
            peak_bytes, _decay(peaks["last"].to_numpy(float), end), VPA_MEMORY_PERCENTILE
        )
    margin = 1 + VPA_SAFETY_MARGIN
    memory_mib = pd.Series(memory) * margin / MIB
    return allocation(pd.Series(cpu) * margin, None, memory_mib, memory_mib)


def _decay(ts: np.ndarray, end: float) -> np.ndarray:
    return np.power(0.5, (end - ts) / VPA_HALF_LIFE_SECONDS)

"""Plain data passed between the metric source, the engine, the report and the operator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from rightsizer.units import RESOURCES, format_quantity


@dataclass(frozen=True, order=True)
class ContainerKey:
    """One container of one workload (all its pods, across rollouts)."""

    namespace: str
    kind: str
    name: str
    container: str


@dataclass(frozen=True)
class Resources:
    """Requests and limits in base units (cores, bytes); a missing resource is not set."""

    requests: dict[str, Decimal] = field(default_factory=dict)
    limits: dict[str, Decimal] = field(default_factory=dict)

    def to_quantities(self) -> dict[str, dict[str, str]]:
        """As a Kubernetes ``resources`` block: ``{"requests": {"cpu": "150m"}, "limits": {...}}``."""
        return {
            "requests": {r: format_quantity(r, v) for r, v in self.requests.items() if r in RESOURCES},
            "limits": {r: format_quantity(r, v) for r, v in self.limits.items() if r in RESOURCES},
        }


@dataclass(frozen=True)
class HistoryGrid:
    """How one batch of queries cut the history window into buckets (``promql.QueryScope``)."""

    end: float
    """The evaluation time: the end of the last bucket (epoch seconds)."""
    window_seconds: int
    bucket_seconds: int
    cpu_window_seconds: int
    """CPU usage is a rate over windows this long; a bucket holds a whole number of them."""

    @property
    def cpu_windows_per_bucket(self) -> int:
        return max(1, self.bucket_seconds // self.cpu_window_seconds)


HISTORY_COLUMNS = ("pod", "time", "cpu_mean", "cpu_peak", "memory_mean", "samples", "coverage")
"""One row per pod and bucket in which the pod had samples: ``time`` is the end of the bucket (epoch
seconds); ``cpu_mean`` the pod's mean CPU while it ran in the bucket, ``cpu_peak`` its highest CPU
window (cores); ``memory_mean`` its mean working set (bytes); ``samples`` its working-set samples
and ``coverage`` the share of the bucket it ran (0-1]."""


def empty_history() -> pd.DataFrame:
    return pd.DataFrame(
        {name: pd.Series(dtype="object" if name == "pod" else "float") for name in HISTORY_COLUMNS}
    )


@dataclass(frozen=True)
class PodThrottling:
    """CFS periods of one pod of a workload container over the window, and the CPU limit it ran under."""

    pod: str
    limit_cores: float | None
    """The CPU limit in force (CFS quota / period); None when it is not known (no cAdvisor spec
    series, no kube-state-metrics limit): then it is taken to be the limit in force today."""
    periods: float
    throttled_periods: float

    @property
    def ratio(self) -> float | None:
        return self.throttled_periods / self.periods if self.periods > 0 else None

    def under(self, limit_cores: Decimal | None) -> bool:
        """Whether this pod ran under ``limit_cores`` (a pod under an unknown limit counts as under it)."""
        if self.limit_cores is None:
            return True
        return limit_cores is not None and _same_cpu(self.limit_cores, limit_cores)


@dataclass(frozen=True)
class ContainerUsage:
    """What Prometheus saw of one container over the history window, all its pods together."""

    history: pd.DataFrame = field(default_factory=empty_history, compare=False)
    """The bucketed history of every pod (``HISTORY_COLUMNS``): the engine's statistics are made
    from it (``rightsizer.peaks``)."""
    grid: HistoryGrid | None = None
    throttling: tuple[PodThrottling, ...] = ()
    """Per pod: CFS periods and the CPU limit they ran under. Throttling measured under a limit that
    is no longer in force says nothing about the limit in force now."""
    memory_peak_bytes: float | None = None
    """The highest working-set sample of any pod in the window (raw samples, no subquery)."""
    oom_kills: int = 0
    oom_killed_memory_bytes: float | None = None
    """Memory at which the container was killed: the memory limit in force then, or its peak."""
    owner_source: str = "kube-state-metrics"

    # Computed once: the engine reads them several times, and the operator's evaluations of one
    # batch share the same usage (controller/batches.py). The usage and its history are never changed.
    @cached_property
    def pods(self) -> int:
        return int(self.history["pod"].nunique())

    @cached_property
    def samples(self) -> int:
        return int(self.history["samples"].sum())

    @cached_property
    def covered_seconds(self) -> float:
        """How much of the window some pod ran: per bucket the largest coverage of any pod."""
        if self.grid is None or self.history.empty:
            return 0.0
        # numpy, not a pandas groupby: this is read at every evaluation (a tenth of the engine's time
        # on a 14-day history; rightsizer backtest calls the engine thousands of times).
        times, per_time = np.unique(self.history["time"].to_numpy(float), return_inverse=True)
        covered = np.full(len(times), np.nan)
        np.fmax.at(covered, per_time, self.history["coverage"].to_numpy(float))
        return float(np.nansum(covered) * self.grid.bucket_seconds)

    @cached_property
    def span_seconds(self) -> float:
        """From the start of the first bucket with samples to the end of the last one."""
        if self.grid is None or self.history.empty:
            return 0.0
        times = self.history["time"]
        return float(times.max() - times.min() + self.grid.bucket_seconds)

    @property
    def throttled_ratio(self) -> float | None:
        """Throttled periods / periods of all pods under any limit; None when none ran with a CPU limit."""
        return _pooled_ratio(self.throttling)

    def throttled_ratio_under(self, limit_cores: Decimal | None) -> float | None:
        """The pooled ratio of the pods that ran under ``limit_cores`` (or under an unknown limit)."""
        return _pooled_ratio([t for t in self.throttling if t.under(limit_cores)])


def _pooled_ratio(pods: Sequence[PodThrottling]) -> float | None:
    periods = sum(t.periods for t in pods)
    return sum(t.throttled_periods for t in pods) / periods if periods > 0 else None


def _same_cpu(cores: float, other: Decimal) -> bool:
    """Equal to the millicore: CFS quota / period is exact, a float round trip may not be."""
    return round(cores * 1000) == round(float(other) * 1000)


@dataclass(frozen=True)
class Confidence:
    """How far a recommendation can be trusted, per resource, from 0 (not at all) to 1."""

    cpu: float
    memory: float
    days: float
    """Days of history the pods covered (a bucket counts when some pod ran in it)."""
    coverage: float
    """Share of the history window that some pod covered."""

    @property
    def level(self) -> str:
        """``high``, ``medium`` or ``low``: the weaker resource's score (see ``CONFIDENCE_LEVELS``)."""
        score = min(self.cpu, self.memory)
        return next(name for name, least in CONFIDENCE_LEVELS if score >= least)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "cpu": round(self.cpu, 2),
            "memory": round(self.memory, 2),
            "days": round(self.days, 2),
            "coverage": round(self.coverage, 2),
        }


CONFIDENCE_LEVELS = (("high", 0.75), ("medium", 0.4), ("low", 0.0))


@dataclass(frozen=True)
class Recommendation:
    """The engine's answer for one container: new resources, or None with the reason why not."""

    key: ContainerKey
    current: Resources
    recommended: Resources | None
    qos_class: str | None
    reason: str
    evidence: dict[str, Any]
    warnings: tuple[str, ...] = ()
    confidence: Confidence | None = None
    lower_bound: Resources | None = None
    """Requests the evidence still supports below the recommendation (limits in proportion)."""
    upper_bound: Resources | None = None
    """Requests the evidence still supports above it. Thin evidence widens both bounds."""
    confident: Resources | None = None
    """The part of the change the evidence is sure of, for Auto mode: each current request moved
    toward the recommendation but no further than the bound on the far side (down to the upper
    bound, up to the lower bound: unchanged when it is already between them); the recommendation
    itself where nothing is set. Limits keep the recommended limit/request ratio, and never drop
    below what OOM kills or throttling under the limit in force demand."""

    @property
    def ready(self) -> bool:
        return self.recommended is not None

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape of ``rightsizer recommend -o json`` and of policy status."""
        data: dict[str, Any] = {
            "namespace": self.key.namespace,
            "kind": self.key.kind,
            "name": self.key.name,
            "container": self.key.container,
            "current": self.current.to_quantities(),
            "recommended": self.recommended.to_quantities() if self.recommended else None,
            "qosClass": self.qos_class,
            "evidence": self.evidence,
            "reason": self.reason,
        }
        if self.warnings:
            data["warnings"] = list(self.warnings)
        if self.confidence is not None:
            data["confidence"] = self.confidence.to_dict()
        if self.lower_bound is not None and self.upper_bound is not None:
            data["bounds"] = {
                "lower": self.lower_bound.to_quantities(),
                "upper": self.upper_bound.to_quantities(),
            }
        if self.confident is not None:
            data["confident"] = self.confident.to_quantities()
        return data

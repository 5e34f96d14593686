"""Money: what requests cost, from a price per core-hour and per GiB-hour of request.

Requests, not limits and not use: a node's capacity is spent by what its pods request (the scheduler
places by requests), so a request is what a cluster pays for, used or not, and it is what rightsizer
changes. Prices default to a public list price (``settings.CPU_PRICE_PER_CORE_HOUR``); a month is
``HOURS_PER_MONTH`` hours. Pure functions: no Prometheus, no Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from rightsizer.model import ContainerUsage, Recommendation, Resources
from rightsizer.settings import (
    CPU_PRICE_PER_CORE_HOUR,
    DAY_SECONDS,
    HOURS_PER_MONTH,
    MEMORY_PRICE_PER_GIB_HOUR,
    SettingsError,
)
from rightsizer.units import CPU, MEMORY

GIB = 1024**3


@dataclass(frozen=True)
class Prices:
    """Price of one core of CPU request and of one GiB of memory request for an hour."""

    cpu_per_core_hour: float = CPU_PRICE_PER_CORE_HOUR
    memory_per_gib_hour: float = MEMORY_PRICE_PER_GIB_HOUR

    def __post_init__(self) -> None:
        for name, value in (
            ("--cpu-price", self.cpu_per_core_hour),
            ("--memory-price", self.memory_per_gib_hour),
        ):
            if not np.isfinite(value) or value < 0:
                raise SettingsError(f"{name} must be a number >= 0, got {value}")

    def hourly(self, requests: Mapping[str, Decimal]) -> float:
        """What ``requests`` (cores, bytes) cost an hour; a resource not requested costs nothing."""
        cores = float(requests.get(CPU, 0))
        gib = float(requests.get(MEMORY, 0)) / GIB
        return cores * self.cpu_per_core_hour + gib * self.memory_per_gib_hour

    def monthly(self, resources: Resources, replicas: float) -> float:
        """What ``replicas`` pods with these requests cost a month."""
        return self.hourly(resources.requests) * replicas * HOURS_PER_MONTH

    def to_dict(self) -> dict[str, float]:
        return {"cpuPerCoreHour": self.cpu_per_core_hour, "memoryPerGiBHour": self.memory_per_gib_hour}


DEFAULT_PRICES = Prices()


@dataclass(frozen=True)
class MonthlyCost:
    """Today's requests and the recommended ones, a month each."""

    current: float
    recommended: float

    @property
    def difference(self) -> float:
        """Recommended minus current: below zero is a saving."""
        return self.recommended - self.current

    def to_dict(self) -> dict[str, float]:
        return {
            "current": round(self.current, 2),
            "recommended": round(self.recommended, 2),
            "difference": round(self.difference, 2),
        }


def recommendation_cost(rec: Recommendation, replicas: float, prices: Prices) -> MonthlyCost:
    """A container's month at today's requests and at the recommended ones (today's without one)."""
    after = rec.recommended or rec.current
    return MonthlyCost(prices.monthly(rec.current, replicas), prices.monthly(after, replicas))


def total_cost(
    recommendations: Iterable[Recommendation], replicas: Mapping[tuple[str, str], float], prices: Prices
) -> MonthlyCost:
    """The month of every container, ``replicas`` per workload (kind, name; 1 when not known)."""
    current = recommended = 0.0
    for rec in recommendations:
        cost = recommendation_cost(rec, replicas.get((rec.key.kind, rec.key.name), 1.0), prices)
        current += cost.current
        recommended += cost.recommended
    return MonthlyCost(current, recommended)


def running_replicas(usage: ContainerUsage) -> float:
    """Pods of the container that ran on average over the last day of its history, from its first
    bucket in that day to the last: 3 replicas are 3, an autoscaled 2 to 6 its daily mean, a workload
    six hours old its pods, a CronJob's job that runs an hour a day about 1/24. 0 without history.

    A pod's share of a bucket is its coverage (from its own samples, ``collect.bucket_coverage``): 1 in
    every bucket it ran whole, wherever its scrapes fall. The last bucket with samples is left out when
    there are others: the history ends inside it (the last scrape, minutes before the query on a slow
    run, or a history that stopped before the window's end), so its coverage is the part of it the
    history reached, not the part the pods ran. 3 steady pods are 3, exactly, however late the query
    comes."""
    history = usage.history
    if usage.grid is None or history.empty:
        return 0.0
    times = history["time"].to_numpy(float)
    coverage = history["coverage"].to_numpy(float)
    complete = times < times.max()
    if complete.any():
        times, coverage = times[complete], coverage[complete]
    last = times.max()
    recent = times > last - DAY_SECONDS
    buckets = round((last - times[recent].min()) / usage.grid.bucket_seconds) + 1
    return float(coverage[recent].sum() / buckets)

"""Every series labelled with a policy, kept as plain numbers and made into metric families only
when ``/metrics`` is scraped.

prometheus_client keeps an object per label set, each with a value object and a lock (a histogram
one per bucket): with 1,000 policies, their 34,000 series took 20 MiB of the operator's memory
(tracemalloc; docs/benchmarks.md). Here a policy's series are one dict of numbers, dropped whole
when the policy is deleted (``forget``). The names, labels and values scraped are the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

POLICY_LABELS = ("namespace", "policy")
"""The first labels of every family here: whose series it is."""
PolicyKey = tuple[str, str]


@dataclass(frozen=True, eq=False)
class Family:
    """One metric family of per-policy series; ``labels`` come after ``POLICY_LABELS``."""

    name: str
    documentation: str
    type: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    """A histogram's upper bounds, +Inf left out."""


@dataclass(frozen=True)
class _Histogram:
    counts: tuple[int, ...]
    """Observations per bucket (not cumulative), the last one above every bound."""
    total: float


Series = tuple[Family, tuple[str, ...]]
"""A family and the values of its labels after the policy's."""
Value = float | _Histogram


class PolicySeries(Collector):
    """The store of every policy's series (thread-safe: handler threads write, the HTTP thread reads)."""

    def __init__(self) -> None:
        self._families: list[Family] = []
        self._values: dict[PolicyKey, dict[Series, Value]] = {}
        self._lock = threading.Lock()

    def family(
        self,
        name: str,
        documentation: str,
        type_: Literal["counter", "gauge", "histogram"],
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = (),
    ) -> Family:
        """Declare a family (scraped even while it has no series)."""
        declared = Family(name, documentation, type_, labels, tuple(sorted(buckets)))
        self._families.append(declared)
        return declared

    def inc(self, family: Family, policy: PolicyKey, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            values = self._values.setdefault(policy, {})
            key = (family, labels)
            values[key] = float(values.get(key, 0.0)) + amount  # type: ignore[arg-type]

    def observe(self, family: Family, policy: PolicyKey, amount: float, *labels: str) -> None:
        """One observation of a histogram."""
        bucket = next((i for i, bound in enumerate(family.buckets) if amount <= bound), len(family.buckets))
        with self._lock:
            values = self._values.setdefault(policy, {})
            key = (family, labels)
            old = values.get(key)
            if not isinstance(old, _Histogram):
                old = _Histogram((0,) * (len(family.buckets) + 1), 0.0)
            counts = list(old.counts)
            counts[bucket] += 1
            values[key] = _Histogram(tuple(counts), old.total + amount)

    def set_gauges(self, policy: PolicyKey, gauges: Mapping[Series, float]) -> None:
        """Replace every gauge series of the policy with ``gauges``: those it no longer has are gone."""
        with self._lock:
            kept = {k: v for k, v in self._values.get(policy, {}).items() if k[0].type != "gauge"}
            self._values[policy] = {**kept, **gauges}

    def forget(self, policy: PolicyKey) -> None:
        """Every series of a deleted policy goes."""
        with self._lock:
            self._values.pop(policy, None)

    def describe(self) -> Iterator[Metric]:
        for family in self._families:
            yield _empty(family)

    def collect(self) -> Iterator[Metric]:
        """One family at a time: a scrape holds the samples of one family, not of all."""
        with self._lock:
            snapshot = [(policy, list(values.items())) for policy, values in self._values.items()]
        for family in self._families:
            metric = _empty(family)
            for policy, values in snapshot:
                for (of, labels), value in values:
                    if of is not family:
                        continue
                    if isinstance(value, _Histogram):
                        assert isinstance(metric, HistogramMetricFamily)
                        metric.add_metric([*policy, *labels], _cumulative(family, value), value.total)
                    else:
                        metric.add_metric([*policy, *labels], value)  # type: ignore[attr-defined]
            yield metric


def _empty(family: Family) -> Metric:
    labels = [*POLICY_LABELS, *family.labels]
    kinds: dict[str, type[Metric]] = {
        "counter": CounterMetricFamily,
        "gauge": GaugeMetricFamily,
        "histogram": HistogramMetricFamily,
    }
    return kinds[family.type](family.name, family.documentation, labels=labels)  # type: ignore[call-arg]


def _cumulative(family: Family, histogram: _Histogram) -> list[tuple[str, float]]:
    bounds = [floatToGoString(bound) for bound in family.buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
    running, buckets = 0, []
    for bound, count in zip(bounds, histogram.counts, strict=True):
        running += count
        buckets.append((bound, float(running)))
    return buckets

"""Plain data passed between the metric source, the engine, the report and the operator."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rightsizer.quantity import RESOURCES, format_quantity


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
class LimitThrottling:
    """CFS periods of the pods of one workload container that ran under one CPU limit."""

    limit_cores: float | None
    """The CPU limit in force (CFS quota / period); None when it is not known (no cAdvisor spec
    series, no kube-state-metrics limit): then it is taken to be the limit in force today."""
    periods: float
    throttled_periods: float
    cpu_percentile_cores: float | None = None
    """The highest peak-time CPU usage of these pods: capped by the limit when throttled."""

    @property
    def ratio(self) -> float | None:
        return self.throttled_periods / self.periods if self.periods > 0 else None


@dataclass(frozen=True)
class ContainerUsage:
    """What Prometheus saw of one container over the history window, all its pods together."""

    cpu_percentile_cores: float | None = None
    """The configured percentile of short-window CPU usage, from the busiest pod."""
    cpu_max_cores: float | None = None
    """The highest short-window CPU usage of any pod."""
    throttling: tuple[LimitThrottling, ...] = ()
    """CFS periods by the CPU limit they ran under: throttling measured under a limit that is no
    longer in force says nothing about the limit in force now."""
    memory_peak_bytes: float | None = None
    """The highest working-set sample of any pod (raw samples, no subquery)."""
    oom_kills: int = 0
    oom_killed_memory_bytes: float | None = None
    """Memory at which the container was killed: the memory limit in force then, or its peak."""
    samples: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    pods: int = 0
    owner_source: str = "kube-state-metrics"

    @property
    def history_seconds(self) -> float:
        if self.first_seen is None or self.last_seen is None:
            return 0.0
        return max(0.0, self.last_seen - self.first_seen)

    @property
    def throttled_ratio(self) -> float | None:
        """Throttled periods / periods under any limit, or None when it never ran with a CPU limit."""
        periods = sum(t.periods for t in self.throttling)
        return sum(t.throttled_periods for t in self.throttling) / periods if periods > 0 else None

    def throttling_under(self, limit_cores: Decimal | None) -> LimitThrottling | None:
        """The periods measured under ``limit_cores`` (and under an unknown limit), pooled."""
        matching = [
            t
            for t in self.throttling
            if t.limit_cores is None or (limit_cores is not None and _same_cpu(t.limit_cores, limit_cores))
        ]
        if not matching:
            return None
        percentiles = [t.cpu_percentile_cores for t in matching if t.cpu_percentile_cores is not None]
        return LimitThrottling(
            limit_cores=float(limit_cores) if limit_cores is not None else None,
            periods=sum(t.periods for t in matching),
            throttled_periods=sum(t.throttled_periods for t in matching),
            cpu_percentile_cores=max(percentiles, default=None),
        )


def _same_cpu(cores: float, other: Decimal) -> bool:
    """Equal to the millicore: CFS quota / period is exact, a float round trip may not be."""
    return round(cores * 1000) == round(float(other) * 1000)


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
        return data

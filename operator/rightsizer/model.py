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
class ContainerUsage:
    """What Prometheus saw of one container over the history window, all its pods together."""

    cpu_percentile_cores: float | None = None
    """The configured percentile of short-window CPU usage, from the busiest pod."""
    cpu_max_cores: float | None = None
    """The highest short-window CPU usage of any pod."""
    cfs_periods: float = 0.0
    cfs_throttled_periods: float = 0.0
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
        """Throttled periods / periods, or None when the container never ran with a CPU limit."""
        if self.cfs_periods <= 0:
            return None
        return self.cfs_throttled_periods / self.cfs_periods


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

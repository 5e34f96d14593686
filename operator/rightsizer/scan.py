"""One pass over a Prometheus: discover workloads, gather their history, recommend for each."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rightsizer.collect import failed_workloads, workload_containers
from rightsizer.cost import running_replicas
from rightsizer.engine import recommend
from rightsizer.hpa import from_state_metrics, with_autoscalers
from rightsizer.model import ContainerKey, Recommendation
from rightsizer.promql import LabelConfig, QueryScope
from rightsizer.settings import CPU_WINDOW_SECONDS, HISTORY_WINDOW_SECONDS, HPA_MODE, RecommendationSettings
from rightsizer.shards import FailedScope
from rightsizer.source import ProgressCallback, PrometheusSource


@dataclass(frozen=True)
class ScanRequest:
    """What to scan: namespaces (empty = all with container series), history window, label names."""

    namespaces: tuple[str, ...] = ()
    history_seconds: int = HISTORY_WINDOW_SECONDS
    labels: LabelConfig = field(default_factory=LabelConfig)
    cpu_window_seconds: int = CPU_WINDOW_SECONDS
    hpa: str = HPA_MODE
    """What is done with a request a HorizontalPodAutoscaler scales on (``rightsizer.hpa``)."""


@dataclass(frozen=True)
class ScanResult:
    recommendations: list[Recommendation]
    namespaces: list[str]
    queries_sent: int
    end: float
    failed: dict[FailedScope, list[str]] = field(default_factory=dict)
    """Pods Prometheus could not answer for, and the workloads (``Kind/name``) left out for them."""
    replicas: dict[ContainerKey, float] = field(default_factory=dict)
    """Pods of each container that ran on average over its last day (``cost.running_replicas``)."""


def scan(
    source: PrometheusSource,
    request: ScanRequest,
    settings: RecommendationSettings,
    *,
    end: float | None = None,
    progress: ProgressCallback | None = None,
) -> ScanResult:
    """Recommend for every workload container in the requested namespaces, one batch per namespace."""
    end = time.time() if end is None else end
    source.check()
    namespaces = list(request.namespaces) or source.namespaces(request.history_seconds, end, request.labels)
    # One query for every namespace's HPAs (kube-state-metrics'; none without it).
    hpa_scope = QueryScope(request.namespaces, request.history_seconds, request.labels)
    autoscalers = from_state_metrics(source.autoscalers(hpa_scope, end))
    recommendations: list[Recommendation] = []
    failed: dict[FailedScope, list[str]] = {}
    replicas: dict[ContainerKey, float] = {}
    for index, namespace in enumerate(namespaces, start=1):
        scope = QueryScope((namespace,), request.history_seconds, request.labels, request.cpu_window_seconds)
        frames = source.fetch(scope, end)
        items = workload_containers(frames, request.labels)
        found = [recommend(item.key, item.usage, item.current, settings) for item in items]
        replicas |= {item.key: running_replicas(item.usage) for item in items}
        recommendations += with_autoscalers(found, autoscalers, request.hpa)
        failed |= {gone: [] for gone in frames.failed}
        for (_, kind, name), gone in sorted(failed_workloads(frames).items()):
            failed[gone].append(f"{kind}/{name}")
        if progress:
            progress(f"[{index}/{len(namespaces)}] {namespace}: {len(recommendations)} containers so far")
    return ScanResult(recommendations, namespaces, source.queries_sent, end, failed, replicas)

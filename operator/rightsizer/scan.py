"""One pass over a Prometheus: discover workloads, gather their history, recommend for each."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from rightsizer.ahead import one_ahead
from rightsizer.collect import each_workload_container, failed_workloads
from rightsizer.cost import running_replicas
from rightsizer.discovery import name_group
from rightsizer.engine import recommend
from rightsizer.hpa import from_state_metrics, with_autoscalers
from rightsizer.model import ContainerKey, Recommendation
from rightsizer.promql import LabelConfig, QueryScope
from rightsizer.settings import (
    CPU_WINDOW_SECONDS,
    HISTORY_WINDOW_SECONDS,
    HPA_MODE,
    STREAM_CONTAINERS,
    STREAM_PODS,
    RecommendationSettings,
)
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
    """Recommend for every workload container in the requested namespaces, one batch per namespace, or
    per shard of whole workloads of a namespace with more than ``STREAM_CONTAINERS`` containers."""
    end = time.time() if end is None else end
    source.check()
    layout = source.containers(request.namespaces, request.history_seconds, end, request.labels)
    namespaces = list(request.namespaces) or list(layout)
    # One query for every namespace's HPAs (kube-state-metrics'; none without it).
    hpa_scope = QueryScope(request.namespaces, request.history_seconds, request.labels)
    autoscalers = from_state_metrics(source.autoscalers(hpa_scope, end))
    recommendations: list[Recommendation] = []
    failed: dict[FailedScope, list[str]] = {}
    replicas: dict[ContainerKey, float] = {}
    batches: list[_Batch] = []
    for index, namespace in enumerate(namespaces, start=1):
        shards = workload_shards(layout.get(namespace, {}))
        batches += [_Batch(index, namespace, part, len(shards), pods) for part, pods in enumerate(shards, 1)]
    # Prometheus answers the next batch while this one is collected and recommended for.
    fetches = (partial(source.fetch, batch.scope(request), end) for batch in batches)
    for batch, frames in zip(batches, one_ahead(fetches), strict=True):
        found = []
        for item in each_workload_container(frames, request.labels):
            found.append(recommend(item.key, item.usage, item.current, settings))
            replicas[item.key] = running_replicas(item.usage)
        recommendations += with_autoscalers(found, autoscalers, request.hpa)
        failed |= {gone: [] for gone in frames.failed if gone not in failed}
        for (_, kind, name), gone in sorted(failed_workloads(frames).items()):
            failed[gone].append(f"{kind}/{name}")
        if not progress:
            continue
        where = f"[{batch.index}/{len(namespaces)}] {batch.namespace}"
        if batch.parts > 1:
            progress(f"{where}, part {batch.part} of {batch.parts}: {len(batch.pods)} pods")
        if batch.part == batch.parts:
            progress(f"{where}: {len(recommendations)} containers so far")
    return ScanResult(recommendations, namespaces, source.queries_sent, end, failed, replicas)


@dataclass(frozen=True)
class _Batch:
    """One fetch of a scan: a namespace (the ``index``-th), or its ``part``-th shard of ``parts``."""

    index: int
    namespace: str
    part: int
    parts: int
    pods: tuple[str, ...]

    def scope(self, request: ScanRequest) -> QueryScope:
        return QueryScope(
            (self.namespace,),
            request.history_seconds,
            request.labels,
            request.cpu_window_seconds,
            self.pods,
        )


def workload_shards(pods: Mapping[str, int]) -> list[tuple[str, ...]]:
    """How a namespace is fetched: whole (``[()]``) up to ``STREAM_CONTAINERS`` containers (``pods``:
    each pod's containers), else in shards of pods of at most that many containers and
    ``STREAM_PODS`` pods (the pods are named in each query), each pod with the pods its name says are
    its workload's (``discovery.name_group``), so that every workload is recommended from all its pods.
    A workload larger than a shard is a shard of its own."""
    if sum(pods.values()) <= STREAM_CONTAINERS:
        return [()]
    groups: dict[str, list[str]] = {}
    for pod in sorted(pods):
        groups.setdefault(name_group(pod), []).append(pod)
    shards: list[list[str]] = [[]]
    containers = 0
    for members in groups.values():
        size = sum(pods[pod] for pod in members)
        full = containers + size > STREAM_CONTAINERS or len(shards[-1]) + len(members) > STREAM_PODS
        if shards[-1] and full:
            shards.append([])
            containers = 0
        shards[-1] += members
        containers += size
    return [tuple(shard) for shard in shards]

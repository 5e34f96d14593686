"""The one place the backtest reaches into the operator: its fetch and Auto mode's rails.

Everything the replay takes from the operator goes through here, so that when the fetch or the planning
move (a faster query pipeline; Auto mode's planning as one pure function) only this module is repointed:

- ``fetch_span``: ``PrometheusSource.fetch`` of ``rightsizer recommend``'s batch over the whole span
  (the same two rounds of queries, and the same shards of whole workloads for a namespace
  ``rightsizer recommend`` streams, ``scan.workload_shards``; no query per replay step), with three more
  range queries the replay needs per bucket (``SpanScope``), then ``collect``'s per-container
  ``ContainerUsage``;
- ``plan``: ``planning.plan_step``, Auto mode's rails as the operator plans every change (cooldown,
  confident part, minimum change, step cap, back-off of directions rolled back, in place
  ``planning.undoable_in_place``), up to what needs the cluster (whether the workload is settled,
  what the namespace admits and the nodes fit), which a backtest cannot see;
- ``exposure``: ``pod_progress.exposure``, what a change can have hurt: a kill or throttling in its
  watch rolls it back only there, as in the operator (``pod_progress.regression``);
- ``rollback_directions``: ``planning.directions``, what a rollback backs off
  (``change_rollback``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from rightsizer import pod_progress
from rightsizer.apply import goes_in_place
from rightsizer.collect import KEY, WorkloadContainer, workload_containers
from rightsizer.hpa import Autoscaler, from_state_metrics
from rightsizer.model import Recommendation, Resources
from rightsizer.planning import ApplyPlan, WorkloadHistory, directions, plan_step
from rightsizer.pod_progress import Exposure
from rightsizer.promql import (
    CFS_PERIODS,
    CFS_THROTTLED,
    MEMORY_WORKING_SET,
    RANGE_EDGE_SECONDS,
    LabelConfig,
    QueryScope,
    tiled_rate,
)
from rightsizer.rails import AutoRails
from rightsizer.scan import workload_shards
from rightsizer.shards import FailedScope
from rightsizer.source import PrometheusSource, UsageFrames
from rightsizer.workload import KINDS

SPAN_QUERIES = ("memory_max", "bucket_cfs_periods", "bucket_cfs_throttled", "oom_restarts")
"""Per pod container and bucket, besides the engine's history: the highest working-set sample (what
an OOM kill is judged on), CFS periods and throttled periods (throttling judged per evaluation
window, never with periods after it), and OOM kills (``recommend``'s own ``oom_restarts``, of its
second round)."""


@dataclass(frozen=True)
class SpanScope(QueryScope):
    """``rightsizer recommend``'s batch over the backtest's span, with its buckets cut as the policy's
    own window cuts them (so that each replayed evaluation sees the buckets the operator would), and
    the per-bucket queries of ``SPAN_QUERIES``."""

    span_bucket_seconds: int = 1800

    @property
    def bucket_seconds(self) -> int:
        return self.span_bucket_seconds

    def queries(self) -> dict[str, tuple[bool, str]]:
        """``recommend``'s first round and the range queries of ``span_queries`` (answered as frames
        of one row per series and bucket, beside the history: ``PrometheusSource.fetch``)."""
        return super().queries() | {name: (True, query) for name, query in self.span_queries().items()}

    def span_queries(self) -> dict[str, str]:
        by, bucket = self.by_container, self.bucket_seconds
        memory = self.cadvisor(MEMORY_WORKING_SET)
        queries = {"memory_max": f"max by ({by}) (max_over_time({memory}[{bucket + RANGE_EDGE_SECONDS}s]))"}
        for name, metric in (("bucket_cfs_periods", CFS_PERIODS), ("bucket_cfs_throttled", CFS_THROTTLED)):
            queries[name] = f"max by ({by}) ({tiled_rate(self.cadvisor(metric), bucket)})"
        return queries


@dataclass(frozen=True)
class SpanData:
    """One namespace's span, as the replay reads it."""

    containers: list[WorkloadContainer]
    per_bucket: pd.DataFrame
    """Per (namespace, pod, container, time): ``memory_max``, ``oom_restarts``, and ``cfs_periods`` and
    ``cfs_throttled`` as counts in the bucket."""
    autoscalers: list[Autoscaler] = field(default_factory=list)
    failed: tuple[FailedScope, ...] = ()


def policy_bucket_seconds(window_seconds: int, labels: LabelConfig, cpu_window_seconds: int) -> int:
    """The bucket the operator cuts a policy's window into (``QueryScope.bucket_seconds``)."""
    return QueryScope((), window_seconds, labels, cpu_window_seconds).bucket_seconds


def fetch_span(
    source: PrometheusSource,
    namespace: str,
    labels: LabelConfig,
    span_seconds: int,
    bucket_seconds: int,
    cpu_window_seconds: int,
    end: float,
) -> SpanData:
    """The namespace's last ``span_seconds``, collected: one batch of queries, or one per shard of whole
    workloads where ``rightsizer recommend`` streams the namespace (``scan.workload_shards``)."""
    layout = source.containers((namespace,), span_seconds, end, labels)
    containers: list[WorkloadContainer] = []
    per_bucket: list[pd.DataFrame] = []
    failed: list[FailedScope] = []
    for pods in workload_shards(layout.get(namespace, {})):
        scope = SpanScope(
            (namespace,), span_seconds, labels, cpu_window_seconds, pods, span_bucket_seconds=bucket_seconds
        )
        frames = source.fetch(scope, end)
        containers += workload_containers(frames, labels)
        per_bucket.append(_per_bucket(frames, labels, bucket_seconds))
        failed += [gone for gone in frames.failed if gone not in failed]
    hpa_scope = QueryScope((namespace,), span_seconds, labels)
    return SpanData(
        containers,
        pd.concat(per_bucket, ignore_index=True),
        from_state_metrics(source.autoscalers(hpa_scope, end)),
        tuple(failed),
    )


def _per_bucket(frames: UsageFrames, labels: LabelConfig, bucket_seconds: int) -> pd.DataFrame:
    """``SPAN_QUERIES``' answers, one row per pod container and bucket (``SpanData.per_bucket``)."""
    renames = {labels.namespace: "namespace", labels.pod: "pod", labels.container: "container"}
    per_bucket: pd.DataFrame | None = None
    for name in SPAN_QUERIES:
        frame = frames[name]
        if frame.empty:
            frame = pd.DataFrame(columns=[*KEY, "time", "value"])
        frame = frame.rename(columns=renames)[[*KEY, "time", "value"]].rename(columns={"value": name})
        per_bucket = frame if per_bucket is None else per_bucket.merge(frame, on=[*KEY, "time"], how="outer")
    assert per_bucket is not None
    for name in ("cfs_periods", "cfs_throttled"):  # tiled_rate is per second
        per_bucket[name] = per_bucket.pop(f"bucket_{name}").astype(float) * bucket_seconds
    return per_bucket


def plan(
    kind: str,
    recommendations: list[Recommendation],
    rails: AutoRails,
    now: datetime,
    applied_at: datetime | None,
    backed_off: Mapping[str, datetime],
) -> ApplyPlan:
    """What Auto mode would start now on a settled workload of ``kind`` last changed at ``applied_at``,
    with ``backed_off`` directions (``ApplyPlan.skipped`` says why a container is held back)."""
    history = WorkloadHistory(applied_at, dict(backed_off))
    in_place = goes_in_place(rails, KINDS[kind])
    return plan_step(recommendations, rails, now, history, in_place=in_place)


def exposure(before: Mapping[str, Resources], after: Mapping[str, Resources]) -> Exposure:
    """What a change from ``before`` to ``after`` can have hurt (the operator's rollback rule)."""
    return pod_progress.exposure(before, after)


def rollback_directions(before: Mapping[str, Resources], after: Mapping[str, Resources]) -> set[str]:
    """The directions (``memory-down``...) a rolled-back change backs off."""
    return directions(dict(before), dict(after))

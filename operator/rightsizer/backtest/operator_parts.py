"""The one place the backtest reaches into the operator: its fetch and Auto mode's rails.

Everything the replay takes from the operator goes through here, so that when the fetch or the planning
move (a faster query pipeline; Auto mode's planning as one pure function) only this module is repointed:

- ``fetch_span``: ``PrometheusSource.fetch`` of ``rightsizer recommend``'s batch over the whole span
  (the same queries, batching and sharding; one batch per namespace, no query per replay step), with
  three more range queries the replay needs per bucket (``SpanScope``), then ``collect``'s per-container
  ``ContainerUsage``;
- ``plan``: ``apply.plan_changes`` (cooldown, minimum change, confident part, step cap), the back-off of
  directions rolled back (``change.without_backed_off``) and, in place, ``change.undoable_in_place``, as
  ``controller/autoapply.py`` starts a change (its ``_start``, up to the cluster's admission checks,
  which a backtest cannot see);
- ``rollback_directions``: ``change.directions``, what a rollback backs off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import pandas as pd

from rightsizer.apply import APPLIED_AT, ApplyPlan, ContainerChange, is_significant, plan_changes
from rightsizer.change import directions, undoable_in_place, without_backed_off
from rightsizer.collect import KEY, WorkloadContainer, workload_containers
from rightsizer.hpa import Autoscaler, from_state_metrics
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.policy import ROLLOUT, AutoRails
from rightsizer.promql import (
    CFS_PERIODS,
    CFS_THROTTLED,
    MEMORY_WORKING_SET,
    RANGE_EDGE_SECONDS,
    LabelConfig,
    QueryScope,
    tiled_rate,
)
from rightsizer.shards import FailedScope
from rightsizer.source import PrometheusSource
from rightsizer.timestamps import format_time
from rightsizer.workload import CRONJOB, KINDS, WorkloadView

SPAN_QUERIES = ("memory_max", "bucket_cfs_periods", "bucket_cfs_throttled", "oom_restarts")
"""Per pod container and bucket, besides the engine's history: the highest working-set sample (what
an OOM kill is judged on), CFS periods and throttled periods (throttling judged per evaluation
window, never with periods after it), and OOM kills (``recommend``'s own ``oom_restarts``)."""


@dataclass(frozen=True)
class SpanScope(QueryScope):
    """``rightsizer recommend``'s batch over the backtest's span, with its buckets cut as the policy's
    own window cuts them (so that each replayed evaluation sees the buckets the operator would), and
    the per-bucket queries of ``SPAN_QUERIES``."""

    span_bucket_seconds: int = 1800

    @property
    def bucket_seconds(self) -> int:
        return self.span_bucket_seconds

    def history_queries(self) -> dict[str, str]:
        queries = super().history_queries()
        by, bucket = self.by_container, self.bucket_seconds
        memory = self.cadvisor(MEMORY_WORKING_SET)
        queries["memory_max"] = f"max by ({by}) (max_over_time({memory}[{bucket + RANGE_EDGE_SECONDS}s]))"
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
    """One fetch of the namespace's last ``span_seconds`` (one batch of queries), collected."""
    scope = SpanScope(
        (namespace,), span_seconds, labels, cpu_window_seconds, span_bucket_seconds=bucket_seconds
    )
    frames = source.fetch(scope, end)
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
    hpa_scope = QueryScope((namespace,), span_seconds, labels)
    return SpanData(
        workload_containers(frames, labels),
        per_bucket,
        from_state_metrics(source.autoscalers(hpa_scope, end)),
        frames.failed,
    )


def workload_view(
    namespace: str, kind: str, name: str, containers: Mapping[str, Resources], applied_at: datetime | None
) -> WorkloadView:
    """The workload as Auto mode's planning reads it: settled, its containers' resources in force, and
    when it was last changed (the cooldown)."""
    annotations = {APPLIED_AT: format_time(applied_at)} if applied_at is not None else {}
    return WorkloadView(
        kind=KINDS[kind],
        namespace=namespace,
        name=name,
        uid="",
        resource_version="",
        labels={},
        template_labels={},
        annotations=annotations,
        generation=0,
        replicas=1,
        containers=dict(containers),
    )


def plan(
    workload: WorkloadView,
    recommendations: list[Recommendation],
    rails: AutoRails,
    now: datetime,
    backed_off: Mapping[str, datetime],
) -> tuple[ApplyPlan, dict[ContainerKey, str]]:
    """What Auto mode would start now, and a note per container it held back (a backed-off direction,
    an in-place limit left out)."""
    planned = plan_changes(workload, recommendations, rails, now)
    notes: dict[ContainerKey, str] = {}
    if planned.blocked:
        return planned, notes
    active = {direction for direction, until in backed_off.items() if until > now}
    kept: list[ContainerChange] = []
    for change in planned.changes:
        after, held = without_backed_off(change.before, change.after, active)
        for resource in held:
            notes[change.key] = f"{resource} held back: rolled back before, backed off"
        if rails.update_mode != ROLLOUT and workload.kind is not CRONJOB:
            after, left_out = undoable_in_place(change.before, after)
            if left_out and not is_significant(change.before, after, rails.min_change_percent):
                notes[change.key] = f"not applied: {'; '.join(left_out)}, and the rest is below the minimum"
                continue
        if after != change.before:
            kept.append(replace(change, after=after))
    return replace(planned, changes=tuple(kept)), notes


def rollback_directions(before: Mapping[str, Resources], after: Mapping[str, Resources]) -> set[str]:
    """The directions (``memory-down``...) a rolled-back change backs off."""
    return directions(dict(before), dict(after))

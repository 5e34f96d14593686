"""Per-pod query results -> per-workload-container usage and current resources (pandas, pure)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
import pandas as pd

from rightsizer.discovery import KUBE_STATE_METRICS, OWNER_COLUMNS, OWNER_SOURCE_PREFERENCE, resolve_owners
from rightsizer.model import (
    HISTORY_COLUMNS,
    ContainerKey,
    ContainerUsage,
    PodThrottling,
    Resources,
    empty_history,
)
from rightsizer.promql import LabelConfig
from rightsizer.shards import FailedScope
from rightsizer.source import UsageFrames
from rightsizer.units import CPU, MEMORY, ceil_cpu

KEY = ["namespace", "pod", "container"]
WORKLOAD = ["namespace", "kind", "name", "container"]
BUCKET_QUERIES = ("cpu_mean", "cpu_peak", "memory_mean", "memory_samples")
"""The range queries that make the bucketed history (``QueryScope.history_queries``)."""
SPEC_VALUES = ("cpu_limit", "cpu_request", "memory_limit", "oom_events")
"""The ``spec`` label values of the cadvisor_spec query (``QueryScope._cadvisor_spec``)."""


@dataclass(frozen=True)
class WorkloadContainer:
    """Everything known about one container of one workload before the engine sees it."""

    key: ContainerKey
    usage: ContainerUsage
    current: Resources


def workload_containers(
    frames: UsageFrames, labels: LabelConfig, known_owners: pd.DataFrame | None = None
) -> list[WorkloadContainer]:
    """Join the per-pod frames, map pods to workloads and gather each workload container's history.

    ``known_owners`` (columns namespace, pod, kind, name, owner_source) are owners the caller
    knows better than Prometheus does: the operator's, from the Kubernetes API. Workloads with a pod
    Prometheus could not answer for (``failed_workloads``) are left out: part of their history is
    missing.
    """
    renames = {labels.namespace: "namespace", labels.pod: "pod", labels.container: "container"}
    history = bucketed_history(frames, renames)
    if history.empty:
        return []
    per_pod = _per_pod(frames, renames, history)
    owners = resolve_owners(per_pod, frames["pod_owner"], frames["replicaset_owner"], known_owners)
    per_pod = per_pod.merge(owners, on=["namespace", "pod"], how="inner")
    failed = failed_workloads(frames, known_owners)
    if failed:
        complete = [
            key not in failed for key in per_pod[["namespace", "kind", "name"]].itertuples(index=False)
        ]
        per_pod = per_pod[complete]
    if per_pod.empty:
        return []
    requests = _resources_by_pod(frames["requests"])
    limits = _resources_by_pod(frames["limits"])
    per_pod = _with_cpu_limits(per_pod, limits)
    per_pod = _with_oom_kills(per_pod, frames)
    history_by_pod = history.set_index(KEY).sort_index()
    results = []
    for (namespace, kind, name, container), pods in per_pod.groupby(WORKLOAD, sort=True):
        key = ContainerKey(namespace, kind, name, container)
        newest = pods.sort_values("last_seen").iloc[-1]
        pod_key = (namespace, newest["pod"], container)
        current = Resources(
            requests=_with_spec(requests.get(pod_key, {}), {CPU: newest["spec_cpu_request"]}),
            limits=_with_spec(
                limits.get(pod_key, {}),
                {CPU: newest["spec_cpu_limit"], MEMORY: newest["spec_memory_limit"]},
            ),
        )
        rows = history_by_pod.loc[[(namespace, pod, container) for pod in pods["pod"]]].reset_index()
        usage = ContainerUsage(
            history=rows[list(HISTORY_COLUMNS)].reset_index(drop=True),
            grid=frames.grid,
            throttling=_throttling(pods),
            memory_peak_bytes=_max(pods["memory_peak"]),
            oom_kills=int(pods["oom_kills"].sum()),
            oom_killed_memory_bytes=_max(pods["oom_killed_memory"]),
            owner_source=_weakest_owner_source(pods["owner_source"]),
        )
        results.append(WorkloadContainer(key, usage, current))
    return results


_NO_HISTORY = empty_history()
"""The history of a ``KeptUsage``'s usage: never read, each evaluation gets a frame of its own."""


@dataclass(frozen=True)
class KeptUsage:
    """A container's usage as a shared batch keeps it: the history's columns as numpy arrays.

    pandas (Copy-on-Write) tracks every view taken of a frame's blocks and of its index with a weak
    reference, and each evaluation's column reads take some: a frame kept for many evaluations
    gathered hundreds (147,000 references, 11 MiB, with 1,000 policies; docs/benchmarks.md). So the
    batch keeps arrays, and ``usage`` gives each reader a frame of its own, gone with its evaluation.
    """

    usage: ContainerUsage
    """Everything but the history."""
    columns: tuple[np.ndarray, ...]
    """``HISTORY_COLUMNS``, in that order."""

    @classmethod
    def of(cls, usage: ContainerUsage) -> KeptUsage:
        columns = tuple(usage.history[name].to_numpy() for name in HISTORY_COLUMNS)
        return cls(replace(usage, history=_NO_HISTORY), columns)

    def fresh(self) -> ContainerUsage:
        """The usage with a history frame of its own (a copy of the arrays)."""
        history = pd.DataFrame(dict(zip(HISTORY_COLUMNS, self.columns, strict=True)))
        return replace(self.usage, history=history)

    def size_bytes(self) -> int:
        """Memory the history holds, pod names counted as the strings they are."""
        pods = self.columns[HISTORY_COLUMNS.index("pod")]
        return sum(column.nbytes for column in self.columns) + sum(sys.getsizeof(pod) for pod in pods)


@dataclass(frozen=True)
class CollectedBatch:
    """What one batch says of every workload container of its scope, as the operator reads it: each
    one's usage (``usage``), the workloads with a pod Prometheus could not answer for
    (``failed_workloads``), and those scopes. Made once per batch and shared by the evaluations of
    every policy of the scope (``controller/batches.py``): read, never changed."""

    kept: Mapping[ContainerKey, KeptUsage]
    failed_workloads: Mapping[tuple[str, str, str], FailedScope]
    failed: tuple[FailedScope, ...]

    def usage(self, key: ContainerKey) -> ContainerUsage | None:
        """The container's usage, with a history frame of the caller's own; None if the batch has none."""
        kept = self.kept.get(key)
        return None if kept is None else kept.fresh()

    def size_bytes(self) -> int:
        """Memory the histories hold."""
        return sum(kept.size_bytes() for kept in self.kept.values())


def collect_batch(
    frames: UsageFrames, labels: LabelConfig, known_owners: pd.DataFrame | None = None
) -> CollectedBatch:
    """``workload_containers`` and ``failed_workloads`` of one batch, the raw frames left behind."""
    items = workload_containers(frames, labels, known_owners)
    return CollectedBatch(
        kept={item.key: KeptUsage.of(item.usage) for item in items},
        failed_workloads=failed_workloads(frames, known_owners),
        failed=frames.failed,
    )


OwnersKey = tuple[tuple[str, ...], ...]


def batch_pods(frames: UsageFrames, labels: LabelConfig) -> frozenset[tuple[str, str]]:
    """(namespace, pod) of every pod whose workload ``collect_batch`` looks up: those with bucketed
    history and those of a failed scope."""
    pods = {(scope.namespace, pod) for scope in frames.failed for pod in scope.pods}
    for name in BUCKET_QUERIES:
        frame = frames[name]
        if not frame.empty and {labels.namespace, labels.pod} <= set(frame.columns):
            pairs = frame[[labels.namespace, labels.pod]].drop_duplicates()
            pods.update((str(ns), str(pod)) for ns, pod in pairs.itertuples(index=False, name=None))
    return frozenset(pods)


def owners_key(known_owners: pd.DataFrame | None, pods: frozenset[tuple[str, str]]) -> OwnersKey:
    """The rows of ``known_owners`` that ``collect_batch`` reads, those of ``pods`` (``batch_pods``),
    sorted: two ``known_owners`` with the same key give the same collection. (``resolve_owners``
    joins them to the batch's pods, so rows of other pods drop out, and the join follows the order of
    the batch's pods, not theirs.)"""
    if known_owners is None or known_owners.empty:
        return ()
    rows = known_owners[OWNER_COLUMNS].itertuples(index=False, name=None)
    return tuple(sorted(tuple(map(str, row)) for row in rows if (str(row[0]), str(row[1])) in pods))


def failed_workloads(
    frames: UsageFrames, known_owners: pd.DataFrame | None = None
) -> dict[tuple[str, str, str], FailedScope]:
    """(namespace, kind, name) of every workload with a pod in ``frames.failed``, and that scope."""
    scopes = {(scope.namespace, pod): scope for scope in frames.failed for pod in scope.pods}
    if not scopes:
        return {}
    pods = pd.DataFrame(list(scopes), columns=["namespace", "pod"])
    owners = resolve_owners(pods, frames["pod_owner"], frames["replicaset_owner"], known_owners)
    return {
        (row.namespace, row.kind, row.name): scopes[(row.namespace, row.pod)]
        for row in owners.itertuples(index=False)
    }


def bucketed_history(frames: UsageFrames, renames: dict[str, str]) -> pd.DataFrame:
    """One row per (namespace, pod, container) and bucket with samples: ``HISTORY_COLUMNS`` but ``pod``.

    ``coverage`` is a pod's samples in the bucket over what a whole bucket holds at the scrape
    interval: the most any pod-bucket of the batch holds, less one (before Prometheus 3.0 a range
    includes both its ends, so a bucket holds one more sample when samples fall on both). ``cpu_mean``
    is the mean while the pod ran, not over the bucket (a pod that ran 15 minutes at 1 core is 1 core
    for 15 minutes, not 250m for an hour).
    """
    merged: pd.DataFrame | None = None
    for name in BUCKET_QUERIES:
        frame = frames[name]
        if frame.empty:
            frame = pd.DataFrame(columns=[*KEY, "time", "value"])
        frame = frame.rename(columns=renames)[[*KEY, "time", "value"]].rename(columns={"value": name})
        merged = frame if merged is None else merged.merge(frame, on=[*KEY, "time"], how="outer")
    assert merged is not None
    merged = merged.rename(columns={"memory_samples": "samples"})
    full = max(merged["samples"].max() - 1, 1)
    coverage = (merged["samples"] / full).clip(upper=1.0)
    # A container with CPU series but no memory series counts as running the whole bucket; it has
    # no recommendation anyway (no memory usage), but its CPU is still shown.
    merged["coverage"] = coverage.fillna(1.0).where(lambda c: c > 0, 1.0)
    merged["samples"] = merged["samples"].fillna(0.0)
    merged["cpu_mean"] = (merged["cpu_mean"] / merged["coverage"]).clip(lower=0.0, upper=merged["cpu_peak"])
    return merged


def _per_pod(frames: UsageFrames, renames: dict[str, str], history: pd.DataFrame) -> pd.DataFrame:
    """One row per pod container with history: when it was last seen, its memory peak, CFS periods
    and spec."""
    per_pod = history.groupby(KEY, as_index=False).agg(last_seen=("time", "max"))
    for name in ("memory_peak", "cfs_periods", "cfs_throttled"):
        per_pod = per_pod.merge(_values(frames[name].rename(columns=renames), name), on=KEY, how="left")
    return per_pod.merge(_spec_columns(frames["cadvisor_spec"], renames), on=KEY, how="left")


def _spec_columns(frame: pd.DataFrame, renames: dict[str, str]) -> pd.DataFrame:
    """The cadvisor_spec rows as columns spec_cpu_limit, spec_cpu_request, ... per pod-container."""
    columns = [f"spec_{name}" for name in SPEC_VALUES]
    if frame.empty or "spec" not in frame.columns:
        return pd.DataFrame({**{c: pd.Series(dtype="object") for c in KEY}, **{c: [] for c in columns}})
    frame = frame.rename(columns=renames)
    wide = frame.pivot_table(index=KEY, columns="spec", values="value", aggfunc="max")
    wide = wide.reindex(columns=list(SPEC_VALUES)).add_prefix("spec_").reset_index()
    wide.columns.name = None
    return wide


def _with_cpu_limits(
    per_pod: pd.DataFrame, limits: dict[tuple[str, str, str], dict[str, Decimal]]
) -> pd.DataFrame:
    """The CPU limit each pod ran under: cAdvisor's CFS quota, else kube-state-metrics' limit."""
    from_state = [
        float(limits.get((row.namespace, row.pod, row.container), {}).get(CPU, "nan"))
        for row in per_pod[KEY].itertuples(index=False)
    ]
    per_pod = per_pod.copy()
    per_pod["cpu_limit"] = (
        per_pod["spec_cpu_limit"].astype(float).fillna(pd.Series(from_state, index=per_pod.index))
    )
    return per_pod


def _with_oom_kills(per_pod: pd.DataFrame, frames: UsageFrames) -> pd.DataFrame:
    """OOM kills per pod-container: restarts after which the last termination reason was OOMKilled.

    A container still flagged OOMKilled but without such restarts in the window was killed just
    before it: that counts as one kill, because the memory it had then was still too low.
    """
    flagged = _values(frames["oom_killed"], "oom_flag")
    restarts = frames["oom_restarts"]
    killed = (
        restarts.groupby(KEY, as_index=False)["value"].sum().rename(columns={"value": "oom_restarts"})
        if not restarts.empty
        else _values(pd.DataFrame(), "oom_restarts")
    )
    limits = frames["limits"]
    memory_limits = (
        _values(limits[limits["resource"] == MEMORY], "memory_limit")
        if not limits.empty and "resource" in limits.columns
        else _values(pd.DataFrame(), "memory_limit")
    )
    per_pod = per_pod.merge(flagged, on=KEY, how="left").merge(killed, on=KEY, how="left")
    per_pod = per_pod.merge(memory_limits, on=KEY, how="left")
    was_killed = per_pod["oom_flag"].fillna(0) >= 1
    state_kills = (per_pod["oom_restarts"].fillna(0).round().clip(lower=1)).where(was_killed, 0)
    cadvisor_kills = per_pod["spec_oom_events"].astype(float).fillna(0).round()
    per_pod["oom_kills"] = state_kills.combine(cadvisor_kills, max).astype(int)
    killed_at = (
        per_pod["memory_limit"]
        .fillna(per_pod["spec_memory_limit"].astype(float))
        .fillna(per_pod["memory_peak"])
    )
    per_pod["oom_killed_memory"] = killed_at.where(per_pod["oom_kills"] > 0)
    return per_pod


def _throttling(pods: pd.DataFrame) -> tuple[PodThrottling, ...]:
    """CFS periods of each pod that ran with a CPU limit, and the limit (to the millicore)."""
    ran_limited = pods[pods["cfs_periods"].fillna(0) > 0]
    return tuple(
        PodThrottling(
            pod=row.pod,
            limit_cores=None if pd.isna(row.cpu_limit) else round(float(row.cpu_limit) * 1000) / 1000,
            periods=float(row.cfs_periods),
            throttled_periods=0.0 if pd.isna(row.cfs_throttled) else float(row.cfs_throttled),
        )
        for row in ran_limited.itertuples(index=False)
    )


def _weakest_owner_source(sources: pd.Series) -> str:
    """The least certain way any of the pods was mapped to its workload (said in the evidence)."""
    present = set(sources)
    return next((s for s in reversed(OWNER_SOURCE_PREFERENCE) if s in present), KUBE_STATE_METRICS)


def _with_spec(values: dict[str, Decimal], spec: dict[str, float]) -> dict[str, Decimal]:
    """kube-state-metrics' values, completed by cAdvisor's spec where it has none."""
    filled = dict(values)
    for resource, amount in spec.items():
        if resource not in filled and not pd.isna(amount):
            # Shares / 1024 is a millicore off (100m -> 102 shares -> 99.6m): round up to one.
            filled[resource] = ceil_cpu(amount, 1) if resource == CPU else Decimal(str(amount))
    return filled


def _resources_by_pod(frame: pd.DataFrame) -> dict[tuple[str, str, str], dict[str, Decimal]]:
    if frame.empty or "resource" not in frame.columns:
        return {}
    known = frame[frame["resource"].isin([CPU, MEMORY])]
    result: dict[tuple[str, str, str], dict[str, Decimal]] = {}
    for row in known.itertuples(index=False):
        result.setdefault((row.namespace, row.pod, row.container), {})[row.resource] = Decimal(str(row.value))
    return result


def _values(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    if frame.empty or not set(KEY) <= set(frame.columns):
        return pd.DataFrame({**{c: pd.Series(dtype="object") for c in KEY}, name: pd.Series(dtype="float")})
    return frame[[*KEY, "value"]].rename(columns={"value": name}).drop_duplicates(KEY)


def _max(series: pd.Series) -> float | None:
    value = series.max()
    return None if pd.isna(value) else float(value)

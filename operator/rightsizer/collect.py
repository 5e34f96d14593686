"""Per-pod query results -> per-workload-container usage and current resources (pandas, pure)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pandas as pd

from rightsizer.discovery import POD_NAME_PATTERN, resolve_owners
from rightsizer.model import ContainerKey, ContainerUsage, Resources
from rightsizer.promql import LabelConfig
from rightsizer.quantity import CPU, MEMORY
from rightsizer.source import UsageFrames

KEY = ["namespace", "pod", "container"]
WORKLOAD = ["namespace", "kind", "name", "container"]
USAGE_QUERIES = (
    "cpu_percentile",
    "cpu_max",
    "memory_peak",
    "samples",
    "first_seen",
    "last_seen",
    "cfs_periods",
    "cfs_throttled",
)


@dataclass(frozen=True)
class WorkloadContainer:
    """Everything known about one container of one workload before the engine sees it."""

    key: ContainerKey
    usage: ContainerUsage
    current: Resources


def workload_containers(frames: UsageFrames, labels: LabelConfig) -> list[WorkloadContainer]:
    """Join the per-pod frames, map pods to workloads and aggregate each workload's containers."""
    per_pod = _per_pod_usage(frames, labels)
    if per_pod.empty:
        return []
    owners = resolve_owners(per_pod, frames["pod_owner"], frames["replicaset_owner"])
    per_pod = per_pod.merge(owners, on=["namespace", "pod"], how="inner")
    if per_pod.empty:
        return []
    per_pod = _with_oom_kills(per_pod, frames)
    requests = _resources_by_pod(frames["requests"])
    limits = _resources_by_pod(frames["limits"])
    results = []
    for (namespace, kind, name, container), pods in per_pod.groupby(WORKLOAD, sort=True):
        key = ContainerKey(namespace, kind, name, container)
        newest_pod = pods.sort_values("last_seen", na_position="first").iloc[-1]["pod"]
        current = Resources(
            requests=requests.get((namespace, newest_pod, container), {}),
            limits=limits.get((namespace, newest_pod, container), {}),
        )
        results.append(WorkloadContainer(key, _aggregate(pods), current))
    return results


def _per_pod_usage(frames: UsageFrames, labels: LabelConfig) -> pd.DataFrame:
    renames = {labels.namespace: "namespace", labels.pod: "pod", labels.container: "container"}
    merged: pd.DataFrame | None = None
    for name in USAGE_QUERIES:
        frame = frames[name]
        if frame.empty:
            frame = pd.DataFrame(columns=[*KEY, "value"])
        frame = frame.rename(columns=renames)[[*KEY, "value"]].rename(columns={"value": name})
        merged = frame if merged is None else merged.merge(frame, on=KEY, how="outer")
    assert merged is not None
    # A container with CPU series but no memory series (or the reverse) keeps NaN for what is missing.
    return merged[merged["memory_peak"].notna() | merged["cpu_percentile"].notna()]


def _with_oom_kills(per_pod: pd.DataFrame, frames: UsageFrames) -> pd.DataFrame:
    """OOM kills per pod-container: restarts while the last termination reason was OOMKilled.

    A container still flagged OOMKilled but without restarts in the window was killed just before
    it: that counts as one kill, because the memory it had then was still too low.
    """
    flagged = _values(frames["oom_killed"], "oom_flag")
    restarts = _values(frames["restarts"], "restarts")
    limits = frames["limits"]
    memory_limits = (
        _values(limits[limits["resource"] == MEMORY], "memory_limit")
        if not limits.empty and "resource" in limits.columns
        else _values(pd.DataFrame(), "memory_limit")
    )
    per_pod = per_pod.merge(flagged, on=KEY, how="left").merge(restarts, on=KEY, how="left")
    per_pod = per_pod.merge(memory_limits, on=KEY, how="left")
    was_killed = per_pod["oom_flag"].fillna(0) >= 1
    per_pod["oom_kills"] = (
        (per_pod["restarts"].fillna(0).round().clip(lower=1)).where(was_killed, 0).astype(int)
    )
    per_pod["oom_killed_memory"] = per_pod["memory_limit"].fillna(per_pod["memory_peak"]).where(was_killed)
    return per_pod


def _aggregate(pods: pd.DataFrame) -> ContainerUsage:
    """The busiest pod sets the numbers: every replica gets the same requests from one template."""
    return ContainerUsage(
        cpu_percentile_cores=_max(pods["cpu_percentile"]),
        cpu_max_cores=_max(pods["cpu_max"]),
        cfs_periods=float(pods["cfs_periods"].fillna(0).sum()),
        cfs_throttled_periods=float(pods["cfs_throttled"].fillna(0).sum()),
        memory_peak_bytes=_max(pods["memory_peak"]),
        oom_kills=int(pods["oom_kills"].sum()),
        oom_killed_memory_bytes=_max(pods["oom_killed_memory"]),
        samples=int(pods["samples"].fillna(0).sum()),
        first_seen=_min(pods["first_seen"]),
        last_seen=_max(pods["last_seen"]),
        pods=int(pods["pod"].nunique()),
        owner_source=POD_NAME_PATTERN
        if (pods["owner_source"] == POD_NAME_PATTERN).any()
        else "kube-state-metrics",
    )


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


def _min(series: pd.Series) -> float | None:
    value = series.min()
    return None if pd.isna(value) else float(value)

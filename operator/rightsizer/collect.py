"""Per-pod query results -> per-workload-container usage and current resources (numpy and pandas, pure).

The whole batch is worked on at once: its bucketed history as arrays (``rightsizer.buckets``), the per-pod
queries joined to its pod-containers once, and each workload container's rows cut out of the batch's."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
import pandas as pd

from rightsizer.buckets import BucketArrays
from rightsizer.discovery import KUBE_STATE_METRICS, OWNER_COLUMNS, OWNER_SOURCE_PREFERENCE, resolve_owners
from rightsizer.model import (
    HISTORY_COLUMNS,
    ContainerKey,
    ContainerUsage,
    HistoryGrid,
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
    """Map pods to workloads and gather each workload container's history and resources.

    ``known_owners`` (columns namespace, pod, kind, name, owner_source) are owners the caller
    knows better than Prometheus does: the operator's, from the Kubernetes API. Workloads with a pod
    Prometheus could not answer for (``failed_workloads``) are left out: part of their history is
    missing.
    """
    return list(each_workload_container(frames, labels, known_owners))


def each_workload_container(
    frames: UsageFrames, labels: LabelConfig, known_owners: pd.DataFrame | None = None
) -> Iterator[WorkloadContainer]:
    """``workload_containers`` one at a time: each one's history frame is made when it is reached, so a
    caller that is done with one before taking the next holds one frame, not the namespace's."""
    for group in _gathered(frames, labels, known_owners):
        yield WorkloadContainer(group.key, group.usage(), group.current)


@dataclass(frozen=True)
class _Gathered:
    """One workload container's pods and their history, before it is made a ``ContainerUsage``."""

    key: ContainerKey
    current: Resources
    columns: tuple[np.ndarray, ...]
    """``HISTORY_COLUMNS``, in that order."""
    rest: ContainerUsage
    """Everything but the history."""

    def usage(self) -> ContainerUsage:
        history = pd.DataFrame(dict(zip(HISTORY_COLUMNS, self.columns, strict=True)))
        return replace(self.rest, history=history)


def _gathered(
    frames: UsageFrames, labels: LabelConfig, known_owners: pd.DataFrame | None
) -> Iterator[_Gathered]:
    """The work of ``workload_containers``, over the whole batch at once: its arrays (``BucketArrays``)
    with one row per pod-container and the per-pod frames joined to them once; then, one workload
    container at a time, its history cut out of the batch's arrays."""
    arrays = frames.history(labels)
    present = _present(arrays)
    ran = present.any(axis=1)
    if not ran.any():
        return
    renames = {labels.namespace: "namespace", labels.pod: "pod", labels.container: "container"}
    per_pod = arrays.keys.rename(columns=renames)[KEY].copy()
    per_pod["row"] = np.arange(len(per_pod))
    per_pod = per_pod[ran].reset_index(drop=True)
    per_pod["last_seen"] = _last_seen(arrays, present)[per_pod["row"].to_numpy()]
    per_pod = _with_per_pod_values(per_pod, frames, renames)
    owners = resolve_owners(per_pod, frames["pod_owner"], frames["replicaset_owner"], known_owners)
    per_pod = per_pod.merge(owners, on=["namespace", "pod"], how="inner")
    failed = failed_workloads(frames, known_owners)
    if failed:
        complete = [
            key not in failed for key in per_pod[["namespace", "kind", "name"]].itertuples(index=False)
        ]
        per_pod = per_pod[complete]
    if per_pod.empty:
        return
    per_pod = _with_cpu_limits(per_pod, frames["limits"])
    per_pod = _with_oom_kills(per_pod, frames)
    per_pod = per_pod.sort_values([*WORKLOAD, "pod"], kind="stable").reset_index(drop=True)
    workload = per_pod.groupby(WORKLOAD, sort=False).ngroup().to_numpy()
    coverage = bucket_coverage(arrays, present, per_pod["row"].to_numpy(), workload)
    history = _HistoryCells(arrays, present, coverage)
    requests = _resources_by_pod(frames["requests"])
    limits = _resources_by_pod(frames["limits"])
    pods = _PodColumns.of(per_pod)
    starts = np.flatnonzero(np.diff(workload, prepend=-1)).tolist()
    bounds = zip(starts, [*starts[1:], len(per_pod)], strict=True)
    for first, end in bounds:
        yield _gather(pods, first, end, history, arrays.grid, requests, limits)


def _present(arrays: BucketArrays) -> np.ndarray:
    """Per pod-container and bucket: any of the history's values is there (a row of the history)."""
    present = np.zeros(arrays.values["memory_samples"].shape, dtype=bool)
    for values in arrays.values.values():
        present |= ~np.isnan(values)
    return present


def _last_seen(arrays: BucketArrays, present: np.ndarray) -> np.ndarray:
    """The end of each pod-container's last bucket with a value (NaN for none)."""
    last = np.where(present.any(axis=1), present.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1), 0)
    return np.where(present.any(axis=1), arrays.times[last], np.nan)


def bucket_coverage(
    arrays: BucketArrays, present: np.ndarray, rows: np.ndarray, workload: np.ndarray
) -> np.ndarray:
    """The share of each bucket a pod-container ran (0-1], from its own samples (``rows``: the
    pod-containers collected, ``workload``: each one's workload container).

    A pod's samples come every scrape interval, its own and as it was at the time, so a bucket's samples
    over what a whole bucket holds at that interval is the share of it the pod ran. What a whole bucket
    holds is read off the pod's own nearest whole buckets, those it ran before and after too (its samples
    there, less one: before Prometheus 3.0 a range includes both its ends, so a bucket holds one more
    sample when samples fall on both): of the nearest before and the nearest after the bucket, the one with
    fewer samples (a pod whose interval changed inside a bucket ran that whole bucket, and is not counted
    against its denser neighbour). A pod with no whole bucket (it ran an hour at most) reads it off the
    other pods of its workload container (scraped alike), at that bucket or nearest; failing those, off
    the densest whole bucket of the batch (and failing that, the densest bucket). So a neighbour's
    scrape interval, or an interval changed inside the window, changes nothing (docs/metrics.md).
    A pod with CPU but no memory series counts as running the whole bucket: it has no recommendation
    anyway (no memory usage), but its CPU is still shown.
    """
    samples = np.nan_to_num(arrays.values["memory_samples"][rows])
    before = arrays.samples_before[rows] > 0
    running = samples > 0
    after = np.zeros_like(running)
    after[:, :-1] = running[:, 1:]
    earlier = np.zeros_like(running)
    earlier[:, 1:] = running[:, :-1]
    earlier[:, 0] = before
    whole = np.where(running & earlier & after, samples, np.nan)
    reference = np.fmin(_shifted_fill(whole, forward=True), _shifted_fill(whole, forward=False))
    reference = _from_siblings(reference, whole, workload)
    if np.isnan(reference).any():
        densest = np.nanmax(whole) if not np.isnan(whole).all() else samples.max()
        reference = np.where(np.isnan(reference), densest, reference)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.clip(samples / np.maximum(reference - 1, 1), None, 1.0)
    coverage = np.where(coverage > 0, coverage, 1.0)
    full = np.ones(present.shape)
    full[rows] = coverage
    return full


def _shifted_fill(whole: np.ndarray, *, forward: bool) -> np.ndarray:
    """Per bucket, the value of the nearest whole bucket strictly before it (``forward``) or after it."""
    values = whole if forward else whole[:, ::-1]
    filled = pd.DataFrame(values.T).ffill().to_numpy().T
    shifted = np.full(values.shape, np.nan)
    shifted[:, 1:] = filled[:, :-1]
    return shifted if forward else shifted[:, ::-1]


def _from_siblings(reference: np.ndarray, whole: np.ndarray, workload: np.ndarray) -> np.ndarray:
    """Where a pod has no whole bucket at all, the fewest samples of its workload container's whole
    buckets at each bucket (or nearest)."""
    lonely = np.isnan(reference).all(axis=1)
    if not lonely.any():
        return reference
    nearest = np.fmin(whole, np.fmin(_shifted_fill(whole, forward=True), _shifted_fill(whole, forward=False)))
    reference = reference.copy()
    for group in np.unique(workload[lonely]):
        members = workload == group
        with np.errstate(all="ignore"):
            siblings = np.full(whole.shape[1], np.nan)
            for row in np.flatnonzero(members & ~lonely):
                siblings = np.fmin(siblings, nearest[row])
        reference[members & lonely] = siblings
    return reference


@dataclass(frozen=True)
class _HistoryCells:
    """The batch's bucket arrays with each cell's coverage: a workload container's history rows are cut
    out of them when it is reached, not all the batch's at once."""

    arrays: BucketArrays
    present: np.ndarray
    coverage: np.ndarray

    def columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The history's columns of the pod-containers ``rows``, one after the other, each in time order
        (``HISTORY_COLUMNS`` but ``pod``), and ``count``: how many rows each has.

        ``cpu_mean`` is the mean while the pod ran, not over the bucket (a pod that ran 15 minutes at 1
        core is 1 core for 15 minutes, not 250m for an hour)."""
        which, columns = np.nonzero(self.present[rows])
        cells = rows[which], columns
        values = self.arrays.values
        peak = values["cpu_peak"][cells]
        with np.errstate(invalid="ignore"):
            mean = np.clip(values["cpu_mean"][cells] / self.coverage[cells], 0.0, None)
            mean = np.where(mean > peak, peak, mean)
        return {
            "count": np.bincount(which, minlength=len(rows)),
            "time": self.arrays.times[columns],
            "cpu_mean": mean,
            "cpu_peak": peak,
            "memory_mean": values["memory_mean"][cells],
            "samples": np.nan_to_num(values["memory_samples"][cells]),
            "coverage": self.coverage[cells],
        }


@dataclass(frozen=True)
class _PodColumns:
    """The collected pod-containers (sorted by workload container, then pod) as plain columns, so that a
    workload container's are slices, not pandas lookups."""

    namespace: np.ndarray
    kind: np.ndarray
    name: np.ndarray
    container: np.ndarray
    pod: np.ndarray
    row: np.ndarray
    last_seen: np.ndarray
    spec_cpu_request: np.ndarray
    spec_cpu_limit: np.ndarray
    spec_memory_limit: np.ndarray
    memory_peak: np.ndarray
    oom_kills: np.ndarray
    oom_killed_memory: np.ndarray
    owner_source: np.ndarray
    throttling: list[PodThrottling | None]

    @classmethod
    def of(cls, per_pod: pd.DataFrame) -> _PodColumns:
        def floats(column: str) -> np.ndarray:
            values: np.ndarray = per_pod[column].to_numpy(dtype=float, na_value=np.nan)
            return values

        def objects(column: str) -> np.ndarray:
            values: np.ndarray = per_pod[column].to_numpy(dtype=object)
            return values

        return cls(
            **{c: objects(c) for c in ("namespace", "kind", "name", "container", "pod", "owner_source")},
            **{
                c: floats(c)
                for c in (
                    "last_seen",
                    "spec_cpu_request",
                    "spec_cpu_limit",
                    "spec_memory_limit",
                    "memory_peak",
                    "oom_killed_memory",
                )
            },
            row=per_pod["row"].to_numpy(dtype=np.int64),
            oom_kills=per_pod["oom_kills"].to_numpy(dtype=np.int64),
            throttling=_throttling(per_pod),
        )


def _gather(
    pods: _PodColumns,
    first: int,
    end: int,
    history: _HistoryCells,
    grid: HistoryGrid,
    requests: dict[tuple[str, str, str], dict[str, Decimal]],
    limits: dict[tuple[str, str, str], dict[str, Decimal]],
) -> _Gathered:
    """One workload container from its pods (rows ``first`` to ``end`` of ``pods``) and the batch's
    history rows."""
    ours = slice(first, end)
    key = ContainerKey(pods.namespace[first], pods.kind[first], pods.name[first], pods.container[first])
    seen = pods.last_seen[ours]
    newest = first + int(np.flatnonzero(seen == np.nanmax(seen))[-1]) if not np.isnan(seen).all() else end - 1
    pod_key = (key.namespace, pods.pod[newest], key.container)
    current = Resources(
        requests=_with_spec(requests.get(pod_key, {}), {CPU: pods.spec_cpu_request[newest]}),
        limits=_with_spec(
            limits.get(pod_key, {}),
            {CPU: pods.spec_cpu_limit[newest], MEMORY: pods.spec_memory_limit[newest]},
        ),
    )
    cut = history.columns(pods.row[ours])
    columns = (np.repeat(pods.pod[ours], cut["count"]), *(cut[name] for name in HISTORY_COLUMNS[1:]))
    rest = ContainerUsage(
        history=_NO_HISTORY,
        grid=grid,
        throttling=tuple(t for t in pods.throttling[ours] if t is not None),
        memory_peak_bytes=_max(pods.memory_peak[ours]),
        oom_kills=int(pods.oom_kills[ours].sum()),
        oom_killed_memory_bytes=_max(pods.oom_killed_memory[ours]),
        owner_source=_weakest_owner_source(pods.owner_source[ours]),
    )
    return _Gathered(key, current, columns, rest)


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
    return CollectedBatch(
        kept={
            group.key: KeptUsage(group.rest, group.columns)
            for group in _gathered(frames, labels, known_owners)
        },
        failed_workloads=failed_workloads(frames, known_owners),
        failed=frames.failed,
    )


OwnersKey = tuple[tuple[str, ...], ...]


def batch_pods(frames: UsageFrames, labels: LabelConfig) -> frozenset[tuple[str, str]]:
    """(namespace, pod) of every pod whose workload ``collect_batch`` looks up: those with bucketed
    history and those of a failed scope."""
    pods = {(scope.namespace, pod) for scope in frames.failed for pod in scope.pods}
    arrays = frames.history(labels)
    keys = arrays.keys[_present(arrays).any(axis=1)]
    pairs = keys[[labels.namespace, labels.pod]].drop_duplicates()
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


def _with_per_pod_values(per_pod: pd.DataFrame, frames: UsageFrames, renames: dict[str, str]) -> pd.DataFrame:
    """Each pod container's memory peak, CFS periods and spec."""
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


def _with_cpu_limits(per_pod: pd.DataFrame, limits: pd.DataFrame) -> pd.DataFrame:
    """The CPU limit each pod ran under: cAdvisor's CFS quota, else kube-state-metrics' limit."""
    if not limits.empty and {"resource", *KEY} <= set(limits.columns):
        state = _values(limits[limits["resource"] == CPU], "state_cpu_limit")
        per_pod = per_pod.merge(state, on=KEY, how="left")
    else:
        per_pod = per_pod.assign(state_cpu_limit=np.nan)
    per_pod["cpu_limit"] = (
        per_pod["spec_cpu_limit"].astype(float).fillna(per_pod["state_cpu_limit"].astype(float))
    )
    return per_pod.drop(columns="state_cpu_limit")


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


def _throttling(pods: pd.DataFrame) -> list[PodThrottling | None]:
    """Per pod: the CFS periods of a pod that ran with a CPU limit, and the limit (to the millicore);
    None for the others."""
    periods = pods["cfs_periods"].to_numpy(dtype=float, na_value=np.nan)
    throttled = pods["cfs_throttled"].to_numpy(dtype=float, na_value=np.nan)
    limit = pods["cpu_limit"].to_numpy(dtype=float, na_value=np.nan)
    return [
        None
        if not p > 0
        else PodThrottling(
            pod=pod,
            limit_cores=None if np.isnan(cores) else round(float(cores) * 1000) / 1000,
            periods=float(p),
            throttled_periods=0.0 if np.isnan(t) else float(t),
        )
        for pod, p, t, cores in zip(pods["pod"], periods, throttled, limit, strict=True)
    ]


def _weakest_owner_source(sources: np.ndarray) -> str:
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


def _max(values: np.ndarray) -> float | None:
    return None if np.isnan(values).all() else float(np.nanmax(values))

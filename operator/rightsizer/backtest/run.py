"""A backtest from end to end: one fetch per namespace, then the replay of every target in memory."""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rightsizer.backtest import operator_parts
from rightsizer.backtest.replay import ReplayConfig, WorkloadReplay, replay_workload
from rightsizer.backtest.timeline import Timeline, timelines
from rightsizer.cost import Prices
from rightsizer.policy import AUTO, PolicyError, PolicySpec, parse_policy
from rightsizer.promql import LabelConfig
from rightsizer.settings import DAY_SECONDS, SettingsError
from rightsizer.shards import FailedScope
from rightsizer.source import ProgressCallback, PrometheusSource
from rightsizer.workload import KINDS

DEFAULT_POLICY: dict[str, Any] = {"selector": {}, "kinds": list(KINDS), "mode": AUTO}
"""Without ``--policy``: every workload of every kind, with the CRD's defaults, in Auto mode."""


@dataclass(frozen=True)
class LoadedPolicy:
    spec: PolicySpec
    name: str
    namespace: str | None
    notes: tuple[str, ...] = ()


def load_policy(path: Path | None) -> LoadedPolicy:
    """A RightSizePolicy from a file (the whole object, or its spec alone), or the defaults."""
    if path is None:
        return LoadedPolicy(parse_policy(DEFAULT_POLICY), "defaults", None)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SettingsError(f"--policy {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"--policy {path} is not YAML: {error}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"--policy {path} is not a RightSizePolicy")
    if "spec" in document and document.get("kind", "RightSizePolicy") != "RightSizePolicy":
        raise SettingsError(f"--policy {path} is a {document.get('kind')}, not a RightSizePolicy")
    raw = document.get("spec", document)
    metadata = document.get("metadata") or {}
    try:
        spec = parse_policy(raw)
    except PolicyError as error:
        raise SettingsError(f"--policy {path}: {error}") from None
    notes = []
    if spec.mode != AUTO:
        notes.append(f"the policy's mode is {spec.mode}: replayed as Auto mode would have applied it")
    if spec.selector is not None and (spec.selector.match_labels or spec.selector.match_expressions):
        notes.append(
            "the policy's selector is not evaluated (Prometheus does not have the workloads' labels): every "
            f"{', '.join(spec.selector_kinds)} of the namespace is replayed"
        )
    return LoadedPolicy(spec, str(metadata.get("name", path.stem)), metadata.get("namespace"), tuple(notes))


@dataclass(frozen=True)
class BacktestRequest:
    namespaces: tuple[str, ...]
    days: int
    policy: LoadedPolicy
    step_seconds: int
    labels: LabelConfig = field(default_factory=LabelConfig)


@dataclass
class NamespaceBacktest:
    namespace: str
    workloads: list[WorkloadReplay]
    failed: tuple[FailedScope, ...] = ()


@dataclass
class BacktestResult:
    request: BacktestRequest
    prices: Prices
    start: float
    end: float
    bucket_seconds: int
    namespaces: list[NamespaceBacktest]
    queries_sent: int = 0
    fetch_seconds: float = 0.0
    replay_seconds: float = 0.0

    @property
    def span_hours(self) -> float:
        return (self.end - self.start) / 3600


def run_backtest(
    source: PrometheusSource,
    request: BacktestRequest,
    prices: Prices,
    *,
    end: float | None = None,
    progress: ProgressCallback | None = None,
) -> BacktestResult:
    """Fetch each namespace's last ``days`` once and replay the policy over its targets."""
    spec = request.policy.spec
    end = float(round(time.time() if end is None else end))
    span = request.days * DAY_SECONDS
    bucket = operator_parts.policy_bucket_seconds(
        spec.history_seconds, request.labels, spec.cpu_window_seconds
    )
    if request.step_seconds % bucket:
        raise SettingsError(f"--step must be a multiple of the policy's history bucket ({bucket}s)")
    if span < 2 * bucket or span // bucket > 11000:
        raise SettingsError(
            f"--days {request.days} cut into {bucket}s buckets is not a span Prometheus can return"
        )
    source.check()
    start = end - (span // bucket) * bucket
    result = BacktestResult(request, prices, start, end, bucket, [])

    def fetch(namespace: str) -> tuple[operator_parts.SpanData, float]:
        started = time.monotonic()
        data = operator_parts.fetch_span(
            source, namespace, request.labels, int(end - start), bucket, spec.cpu_window_seconds, end
        )
        return data, time.monotonic() - started

    # The next namespace is fetched while this one is replayed: the fetch waits on Prometheus, the
    # replay on Python, and on two cores they overlap (docs/benchmarks.md, "Backtest").
    with ThreadPoolExecutor(max_workers=1) as ahead:
        pending = ahead.submit(fetch, request.namespaces[0]) if request.namespaces else None
        for index, namespace in enumerate(request.namespaces, start=1):
            assert pending is not None
            data, seconds = pending.result()
            result.fetch_seconds += seconds
            if index < len(request.namespaces):
                pending = ahead.submit(fetch, request.namespaces[index])
            replaying = time.monotonic()
            config = ReplayConfig(spec, start, end, bucket, request.step_seconds, tuple(data.autoscalers))
            workloads = [replay_workload(group, config) for group in _targets(timelines(data), spec)]
            result.replay_seconds += time.monotonic() - replaying
            result.namespaces.append(NamespaceBacktest(namespace, workloads, data.failed))
            if progress:
                containers = sum(len(w.containers) for w in workloads)
                progress(f"[{index}/{len(request.namespaces)}] {namespace}: {containers} containers replayed")
    result.queries_sent = source.queries_sent
    return result


def _targets(found: list[Timeline], spec: PolicySpec) -> list[list[Timeline]]:
    """The policy's target workloads, each with its containers: its ``targetRef``, or every workload
    of its selector's kinds."""
    groups: dict[tuple[str, str], list[Timeline]] = defaultdict(list)
    for tl in found:
        kind, name = tl.key.kind, tl.key.name
        if spec.target_name is not None:
            if (kind, name) != (spec.target_kind, spec.target_name):
                continue
        elif kind not in spec.selector_kinds:
            continue
        groups[(kind, name)].append(tl)
    return [groups[key] for key in sorted(groups)]

"""A backtest from end to end: one fetch per namespace, then the replay of every target in memory."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from rightsizer.ahead import one_ahead
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

PARALLEL_WORKLOADS = 8
"""Worker processes (``--jobs``) are started once the namespaces fetched hold this many target
workloads: a worker takes about a second to start and import pandas."""
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
    jobs: int = 1
    """Processes the replay runs in (``--jobs``)."""


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

    # Namespaces are fetched one after the other in a thread, one ahead (``ahead.one_ahead``), while the
    # fetched ones are replayed in ``jobs`` processes: the fetch waits on Prometheus and the replay on
    # Python's engine, so on two cores they overlap (docs/benchmarks.md, "Backtest").
    replays: list[tuple[str, tuple[FailedScope, ...], list[Future[_Chunk]]]] = []
    with ExitStack() as stack:
        pool: ProcessPoolExecutor | None = None
        seen = 0
        fetches = one_ahead(partial(fetch, namespace) for namespace in request.namespaces)
        for index, (namespace, (data, seconds)) in enumerate(
            zip(request.namespaces, fetches, strict=True), start=1
        ):
            result.fetch_seconds += seconds
            config = ReplayConfig(spec, start, end, bucket, request.step_seconds, tuple(data.autoscalers))
            groups = _targets(timelines(data), spec)
            seen += len(groups)
            if pool is None and request.jobs > 1 and seen >= PARALLEL_WORKLOADS:
                # Spawned, not forked: this process runs threads.
                pool = stack.enter_context(ProcessPoolExecutor(request.jobs, mp_context=get_context("spawn")))
            chunks = [groups[i :: request.jobs] for i in range(request.jobs)] if pool else [groups]
            submit = pool.submit if pool else _inline
            replays.append(
                (namespace, data.failed, [submit(_replay, chunk, config) for chunk in chunks if chunk])
            )
            if progress:
                progress(f"[{index}/{len(request.namespaces)}] {namespace}: fetched in {seconds:.1f}s")
        for namespace, failed, futures in replays:
            workloads = []
            for future in futures:
                replayed, seconds = future.result()
                workloads += replayed
                result.replay_seconds += seconds
            workloads.sort(key=lambda w: (w.containers[0].key.kind, w.containers[0].key.name))
            result.namespaces.append(NamespaceBacktest(namespace, workloads, failed))
    result.queries_sent = source.queries_sent
    return result


_Chunk = tuple[list[WorkloadReplay], float]


def _replay(groups: list[list[Timeline]], config: ReplayConfig) -> _Chunk:
    """Replay some workloads (in a worker process); their replays and the CPU seconds it took."""
    started = time.thread_time()
    return [replay_workload(group, config) for group in groups], time.thread_time() - started


def _inline(function: Callable[..., _Chunk], *args: Any) -> Future[_Chunk]:
    future: Future[_Chunk] = Future()
    future.set_result(function(*args))
    return future


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

"""Prometheus as the source of usage history: connection, auth, batched queries into pandas.

The number of queries depends on the number of namespaces, never on the number of pods or
containers: each namespace is one batch of the queries in ``promql.QueryScope``. Aggregation
over time happens inside Prometheus, down to one point per pod container and bucket (an hour
for windows of days): the operator never holds full-resolution series.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from threading import Lock
from typing import Any, TypeVar

import pandas as pd
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from rightsizer.buckets import (
    HISTORY_VALUES,
    LEAD_BUCKETS,
    BucketArrays,
    FirstRound,
    first_round,
    with_exact_cpu,
)
from rightsizer.matrix import Matrix, MatrixError, MatrixReader, parse_matrix
from rightsizer.model import HistoryGrid
from rightsizer.promql import (
    CPU_USAGE,
    EXACT_TERM_LABEL,
    MEMORY_WORKING_SET,
    LabelConfig,
    QueryScope,
    autoscaler_query,
    pod_throttling_query,
)
from rightsizer.settings import PROMETHEUS_GZIP, PROMETHEUS_TIMEOUT_SECONDS
from rightsizer.shards import Answer, FailedScope, run_in_shards, split

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
STREAM_CHUNK_BYTES = 1 << 18
"""A range query's answer is read this many bytes at a time (``_matrix``)."""
EXACT_PODS_NAMED = 20
"""Past this many pods with irregular CPU cells at a bucket end, the second round asks for all of them."""
QUERY_MAX_BYTES = 15_000
"""The longest query the second round sends: VictoriaMetrics refuses queries longer than 16 KiB by
default (``-search.maxQueryLen``), and a longer one is split (bucket ends, then pods)."""
STATE_QUERIES_BY_POD = ("pod_owner", "requests", "limits")


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be reached or refused a query; the message says which and why."""


class NotAQueryApi(PrometheusUnavailable):
    """The answer was not shaped like the Prometheus query API's."""


class QueryTooLarge(PrometheusUnavailable):
    """Prometheus refused a query as too large (``--query.max-samples``) or it timed out: a query
    over fewer pods may pass (``shards.py``)."""


TOO_LARGE = ("too many samples", '"errorType":"timeout"', "too long query")
"""How Prometheus' answer says a query was too large or too slow (or, VictoriaMetrics', too long)."""


@dataclass(frozen=True)
class PrometheusAuth:
    """How to authenticate to Prometheus. A token file is re-read on every connection (rotation)."""

    bearer_token: str | None = None
    bearer_token_file: Path | None = None
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        token = self.bearer_token
        if self.bearer_token_file is not None:
            try:
                token = self.bearer_token_file.read_text().strip()
            except FileNotFoundError:
                # An optional Secret that is not there: no token. If Prometheus needs one, its
                # 401 is reported with the query that failed.
                logger.warning(
                    "bearer token file %s does not exist; sending no token", self.bearer_token_file
                )
            except OSError as error:
                raise PrometheusUnavailable(
                    f"cannot read bearer token file {self.bearer_token_file}: {error.strerror}"
                ) from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers


@dataclass(frozen=True)
class UsageFrames:
    """What one batch's queries answered: the bucketed history as arrays (``buckets``; the range queries,
    folded per pod-container, ``rightsizer.buckets``) and one DataFrame per other query (``frames``: a
    ``value`` column and the series' labels; ``oom_restarts`` also a ``time`` column, the end of each
    bucket).

    ``frames`` may also hold the history's values as frames of one row per pod-container and bucket
    (``HISTORY_VALUES``: ``cpu_mean``, ``cpu_peak``, ``memory_mean``, ``memory_samples``), as tests and
    replays build a batch; ``self[name]`` gives them as such either way."""

    frames: dict[str, pd.DataFrame]
    grid: HistoryGrid
    failed: tuple[FailedScope, ...] = ()
    """Pods Prometheus could not answer for (too large even alone): their workloads are left out."""
    buckets: BucketArrays | None = None

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name in self.frames or self.buckets is None or name not in HISTORY_VALUES:
            return self.frames[name]
        return self.buckets.long_frame(name)

    def history(self, labels: LabelConfig) -> BucketArrays:
        """The bucketed history as arrays (built from ``frames`` when the batch came as frames)."""
        if self.buckets is not None:
            return self.buckets
        return BucketArrays.from_frames(self.frames, self.grid, labels)

    def size_bytes(self) -> int:
        """Memory the frames and arrays hold (labels counted as the strings they are)."""
        frames = int(sum(frame.memory_usage(deep=True).sum() for frame in self.frames.values()))
        return frames + (self.buckets.size_bytes() if self.buckets is not None else 0)


ProgressCallback = Callable[[str], None]


def url_error(url: str) -> str | None:
    """Why ``url`` cannot be Prometheus' address, or None."""
    if not url.startswith(("http://", "https://")):
        return f"{url!r} must start with http:// or https://"
    return None


class PrometheusSource:
    """Runs the metric-contract queries against one Prometheus."""

    def __init__(
        self,
        url: str,
        auth: PrometheusAuth | None = None,
        *,
        timeout_seconds: float = PROMETHEUS_TIMEOUT_SECONDS,
        workers: int = 4,
        gzip: bool = PROMETHEUS_GZIP,
    ) -> None:
        error = url_error(url)
        if error:
            raise PrometheusUnavailable(f"Prometheus URL {error}")
        self.url = url.rstrip("/")
        self.auth = auth or PrometheusAuth()
        self.workers = workers
        self.gzip = gzip
        self._sent = Lock()
        self.queries_sent = 0
        """Requests sent so far (from several threads at once: ``_parallel``, ``scan``'s fetch ahead)."""
        self.on_query: Callable[[float, bool], None] | None = None
        """Called after every request with its seconds and whether it succeeded (the operator's metrics)."""
        session = requests.Session()
        session.verify = (
            False if self.auth.insecure_skip_verify else str(self.auth.ca_file) if self.auth.ca_file else True
        )
        basic = (self.auth.username, self.auth.password or "") if self.auth.username else None
        self._client = PrometheusConnect(
            url=self.url,
            headers=self.request_headers(),
            auth=basic,
            session=session,
            timeout=timeout_seconds,
            # Gateway errors are retried; 503 is not: it is how Prometheus says a query timed out, and
            # the same query would time out again (scale benchmark: 3 x 2 minutes, then a failure).
            retry=Retry(total=2, backoff_factor=0.5, status_forcelist=(502, 504), allowed_methods=None),
            method="POST",
        )

    def request_headers(self) -> dict[str, str]:
        """The headers of every request: authentication, the user's own (``--header``, which win), and
        whether the answer may come gzipped (``PROMETHEUS_GZIP``)."""
        return {"Accept-Encoding": "gzip" if self.gzip else "identity", **self.auth.request_headers()}

    def check(self) -> None:
        """Raise ``PrometheusUnavailable`` unless the URL answers as a Prometheus query API."""
        self._call(lambda: self._client.custom_query("vector(1)"), "vector(1)")

    def containers(
        self, namespaces: Sequence[str], window_seconds: int, end: float, labels: LabelConfig
    ) -> dict[str, dict[str, int]]:
        """Per namespace (``namespaces``; none: all), its pods with container memory series in the
        window, and how many containers each has: from the series index (no sample is read)."""
        selector = QueryScope(tuple(namespaces), window_seconds, labels).cadvisor(MEMORY_WORKING_SET)
        client = self._client

        def send() -> list[dict[str, str]]:
            response = client._session.request(
                method="POST",
                url=f"{self.url}/api/v1/series",
                data={"match[]": selector, "start": str(end - window_seconds), "end": str(end)},
                headers=client.headers,
                auth=client.auth,
                timeout=client._timeout,
            )
            if response.status_code != 200:
                raise PrometheusApiClientException(
                    f"HTTP Status Code {response.status_code} ({response.content!r})"
                )
            series: list[dict[str, str]] = response.json()["data"]
            return series

        layout: dict[str, dict[str, set[str]]] = {}
        for labels_of in self._call(send, "series"):
            namespace, pod = labels_of.get(labels.namespace, ""), labels_of.get(labels.pod, "")
            if namespace and pod:
                layout.setdefault(namespace, {}).setdefault(pod, set()).add(
                    labels_of.get(labels.container, "")
                )
        return {ns: {pod: len(names) for pod, names in pods.items()} for ns, pods in sorted(layout.items())}

    def fetch(self, scope: QueryScope, end: float) -> UsageFrames:
        """Run the queries of one scope for a window ending at ``end`` (rounded to the second), in two
        rounds (docs/metrics.md):

        1. every query of ``scope.queries()``: the instant ones at ``end``, the range ones at the end of
           each bucket and of the ``LEAD_BUCKETS`` before the first;
        2. what the first round's answers call for, if anything: the tiled CPU values of the irregular
           buckets (``rightsizer.windows``), the owners, requests and limits of the pods and
           ReplicaSets gone before the last ``recent_seconds``, and the OOM restarts of the containers
           that were OOM-killed.

        Queries of a one-namespace scope that Prometheus refuses as too large are run again in
        shards of its pods (``shards.py``); the pods that fail even alone are in ``failed``."""
        end = float(round(end))
        grid = HistoryGrid(end, scope.window_seconds, scope.bucket_seconds, scope.cpu_window_seconds)
        results = self._run(scope, list(scope.queries()), end)
        refusals = {name: result for name, result in results.items() if isinstance(result, Exception)}
        refused = list(refusals)
        failed: list[FailedScope] = []
        if refused:
            if len(scope.namespaces) != 1:
                raise refusals[refused[0]]
            pods = self.pods(scope, end)
            logger.info(
                "%s: %s too large, asked again over %d pods in shards",
                scope.namespaces[0],
                refused,
                len(pods),
            )
            sharded, failed = run_in_shards(lambda s, names: self._run(s, names, end), scope, refused, pods)
            results |= sharded
        history = {name: _matrix_of(results[name]) for name in scope.history_queries()}
        frames = {
            name: _range_frame(_matrix_of(results[name])) if is_range else _frame_of(results[name])
            for name, (is_range, _) in scope.queries().items()
            if name not in history
        }
        first = first_round(history, grid, scope.labels)
        buckets, frames, more_failed = self._second_round(scope, end, first, frames, failed)
        return UsageFrames(frames, grid, tuple(failed + more_failed), buckets)

    def _second_round(
        self,
        scope: QueryScope,
        end: float,
        first: FirstRound,
        frames: dict[str, pd.DataFrame],
        failed: list[FailedScope],
    ) -> tuple[BucketArrays, dict[str, pd.DataFrame], list[FailedScope]]:
        """What the first round's answers call for (``fetch``), in parallel."""
        tasks: dict[str, Callable[[], tuple[pd.DataFrame, list[FailedScope]]]] = {}
        gone = {pod for scope_failed in failed for pod in scope_failed.pods}  # their workloads are left out
        ends = [
            (at, kept) for at, pods in first.exact_ends() if (kept := tuple(p for p in pods if p not in gone))
        ]
        if ends:
            tasks["exact_cpu"] = lambda: self._exact_cpu(scope, ends, end)
        pods = {str(pod) for pod in first.buckets.keys[scope.labels.pod]} | gone
        for name, narrowed in gone_state_scopes(scope, frames, pods).items():
            tasks[name] = partial(self._state_in_shards, narrowed, name, end)
        oom_killed = frames["oom_killed"]
        if not oom_killed.empty and "pod" in oom_killed.columns:
            killed = replace(scope, pods=tuple(sorted(set(oom_killed["pod"].astype(str)))))
            tasks["oom_restarts"] = partial(self._oom_restarts, killed, end)
        answers = self._parallel(tasks)
        more_failed = [gone for _, found in answers.values() for gone in found]
        exact, _ = answers.get("exact_cpu", (pd.DataFrame(), []))
        buckets = with_exact_cpu(first, exact, EXACT_TERM_LABEL)
        frames = dict(frames)
        for name, (frame, _) in answers.items():
            if name in ("pod_owner", "replicaset_owner", "requests", "limits") and not frame.empty:
                found = [f for f in (frames[name], frame) if not f.empty]
                frames[name] = pd.concat(found, ignore_index=True)
        frames["oom_restarts"] = answers.get("oom_restarts", (pd.DataFrame(), []))[0]
        return buckets, frames, more_failed

    def _exact_cpu(
        self, scope: QueryScope, ends: list[tuple[float, tuple[str, ...]]], end: float
    ) -> tuple[pd.DataFrame, list[FailedScope]]:
        """``scope.exact_cpu_query`` for the bucket ends, as many at a time as fit in ``QUERY_MAX_BYTES``,
        each for its pods, or for the whole scope past ``EXACT_PODS_NAMED`` of them (a bucket of every
        pod costs less than naming hundreds); a query refused as too large is split (by ends, then by
        pods) down to one pod at one end."""
        parts: list[pd.DataFrame] = []
        failed: list[FailedScope] = []
        named = dict(ends)
        pending = _fitting(scope, [(at, pods if len(pods) <= EXACT_PODS_NAMED else ()) for at, pods in ends])
        while pending:
            chunk = pending.pop()
            try:
                parts.append(self._query(scope.exact_cpu_query(chunk), end))
            except QueryTooLarge as error:
                if len(chunk) > 1:
                    pending += [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]]
                    continue
                ((at, pods),) = chunk
                pods = pods or named[at]
                if len(pods) > 1:
                    pending += [[(at, pods[: len(pods) // 2])], [(at, pods[len(pods) // 2 :])]]
                    continue
                failed.append(FailedScope(scope.namespaces[0], pods, ("cpu_mean", "cpu_peak"), str(error)))
        found = [p for p in parts if not p.empty]
        return (pd.concat(found, ignore_index=True) if found else pd.DataFrame()), failed

    def _state_in_shards(
        self, scope: QueryScope, name: str, end: float
    ) -> tuple[pd.DataFrame, list[FailedScope]]:
        """One of ``scope.state_queries(recent=False)``, over shards of ``scope.pods`` (or ReplicaSets)
        where it is longer than ``QUERY_MAX_BYTES`` or refused as too large."""
        query = scope.state_queries(recent=False)[name]
        try:
            if len(query) > QUERY_MAX_BYTES and max(len(scope.pods), len(scope.replicasets)) > 1:
                raise QueryTooLarge(f"{len(query)} bytes")
            return self._query(query, end), []
        except QueryTooLarge:
            if len(scope.pods) <= 1 and len(scope.replicasets) <= 1:
                raise
        frames, failed = [], []
        narrower = (
            [replace(scope, pods=shard) for shard in split(scope.pods)]
            if len(scope.pods) > 1
            else [replace(scope, replicasets=shard) for shard in split(scope.replicasets)]
        )
        for part in narrower:
            frame, gone = self._state_in_shards(part, name, end)
            frames.append(frame)
            failed += gone
        found = [f for f in frames if not f.empty]
        return (pd.concat(found, ignore_index=True) if found else pd.DataFrame()), failed

    def _oom_restarts(self, scope: QueryScope, end: float) -> tuple[pd.DataFrame, list[FailedScope]]:
        first = end - (scope.buckets - 1) * scope.bucket_seconds
        return self._query_range(scope.oom_restarts_query(), first, end, scope.bucket_seconds), []

    def _run(self, scope: QueryScope, names: Sequence[str], end: float) -> dict[str, Answer | Exception]:
        """The named queries of ``scope``, in parallel: each one's answer (a frame for an instant query,
        a ``Matrix`` for a range query), or the ``QueryTooLarge`` it was refused with (any other failure
        is raised)."""
        start = end - (scope.buckets - 1 + LEAD_BUCKETS) * scope.bucket_seconds
        queries = scope.queries()

        def one(name: str) -> Answer | Exception:
            is_range, query = queries[name]
            try:
                if is_range:
                    return self._matrix(query, start, end, scope.bucket_seconds)
                return self._query(query, end)
            except QueryTooLarge as error:
                return error

        return self._parallel({name: partial(one, name) for name in names})

    def _parallel(self, tasks: Mapping[str, Callable[[], T]]) -> dict[str, T]:
        if not tasks:
            return {}
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {name: pool.submit(task) for name, task in tasks.items()}
            return {name: future.result() for name, future in futures.items()}

    def pods(self, scope: QueryScope, end: float) -> list[str]:
        """Pods of the scope with CPU or memory series in the window, from the label index (cheap)."""
        params = {
            "match[]": [scope.cadvisor(CPU_USAGE), scope.cadvisor(MEMORY_WORKING_SET)],
            "start": str(end - scope.window_seconds),
            "end": str(end),
        }
        pod = scope.labels.pod
        values = self._call(lambda: self._client.get_label_values(pod, params), "label values")
        return sorted(v for v in values if v)

    def throttled_shares(
        self, labels: LabelConfig, namespace: str, pods: list[str], seconds: int, end: float
    ) -> dict[str, float]:
        """Each pod's share of CFS periods throttled over ``seconds`` before ``end`` (pods that ran
        without a CPU limit, or not long enough to be scraped twice, are absent)."""
        if not pods:
            return {}
        frame = self._query(pod_throttling_query(labels, namespace, pods, seconds), end)
        if frame.empty:
            return {}
        known = frame.dropna(subset=["value"])  # 0/0: no CFS period at all (no CPU limit)
        return dict(zip(known[labels.pod].astype(str), known["value"].astype(float), strict=True))

    def autoscalers(self, scope: QueryScope, end: float) -> list[dict[str, Any]]:
        """kube-state-metrics' HPAs of the scope's namespaces on CPU or memory utilization at
        ``end``: one row per HPA and resource (``promql.autoscaler_query``); none without the series."""
        rows: list[dict[str, Any]] = self._query(autoscaler_query(scope), end).to_dict("records")
        return rows

    def _query(self, query: str, end: float) -> pd.DataFrame:
        result = self._call(lambda: self._client.custom_query(query, params={"time": str(end)}), query)
        rows = [{**item["metric"], "value": float(item["value"][1])} for item in result]
        return pd.DataFrame(rows)

    def _query_range(self, query: str, start: float, end: float, step: int) -> pd.DataFrame:
        """One row per series and point: the labels, ``time`` and ``value``."""
        return _range_frame(self._matrix(query, start, end, step))

    def _matrix(self, query: str, start: float, end: float, step: int) -> Matrix:
        """A range query's series, read into arrays as the answer streams in (``rightsizer.matrix``): a
        namespace's answer is never held whole. An answer of another shape is asked for again and read
        as JSON."""
        client = self._client

        def send(stream: bool) -> Matrix:
            response = client._session.request(
                method="POST",
                url=f"{self.url}/api/v1/query_range",
                params={"query": query, "start": round(start), "end": round(end), "step": str(step)},
                headers=client.headers,
                auth=client.auth,
                timeout=client._timeout,
                stream=stream,
            )
            with response:
                if response.status_code != 200:
                    raise PrometheusApiClientException(
                        f"HTTP Status Code {response.status_code} ({response.content!r})"
                    )
                if not stream:
                    return parse_matrix(response.content)
                reader = MatrixReader()
                for piece in response.iter_content(chunk_size=STREAM_CHUNK_BYTES):
                    reader.feed(piece)
                return reader.finish()

        try:
            return self._call(lambda: send(stream=True), query)
        except NotAQueryApi:
            return self._call(lambda: send(stream=False), query)

    def _call(self, send: Callable[[], R], what: str) -> R:
        with self._sent:
            self.queries_sent += 1
        started = time.monotonic()
        self._client.headers = self.request_headers()  # a rotated token file is picked up
        ok = False
        try:
            result = send()
            ok = True
            return result
        except requests.exceptions.SSLError as error:
            raise PrometheusUnavailable(f"TLS error talking to {self.url}: {_root_cause(error)}") from None
        except requests.exceptions.ConnectionError as error:
            raise PrometheusUnavailable(
                f"cannot connect to Prometheus at {self.url}: {_root_cause(error)}"
            ) from None
        except requests.exceptions.Timeout:
            elapsed = time.monotonic() - started
            raise QueryTooLarge(f"Prometheus at {self.url} timed out after {elapsed:.0f}s") from None
        except requests.exceptions.RequestException as error:
            raise PrometheusUnavailable(f"request to Prometheus at {self.url} failed: {error}") from None
        except PrometheusApiClientException as error:
            if any(sign in str(error) for sign in TOO_LARGE):
                raise QueryTooLarge(f"Prometheus refused the query as too large: {_reason(error)}") from None
            raise PrometheusUnavailable(f"Prometheus at {self.url} refused {_short(what)}: {error}") from None
        except (ValueError, KeyError, MatrixError) as error:
            raise NotAQueryApi(
                f"{self.url} did not answer like a Prometheus query API ({type(error).__name__}: {error})"
            ) from None
        finally:
            if self.on_query is not None:
                self.on_query(time.monotonic() - started, ok)


def gone_state_scopes(
    scope: QueryScope, frames: Mapping[str, pd.DataFrame], pods: set[str]
) -> dict[str, QueryScope]:
    """The state queries to ask again over the whole window (``QueryScope.state_queries``), each with
    the pods (or ReplicaSets) of the history the first round found no recent series of.

    A Deployment's pod ``<replicaset>-<suffix>`` names its ReplicaSet, so the ReplicaSets of pods whose
    owner is asked for again are asked for at the same time."""
    narrowed = {}
    for name in STATE_QUERIES_BY_POD:
        missing = pods - _column_values(frames[name], "pod")
        if missing:
            narrowed[name] = replace(scope, pods=tuple(sorted(missing)))
    owners = frames["pod_owner"]
    replicasets: set[str] = set()
    if not owners.empty and {"pod", "owner_kind", "owner_name"} <= set(owners.columns):
        ours = owners[owners["pod"].isin(pods) & (owners["owner_kind"] == "ReplicaSet")]
        replicasets |= set(ours["owner_name"].astype(str))
    replicasets |= {pod.rsplit("-", 1)[0] for pod in pods - _column_values(owners, "pod") if "-" in pod}
    replicasets -= _column_values(frames["replicaset_owner"], "replicaset")
    if replicasets:
        narrowed["replicaset_owner"] = replace(scope, replicasets=tuple(sorted(replicasets)))
    return narrowed


def _fitting(
    scope: QueryScope, ends: list[tuple[float, tuple[str, ...]]]
) -> list[list[tuple[float, tuple[str, ...]]]]:
    """``ends`` in runs whose ``exact_cpu_query`` fits in ``QUERY_MAX_BYTES``; an end whose pods alone do
    not fit is split into runs of its pods."""
    runs: list[list[tuple[float, tuple[str, ...]]]] = [[]]
    size = 0
    for at, pods in ends:
        for part in _pods_fitting(scope, at, pods):
            length = len(scope.exact_cpu_query([part])) + len(" or ")
            if runs[-1] and size + length > QUERY_MAX_BYTES:
                runs.append([])
                size = 0
            runs[-1].append(part)
            size += length
    return [run for run in runs if run]


def _pods_fitting(scope: QueryScope, at: float, pods: tuple[str, ...]) -> list[tuple[float, tuple[str, ...]]]:
    if len(pods) <= 1 or len(scope.exact_cpu_query([(at, pods)])) <= QUERY_MAX_BYTES:
        return [(at, pods)]
    half = len(pods) // 2
    return _pods_fitting(scope, at, pods[:half]) + _pods_fitting(scope, at, pods[half:])


def _column_values(frame: pd.DataFrame, column: str) -> set[str]:
    return set(frame[column].astype(str)) if not frame.empty and column in frame.columns else set()


def _matrix_of(answer: Answer | Exception) -> Matrix:
    if isinstance(answer, Matrix):
        return answer
    raise TypeError(f"a range query answered {type(answer).__name__}")


def _range_frame(matrix: Matrix) -> pd.DataFrame:
    """A range answer as one row per series and point: the labels, ``time`` and ``value``."""
    if not len(matrix):
        return pd.DataFrame()
    labels = pd.DataFrame(matrix.labels)
    frame = labels.loc[labels.index.repeat(matrix.counts)].reset_index(drop=True)
    return frame.assign(time=matrix.times, value=matrix.values)


def _frame_of(answer: Answer | Exception) -> pd.DataFrame:
    if isinstance(answer, pd.DataFrame):
        return answer
    raise TypeError(f"an instant query answered {type(answer).__name__}")


def _root_cause(error: BaseException) -> str:
    while error.__context__ is not None and error.__context__ is not error:
        error = error.__context__
    return str(error).split("\n")[0][:300]


def _reason(error: BaseException) -> str:
    """Prometheus' own ``error`` text out of its JSON answer, else the whole message."""
    match = re.search(r'"error":"((?:[^"\\]|\\.)*)"', str(error))
    return match.group(1) if match else str(error)


def _short(query: str) -> str:
    return query if len(query) <= 120 else query[:117] + "..."


def token_from_env(variable: str = "PROMETHEUS_TOKEN") -> str | None:
    """A bearer token from the environment, so it never has to appear on a command line."""
    return os.environ.get(variable) or None

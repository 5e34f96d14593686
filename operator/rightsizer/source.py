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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from rightsizer.model import HistoryGrid
from rightsizer.promql import (
    CPU_USAGE,
    MEMORY_WORKING_SET,
    LabelConfig,
    QueryScope,
    autoscaler_query,
    pod_throttling_query,
)
from rightsizer.settings import PROMETHEUS_TIMEOUT_SECONDS
from rightsizer.shards import FailedScope, run_in_shards

logger = logging.getLogger(__name__)


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be reached or refused a query; the message says which and why."""


class QueryTooLarge(PrometheusUnavailable):
    """Prometheus refused a query as too large (``--query.max-samples``) or it timed out: a query
    over fewer pods may pass (``shards.py``)."""


TOO_LARGE = ("too many samples", '"errorType":"timeout"')
"""How Prometheus' answer says a query was too large or too slow."""


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
    """Raw per-pod query results of one batch, one DataFrame per query name (see ``QueryScope``):
    a ``value`` column and the series' labels; range queries (``history_queries``) also a ``time``
    column, the end of each bucket."""

    frames: dict[str, pd.DataFrame]
    grid: HistoryGrid
    failed: tuple[FailedScope, ...] = ()
    """Pods Prometheus could not answer for (too large even alone): their workloads are left out."""

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]

    def size_bytes(self) -> int:
        """Memory the frames hold (labels counted as the strings they are)."""
        return int(sum(frame.memory_usage(deep=True).sum() for frame in self.frames.values()))


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
    ) -> None:
        error = url_error(url)
        if error:
            raise PrometheusUnavailable(f"Prometheus URL {error}")
        self.url = url.rstrip("/")
        self.auth = auth or PrometheusAuth()
        self.workers = workers
        self.queries_sent = 0
        self.on_query: Callable[[float, bool], None] | None = None
        """Called after every request with its seconds and whether it succeeded (the operator's metrics)."""
        session = requests.Session()
        session.verify = (
            False if self.auth.insecure_skip_verify else str(self.auth.ca_file) if self.auth.ca_file else True
        )
        basic = (self.auth.username, self.auth.password or "") if self.auth.username else None
        self._client = PrometheusConnect(
            url=self.url,
            headers=self.auth.request_headers(),
            auth=basic,
            session=session,
            timeout=timeout_seconds,
            # Gateway errors are retried; 503 is not: it is how Prometheus says a query timed out, and
            # the same query would time out again (scale benchmark: 3 x 2 minutes, then a failure).
            retry=Retry(total=2, backoff_factor=0.5, status_forcelist=(502, 504), allowed_methods=None),
            method="POST",
        )

    def check(self) -> None:
        """Raise ``PrometheusUnavailable`` unless the URL answers as a Prometheus query API."""
        self._call(lambda: self._client.custom_query("vector(1)"), "vector(1)")

    def namespaces(self, window_seconds: int, end: float, labels: LabelConfig) -> list[str]:
        """Namespaces with container memory series in the window, from the label index (cheap)."""
        selector = QueryScope((), window_seconds, labels).cadvisor(MEMORY_WORKING_SET)
        params = {"match[]": selector, "start": str(end - window_seconds), "end": str(end)}
        values = self._call(lambda: self._client.get_label_values(labels.namespace, params), "label values")
        return sorted(v for v in values if v)

    def fetch(self, scope: QueryScope, end: float) -> UsageFrames:
        """Run every query of one scope for a window ending at ``end`` (rounded to the second): the
        instant queries at ``end``, the range queries at the end of each bucket. Results as
        DataFrames keyed by query name; each range result is made compact as soon as it arrives.

        Queries of a one-namespace scope that Prometheus refuses as too large are run again in
        shards of its pods (``shards.py``); the pods that fail even alone are in ``failed``."""
        end = float(round(end))
        grid = HistoryGrid(end, scope.window_seconds, scope.bucket_seconds, scope.cpu_window_seconds)
        results = self._run(scope, list(scope.queries()), end)
        refused = [name for name, result in results.items() if isinstance(result, Exception)]
        failed: list[FailedScope] = []
        if refused:
            if len(scope.namespaces) != 1:
                raise results[refused[0]]
            pods = self.pods(scope, end)
            logger.info(
                "%s: %s too large, asked again over %d pods in shards",
                scope.namespaces[0],
                refused,
                len(pods),
            )
            sharded, failed = run_in_shards(lambda s, names: self._run(s, names, end), scope, refused, pods)
            results |= sharded
        frames = {name: result for name, result in results.items() if isinstance(result, pd.DataFrame)}
        return UsageFrames(frames, grid, tuple(failed))

    def _run(
        self, scope: QueryScope, names: Sequence[str], end: float
    ) -> dict[str, pd.DataFrame | Exception]:
        """The named queries of ``scope``, in parallel: each one's frame, or the ``QueryTooLarge``
        it was refused with (any other failure is raised)."""
        first = end - (scope.buckets - 1) * scope.bucket_seconds
        queries = scope.queries()

        def one(name: str) -> pd.DataFrame | Exception:
            is_range, query = queries[name]
            try:
                if is_range:
                    return self._query_range(query, first, end, scope.bucket_seconds)
                return self._query(query, end)
            except QueryTooLarge as error:
                return error

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {name: pool.submit(one, name) for name in names}
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
        result = self._call(
            lambda: self._client.custom_query_range(
                query, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), str(step)
            ),
            query,
        )
        if not result:
            return pd.DataFrame()
        labels = pd.DataFrame([series["metric"] for series in result])
        counts = [len(series["values"]) for series in result]
        points = np.array([point for series in result for point in series["values"]], dtype=float)
        frame = labels.loc[labels.index.repeat(counts)].reset_index(drop=True)
        return frame.assign(time=points[:, 0], value=points[:, 1])

    def _call(self, send: Callable[[], list[Any]], what: str) -> list[Any]:
        self.queries_sent += 1
        started = time.monotonic()
        self._client.headers = self.auth.request_headers()  # a rotated token file is picked up
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
        except (ValueError, KeyError) as error:
            raise PrometheusUnavailable(
                f"{self.url} did not answer like a Prometheus query API ({type(error).__name__}: {error})"
            ) from None
        finally:
            if self.on_query is not None:
                self.on_query(time.monotonic() - started, ok)


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

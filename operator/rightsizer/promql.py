"""PromQL for the metric contract (docs/metrics.md), built from settings, never from pasted strings.

Every label value is escaped; label names and matchers are validated, so a namespace called
``a"} or vector(1) #`` stays a namespace.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rightsizer.settings import CPU_WINDOW_SECONDS, DAY_SECONDS

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')

CPU_USAGE = "container_cpu_usage_seconds_total"
MEMORY_WORKING_SET = "container_memory_working_set_bytes"
CFS_PERIODS = "container_cpu_cfs_periods_total"
CFS_THROTTLED = "container_cpu_cfs_throttled_periods_total"
SPEC_CPU_QUOTA = "container_spec_cpu_quota"
SPEC_CPU_PERIOD = "container_spec_cpu_period"
SPEC_CPU_SHARES = "container_spec_cpu_shares"
SPEC_MEMORY_LIMIT = "container_spec_memory_limit_bytes"
OOM_EVENTS = "container_oom_events_total"
POD_OWNER = "kube_pod_owner"
REPLICASET_OWNER = "kube_replicaset_owner"
REQUESTS = "kube_pod_container_resource_requests"
LIMITS = "kube_pod_container_resource_limits"
LAST_TERMINATED = "kube_pod_container_status_last_terminated_reason"
RESTARTS = "kube_pod_container_status_restarts_total"
HPA_INFO = "kube_horizontalpodautoscaler_info"
HPA_TARGET_METRIC = "kube_horizontalpodautoscaler_spec_target_metric"


HISTORY_BUCKET_SECONDS = 1800
"""Bucket of the history for windows of a day or more: 48 a day, 672 points a series for 14 days
instead of 4,032 at 5 minutes. Half an hour: a bucket's highest and mean 5-minute CPU rates
estimate a day's p95 of 5-minute rates within 2% on the benchmark's workloads (an hour misses
up to 40% where short bursts come several an hour); any load that lasts an hour fills a whole
bucket, whatever the clock (the engine's sustained load); and a leak's slope shows over a day."""
SHORT_WINDOW_BUCKETS = 288
"""Windows shorter than a day (minutes, in tests and demos) are cut into buckets of the CPU
window, or into at most this many buckets (a day's worth of 5-minute windows)."""
UNLIMITED_MEMORY_BYTES = 2**62
"""cAdvisor reports "no memory limit" as a huge number (page-rounded 2^63); anything above this is none."""
NO_CPU_REQUEST_SHARES = 2
"""CPU shares the kubelet gives a container without a CPU request (the kernel's minimum)."""
CPU_SHARES_PER_CORE = 1024
RANGE_EDGE_SECONDS = 1
"""Less than any scrape interval: a range this much longer than a bucket holds the sample at the
bucket's start on Prometheus 3 as on Prometheus 2, and one this much shorter leaves it out on both."""


RECENT_STATE_SECONDS = 3600
"""How far back the first round reads kube-state-metrics' owners, requests and limits (``state_queries``)."""
EXACT_TERM_LABEL = "rightsizer_term"
"""The label that tells the terms of ``QueryScope.exact_cpu_query`` apart."""


class PromQLError(ValueError):
    """A label name or matcher that is not valid PromQL."""


def escape(value: str) -> str:
    """A PromQL double-quoted string literal for ``value``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def regex_alternatives(values: list[str]) -> str:
    """A regex matching exactly one of ``values`` (each taken literally)."""
    return "|".join(re.escape(v) for v in values)


@dataclass(frozen=True)
class Matcher:
    """One label matcher, e.g. ``cluster="prod-eu"``."""

    label: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = MATCHER.match(text)
        if not match:
            raise PromQLError(f'extra matcher {text!r} is not of the form label="value" (or !=, =~, !~)')
        label, op, raw = match.groups()
        return cls(label, op, raw.encode().decode("unicode_escape"))

    def render(self) -> str:
        return f"{self.label}{self.op}{escape(self.value)}"


@dataclass(frozen=True)
class LabelConfig:
    """Label names of the cAdvisor series, and matchers added to every selector.

    kube-state-metrics always labels ``namespace``/``pod``/``container``; older cAdvisor
    versions use ``pod_name``/``container_name``.
    """

    namespace: str = "namespace"
    pod: str = "pod"
    container: str = "container"
    extra_matchers: tuple[Matcher, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in (self.namespace, self.pod, self.container):
            if not LABEL_NAME.match(name):
                raise PromQLError(f"{name!r} is not a valid Prometheus label name")


@dataclass(frozen=True)
class QueryScope:
    """Which series one batch of queries covers: one or more namespaces, over a window ending at a time."""

    namespaces: tuple[str, ...]
    """Empty means every namespace."""
    window_seconds: int
    labels: LabelConfig = field(default_factory=LabelConfig)
    cpu_window_seconds: int = CPU_WINDOW_SECONDS
    """Short window of CPU rates (the 'usage' whose percentile is taken); also the subquery step,
    so the windows tile each bucket without gaps or overlap."""
    pods: tuple[str, ...] = ()
    """Only these pods (a shard of a namespace too large for one query, the pods a second round asks for
    again); empty means every pod."""
    replicasets: tuple[str, ...] = ()
    """Only these ReplicaSets in ``replicaset_owner``; empty means every one."""

    @property
    def window(self) -> str:
        return f"{self.window_seconds}s"

    @property
    def bucket_seconds(self) -> int:
        """Length of one bucket of the history (see ``HISTORY_BUCKET_SECONDS``): a whole number of
        CPU windows, so that a bucket's CPU windows tile it."""
        if self.window_seconds >= DAY_SECONDS:
            wanted = HISTORY_BUCKET_SECONDS
        else:
            wanted = math.ceil(self.window_seconds / SHORT_WINDOW_BUCKETS)
        return self.cpu_window_seconds * max(1, math.ceil(wanted / self.cpu_window_seconds))

    @property
    def buckets(self) -> int:
        """Buckets in the window: the range queries have one point per bucket and pod container."""
        return max(1, self.window_seconds // self.bucket_seconds)

    def cadvisor(self, metric: str) -> str:
        """Selector of a cAdvisor series: real containers only (no pod cgroup, no pause container)."""
        lab = self.labels
        parts = [
            *self._namespace_matcher(lab.namespace),
            *self._pod_matcher(lab.pod),
            f'{lab.container}!=""',
            f'{lab.container}!="POD"',
            *(m.render() for m in lab.extra_matchers),
        ]
        return f"{metric}{{{', '.join(parts)}}}"

    def ksm(self, metric: str, *extra: str, per_pod: bool = True) -> str:
        """Selector of a kube-state-metrics series (``per_pod``: it has a ``pod`` label)."""
        parts = [
            *self._namespace_matcher("namespace"),
            *(self._pod_matcher("pod") if per_pod else []),
            *extra,
            *(m.render() for m in self.labels.extra_matchers),
        ]
        return f"{metric}{{{', '.join(parts)}}}"

    def _namespace_matcher(self, label: str) -> list[str]:
        if not self.namespaces:
            return []
        if len(self.namespaces) == 1:
            return [f"{label}={escape(self.namespaces[0])}"]
        return [f"{label}=~{escape(regex_alternatives(list(self.namespaces)))}"]

    def _pod_matcher(self, label: str) -> list[str]:
        return [f"{label}=~{escape(regex_alternatives(list(self.pods)))}"] if self.pods else []

    def queries(self) -> dict[str, tuple[bool, str]]:
        """Every query of the batch's first round by name: (is it a range query, PromQL)."""
        return {
            **{name: (False, q) for name, q in {**self.usage_queries(), **self.state_queries()}.items()},
            **{name: (True, q) for name, q in self.history_queries().items()},
        }

    @property
    def by_container(self) -> str:
        lab = self.labels
        return f"{lab.namespace}, {lab.pod}, {lab.container}"

    def history_queries(self) -> dict[str, str]:
        """Range queries, evaluated at the end of every bucket (``bucket_seconds`` apart) over the
        window and one bucket before it: one point per bucket and series, each about that bucket.

        - ``cpu_counter``: the CPU counter at the bucket's end (the bare selector).
        - ``cpu_increase``: the most the counter grew from one CPU window's end to the next in the bucket's
          windows (``idelta`` of the counter at the windows' ends, in the one subquery); none when a
          bucket is one CPU window.
        - ``memory_mean``: the mean working set of the bucket's raw samples.
        - ``memory_samples``: how many samples the bucket holds: the share of the bucket a pod ran.

        Series by series, not aggregated: functions of one series each, which Prometheus evaluates without
        matching labels at every step; the client folds a container's series (``max``) and turns the CPU
        values into the tiled windows' means and peaks where a bucket is regular (``rightsizer.windows``),
        asking for the others with ``exact_cpu_query``.

        The memory ranges are ``RANGE_EDGE_SECONDS`` longer than the bucket, so that a bucket's samples
        include the one at its start on every backend (docs/recommendations.md, "Queries").
        """
        cpu, window, bucket = self.cadvisor(CPU_USAGE), self.cpu_window_seconds, self.bucket_seconds
        memory, both_ends = self.cadvisor(MEMORY_WORKING_SET), f"{bucket + RANGE_EDGE_SECONDS}s"
        queries = {"cpu_counter": cpu}
        if bucket > window:
            # The counter at each window's end (the bare selector: the cheapest read), where a regular
            # bucket has a sample in every window: its last sample in the window (rightsizer.windows).
            steps = f"idelta(({cpu})[{window + RANGE_EDGE_SECONDS}s:{window}s])"
            queries["cpu_increase"] = f"max_over_time({steps}[{bucket - RANGE_EDGE_SECONDS}s:{window}s])"
        return queries | {
            "memory_mean": f"avg_over_time({memory}[{both_ends}])",
            "memory_samples": f"count_over_time({memory}[{both_ends}])",
        }

    def tiled_cpu_queries(self, at: float | None = None) -> dict[str, str]:
        """The CPU values of each bucket as tiled windows (``tiled_rate``), at the bucket's end, or at
        ``at`` (the ``@`` modifier):

        - ``cpu_mean``: the CPU seconds of the bucket over the bucket (no subquery).
        - ``cpu_peak``: the highest of the bucket's own CPU windows: a subquery whose range is
          ``RANGE_EDGE_SECONDS`` short of the bucket (its windows only, not the previous bucket's last).

        These are what ``history_queries`` give where a bucket is regular (``rightsizer.windows``); the
        irregular buckets are asked for with them (``exact_cpu_query``)."""
        by, cpu, window = self.by_container, self.cadvisor(CPU_USAGE), self.cpu_window_seconds
        peak = tiled_rate(cpu, window, at=None if self.bucket_seconds > window else at)
        if self.bucket_seconds > window:
            subquery = f"({peak})[{self.bucket_seconds - RANGE_EDGE_SECONDS}s:{window}s]"
            peak = f"max_over_time({subquery}{_at(at)})"
        return {
            "cpu_mean": _agg("max", by, tiled_rate(cpu, self.bucket_seconds, at=at)),
            "cpu_peak": _agg("max", by, peak),
        }

    def exact_cpu_query(self, ends: Sequence[tuple[float, tuple[str, ...]]]) -> str:
        """One instant query for the tiled CPU values of the given bucket ends, each for the given pods
        (none: the whole scope): ``tiled_cpu_queries`` at each end, told apart by the label
        ``EXACT_TERM_LABEL`` (``cpu_mean@<end>``, ``cpu_peak@<end>``)."""
        terms = []
        for end, pods in ends:
            scope = replace(self, pods=pods) if pods else self
            for name, query in scope.tiled_cpu_queries(at=end).items():
                term = escape(f"{name}@{end:.3f}")
                terms.append(f'label_replace({query}, "{EXACT_TERM_LABEL}", {term}, "", "")')
        return " or ".join(terms)

    def usage_queries(self) -> dict[str, str]:
        """Instant per-pod aggregates over the whole window: the working set's peak over raw samples
        (a subquery would skip samples between its steps and miss short spikes), CFS periods, and
        the containers' spec."""
        by, w = self.by_container, self.window
        return {
            "memory_peak": _agg("max", by, f"max_over_time({self.cadvisor(MEMORY_WORKING_SET)}[{w}])"),
            "cfs_periods": _agg("max", by, f"increase({self.cadvisor(CFS_PERIODS)}[{w}])"),
            "cfs_throttled": _agg("max", by, f"increase({self.cadvisor(CFS_THROTTLED)}[{w}])"),
            "cadvisor_spec": self._cadvisor_spec(),
        }

    def oom_restarts_query(self) -> str:
        """Per bucket, the restarts of a container whose last termination was an OOM kill at the
        bucket's end: OOM kills, not every restart of a container that was once OOM-killed.

        The restarts of a bucket are the counter now minus the counter a bucket ago (exact,
        whatever the scrape interval), or the counter itself in a pod's first bucket. A bucket with
        both an OOM kill and another restart counts both as the reason at its end. Asked for only
        for the pods ``oom_killed`` names (``source.PrometheusSource.fetch``).
        """
        by = "namespace, pod, container"
        restarts = self.ksm(RESTARTS)
        now = _agg("max", by, restarts)
        before = _agg("max", by, f"{restarts} offset {self.bucket_seconds}s")
        oom_reason = _agg("max", by, self.ksm(LAST_TERMINATED, f"reason={escape('OOMKilled')}"))
        return f"(({now} - {before}) or {now}) > 0 and on ({by}) {oom_reason}"

    def _cadvisor_spec(self) -> str:
        """What cAdvisor says of each pod's container spec, one row per (pod, container, ``spec``):

        - ``cpu_limit``: the smallest CFS quota / period of the window, in cores. Throttling is
          judged per CPU limit; a pod resized in place is counted under its lowest limit, the
          one it was throttled under.
        - ``cpu_request``: the last CPU shares / 1024 (a request; 2 shares mean none).
        - ``memory_limit``: the last memory limit in bytes (none when unlimited).
        - ``oom_events``: OOM kills cAdvisor counted, summed over the pod's container instances.

        One query, not four, so the batch stays at a fixed size; requests, limits and OOM kills
        come from here where kube-state-metrics is not scraped (docs/metrics.md).
        """
        by, w = self.by_container, self.window
        quota, period = self.cadvisor(SPEC_CPU_QUOTA), self.cadvisor(SPEC_CPU_PERIOD)
        shares, memory = self.cadvisor(SPEC_CPU_SHARES), self.cadvisor(SPEC_MEMORY_LIMIT)
        parts = {
            "cpu_limit": _agg("min", by, f"(min_over_time({quota}[{w}]) > 0) / max_over_time({period}[{w}])"),
            "cpu_request": _agg(
                "max",
                by,
                f"(last_over_time({shares}[{w}]) > {NO_CPU_REQUEST_SHARES}) / {CPU_SHARES_PER_CORE}",
            ),
            "memory_limit": _agg("max", by, f"last_over_time({memory}[{w}]) > 0 < {UNLIMITED_MEMORY_BYTES}"),
            "oom_events": _agg("sum", by, f"max_over_time({self.cadvisor(OOM_EVENTS)}[{w}])"),
        }
        return " or ".join(
            f'label_replace({expression}, "spec", {escape(name)}, "", "")'
            for name, expression in parts.items()
        )

    @property
    def recent_seconds(self) -> int:
        """How far back the first round looks for kube-state-metrics' last values (``state_queries``)."""
        return min(self.window_seconds, RECENT_STATE_SECONDS)

    def state_queries(self, recent: bool = True) -> dict[str, str]:
        """kube-state-metrics aggregates: ownership, requests and limits, the last OOM kill.

        Owners, requests and limits are each series' last value in the window. The first round reads
        them over the last ``recent_seconds`` only: a series with a sample there has its last one
        there. The pods and ReplicaSets seen in the history but not there (gone before) are asked for
        again over the whole window (``recent=False``, with ``pods`` or ``replicasets`` set): reading
        14 days of every pod's series to find the last value of the few that ended was most of the
        batch's kube-state-metrics cost. ``oom_killed`` reads only the series of OOM kills, over the
        whole window.
        """
        w = f"{self.recent_seconds}s" if recent else self.window
        by_container = "namespace, pod, container"
        by_resource = "namespace, pod, container, resource"
        deployment_owner = self.ksm(
            REPLICASET_OWNER, f"owner_kind={escape('Deployment')}", *self._replicaset_matcher(), per_pod=False
        )
        oom_reason = self.ksm(LAST_TERMINATED, f"reason={escape('OOMKilled')}")
        return {
            "pod_owner": _agg(
                "max", "namespace, pod, owner_kind, owner_name", f"last_over_time({self.ksm(POD_OWNER)}[{w}])"
            ),
            "replicaset_owner": _agg(
                "max",
                "namespace, replicaset, owner_kind, owner_name",
                f"last_over_time({deployment_owner}[{w}])",
            ),
            "requests": _agg("max", by_resource, f"last_over_time({self.ksm(REQUESTS)}[{w}])"),
            "limits": _agg("max", by_resource, f"last_over_time({self.ksm(LIMITS)}[{w}])"),
            "oom_killed": _agg("max", by_container, f"max_over_time({oom_reason}[{self.window}])"),
        }

    def _replicaset_matcher(self) -> list[str]:
        if not self.replicasets:
            return []
        return [f"replicaset=~{escape(regex_alternatives(list(self.replicasets)))}"]


def _agg(operator: str, by: str, expression: str) -> str:
    return f"{operator} by ({by}) ({expression})"


def tiled_rate(counter: str, seconds: int, *, at: float | None = None) -> str:
    """The per-second increase of ``counter`` over the ``seconds`` ending at each evaluation, such that
    windows evaluated ``seconds`` apart tile the time, alike on every backend: the counter's last sample
    in the window minus its last sample before it, over ``seconds``.

    ``rate(x[W])`` tiles on Prometheus 2 only where samples fall on the windows' edges: Prometheus 3
    leaves the sample at a range's start out (4 minutes of every 5 at a 60 s scrape, extrapolated), and
    wherever scrapes fall inside their minute every Prometheus loses the interval across each edge. A
    range one second longer would make VictoriaMetrics' rate, which reaches for the sample before its
    range, span one scrape interval more. Where the difference is negative (the counter was reset) or
    missing (no sample a window ago: a pod's first window, the start of the history), it is the increase
    within the window (last minus lowest), never the counter itself. The window's samples are looked for
    ``RANGE_EDGE_SECONDS`` short of it: a sample at its very start belongs to the window before. ``at``:
    evaluated at that time whenever the query is (the ``@`` modifier on every selector).
    """
    inside = f"{counter}[{seconds - RANGE_EDGE_SECONDS}s]{_at(at)}"
    tiled = f"(last_over_time({inside}) - {counter}{_at(at)} offset {seconds}s) / {seconds} >= 0"
    return f"{tiled} or (last_over_time({inside}) - min_over_time({inside})) / {seconds} > 0"


def _at(at: float | None) -> str:
    return "" if at is None else f" @ {at:.3f}"


def pod_throttling_query(labels: LabelConfig, namespace: str, pods: list[str], seconds: int) -> str:
    """Each named pod's share of CFS periods throttled over the last ``seconds`` (all its containers):
    how Auto mode watches the pods a change reached."""
    scope = QueryScope((namespace,), seconds, labels)
    pod_matcher = f"{labels.pod}=~{escape(regex_alternatives(pods))}"

    def increase(metric: str) -> str:
        selector = scope.cadvisor(metric)[:-1] + f", {pod_matcher}}}"
        return f"sum by ({labels.pod}) (increase({selector}[{seconds}s]))"

    return f"{increase(CFS_THROTTLED)} / {increase(CFS_PERIODS)}"


def autoscaler_query(scope: QueryScope) -> str:
    """kube-state-metrics' HPA targets on CPU or memory utilization, one series per HPA and resource
    (``metric_name``) with the HPA's target (``scaletargetref_kind``, ``scaletargetref_name``) joined
    from ``kube_horizontalpodautoscaler_info``; the value is the target utilization in percent. An
    instant query: the HPAs of now."""
    by = "namespace, horizontalpodautoscaler"
    targets = scope.ksm(
        HPA_TARGET_METRIC,
        f"metric_target_type={escape('utilization')}",
        f"metric_name=~{escape('cpu|memory')}",
        per_pod=False,
    )
    info = _agg("max", f"{by}, scaletargetref_kind, scaletargetref_name", scope.ksm(HPA_INFO, per_pod=False))
    joined = f"on ({by}) group_left (scaletargetref_kind, scaletargetref_name) {info}"
    return f"{_agg('max', f'{by}, metric_name', targets)} * {joined}"

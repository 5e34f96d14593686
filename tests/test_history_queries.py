"""The bucketed history queries against a real Prometheus, on series written by hand (and, for a history
of minutes, by the generator at the real node's 2 s scrape interval): OOM kills among other restarts,
bucket values, a window of minutes, CPU windows that tile their buckets.

Each runs on Debian's Prometheus and, marked ``backends`` (RIGHTSIZER_BACKENDS=1), on Prometheus 3 and
VictoriaMetrics (tests/support/backends.py): they must answer alike."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest

from rightsizer.collect import workload_containers
from rightsizer.engine import recommend
from rightsizer.promql import LabelConfig, QueryScope
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import RecommendationSettings
from rightsizer.source import PrometheusSource
from rightsizer_demo.history import ContainerSpec, UsageModel, WorkloadSpec, write_openmetrics
from tests.support.backends import backend_params, serve_history

pytestmark = pytest.mark.prometheus

MIB = 1024 * 1024
POD = "web-7d9f8b6c5d-x2x4q"
HOURS = 3
LIMIT = 512 * MIB
CADVISOR = f'namespace="shop",pod="{POD}",container="app",job="kubelet"'
KSM = f'namespace="shop",pod="{POD}",container="app",job="kube-state-metrics"'
TILES_CADVISOR = 'namespace="tiles",pod="edge-5f6d7c8b9d-q2w4x",container="app",job="kubelet"'
OFFSET_CADVISOR = 'namespace="offset",pod="edge-5f6d7c8b9d-q2w4x",container="app",job="kubelet"'


def handmade_series(end: int) -> str:
    """3 hours of one pod container, a sample a minute up to ``end`` (a multiple of 5 minutes).

    CPU 0.1 cores, but 0.9 for the 5 minutes ending 60 minutes into the history; working set 100Mi, one
    sample of 300Mi; restarts at minutes 30 (reason Error), 90 and 150 (both OOMKilled).

    And in namespace ``tiles``, a pod at 0.1 cores but 1.1 in the first minute of the 5 minutes ending
    at minute 65 (between the samples at minutes 60 and 61); in ``offset``, the same pod scraped 30 s
    after each minute, its minute of 1.1 cores across minute 65 (between the samples at 64.5 and 65.5).
    """
    start = end - HOURS * 3600
    minutes = range(HOURS * 60 + 1)
    cpu, seconds = [], 0.0
    for minute in minutes:
        seconds += 60 * (0.9 if 56 <= minute <= 60 else 0.1)
        cpu.append(seconds)
    lines = ["# TYPE container_cpu_usage_seconds counter"]
    lines += [
        f"container_cpu_usage_seconds_total{{{CADVISOR}}} {v:.3f} {start + m * 60}"
        for m, v in zip(minutes, cpu, strict=True)
    ]
    tiles = TILES_CADVISOR
    lines += [
        f"container_cpu_usage_seconds_total{{{tiles}}} {6 * m + (60 if m >= 61 else 0)} {start + m * 60}"
        for m in minutes
    ]
    lines.append("# TYPE container_memory_working_set_bytes gauge")
    lines += [
        f"container_memory_working_set_bytes{{{CADVISOR}}} {memory * MIB} {start + m * 60}"
        for m, memory in zip(minutes, [300 if m == 100 else 100 for m in minutes], strict=True)
    ]
    lines += [f"container_memory_working_set_bytes{{{tiles}}} {100 * MIB} {start + m * 60}" for m in minutes]
    late = OFFSET_CADVISOR
    lines += [
        f"container_cpu_usage_seconds_total{{{late}}} {6 * m + (60 if m >= 65 else 0)} {start + m * 60 + 30}"
        for m in minutes[:-1]
    ]
    lines += [
        f"container_memory_working_set_bytes{{{late}}} {100 * MIB} {start + m * 60 + 30}"
        for m in minutes[:-1]
    ]
    lines.append("# TYPE kube_pod_container_status_restarts counter")
    lines += [
        f"kube_pod_container_status_restarts_total{{{KSM}}} {restarts} {start + m * 60}"
        for m, restarts in zip(minutes, [sum(m >= r for r in (30, 90, 150)) for m in minutes], strict=True)
    ]
    lines.append("# TYPE kube_pod_container_status_last_terminated_reason gauge")
    for reason, first, last in (("Error", 30, 89), ("OOMKilled", 90, HOURS * 60)):
        lines += [
            f'kube_pod_container_status_last_terminated_reason{{{KSM},reason="{reason}"}} 1 {start + m * 60}'
            for m in range(first, last + 1)
        ]
    lines.append("# TYPE kube_pod_container_resource_limits gauge")
    lines += [
        f'kube_pod_container_resource_limits{{{KSM},resource="memory",unit="byte"}} {LIMIT} {start + m * 60}'
        for m in minutes
    ]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module", params=backend_params())
def handmade(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    end = math.floor(time.time() / 300) * 300
    tmp = tmp_path_factory.mktemp("handmade")
    (tmp / "history.om").write_text(handmade_series(end))
    server = serve_history(request.param, tmp / "history.om", tmp)
    try:
        yield server.url, end
    finally:
        server.stop()


def test_oom_kills_are_the_restarts_after_which_the_container_was_oom_killed(handmade):
    url, end = handmade
    scope = QueryScope(("shop",), HOURS * 3600)
    (item,) = workload_containers(PrometheusSource(url).fetch(scope, end), LabelConfig())
    assert item.usage.oom_kills == 2  # 3 restarts, the first one an Error
    assert item.usage.oom_killed_memory_bytes == 512 * MIB


def test_buckets_keep_the_busy_window_the_mean_and_the_peak_sample(handmade):
    url, end = handmade
    scope = QueryScope(("shop",), HOURS * 3600)
    assert scope.bucket_seconds == 300  # 3 hours in buckets of one 5-minute window
    (item,) = workload_containers(PrometheusSource(url).fetch(scope, end), LabelConfig())
    history = item.usage.history.set_index("time")
    assert len(history) == HOURS * 12
    busy = end - (HOURS - 1) * 3600  # the bucket ending 60 minutes into the history
    assert history.loc[busy, "cpu_peak"] == pytest.approx(0.9, rel=0.02)
    assert history["cpu_peak"].drop(busy).max() == pytest.approx(0.1, rel=0.02)
    assert (history["coverage"] == 1.0).all()
    assert item.usage.memory_peak_bytes == 300 * MIB  # the one raw sample, not a bucket's mean
    # Before Prometheus 3.0 a range includes both ends: 6 samples in a 5-minute bucket, not 5.
    assert (4 * 100 + 300) / 5 * MIB >= history["memory_mean"].max() >= (5 * 100 + 300) / 6 * MIB


def test_cpu_windows_tile_their_buckets(handmade):
    """A minute of 1.1 cores right after a bucket's first sample counts in that bucket, on every backend:
    Prometheus 3's ranges leave out the sample at their start, and a rate over them alone would miss it."""
    url, end = handmade
    scope = QueryScope(("tiles",), HOURS * 3600)
    (item,) = workload_containers(PrometheusSource(url).fetch(scope, end), LabelConfig())
    history = item.usage.history.set_index("time")
    burst = end - HOURS * 3600 + 65 * 60  # the bucket from minute 60 to 65
    assert history.loc[burst, "cpu_peak"] == pytest.approx((4 * 0.1 + 1.1) / 5, rel=0.01)
    assert history.loc[burst, "cpu_mean"] == pytest.approx((4 * 0.1 + 1.1) / 5, rel=0.01)
    assert history["cpu_peak"].drop(burst).max() == pytest.approx(0.1, rel=0.01)
    assert history["cpu_peak"].drop(burst).min() == pytest.approx(0.1, rel=0.01)


def test_cpu_windows_tile_their_buckets_whatever_the_scrape_times(handmade):
    """Scraped 30 s after each minute, as real scrapes are anywhere in theirs: the minute of 1.1 cores
    between the samples at 64.5 and 65.5 minutes straddles two buckets. It counts in the one where its
    last sample falls (ending at minute 70), on every backend; a rate over each bucket alone (every
    Prometheus) would count it in neither, extrapolating its 4 other minutes."""
    url, end = handmade
    scope = QueryScope(("offset",), HOURS * 3600)
    (item,) = workload_containers(PrometheusSource(url).fetch(scope, end), LabelConfig())
    history = item.usage.history.set_index("time")
    burst = end - HOURS * 3600 + 70 * 60
    assert history.loc[burst, "cpu_peak"] == pytest.approx((4 * 0.1 + 1.1) / 5, rel=0.01)
    assert history["cpu_peak"].drop(burst).max() == pytest.approx(0.1, rel=0.01)


def test_a_recommendation_from_the_handmade_history(handmade):
    url, end = handmade
    settings = RecommendationSettings.for_profile("latency-sensitive", min_history_seconds=3600)
    scope = QueryScope(("shop",), HOURS * 3600)
    (item,) = workload_containers(PrometheusSource(url).fetch(scope, end), LabelConfig())
    rec = recommend(item.key, item.usage, item.current, settings)
    assert rec.ready
    assert rec.evidence["oomKills"] == 2
    # The whole window the policy asks for is as deep as history can be: 3 hours of 3, every one alike.
    assert rec.to_dict()["confidence"]["level"] == "high"


@pytest.fixture(scope="module", params=backend_params())
def minutes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """15 minutes of one steady pod scraped every 2 s, as on the real node, ending now (and where)."""
    step = 2
    end = math.floor(time.time() / step) * step
    app = ContainerSpec("app", UsageModel(0.2, 64 * MIB, cpu_noise=0.05), {"cpu": "500m", "memory": "128Mi"})
    workloads = [WorkloadSpec("node", "load", (app,), created_at=end - 15 * 60)]
    tmp = tmp_path_factory.mktemp("minutes")
    write_openmetrics(workloads, tmp / "history.om", end - 15 * 60, end, step)
    server = serve_history(request.param, tmp / "history.om", tmp)
    try:
        yield server.url, end
    finally:
        server.stop()


def test_a_history_of_minutes_is_measured_in_minutes(minutes):
    """The real node's policies: history window 10m, minimum 2m, resolution 30s. Evaluated where the
    history ends (on a busy machine, "now" may come a minute later, with a minute of no samples)."""
    url, end = minutes
    settings = RecommendationSettings.for_profile("latency-sensitive", min_history_seconds=120)
    request = ScanRequest(("node",), history_seconds=600, cpu_window_seconds=30)
    (rec,) = scan(PrometheusSource(url), request, settings, end=end).recommendations
    assert rec.ready, rec.reason
    assert 0.15 <= rec.evidence["historyHours"] <= 0.17  # 10 minutes, in 30 s buckets
    peak = float(rec.evidence["cpuPeakTime"].removesuffix("m")) / 1000
    assert 0.2 <= peak <= 0.25  # p95 of 30 s windows of 200m with 5% noise
    too_short = RecommendationSettings.for_profile("latency-sensitive", min_history_seconds=900)
    (young,) = scan(PrometheusSource(url), request, too_short, end=end).recommendations
    assert "insufficient history: 10m of samples, needs 15m" in young.reason

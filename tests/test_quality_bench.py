"""The quality benchmark's scoring and competitor rules on hand-made ground truths (no Prometheus, fast)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bench.quality.allocation import Allocation
from bench.quality.scoring import (
    busy_hours,
    container_ages,
    peak_window_means,
    pod_traces,
    replay_oom_kills,
    score_container,
    summarize,
)
from bench.quality.strategies import (
    ExponentialHistogram,
    krr_simple,
    oom_bumped,
    proportional_limit,
    subquery_points,
)

from rightsizer.model import ContainerKey
from rightsizer_demo.history import (
    DAY,
    MIB,
    ContainerSpec,
    UsageModel,
    WorkloadSpec,
    ground_truth,
)

STEP = 60
KEY = ContainerKey("ns", "Deployment", "app", "main")
MODEL_KEY = ("ns", "app", "main")
GROWTH_PER_STEP = 10 * MIB
"""The hand-made container grows 10Mi a minute and has no noise: memory = 100Mi + 10Mi x age in minutes."""
MODEL = UsageModel(0.1, 100 * MIB, memory_growth_bytes_per_day=GROWTH_PER_STEP * DAY / STEP, memory_noise=0)


def truth(
    demand: list[float], memory_mib: list[float], oom: list[bool] | None = None, pod: str = "app-0"
) -> pd.DataFrame:
    """A ground truth of one pod container, one row a minute from t = 0, in the generator's columns."""
    count = len(demand)
    times = np.arange(count) * STEP
    return pd.DataFrame(
        {
            "namespace": KEY.namespace,
            "kind": KEY.kind,
            "workload": KEY.name,
            "pod": pod,
            "container": KEY.container,
            "timestamp": pd.to_datetime(times, unit="s", utc=True),
            "cpu_cores": demand,
            "cpu_demand_cores": demand,
            "throttled_fraction": 0.0,
            "memory_bytes": np.asarray(memory_mib) * MIB,
            "oom_kill": oom or [False] * count,
            "restarts": np.cumsum(oom or [False] * count),
            "cpu_request": 0.2,
            "cpu_limit": np.nan,
            "memory_request": 128 * MIB,
            "memory_limit": np.nan,
        }
    )


def at(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def growing_container() -> pd.DataFrame:
    """5 learning minutes (100..140Mi) and 10 scored minutes (150..240Mi): never killed so far."""
    memory = [100 + 10 * minute for minute in range(15)]
    return truth([0.1] * 5 + [0.1] * 5 + [0.3] * 5, memory)


def test_container_age_restarts_at_each_oom_kill():
    times = np.arange(5) * STEP
    restarted = np.array([False, False, True, False, False])
    assert container_ages(times, restarted).tolist() == [0, 60, 0, 60, 120]


def test_the_container_keeps_growing_from_where_learning_left_it():
    (trace,) = pod_traces(growing_container(), {MODEL_KEY: MODEL}, at(5 * STEP))[KEY]
    assert trace.memory_age == 5 * STEP
    assert np.allclose(trace.memory_noise, 1.0)
    assert np.allclose(trace.working_set(np.arange(10) * 60.0) / MIB, [100 + 10 * m for m in range(10)])


@pytest.mark.parametrize(
    ("limit_mib", "kills"),
    [
        (None, []),  # no limit, no kill
        (1000, []),  # far above 240Mi
        (175, [3]),  # 150, 160, 170, 180 > 175: killed, then 100..160 from age 0
        (135, [0, 4, 8]),  # 150 > 135 at once, then 140 > 135 four minutes after each restart
    ],
)
def test_oom_kills_are_replayed_against_the_recommended_limit(limit_mib, kills):
    (trace,) = pod_traces(growing_container(), {MODEL_KEY: MODEL}, at(5 * STEP))[KEY]
    limit = None if limit_mib is None else limit_mib * MIB
    assert np.flatnonzero(replay_oom_kills(trace, limit)).tolist() == kills


def test_an_oom_kill_while_learning_resets_the_age_the_scoring_starts_from():
    memory = [100, 110, 120, 100, 110, 120, 130]  # killed at minute 3
    frame = truth([0.1] * 7, memory, oom=[False, False, False, True, False, False, False])
    (trace,) = pod_traces(frame, {MODEL_KEY: MODEL}, at(5 * STEP))[KEY]
    assert trace.memory_age == 2 * STEP
    assert np.flatnonzero(replay_oom_kills(trace, 125 * MIB)).tolist() == [1]


def test_replaying_the_generators_own_limit_finds_its_own_oom_kills():
    """The noise reconstructed from the documented model makes the replay exact on generated data."""
    usage = UsageModel(0.1, 200 * MIB, memory_growth_bytes_per_day=400 * MIB, memory_noise=0.05)
    leak = ContainerSpec("main", usage, {"memory": "256Mi"}, {"memory": "512Mi"})
    workload = WorkloadSpec("ns", "app", (leak,), created_at=0, replicas=2)
    frame = ground_truth([workload], 0, 4 * DAY, 300, seed=3)
    start = at(2 * DAY)
    traces = pod_traces(frame, {MODEL_KEY: usage}, start)[KEY]
    scored = frame[frame["timestamp"] >= start]
    assert scored["oom_kill"].sum() >= 2
    for trace in traces:
        expected = scored[scored["pod"] == trace.pod]["oom_kill"].to_numpy()
        assert (replay_oom_kills(trace, 512 * MIB) == expected).all()


def test_cpu_scores_of_a_known_allocation():
    """Scored minutes: demand 0.1 for five minutes, then 0.3; request 0.2, limit 0.25."""
    (trace,) = pod_traces(growing_container(), {MODEL_KEY: MODEL}, at(5 * STEP))[KEY]
    score = score_container([trace], Allocation(0.2, 512 * MIB, 0.25, 1024 * MIB))
    assert score.samples == 10 and score.pods == 1
    assert score.cpu_slack == pytest.approx(0.25)  # half the samples use half the request, half use all of it
    assert score.above_request == pytest.approx(0.5)
    assert score.above_limit == pytest.approx(0.5)  # throttled: 0.3 > 0.25
    assert score.oom_kills == 0
    # 5-minute means: 0.1 and 0.25 (capped); p95 between them, linearly
    assert score.peak_to_request == pytest.approx((0.1 + 0.95 * 0.15) / 0.2)
    assert score.peak_to_request_raw == pytest.approx(0.25 / 0.2)
    assert score.above_memory_request == pytest.approx(0.0)


def test_without_a_cpu_limit_nothing_is_throttled_and_usage_is_the_demand():
    (trace,) = pod_traces(growing_container(), {MODEL_KEY: MODEL}, at(5 * STEP))[KEY]
    score = score_container([trace], Allocation(0.2, 150 * MIB, None, 175 * MIB))
    assert score.above_limit == 0.0
    assert score.cpu_slack == pytest.approx(0.25)  # usage above the request counts as no slack, not less
    assert score.peak_to_request == pytest.approx((0.1 + 0.95 * 0.2) / 0.2)
    assert score.oom_kills == 1 and score.killed_pods == 1
    # working sets 150, 160, 170, (killed at 180) 100, 110, ..., 160: three samples above 150Mi
    assert score.above_memory_request == pytest.approx(0.3)


def test_summary_totals_requests_times_pods_and_weights_shares_by_samples():
    frame = pd.concat([growing_container(), growing_container().assign(pod="app-1")])
    traces = pod_traces(frame, {MODEL_KEY: MODEL}, at(5 * STEP))[KEY]
    allocation = Allocation(0.2, 256 * MIB, 0.25, 175 * MIB)
    summary = summarize([score_container(traces, allocation)])
    assert summary.reserved_cpu == pytest.approx(0.4)
    assert summary.reserved_memory == 512 * MIB
    assert summary.oom_kills == 2 and summary.killed_containers == 2
    assert summary.cpu_slack == pytest.approx(0.25)
    assert summary.in_band == 0 and summary.containers == 1


def test_reserved_amounts_count_pods_for_the_time_they_run():
    """An autoscaled pod alive for half the scoring period reserves half as much as a pod alive all of it."""
    whole = growing_container()
    half = growing_container().iloc[10:].assign(pod="app-1")  # 5 scored minutes of 10
    traces = pod_traces(pd.concat([whole, half]), {MODEL_KEY: MODEL}, at(5 * STEP))[KEY]
    score = score_container(traces, Allocation(0.2, 256 * MIB))
    assert score.pods == 2 and score.replicas == pytest.approx(1.5)
    assert summarize([score]).reserved_cpu == pytest.approx(0.3)


def test_busy_hours_are_each_days_busiest_rolling_hour():
    times = np.arange(0, 2 * DAY, STEP)
    usage = np.full(len(times), 0.05)
    usage[(times % DAY >= 2 * 3600 + 1800) & (times % DAY < 3 * 3600 + 1800)] = 2.0  # 02:30-03:30
    assert np.allclose(busy_hours(times, usage), [2.0, 2.0])  # not cut in two by the clock hour


def test_the_worst_pod_shows_a_throttled_replica_the_pooled_share_dilutes():
    calm = growing_container().assign(cpu_demand_cores=0.1)
    hot = growing_container().assign(pod="app-1", cpu_demand_cores=0.4)
    traces = pod_traces(pd.concat([calm, hot]), {MODEL_KEY: MODEL}, at(5 * STEP))[KEY]
    score = score_container(traces, Allocation(0.2, 256 * MIB, 0.3, None))
    assert score.above_limit == pytest.approx(0.5)
    assert score.worst_pod_above_limit == pytest.approx(1.0)


def test_peak_window_means_are_aligned_to_the_epoch():
    times = np.array([240, 300, 360, 600])
    assert peak_window_means(times, np.array([1.0, 2.0, 4.0, 8.0])).tolist() == [1.0, 3.0, 8.0]


def test_krr_simple_takes_p95_and_max_times_1_15_with_its_floors():
    demand = [0.001 * i for i in range(1, 201)]  # 1m..200m
    memory = [50] * 199 + [200]
    frame = truth(demand, memory)
    current = {KEY: Allocation(0.2, 128 * MIB)}
    (allocation,) = krr_simple(frame, current).values()
    # p95 interpolated linearly, as Prometheus' quantile_over_time does: rank 0.95 x (200 - 1) = 189.05
    # from 0, between the 190th value (190m) and the 191st (191m): 190m + 0.05 x 1m.
    assert allocation.cpu_request == pytest.approx(0.19005)
    assert allocation.cpu_limit is None
    assert allocation.memory_request == allocation.memory_limit == pytest.approx(200 * MIB * 1.15)
    (floored,) = krr_simple(truth([0.001] * 200, [50] * 200), current).values()
    assert floored.cpu_request == pytest.approx(0.010) and floored.memory_request == 100 * MIB
    (kept,) = krr_simple(truth([0.001] * 99, [50] * 99), current).values()
    assert kept.cpu_request == 0.2 and kept.note


def test_krr_subquery_skips_samples_between_its_steps():
    times = np.arange(0, 301, 60)  # 0, 60, ..., 300
    values = np.array([1.0, 2.0, 9.0, 3.0, 4.0, 5.0])
    # points 0, 75, 150, 225, 300 read the samples at 0, 60, 120, 180, 300: the 240 s one is skipped
    assert subquery_points(times, values, 75).tolist() == [1.0, 2.0, 9.0, 3.0, 5.0]


def test_vpa_rules():
    assert oom_bumped(300 * MIB, 256 * MIB) == pytest.approx(400 * MIB)  # +100Mi beats +20%
    assert oom_bumped(1000 * MIB, float("nan")) == pytest.approx(1200 * MIB)
    assert proportional_limit(None, 0.5, 0.3) is None
    assert proportional_limit(1.0, 0.5, 0.3) == pytest.approx(0.6)
    assert proportional_limit(1.0, 0.0, 0.3) == pytest.approx(0.3)
    histogram = ExponentialHistogram(first_bucket=0.01)
    values = np.array([0.05] * 9 + [1.0])
    bucket = int(histogram.bucket(np.array([0.05]))[0])
    assert histogram.start(bucket) <= 0.05 < histogram.start(bucket + 1)
    assert histogram.percentile(values, np.ones(10), 0.9) == histogram.start(bucket + 1)  # the bucket's end
    assert histogram.start(101) / histogram.start(100) == pytest.approx(1.05, abs=0.001)  # 5% apart up high
    assert histogram.percentile(values, np.array([1.0] * 9 + [100.0]), 0.9) > 1.0  # weight moves it

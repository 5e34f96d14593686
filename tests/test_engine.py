"""The engine on hand-checkable numbers (bucketed histories of tests/support/usage.py)."""

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from rightsizer.engine import recommend
from rightsizer.model import ContainerKey, ContainerUsage, PodThrottling, Resources
from rightsizer.peaks import days_since_change
from rightsizer.quantity import parse
from rightsizer.settings import Profile, RecommendationSettings, ResourceBounds, SettingsError
from tests.support.usage import DAY, MIB, buckets, rows, steady, usage

KEY = ContainerKey("shop", "Deployment", "web", "app")


def resources(requests=None, limits=None) -> Resources:
    return Resources(
        requests={k: parse(v) for k, v in (requests or {}).items()},
        limits={k: parse(v) for k, v in (limits or {}).items()},
    )


def quantities(rec):
    return rec.recommended.to_quantities()


def test_cpu_request_puts_peak_time_usage_at_target_utilization():
    rec = recommend(KEY, usage(), resources(), RecommendationSettings())
    # 120m / 0.75 = 160m
    assert quantities(rec)["requests"]["cpu"] == "160m"
    assert rec.evidence["cpuPeakTime"] == "120m"
    assert rec.evidence["cpuPeakTimeFrom"] == "p95"
    assert rec.evidence["cpuPeakTimeDays"] == 3.0
    assert "CPU peak time 120m (p95 of 3.0 days)" in rec.reason


def test_cpu_request_rounds_up_to_the_step():
    rec = recommend(KEY, usage(steady(cpu=0.1001)), resources(), RecommendationSettings())
    # 100.1m / 0.75 = 133.47m -> 135m
    assert quantities(rec)["requests"]["cpu"] == "135m"


def test_latency_sensitive_cpu_limit_is_three_times_the_request():
    rec = recommend(KEY, usage(), resources(), RecommendationSettings.for_profile("latency-sensitive"))
    assert quantities(rec)["limits"]["cpu"] == "480m"


def test_background_profile_uses_smaller_ratios():
    rec = recommend(KEY, usage(), resources(), RecommendationSettings.for_profile(Profile.BACKGROUND))
    assert quantities(rec)["limits"]["cpu"] == "240m"  # 160m x 1.5
    assert quantities(rec)["limits"]["memory"] == "275Mi"  # 220Mi x 1.25


def test_no_cpu_limit_when_the_policy_asks():
    settings = RecommendationSettings.for_profile("latency-sensitive", cpu_limit_ratio=None)
    rec = recommend(KEY, usage(), resources(), settings)
    assert "cpu" not in quantities(rec)["limits"]
    assert rec.qos_class == "Burstable"
    assert "no CPU limit" in rec.reason


def test_memory_request_is_the_level_plus_headroom_and_limit_by_ratio():
    rec = recommend(KEY, usage(), resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["memory"] == "220Mi"  # 200Mi x 1.10
    assert quantities(rec)["limits"]["memory"] == "330Mi"  # 220Mi x 1.5
    assert rec.evidence["memoryLevel"] == "200Mi"


def test_a_working_set_that_swings_gets_its_swing_in_the_request_and_more_room_above_it():
    """300Mi every half hour on average, a 600Mi peak: samples went 300Mi above their half hour's mean.
    The request covers the swing (on the real trace, means alone left 2.4% of the learning samples
    themselves above the request); the limit the peak plus 1.5x its height above the typical level."""
    spiky = usage(steady(memory=300 * MIB), memory_peak_bytes=float(600 * MIB))
    rec = recommend(KEY, spiky, resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["memory"] == "660Mi"  # (300Mi + 300Mi) x 1.10
    assert rec.evidence["memorySwing"] == "300Mi" and rec.evidence["memoryTypical"] == "300Mi"
    assert "memory level 300Mi (p99) + the peak's swing 300Mi above the highest half-hour mean" in rec.reason
    assert quantities(rec)["limits"]["memory"] == "1050Mi"  # 600Mi + 1.5 x (600Mi - 300Mi), not 1.5 x 660Mi
    assert (
        "memory limit at least the peak 600Mi + 1.5x its height above the typical 300Mi -> 1050Mi"
        in rec.reason
    )
    steady_one = recommend(KEY, usage(steady(memory=300 * MIB)), resources(), RecommendationSettings())
    assert quantities(steady_one)["requests"]["memory"] == "330Mi"  # no swing: 300Mi x 1.10
    assert "memorySwing" not in steady_one.evidence
    assert quantities(steady_one)["limits"]["memory"] == "495Mi"  # the profile's 1.5 x 330Mi


def test_the_memory_limits_room_is_measured_from_the_typical_working_set():
    """200Mi most of the time, 400Mi in 3% of the half hours, a 500Mi peak: the request covers the p99
    (400Mi) and the swing (100Mi); the limit's room is 1.5x the peak's height above the typical 200Mi."""
    history = steady(memory=200 * MIB, pods=("a",), days=4)
    history.loc[history.index % 32 == 0, "memory_mean"] = 400 * MIB
    rec = recommend(
        KEY, usage(history, memory_peak_bytes=float(500 * MIB)), resources(), RecommendationSettings()
    )
    assert rec.evidence["memoryTypical"] == "200Mi" and rec.evidence["memoryLevel"] == "400Mi"
    assert quantities(rec)["requests"]["memory"] == "550Mi"  # (400Mi + 100Mi) x 1.10
    assert quantities(rec)["limits"]["memory"] == "950Mi"  # 500Mi + 1.5 x 300Mi, above 1.5 x 550Mi


def test_a_memory_level_held_in_the_window_counts_however_old():
    """A day at 400Mi ten days ago, 200Mi since: memory is not compressible, and a level the container
    held in the window is one it may hold again (recency-weighted, that day weighed 0.05% and the
    request was 220Mi)."""
    before = rows("a", buckets(1, ago=9 * DAY), memory=400 * MIB)
    others = [rows("a", buckets(1, ago=d * DAY), memory=200 * MIB) for d in (*range(9), *range(10, 14))]
    rec = recommend(
        KEY, usage(pd.concat([before, *others], ignore_index=True)), resources(), RecommendationSettings()
    )
    assert rec.evidence["memoryLevel"] == "400Mi"
    assert quantities(rec)["requests"]["memory"] == "440Mi"


def test_with_zero_headroom_the_request_is_the_level_and_its_swing_and_the_limit_never_below_the_peak():
    level, peak = float(300 * MIB + 12345), float(320 * MIB)
    settings = RecommendationSettings.for_profile(
        "latency-sensitive", memory_headroom=0.0, memory_limit_ratio=1.0
    )
    rec = recommend(KEY, usage(steady(memory=level), memory_peak_bytes=peak), resources(), settings)
    assert quantities(rec)["requests"]["memory"] == "320Mi"  # the level and the swing above it: the peak
    assert rec.recommended.limits["memory"] >= Decimal(peak)
    flat = recommend(KEY, usage(steady(memory=level)), resources(), settings)
    assert quantities(flat)["requests"]["memory"] == "301Mi"  # no swing: the level, rounded up to Mi


def test_oom_kill_raises_memory_above_the_killed_usage_by_at_least_100mi():
    killed = usage(steady(memory=250 * MIB), oom_kills=2, oom_killed_memory_bytes=float(256 * MIB))
    rec = recommend(KEY, killed, resources(limits={"memory": "256Mi"}), RecommendationSettings())
    # max(256Mi x 1.2 = 307.2Mi, 256Mi + 100Mi = 356Mi) = 356Mi > 250Mi x 1.10
    assert quantities(rec)["requests"]["memory"] == "356Mi"
    assert rec.evidence["oomKills"] == 2
    assert rec.evidence["oomKilledAt"] == "256Mi"
    assert "2 OOM kill(s) at 256Mi" in rec.reason


def test_oom_kill_bump_is_twenty_percent_for_large_containers():
    killed = usage(steady(memory=1000 * MIB), oom_kills=1, oom_killed_memory_bytes=float(1024 * MIB))
    rec = recommend(KEY, killed, resources(), RecommendationSettings())
    # max(1024Mi x 1.2 = 1228.8Mi, 1124Mi) -> 1229Mi
    assert quantities(rec)["requests"]["memory"] == "1229Mi"


def throttled(pods=("a", "b"), limit=None, periods=10000.0, throttled_periods=3000.0):
    return tuple(PodThrottling(pod, limit, periods, throttled_periods) for pod in pods)


def test_throttling_pushes_the_cpu_limit_up_never_down():
    history = usage(steady(cpu=0.2), throttling=throttled())
    current = resources(requests={"cpu": "100m"}, limits={"cpu": "200m"})
    settings = RecommendationSettings.for_profile("background")
    rec = recommend(KEY, history, current, settings)
    # usage was capped by the limit: peak time counts 200m x 1.5 = 300m -> request 300m / 0.75 = 400m
    assert quantities(rec)["requests"]["cpu"] == "400m"
    assert "CPU peak time 300m" in rec.reason and "2 throttled pod(s) counted x1.5" in rec.reason
    # ratio limit 400m x 1.5 = 600m; throttled: at least 200m x 1.5 = 300m; 600m wins
    assert quantities(rec)["limits"]["cpu"] == "600m"
    assert rec.evidence["throttledRatio"] == 0.3
    assert "2 pod(s) throttled (worst 30% of CFS periods) under limit 200m" in rec.reason

    big_limit = resources(requests={"cpu": "100m"}, limits={"cpu": "1"})
    rec = recommend(KEY, history, big_limit, settings)
    # never below the limit that throttled x 1.5; the background band (2x) takes the request up with it
    assert quantities(rec)["limits"]["cpu"] == "1500m"
    assert quantities(rec)["requests"]["cpu"] == "750m"
    assert "CPU request raised to 750m to keep the limit within 2x" in rec.reason


def test_throttling_below_threshold_changes_nothing():
    light = usage(throttling=throttled(throttled_periods=100.0))
    rec = recommend(KEY, light, resources(limits={"cpu": "2"}), RecommendationSettings())
    assert quantities(rec)["limits"]["cpu"] == "480m"
    assert "throttled" not in rec.reason


def test_one_throttled_replica_among_many_is_judged_on_its_own():
    """Pooled, 3,000 throttled periods of 250,000 are 1.2%: under the threshold (with 10 replicas, 3%).
    Per pod, one is 30%."""
    pods = [f"p{i}" for i in range(25)]
    per_pod = (PodThrottling("p0", 0.3, 10000.0, 3000.0), *throttled(pods[1:], 0.3, 10000.0, 0.0))
    history = usage(steady(cpu=0.1, pods=pods), throttling=per_pod)
    rec = recommend(KEY, history, resources({"cpu": "200m"}, {"cpu": "300m"}), RecommendationSettings())
    assert rec.evidence["throttledRatio"] == 0.012
    assert rec.evidence["throttledRatioWorstPod"] == 0.3
    assert (
        "1 pod(s) throttled (worst 30% of CFS periods) under limit 300m -> limit at least 450m" in rec.reason
    )
    # The request follows the pods pooled: the hot pod's windows, counted 1.5x, are 4% of all, above
    # the p95. The limit must fit the hot one: 450m, above the ratio's 3 x 135m.
    assert quantities(rec)["requests"]["cpu"] == "135m"
    assert quantities(rec)["limits"]["cpu"] == "450m"


def test_a_pod_that_ran_seconds_is_not_judged_on_its_throttling():
    crash = (PodThrottling("a", 0.2, 50.0, 40.0),)
    rec = recommend(KEY, usage(throttling=crash), resources(limits={"cpu": "200m"}), RecommendationSettings())
    assert "throttled" not in rec.reason


def test_the_cpu_limit_rises_to_the_observed_maximum_within_the_profiles_band():
    history = steady(cpu=0.05)
    history.loc[0, "cpu_peak"] = 0.9
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "70m"  # 50m / 0.75 = 66.7 -> 70m
    assert quantities(rec)["limits"]["cpu"] == "280m"  # 4 x 70m, not 900m
    assert "CPU limit raised to the observed maximum 900m (capped at 4x the request)" in rec.reason
    roomy = steady(cpu=0.25)
    roomy.loc[0, "cpu_peak"] = 0.9
    rec = recommend(KEY, usage(roomy), resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "335m"
    assert quantities(rec)["limits"]["cpu"] == "1005m"  # 3 x 335m already above 900m


def test_a_canary_that_ran_three_windows_does_not_size_the_service():
    """A steady 100m service (2 pods, 3 days) and a canary pod that ran three 5-minute windows at
    [1.0, 0.8, 0.3] cores: 15 minutes of evidence among 6 days of pod time."""
    history = steady(cpu=0.1)
    canary = rows("canary", [buckets(1)[-1] - DAY / 2], cpu=0.7, cpu_peak=1.0, coverage=0.5)
    rec = recommend(
        KEY, usage(pd.concat([history, canary], ignore_index=True)), resources(), RecommendationSettings()
    )
    assert quantities(rec)["requests"]["cpu"] == "135m"  # 100m / 0.75, not 1310m
    assert quantities(rec)["limits"]["cpu"] == "540m"  # 3 x 135m raised to the 1-core max, capped at 4x
    assert rec.evidence["cpuMax"] == "1"
    assert rec.evidence["pods"] == 3


def test_a_nightly_batch_sizes_the_request_for_its_hour():
    """50m all day, 2 cores for the hour from 02:00: 12 of 288 windows a day, under the p95's 14."""
    history = steady(cpu=0.05, pods=("a",))
    batch = history["time"].isin([t for t in history["time"] if (t % DAY) in (2.5 * 3600, 3 * 3600)])
    history.loc[batch, ["cpu_mean", "cpu_peak"]] = 2.0
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "2670m"  # 2 cores / 0.75 -> 2667m, up to 2670m
    assert rec.evidence["cpuPeakTimeFrom"] == "busiest 30m"
    assert (
        "CPU peak time 2 (busiest 30m of the typical day, p60 of 3.0 days: more than 5.33x the p95 50m"
        in rec.reason
    )


def test_a_burst_at_a_time_of_its_own_every_day_does_not_size_the_request():
    """100m, and every day one half hour at 1 core, each day at another time: the busiest half hour
    of each day, but not of the typical day. On the real trace each day's busiest half hour set the
    peak time of 230 of 310 machines: 20 cores more for 0.8% fewer samples above the request."""
    history = steady(cpu=0.1, pods=("a",), days=7)
    for day in range(7):
        burst = history["time"] == buckets(1, ago=day * DAY)[5 * day + 3]
        history.loc[burst, ["cpu_mean", "cpu_peak"]] = 1.0
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert rec.evidence["cpuPeakTimeFrom"] == "p95"
    assert quantities(rec)["requests"]["cpu"] == "135m"  # 100m / 0.75
    assert quantities(rec)["limits"]["cpu"] == "540m"  # raised toward the 1-core maximum, within 4x


def test_a_daily_half_hour_the_limit_lets_run_does_not_size_the_request():
    """100m, and every day at 02:00 half an hour at 400m: the limit the p95 gives (up to 4 x 135m)
    runs it unthrottled, so the request stays; 5.3x the p95 and more (the nightly batch) would not."""
    history = steady(cpu=0.1, pods=("a",))
    daily = history["time"].isin([t for t in history["time"] if (t % DAY) == 2.5 * 3600])
    history.loc[daily, ["cpu_mean", "cpu_peak"]] = 0.4
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "135m"
    assert quantities(rec)["limits"]["cpu"] == "405m"  # 3 x 135m, above the 400m maximum


def test_a_load_step_down_shows_once_the_days_after_it_weigh_more():
    """0.6 cores for 4 days, then 0.24 for 3: days weigh 1, 1/2, 1/4 (after: 88%) against 1/8 + ...
    (before), so the p60 of the days is after the step."""
    before = pd.concat([rows(p, buckets(4, ago=3 * DAY), cpu=0.6) for p in ("a", "b")])
    after = pd.concat([rows(p, buckets(3), cpu=0.24) for p in ("a", "b")])
    rec = recommend(
        KEY, usage(pd.concat([before, after], ignore_index=True)), resources(), RecommendationSettings()
    )
    assert quantities(rec)["requests"]["cpu"] == "320m"  # 240m / 0.75; the 7-day p95 would say 800m
    assert rec.confidence.days == 7


def test_a_decrease_one_day_old_does_not_lower_the_request_yet():
    """After one day the newest day weighs half: the p60 still lands on the busier days before it."""
    before = pd.concat([rows(p, buckets(6, ago=DAY), cpu=0.6) for p in ("a", "b")])
    after = pd.concat([rows(p, buckets(1), cpu=0.24) for p in ("a", "b")])
    history = pd.concat([before, after], ignore_index=True)
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "800m"


@pytest.mark.parametrize(
    ("newest_first", "pooled"),
    [
        ([0.2, 0.2, 0.6, 0.6, 0.6], 2),  # two days below every day before: a step down
        ([0.9, 0.8, 0.6, 0.6, 0.6, 0.6], 2),  # and up
        ([0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6], 3),
        ([0.2, 0.2, 0.2, 0.5, 0.6, 0.6, 0.6], 3),  # the widest gap, not a quiet day just before the step
        ([0.2, 0.6, 0.6, 0.6], 4),  # one day is not a step
        ([0.2, 0.2, 0.6], 3),  # nor is one day before
        ([0.2, 0.6, 0.2, 0.6, 0.2, 0.6], 6),  # days that alternate: no step, all pooled
        ([0.6, 0.6, 0.6, 0.6], 4),  # equal days are not below or above each other
    ],
)
def test_the_days_since_the_load_changed(newest_first, pooled):
    assert days_since_change(np.array(newest_first), 2) == pooled


def test_a_load_step_up_two_days_old_sizes_the_request_alone():
    """0.2 cores for 12 days, 0.3 for the last 2: both newest days are above every day before, so the
    peak time is of those two days alone, and says so."""
    before = pd.concat([rows(p, buckets(12, ago=2 * DAY), cpu=0.2) for p in ("a", "b")])
    after = pd.concat([rows(p, buckets(2), cpu=0.3) for p in ("a", "b")])
    history = pd.concat([before, after], ignore_index=True)
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "400m"  # 300m / 0.75
    assert rec.evidence["cpuPeakTimeDays"] == 2.0
    assert "CPU peak time 300m (p95 of the 2.0 days since the load changed)" in rec.reason


def test_a_load_increase_shows_within_a_day():
    """Two weeks at 0.2 cores, then 0.6 for the last day: the newest day weighs as much as all others,
    more than the 40% above the p60."""
    before = pd.concat([rows(p, buckets(13, ago=DAY), cpu=0.2) for p in ("a", "b")])
    after = pd.concat([rows(p, buckets(1), cpu=0.6) for p in ("a", "b")])
    rec = recommend(
        KEY, usage(pd.concat([before, after], ignore_index=True)), resources(), RecommendationSettings()
    )
    assert quantities(rec)["requests"]["cpu"] == "800m"


def growing(per_day_mib: float, days: float = 3, start_mib: float = 300) -> pd.DataFrame:
    history = steady(days=days, pods=("a",))
    age_days = (history["time"] - history["time"].min()) / DAY
    history["memory_mean"] = (start_mib + per_day_mib * age_days) * MIB
    return history


def test_a_leak_is_projected_a_week_ahead():
    history = growing(50)  # 300Mi growing 50Mi a day for 3 days: 450Mi now
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert rec.evidence["memoryGrowthPerDay"] == "50Mi"
    assert "growing 50Mi a day" in rec.reason
    level = float(rec.evidence["memoryLevel"].removesuffix("Mi"))
    assert level >= 448  # the newest hours, recency-weighted
    # (level + 7 x 50Mi) x 1.10
    assert quantities(rec)["requests"]["memory"] == f"{-(-(level + 350) * 1.1 // 1):.0f}Mi"


def test_a_killed_container_gets_the_oom_bump_not_the_trend():
    killed = usage(growing(50), oom_kills=1, oom_killed_memory_bytes=float(512 * MIB))
    rec = recommend(KEY, killed, resources(), RecommendationSettings())
    assert "growing" not in rec.reason
    assert quantities(rec)["requests"]["memory"] == "615Mi"  # 512Mi x 1.2 = 614.4Mi


def test_noise_and_daily_cycles_are_not_a_trend():
    history = steady(pods=("a",))
    history["memory_mean"] = [(300 + (10 if i % 2 else -10)) * MIB for i in range(len(history))]
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert "memoryGrowthPerDay" not in rec.evidence


@pytest.mark.parametrize(
    ("history", "reason"),
    [
        (steady(days=0.25), "insufficient history: 6.0h of samples, needs 24h"),
        (
            pd.concat([rows("a", buckets(2 / 24, ago=13 * DAY)), rows("a", buckets(2 / 24))]),
            "insufficient history: 4.0h of samples over 13.1d, needs 24h",
        ),
        (steady().iloc[0:0], "no memory usage series"),
        (steady().assign(cpu_peak=float("nan"), cpu_mean=float("nan")), "no CPU usage series"),
        (steady(memory=0), "the working-set series are all zero"),
    ],
)
def test_too_little_history_gives_no_recommendation_with_the_reason(history, reason):
    rec = recommend(KEY, usage(history), resources(), RecommendationSettings())
    assert rec.recommended is None
    assert not rec.ready
    assert reason in rec.reason
    assert rec.to_dict()["recommended"] is None


def test_too_few_samples_gives_no_recommendation():
    settings = RecommendationSettings.for_profile("latency-sensitive", min_samples=10000)
    rec = recommend(KEY, usage(), resources(), settings)
    assert "insufficient history: 8640 samples, needs 10000" in rec.reason  # 2 pods x 144 buckets x 30


def test_nothing_from_prometheus_at_all_is_no_memory_series():
    rec = recommend(KEY, ContainerUsage(), resources(), RecommendationSettings())
    assert rec.recommended is None and "no memory usage series" in rec.reason


def test_min_and_max_allowed_bound_the_requests_and_the_limits():
    settings = RecommendationSettings.for_profile(
        "latency-sensitive",
        min_allowed=ResourceBounds(cpu=parse("250m")),
        max_allowed=ResourceBounds(memory=parse("128Mi")),
    )
    rec = recommend(KEY, usage(), resources(), settings)
    assert quantities(rec)["requests"] == {"cpu": "250m", "memory": "128Mi"}
    assert quantities(rec)["limits"] == {"cpu": "750m", "memory": "128Mi"}  # 192Mi capped at maxAllowed
    assert any("below the observed peak" in w for w in rec.warnings)
    assert "capped at maxAllowed 128Mi" in rec.reason
    assert "memory limit capped at maxAllowed 128Mi" in rec.reason


def test_max_allowed_bounds_the_cpu_limit():
    settings = RecommendationSettings.for_profile(
        "latency-sensitive", max_allowed=ResourceBounds(cpu=parse("300m"))
    )
    rec = recommend(KEY, usage(), resources(), settings)
    assert quantities(rec)["requests"]["cpu"] == "160m"
    assert quantities(rec)["limits"]["cpu"] == "300m"  # 3 x 160m = 480m, capped


def test_qos_class_is_guaranteed_when_limits_equal_requests():
    settings = RecommendationSettings.for_profile(
        "latency-sensitive", cpu_limit_ratio=1.0, memory_limit_ratio=1.0
    )
    rec = recommend(KEY, usage(steady()), resources(), settings)
    assert rec.qos_class == "Guaranteed"


def test_the_400m_memory_typo_is_flagged():
    rec = recommend(KEY, usage(), resources(requests={"memory": "400m"}), RecommendationSettings())
    assert any("0.4" in w and "400Mi" in w for w in rec.warnings)


def test_json_shape_matches_the_documented_contract():
    current = resources({"cpu": "100m", "memory": "256Mi"}, {"cpu": "500m", "memory": "512Mi"})
    data = recommend(KEY, usage(), current, RecommendationSettings()).to_dict()
    assert data["current"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert set(data["recommended"]) == {"requests", "limits"}
    assert {"namespace", "kind", "name", "container", "evidence", "reason", "qosClass"} <= set(data)
    for field in (
        "cpuPeakTime",
        "cpuMax",
        "memoryPeak",
        "memoryLevel",
        "oomKills",
        "samples",
        "historyHours",
    ):
        assert field in data["evidence"]
    assert set(data["confidence"]) == {"level", "cpu", "memory", "days", "coverage"}
    assert set(data["bounds"]) == {"lower", "upper"}
    assert set(data["bounds"]["lower"]) == set(data["confident"]) == {"requests", "limits"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cpu_target_utilization": 1.2}, "cpu_target_utilization"),
        ({"cpu_target_utilization": 0}, "cpu_target_utilization"),
        ({"cpu_limit_ratio": 0.5}, "cpu_limit_ratio"),
        ({"memory_limit_ratio": 0.9}, "memory_limit_ratio"),
        ({"peak_day_percentile": 0}, "peak_day_percentile"),
        ({"half_life_seconds": 0}, "half_life_seconds"),
        ({"load_change_days": 0}, "load_change_days"),
        ({"sustained_load_seconds": 0}, "sustained_load_seconds"),
        ({"memory_percentile": 1.5}, "memory_percentile"),
        ({"memory_spike_room": -0.1}, "memory_spike_room"),
        ({"memory_trend_min_fit": 2}, "memory_trend_min_fit"),
        ({"cpu_limit_ratio_max": 0.5}, "cpu_limit_ratio_max"),
        ({"bound_percentiles": (0.9, 0.1)}, "bound_percentiles"),
        (
            {"min_allowed": ResourceBounds(cpu=Decimal(2)), "max_allowed": ResourceBounds(cpu=Decimal(1))},
            "min_allowed.cpu",
        ),
        ({"no_such_knob": 1}, "no_such_knob"),
    ],
)
def test_bad_settings_are_rejected_naming_the_field(overrides, field):
    with pytest.raises(SettingsError, match=field):
        RecommendationSettings.for_profile("latency-sensitive", **overrides)


def moved(old_cpu: float, new_cpu: float, *, old_days: float = 1.5, new_days: float = 1.5) -> pd.DataFrame:
    """A pod ``old`` up to ``new_days`` ago, then a pod ``new`` (a rollout)."""
    old = rows("old", buckets(old_days, ago=new_days * DAY), cpu=old_cpu)
    return pd.concat([old, rows("new", buckets(new_days), cpu=new_cpu)], ignore_index=True)


def test_throttling_under_an_earlier_limit_does_not_raise_the_limit_in_force_again():
    """The ratchet: 200m throttled 29%, then raised to 1200m. Those periods say nothing of 1200m."""
    history = usage(
        moved(0.2, 0.3),
        throttling=(PodThrottling("old", 0.2, 6000.0, 1740.0), PodThrottling("new", 1.2, 3000.0, 0.0)),
    )
    current = resources(requests={"cpu": "400m"}, limits={"cpu": "1200m"})
    rec = recommend(KEY, history, current, RecommendationSettings())
    # Not throttled under 1200m: 300m / 0.75 = 400m, limit 3 x 400m. The pod throttled under 200m
    # counts as 200m x 1.5 = 300m: no more than what the unthrottled pod shows.
    assert quantities(rec)["requests"]["cpu"] == "400m"
    assert quantities(rec)["limits"]["cpu"] == "1200m"
    assert rec.evidence["throttledRatio"] == round(1740 / 9000, 4)
    assert rec.evidence["throttledRatioCurrentLimit"] == 0.0


def test_an_earlier_limit_that_throttled_stays_a_floor():
    history = usage(
        moved(0.02, 0.03),
        throttling=(PodThrottling("old", 0.2, 6000.0, 1740.0), PodThrottling("new", 0.5, 3000.0, 0.0)),
    )
    current = resources(requests={"cpu": "100m"}, limits={"cpu": "500m"})
    rec = recommend(KEY, history, current, RecommendationSettings())
    # The ratio would give 3 x 40m = 120m; 200m throttled, so never below 200m x 1.5 = 300m, and the
    # request follows to keep the limit within 4x.
    assert quantities(rec)["limits"]["cpu"] == "300m"
    assert quantities(rec)["requests"]["cpu"] == "75m"
    assert "under an earlier limit 200m" in rec.reason


def test_throttling_under_the_limit_in_force_still_raises_it():
    history = pd.concat([rows("p1", buckets(3), cpu=0.1), rows("p2", buckets(3), cpu=0.2)], ignore_index=True)
    throttling = (PodThrottling("p1", 0.1, 6000.0, 100.0), PodThrottling("p2", 0.2, 3000.0, 900.0))
    current = resources(requests={"cpu": "100m"}, limits={"cpu": "200m"})
    rec = recommend(
        KEY, usage(history, throttling=throttling), current, RecommendationSettings.for_profile("background")
    )
    assert "1 pod(s) throttled (worst 30% of CFS periods) under limit 200m" in rec.reason
    assert quantities(rec)["requests"]["cpu"] == "400m"  # 200m x 1.5 / 0.75: p2 is half the windows


def test_oom_kills_with_too_little_history_raise_memory_now_and_leave_cpu():
    crash_looping = usage(
        rows("a", buckets(1 / 48), cpu=0.05, memory=60 * MIB, coverage=0.1),
        oom_kills=3,
        oom_killed_memory_bytes=float(64 * MIB),
    )
    current = resources(requests={"cpu": "50m", "memory": "48Mi"}, limits={"cpu": "200m", "memory": "64Mi"})
    rec = recommend(KEY, crash_looping, current, RecommendationSettings())
    assert rec.ready
    # max(64Mi x 1.2, 64Mi + 100Mi) = 164Mi; limit 1.5 x 164Mi = 246Mi.
    assert quantities(rec) == {
        "requests": {"cpu": "50m", "memory": "164Mi"},
        "limits": {"cpu": "200m", "memory": "246Mi"},
    }
    assert "insufficient history" in rec.reason and "CPU left as it is" in rec.reason
    assert any("only memory" in w for w in rec.warnings)
    assert rec.confident == rec.recommended  # an OOM kill is certain: Auto mode applies it all


def test_too_little_history_without_oom_kills_still_gives_nothing():
    rec = recommend(KEY, usage(steady(days=1 / 24)), resources(), RecommendationSettings())
    assert rec.recommended is None


def test_pods_throttled_under_an_earlier_limit_still_count_their_capped_usage_higher():
    """Right after a raise the new pods have little history: the throttled pods' capped 205m must
    not pull the request down (410m -> 280m -> 385m was seen on the real node)."""
    history = usage(
        moved(0.205, 0.21, old_days=3, new_days=1 / 24),
        throttling=(PodThrottling("old", 0.2, 6000.0, 5000.0), PodThrottling("new", 1.23, 300.0, 0.0)),
    )
    current = resources(requests={"cpu": "410m"}, limits={"cpu": "1230m"})
    rec = recommend(KEY, history, current, RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "410m"  # 205m x 1.5 / 0.75
    assert quantities(rec)["limits"]["cpu"] == "1230m"  # 3 x 410m; not 1.5 x 1230m
    assert "1 throttled pod(s) counted x1.5" in rec.reason


def test_a_week_of_steady_history_is_confident_and_its_bounds_are_the_recommendation():
    rec = recommend(
        KEY, usage(steady(days=7)), resources({"cpu": "1", "memory": "1Gi"}), RecommendationSettings()
    )
    assert rec.confidence.level == "high"
    assert (rec.confidence.cpu, rec.confidence.memory) == (1.0, 1.0)
    assert rec.confidence.days == pytest.approx(7.0)
    assert rec.confidence.coverage == pytest.approx(0.5)  # 7 of the window's 14 days
    assert rec.lower_bound == rec.upper_bound == rec.recommended
    assert rec.confident == rec.recommended


def test_a_day_of_history_widens_the_bounds_and_auto_mode_only_moves_to_them():
    """1 day of 7: depth 1/7; bounds widened by 2 - 1/7 = 13/7 on each side."""
    settings = RecommendationSettings.for_profile("latency-sensitive", min_history_seconds=3600)
    current = resources({"cpu": "1", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"})
    rec = recommend(KEY, usage(steady(days=1)), current, settings)
    assert rec.confidence.level == "low"
    assert rec.confidence.cpu == pytest.approx(1 / 7)
    assert quantities(rec)["requests"] == {"cpu": "160m", "memory": "220Mi"}
    bounds = {"lower": rec.lower_bound.to_quantities(), "upper": rec.upper_bound.to_quantities()}
    assert bounds["lower"]["requests"] == {"cpu": "90m", "memory": "119Mi"}  # 160m / (13/7) = 86m -> 90m
    assert bounds["upper"]["requests"] == {"cpu": "300m", "memory": "409Mi"}  # 160m x 13/7 = 297m -> 300m
    # Down from 1 core and 1Gi, but only as far as the upper bound; limits keep the ratio.
    assert rec.confident.to_quantities() == {
        "requests": {"cpu": "300m", "memory": "409Mi"},
        "limits": {"cpu": "900m", "memory": "614Mi"},
    }


def test_a_current_request_inside_the_bounds_is_not_confidently_changed():
    settings = RecommendationSettings.for_profile("latency-sensitive", min_history_seconds=3600)
    current = resources({"cpu": "200m", "memory": "256Mi"})
    rec = recommend(KEY, usage(steady(days=1)), current, settings)
    assert rec.confident.requests == current.requests


def test_throttling_under_the_limit_in_force_is_confident_whatever_the_history():
    settings = RecommendationSettings.for_profile("latency-sensitive", min_history_seconds=3600)
    history = usage(steady(days=1, cpu=0.2), throttling=throttled())
    current = resources({"cpu": "300m"}, {"cpu": "200m"})
    rec = recommend(KEY, history, current, settings)
    assert rec.confident.limits["cpu"] >= Decimal("0.3")  # 200m x 1.5, whatever the bounds say


def test_the_confident_part_of_a_memory_raise_never_takes_the_limit_down():
    """Thin history: the request goes up only to its lower bound (100Mi -> 119Mi of 220Mi), and the
    limit kept in proportion would be 119Mi x 1.5 = 179Mi, below the 256Mi in force although the
    recommendation raises it to 330Mi. A change that raises memory must not lower the limit: 256Mi."""
    settings = RecommendationSettings.for_profile("latency-sensitive", min_history_seconds=3600)
    current = resources({"cpu": "160m", "memory": "100Mi"}, {"memory": "256Mi"})
    rec = recommend(KEY, usage(steady(days=1)), current, settings)
    assert quantities(rec)["limits"]["memory"] == "330Mi"
    assert rec.confident.to_quantities()["requests"]["memory"] == "119Mi"
    assert rec.confident.to_quantities()["limits"]["memory"] == "256Mi"


def test_the_confident_part_never_takes_a_memory_limit_below_the_windows_peak():
    """No limit in force to hold on to: the proportional 179Mi would be below the 250Mi the container
    already used; the confident limit is the peak."""
    settings = RecommendationSettings.for_profile("latency-sensitive", min_history_seconds=3600)
    current = resources({"cpu": "160m", "memory": "100Mi"})
    history = usage(steady(days=1), memory_peak_bytes=float(250 * MIB))
    rec = recommend(KEY, history, current, settings)
    confident = rec.confident.to_quantities()
    assert rec.confident.requests["memory"] < rec.recommended.requests["memory"]
    assert parse(confident["limits"]["memory"]) == 250 * MIB

"""The engine on hand-checkable numbers."""

from decimal import Decimal

import pytest

from rightsizer.engine import recommend
from rightsizer.model import ContainerKey, ContainerUsage, LimitThrottling, Resources
from rightsizer.quantity import MIB, parse
from rightsizer.settings import Profile, RecommendationSettings, ResourceBounds, SettingsError

KEY = ContainerKey("shop", "Deployment", "web", "app")
DAY = 86400.0


def usage(**overrides) -> ContainerUsage:
    values = dict(
        cpu_percentile_cores=0.120,
        cpu_max_cores=0.200,
        memory_peak_bytes=float(200 * MIB),
        samples=4000,
        first_seen=0.0,
        last_seen=3 * DAY,
        pods=2,
    )
    values.update(overrides)
    return ContainerUsage(**values)


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


def test_cpu_request_rounds_up_to_the_step():
    rec = recommend(KEY, usage(cpu_percentile_cores=0.1001), resources(), RecommendationSettings())
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


def test_memory_request_is_peak_plus_headroom_and_limit_by_ratio():
    rec = recommend(KEY, usage(), resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["memory"] == "220Mi"  # 200Mi x 1.10
    assert quantities(rec)["limits"]["memory"] == "330Mi"  # 220Mi x 1.5


def test_memory_never_below_the_observed_peak_even_with_zero_headroom():
    peak = float(300 * MIB + 12345)
    settings = RecommendationSettings.for_profile("latency-sensitive", memory_headroom=0.0)
    rec = recommend(KEY, usage(memory_peak_bytes=peak), resources(), settings)
    assert rec.recommended.requests["memory"] >= Decimal(peak)
    assert quantities(rec)["requests"]["memory"] == "301Mi"


def test_oom_kill_raises_memory_above_the_killed_usage_by_at_least_100mi():
    killed = usage(memory_peak_bytes=float(250 * MIB), oom_kills=2, oom_killed_memory_bytes=float(256 * MIB))
    rec = recommend(KEY, killed, resources(limits={"memory": "256Mi"}), RecommendationSettings())
    # max(256Mi x 1.2 = 307.2Mi, 256Mi + 100Mi = 356Mi) = 356Mi > 250Mi x 1.10
    assert quantities(rec)["requests"]["memory"] == "356Mi"
    assert rec.evidence["oomKills"] == 2
    assert rec.evidence["oomKilledAt"] == "256Mi"
    assert "2 OOM kill(s) at 256Mi" in rec.reason


def test_oom_kill_bump_is_twenty_percent_for_large_containers():
    killed = usage(
        memory_peak_bytes=float(1000 * MIB), oom_kills=1, oom_killed_memory_bytes=float(1024 * MIB)
    )
    rec = recommend(KEY, killed, resources(), RecommendationSettings())
    # max(1024Mi x 1.2 = 1228.8Mi, 1124Mi) -> 1229Mi
    assert quantities(rec)["requests"]["memory"] == "1229Mi"


def test_throttling_pushes_the_cpu_limit_up_never_down():
    throttled = usage(
        cpu_percentile_cores=0.2, cpu_max_cores=0.2, throttling=(LimitThrottling(None, 10000.0, 3000.0, 0.2),)
    )
    current = resources(requests={"cpu": "100m"}, limits={"cpu": "200m"})
    settings = RecommendationSettings.for_profile("background")
    rec = recommend(KEY, throttled, current, settings)
    # usage was capped by the limit: peak time counts 200m x 1.5 = 300m -> request 300m / 0.75 = 400m
    assert quantities(rec)["requests"]["cpu"] == "400m"
    assert "CPU p95 200m (throttled, counted as 300m)" in rec.reason
    # ratio limit 400m x 1.5 = 600m; throttled: at least 200m x 1.5 = 300m; 600m wins
    assert quantities(rec)["limits"]["cpu"] == "600m"
    assert rec.evidence["throttledRatio"] == 0.3
    assert "throttled 30% of CFS periods under limit 200m" in rec.reason

    big_limit = resources(requests={"cpu": "100m"}, limits={"cpu": "1"})
    rec = recommend(KEY, throttled, big_limit, settings)
    assert rec.recommended.limits["cpu"] >= Decimal("1.5")  # never below the limit that throttled, x1.5


def test_throttling_below_threshold_changes_nothing():
    light = usage(throttling=(LimitThrottling(None, 10000.0, 100.0),))
    current = resources(limits={"cpu": "2"})
    rec = recommend(KEY, light, current, RecommendationSettings())
    assert quantities(rec)["limits"]["cpu"] == "480m"
    assert "throttled" not in rec.reason


def test_cpu_limit_never_below_the_observed_maximum():
    spiky = usage(cpu_percentile_cores=0.05, cpu_max_cores=0.9)
    rec = recommend(KEY, spiky, resources(), RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "70m"  # 50m / 0.75 = 66.7 -> 70m
    assert quantities(rec)["limits"]["cpu"] == "900m"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"first_seen": 0.0, "last_seen": 6 * 3600.0}, "insufficient history: 6.0h of samples, needs 24h"),
        ({"samples": 50}, "insufficient history: 50 samples, needs 100"),
        ({"memory_peak_bytes": None, "samples": 0}, "no memory usage series"),
        ({"cpu_percentile_cores": None}, "no CPU usage series"),
    ],
)
def test_too_little_history_gives_no_recommendation_with_the_reason(overrides, reason):
    rec = recommend(KEY, usage(**overrides), resources(), RecommendationSettings())
    assert rec.recommended is None
    assert not rec.ready
    assert reason in rec.reason
    assert rec.to_dict()["recommended"] is None


def test_min_and_max_allowed_bound_the_requests_and_limits_follow():
    settings = RecommendationSettings.for_profile(
        "latency-sensitive",
        min_allowed=ResourceBounds(cpu=parse("250m")),
        max_allowed=ResourceBounds(memory=parse("128Mi")),
    )
    rec = recommend(KEY, usage(), resources(), settings)
    assert quantities(rec)["requests"] == {"cpu": "250m", "memory": "128Mi"}
    assert quantities(rec)["limits"] == {"cpu": "750m", "memory": "192Mi"}
    assert any("below the observed peak" in w for w in rec.warnings)
    assert "capped at maxAllowed 128Mi" in rec.reason


def test_qos_class_is_guaranteed_when_limits_equal_requests():
    settings = RecommendationSettings.for_profile(
        "latency-sensitive", cpu_limit_ratio=1.0, memory_limit_ratio=1.0
    )
    rec = recommend(KEY, usage(cpu_max_cores=0.15), resources(), settings)
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
    for field in ("cpuPeakTime", "cpuMax", "memoryPeak", "oomKills", "samples", "historyHours"):
        assert field in data["evidence"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cpu_target_utilization": 1.2}, "cpu_target_utilization"),
        ({"cpu_target_utilization": 0}, "cpu_target_utilization"),
        ({"cpu_limit_ratio": 0.5}, "cpu_limit_ratio"),
        ({"memory_limit_ratio": 0.9}, "memory_limit_ratio"),
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


def test_throttling_under_an_earlier_limit_does_not_raise_the_limit_in_force_again():
    """The ratchet: 200m throttled 29%, then raised to 1200m. Those periods say nothing of 1200m."""
    history = usage(
        cpu_percentile_cores=0.3,
        cpu_max_cores=0.31,
        throttling=(LimitThrottling(0.2, 6000.0, 1740.0, 0.2), LimitThrottling(1.2, 3000.0, 0.0, 0.3)),
    )
    current = resources(requests={"cpu": "400m"}, limits={"cpu": "1200m"})
    rec = recommend(KEY, history, current, RecommendationSettings())
    # Not throttled under 1200m: 300m / 0.75 = 400m, limit 3 x 400m. The pods throttled under 200m
    # count as 200m x 1.5 = 300m: no more than what the unthrottled pods show.
    assert quantities(rec)["requests"]["cpu"] == "400m"
    assert quantities(rec)["limits"]["cpu"] == "1200m"
    assert "counted as" not in rec.reason
    assert rec.evidence["throttledRatio"] == round(1740 / 9000, 4)
    assert rec.evidence["throttledRatioCurrentLimit"] == 0.0


def test_an_earlier_limit_that_throttled_stays_a_floor():
    history = usage(
        cpu_percentile_cores=0.03,
        cpu_max_cores=0.05,
        throttling=(LimitThrottling(0.2, 6000.0, 1740.0, 0.02), LimitThrottling(0.5, 3000.0, 0.0, 0.03)),
    )
    current = resources(requests={"cpu": "100m"}, limits={"cpu": "500m"})
    rec = recommend(KEY, history, current, RecommendationSettings())
    # The ratio would give 3 x 40m = 120m; 200m throttled, so never below 200m x 1.5 = 300m.
    assert quantities(rec)["limits"]["cpu"] == "300m"
    assert "under an earlier limit 200m" in rec.reason


def test_throttling_under_the_limit_in_force_still_raises_it():
    history = usage(
        cpu_percentile_cores=0.2,
        cpu_max_cores=0.2,
        throttling=(LimitThrottling(0.1, 6000.0, 100.0, 0.1), LimitThrottling(0.2, 3000.0, 900.0, 0.2)),
    )
    current = resources(requests={"cpu": "100m"}, limits={"cpu": "200m"})
    rec = recommend(KEY, history, current, RecommendationSettings.for_profile("background"))
    assert "throttled 30% of CFS periods under limit 200m" in rec.reason
    assert "(throttled under 200m, counted as 300m)" in rec.reason
    assert quantities(rec)["requests"]["cpu"] == "400m"  # 200m x 1.5 / 0.75


def test_oom_kills_with_too_little_history_raise_memory_now_and_leave_cpu():
    crash_looping = usage(
        samples=12,
        first_seen=0.0,
        last_seen=90.0,
        memory_peak_bytes=float(60 * MIB),
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


def test_too_little_history_without_oom_kills_still_gives_nothing():
    rec = recommend(KEY, usage(samples=12, last_seen=90.0), resources(), RecommendationSettings())
    assert rec.recommended is None


def test_pods_throttled_under_an_earlier_limit_still_count_their_capped_usage_higher():
    """Right after a raise the new pods have little history: the throttled pods' capped 205m must
    not pull the request down (410m -> 280m -> 385m was seen on the real node)."""
    history = usage(
        cpu_percentile_cores=0.21,
        cpu_max_cores=0.21,
        throttling=(LimitThrottling(0.2, 6000.0, 5000.0, 0.205), LimitThrottling(1.23, 300.0, 0.0, 0.21)),
    )
    current = resources(requests={"cpu": "410m"}, limits={"cpu": "1230m"})
    rec = recommend(KEY, history, current, RecommendationSettings())
    assert quantities(rec)["requests"]["cpu"] == "410m"  # 205m x 1.5 / 0.75
    assert quantities(rec)["limits"]["cpu"] == "1230m"  # 3 x 410m; not 1.5 x 1230m
    assert "(throttled under 200m, counted as 308m)" in rec.reason

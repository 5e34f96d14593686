"""Every default has one home: settings.py (and the policy's dataclasses built on it).

The CRD cannot import Python, so its schema defaults are compared here with the settings, and a
default added to the CRD fails until it is in the table below. The policy's own fallbacks (for
specs the API server did not default) and the CLI's flags are checked against the same values.
"""

from __future__ import annotations

from typing import Any

import pytest

from rightsizer.cli import build_parser
from rightsizer.duration import format_duration, parse_duration
from rightsizer.policy import AUTO, DEFAULT_KIND, RECOMMEND, AutoRails, ContainerPolicy, parse_policy
from rightsizer.settings import (
    CPU_WINDOW_SECONDS,
    DEFAULTS,
    EVALUATION_INTERVAL_SECONDS,
    HISTORY_WINDOW_SECONDS,
    HPA_MODE,
    PROMETHEUS_TIMEOUT_SECONDS,
    RecommendationSettings,
    ResourceBounds,
    SettingsError,
    inverted_bound,
)
from rightsizer.source import PrometheusSource, PrometheusUnavailable, url_error
from tests.support.crd import crd_defaults, spec_schema, with_crd_defaults

RAILS = AutoRails()

DURATIONS: dict[str, int] = {
    "spec.interval": EVALUATION_INTERVAL_SECONDS,
    "spec.history.window": HISTORY_WINDOW_SECONDS,
    "spec.history.minimum": DEFAULTS.min_history_seconds,
    "spec.history.resolution": CPU_WINDOW_SECONDS,
    "spec.auto.cooldown": RAILS.cooldown_seconds,
    "spec.auto.canary.duration": RAILS.canary_seconds,
    "spec.auto.rollbackBackoff": RAILS.rollback_backoff_seconds,
}
"""CRD durations (``14d``) and the seconds the settings hold."""

VALUES: dict[str, Any] = {
    "spec.targetRef.kind": DEFAULT_KIND,
    "spec.kinds": [DEFAULT_KIND],
    "spec.mode": RECOMMEND,
    "spec.hpa": HPA_MODE,
    "spec.profile": DEFAULTS.profile.value,
    "spec.cpu.targetUtilization": DEFAULTS.cpu_target_utilization,
    "spec.cpu.percentile": DEFAULTS.cpu_percentile,
    "spec.cpu.noLimit": DEFAULTS.cpu_limit_ratio is None,
    "spec.cpu.throttlingThreshold": DEFAULTS.throttling_threshold,
    "spec.memory.headroom": DEFAULTS.memory_headroom,
    "spec.containerPolicies[].mode": ContainerPolicy("app").mode,
    "spec.auto.minChangePercent": RAILS.min_change_percent,
    "spec.auto.maxStepPercent": RAILS.max_step_percent,
    "spec.auto.updateMode": RAILS.update_mode,
}

OBJECTS = {"spec.history", "spec.cpu", "spec.memory", "spec.auto", "spec.auto.canary"}
"""Objects defaulted to ``{}``, so that the API server fills in the defaults inside them."""


CRD_DEFAULTS = crd_defaults(spec_schema())


def test_every_crd_default_is_checked() -> None:
    """A default added to (or removed from) the CRD must be added to (or removed from) the table."""
    assert set(CRD_DEFAULTS) == set(DURATIONS) | set(VALUES) | OBJECTS


@pytest.mark.parametrize("path", sorted(DURATIONS))
def test_crd_duration_defaults_are_the_settings(path: str) -> None:
    assert parse_duration(CRD_DEFAULTS[path]) == DURATIONS[path], f"{path}: {CRD_DEFAULTS[path]}"


@pytest.mark.parametrize("path", sorted(VALUES))
def test_crd_defaults_are_the_settings(path: str) -> None:
    assert CRD_DEFAULTS[path] == VALUES[path]
    assert type(CRD_DEFAULTS[path]) is type(VALUES[path]), "the same value, but a string for a number?"


@pytest.mark.parametrize("path", sorted(OBJECTS))
def test_crd_object_defaults_are_empty(path: str) -> None:
    assert CRD_DEFAULTS[path] == {}


def test_a_spec_the_api_server_did_not_default_reads_the_same() -> None:
    """The policy's fallbacks (a policy stored before the CRD had a default) are the CRD's defaults."""
    minimal = {"selector": {}, "containerPolicies": [{"containerName": "app"}]}
    defaulted = with_crd_defaults(spec_schema(), minimal)
    assert defaulted["history"]["window"] == format_duration(HISTORY_WINDOW_SECONDS)  # control
    assert defaulted["containerPolicies"][0]["mode"] == AUTO  # control
    assert parse_policy(minimal) == parse_policy(defaulted)


def test_recommend_defaults_are_a_default_policy() -> None:
    """``rightsizer recommend`` without flags sizes as a policy without fields does."""
    args = build_parser().parse_args(["recommend", "--prometheus-url", "http://127.0.0.1:9"])
    policy = parse_policy({"selector": {}})
    assert args.history == policy.history_seconds
    assert args.resolution == policy.cpu_window_seconds
    assert args.min_history == policy.settings.min_history_seconds
    assert args.profile == policy.settings.profile.value
    assert args.target_utilization == policy.settings.cpu_target_utilization
    assert args.cpu_percentile == policy.settings.cpu_percentile
    assert args.timeout == PROMETHEUS_TIMEOUT_SECONDS
    assert args.hpa == policy.hpa


def test_recommend_help_states_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["recommend", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for stated in (
        f"history window (default {format_duration(HISTORY_WINDOW_SECONDS)})",
        f"minimum history (default {format_duration(DEFAULTS.min_history_seconds)})",
        f"(default {format_duration(CPU_WINDOW_SECONDS)};",
        f"default {DEFAULTS.profile.value}",
        f"peak CPU / request (default {DEFAULTS.cpu_target_utilization})",
        f"peak-time percentile (default {DEFAULTS.cpu_percentile})",
        f"per-query timeout (default {format_duration(PROMETHEUS_TIMEOUT_SECONDS)})",
        f"at the same usage (default {HPA_MODE})",
    ):
        assert stated in text


def test_the_default_settings_are_the_latency_sensitive_profile() -> None:
    assert RecommendationSettings.for_profile(DEFAULTS.profile) == DEFAULTS


@pytest.mark.parametrize(
    ("low", "high", "inverted"),
    [
        (ResourceBounds(cpu=2), ResourceBounds(cpu=1), "cpu"),
        (ResourceBounds(memory=2), ResourceBounds(cpu=3, memory=1), "memory"),
        (ResourceBounds(cpu=1, memory=1), ResourceBounds(cpu=1, memory=1), None),
        (ResourceBounds(cpu=2), ResourceBounds(memory=1), None),
    ],
)
def test_min_above_max_is_found_in_one_place(
    low: ResourceBounds, high: ResourceBounds, inverted: str | None
) -> None:
    assert inverted_bound(low, high) == inverted
    if inverted is None:
        RecommendationSettings(min_allowed=low, max_allowed=high).validate()
    else:
        with pytest.raises(SettingsError, match=f"min_allowed.{inverted} .* is above max_allowed.{inverted}"):
            RecommendationSettings(min_allowed=low, max_allowed=high).validate()


@pytest.mark.parametrize("url", ["prometheus:9090", "ftp://prometheus", "//prometheus:9090"])
def test_a_url_without_http_is_refused_by_the_cli_and_the_source(url: str) -> None:
    assert url_error(url) == f"{url!r} must start with http:// or https://"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["recommend", "--prometheus-url", url])
    with pytest.raises(PrometheusUnavailable, match="must start with http:// or https://"):
        PrometheusSource(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9090", "https://prometheus.monitoring"])
def test_http_and_https_urls_are_accepted(url: str) -> None:
    assert url_error(url) is None

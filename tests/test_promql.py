"""Queries are built from settings with escaping; label names and matchers are validated."""

import pytest

from rightsizer.promql import LabelConfig, Matcher, PromQLError, QueryScope, escape


def test_label_values_are_escaped_not_pasted():
    scope = QueryScope(('evil"} or vector(1) #',), 3600)
    selector = scope.cadvisor("container_memory_working_set_bytes")
    assert selector == (
        'container_memory_working_set_bytes{namespace="evil\\"} or vector(1) #", '
        'container!="", container!="POD"}'
    )


def test_several_namespaces_become_one_anchored_regex():
    scope = QueryScope(("shop", "batch.jobs"), 3600)
    assert 'namespace=~"shop|batch\\\\.jobs"' in scope.ksm("kube_pod_owner")


def test_no_namespaces_means_all():
    assert QueryScope((), 3600).ksm("kube_pod_owner") == "kube_pod_owner{}"


def test_old_cadvisor_label_names_and_extra_matchers_reach_every_query():
    labels = LabelConfig(
        pod="pod_name", container="container_name", extra_matchers=(Matcher.parse('cluster="eu"'),)
    )
    scope = QueryScope(("shop",), 86400, labels)
    queries = {**scope.usage_queries(0.95), **scope.state_queries()}
    for name, query in queries.items():
        assert 'cluster="eu"' in query, name
    assert "max by (namespace, pod_name, container_name)" in queries["memory_peak"]
    assert 'container_name!="POD"' in queries["cpu_percentile"]


def test_cpu_subquery_steps_by_the_rate_window_and_memory_peak_uses_raw_samples():
    queries = QueryScope(("shop",), 14 * 86400, cpu_window_seconds=300).usage_queries(0.9)
    assert "quantile_over_time(0.9, rate(" in queries["cpu_percentile"]
    assert "[300s])[1209600s:300s]" in queries["cpu_percentile"]
    assert "max_over_time(container_memory_working_set_bytes{" in queries["memory_peak"]
    assert "[1209600s])" in queries["memory_peak"]


@pytest.mark.parametrize("bad", ["cluster", 'cluster="x', '1cluster="x"', 'cluster=="x"'])
def test_malformed_matchers_are_rejected(bad):
    with pytest.raises(PromQLError, match="not of the form"):
        Matcher.parse(bad)


def test_matcher_round_trip_keeps_escapes():
    matcher = Matcher.parse('job=~"kube-.*"')
    assert matcher.render() == 'job=~"kube-.*"'
    assert escape('a\\b"c') == '"a\\\\b\\"c"'


def test_invalid_label_names_are_rejected():
    with pytest.raises(PromQLError):
        LabelConfig(pod="pod-name")


def test_no_timestamp_of_a_selector_inside_a_subquery():
    """Quadratic in the history on Prometheus < 2.46: 23 s instead of 0.13 s a namespace (benchmarks.md)."""
    queries = QueryScope(("shop",), 14 * 86400).usage_queries(0.95)
    assert not any("timestamp(" in query for query in queries.values())
    assert (
        "min_over_time((time() + 0 * max_over_time(container_memory_working_set_bytes{"
        in queries["first_seen"]
    )
    assert queries["first_seen"].endswith("[3600s]))[1209600s:3600s]))")


def test_cadvisor_spec_is_one_query_with_a_spec_label_per_part():
    query = QueryScope(("shop",), 3600).usage_queries(0.95)["cadvisor_spec"]
    for part in ("cpu_limit", "cpu_request", "memory_limit", "oom_events"):
        assert f'"spec", "{part}"' in query
    assert "min_over_time(container_spec_cpu_quota{" in query
    assert "container_oom_events_total{" in query


def test_a_history_of_minutes_is_measured_to_the_cpu_window_not_the_hour():
    assert QueryScope(("shop",), 14 * 86400).seen_resolution_seconds == 3600
    short = QueryScope(("shop",), 600, cpu_window_seconds=30)
    assert short.seen_resolution_seconds == 30
    assert short.usage_queries(0.95)["first_seen"].endswith("[30s]))[600s:30s]))")

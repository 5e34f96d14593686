"""Queries are built from settings with escaping; label names and matchers are validated."""

from dataclasses import replace

import pytest

from rightsizer.promql import LabelConfig, Matcher, PromQLError, QueryScope, escape, tiled_rate


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
    queries = {**scope.history_queries(), **scope.usage_queries(), **scope.state_queries()}
    for name, query in queries.items():
        assert 'cluster="eu"' in query, name
    assert "max by (namespace, pod_name, container_name)" in queries["memory_peak"]
    assert 'container_name!="POD"' in queries["cpu_increase"]
    assert "max by (namespace, pod_name, container_name)" in scope.tiled_cpu_queries()["cpu_peak"]


def test_the_first_round_is_13_queries_a_namespace_whatever_the_window():
    for window, resolution, count in ((14 * 86400, 300, 13), (600, 30, 12), (3 * 86400, 60, 13)):
        scope = QueryScope(("shop",), window, cpu_window_seconds=resolution)
        assert len(scope.queries()) == count  # no cpu_increase where a bucket is one CPU window


def test_the_history_queries_are_functions_of_one_series_each():
    """No aggregation and no binary operator, which Prometheus evaluates by matching labels at every
    step: the client folds a container's series and computes the means (rightsizer.windows)."""
    scope = QueryScope(("shop",), 14 * 86400, cpu_window_seconds=300)
    queries = scope.history_queries()
    cpu = 'container_cpu_usage_seconds_total{namespace="shop", container!="", container!="POD"}'
    assert queries["cpu_counter"] == cpu
    assert queries["cpu_increase"] == (f"max_over_time(idelta(({cpu})[301s:300s])[1799s:300s])")
    for query in queries.values():
        assert " by " not in query and " - " not in query and " or " not in query


def test_the_tiled_cpu_queries_step_by_the_cpu_window_over_a_bucket():
    scope = QueryScope(("shop",), 14 * 86400, cpu_window_seconds=300)
    queries = scope.tiled_cpu_queries()
    cpu = 'container_cpu_usage_seconds_total{namespace="shop", container!="", container!="POD"}'
    # The bucket's own windows: 1799 s, not 1800 s, where a range includes its start (Prometheus 2).
    assert (
        queries["cpu_peak"]
        == f"max by (namespace, pod, container) (max_over_time(({tiled_rate(cpu, 300)})[1799s:300s]))"
    )
    assert queries["cpu_mean"] == f"max by (namespace, pod, container) ({tiled_rate(cpu, 1800)})"


def test_the_exact_cpu_query_asks_each_bucket_end_for_its_pods():
    scope = QueryScope(("shop",), 14 * 86400)
    query = scope.exact_cpu_query([(1000.0, ("web-a", "web-b")), (2800.0, ())])
    pods = r'pod=~"web\\-a|web\\-b"'
    cpu = f'container_cpu_usage_seconds_total{{namespace="shop", {pods}, container!="", container!="POD"}}'
    assert f"max_over_time(({tiled_rate(cpu, 300)})[1799s:300s] @ 1000.000)" in query
    assert f"last_over_time({cpu}[1799s] @ 1000.000)" in query
    assert f"{cpu} @ 1000.000 offset 1800s" in query
    everyone = 'container_cpu_usage_seconds_total{namespace="shop", container!="", container!="POD"}'
    assert f"{everyone}[1799s] @ 2800.000" in query
    for term in ("cpu_mean@1000.000", "cpu_peak@1000.000", "cpu_mean@2800.000", "cpu_peak@2800.000"):
        assert f'"rightsizer_term", "{term}"' in query
    assert query.count(" or label_replace(") == 3


def test_kube_state_metrics_last_values_are_read_over_the_last_hour_then_over_the_window_for_the_rest():
    scope = QueryScope(("shop",), 14 * 86400)
    recent = scope.state_queries()
    for name in ("pod_owner", "replicaset_owner", "requests", "limits"):
        assert "[3600s])" in recent[name], name
    assert "[1209600s])" in recent["oom_killed"]
    again = replace(scope, pods=("web-a",), replicasets=("web-7d9f8b6c5d",)).state_queries(recent=False)
    assert (
        r'kube_pod_container_resource_requests{namespace="shop", pod=~"web\\-a"}[1209600s]'
        in again["requests"]
    )
    assert r'replicaset=~"web\\-7d9f8b6c5d"' in again["replicaset_owner"]
    assert QueryScope(("shop",), 600).recent_seconds == 600  # never more than the window


def test_cpu_windows_are_increases_between_their_ends_or_within_the_window():
    cpu = 'container_cpu_usage_seconds_total{pod="a"}'
    assert tiled_rate(cpu, 300) == (
        f"(last_over_time({cpu}[299s]) - {cpu} offset 300s) / 300 >= 0 or "
        f"(last_over_time({cpu}[299s]) - min_over_time({cpu}[299s])) / 300 > 0"
    )


def test_memory_ranges_hold_the_sample_at_the_bucket_start_on_every_backend():
    queries = QueryScope(("shop",), 14 * 86400).history_queries()
    assert queries["memory_mean"].startswith("avg_over_time(container_memory_working_set_bytes{")
    assert queries["memory_mean"].endswith("[1801s])")
    assert queries["memory_samples"].endswith("[1801s])")


def test_the_memory_peak_reads_raw_samples_over_the_window():
    queries = QueryScope(("shop",), 14 * 86400).usage_queries()
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
    scope = QueryScope(("shop",), 14 * 86400)
    queries = {**scope.history_queries(), **scope.usage_queries(), **scope.state_queries()}
    assert not any("timestamp(" in query for query in queries.values())


def test_cadvisor_spec_is_one_query_with_a_spec_label_per_part():
    query = QueryScope(("shop",), 3600).usage_queries()["cadvisor_spec"]
    for part in ("cpu_limit", "cpu_request", "memory_limit", "oom_events"):
        assert f'"spec", "{part}"' in query
    assert "min_over_time(container_spec_cpu_quota{" in query
    assert "container_oom_events_total{" in query


def test_buckets_are_half_hours_for_days_and_cpu_windows_for_minutes():
    days = QueryScope(("shop",), 14 * 86400)
    assert (days.bucket_seconds, days.buckets) == (1800, 672)
    minutes = QueryScope(("shop",), 600, cpu_window_seconds=30)
    assert (minutes.bucket_seconds, minutes.buckets) == (30, 20)
    cpu = 'container_cpu_usage_seconds_total{namespace="shop", container!="", container!="POD"}'
    assert minutes.tiled_cpu_queries()["cpu_peak"] == (
        f"max by (namespace, pod, container) ({tiled_rate(cpu, 30)})"
    )  # a bucket of one CPU window: no subquery
    assert "cpu_increase" not in minutes.history_queries()
    hours = QueryScope(("shop",), 23 * 3600, cpu_window_seconds=30)
    assert hours.bucket_seconds == 300  # at most 288 buckets: a whole number of CPU windows
    assert QueryScope(("shop",), 14 * 86400, cpu_window_seconds=420).bucket_seconds == 2100


def test_oom_restarts_are_the_restarts_of_a_bucket_after_which_the_container_was_oom_killed():
    query = QueryScope(("shop",), 14 * 86400).oom_restarts_query()
    restarts = 'kube_pod_container_status_restarts_total{namespace="shop"}'
    assert (
        f"((max by (namespace, pod, container) ({restarts}) - "
        f"max by (namespace, pod, container) ({restarts} offset 1800s)) or "
        f"max by (namespace, pod, container) ({restarts})) > 0"
    ) in query
    assert "and on (namespace, pod, container) max by (namespace, pod, container) (" in query
    assert 'reason="OOMKilled"' in query

"""LimitRanges, ResourceQuotas and node allocatable, checked before Auto mode patches."""

from rightsizer.constraints import limit_range_violations, node_fit_violations, quota_violations
from rightsizer.model import Resources
from rightsizer.quantity import parse


def res(requests=None, limits=None):
    return Resources(
        {k: parse(v) for k, v in (requests or {}).items()}, {k: parse(v) for k, v in (limits or {}).items()}
    )


def limit_range(**item):
    return {"metadata": {"name": "bounds"}, "spec": {"limits": [{"type": "Container", **item}]}}


def test_limit_range_max_min_and_ratio():
    ranges = [limit_range(min={"cpu": "50m"}, max={"memory": "1Gi"}, maxLimitRequestRatio={"cpu": "4"})]
    ok = {"app": res({"cpu": "100m", "memory": "256Mi"}, {"cpu": "400m", "memory": "512Mi"})}
    assert limit_range_violations(ok, ranges) == []
    bad = {"app": res({"cpu": "20m", "memory": "2Gi"}, {"cpu": "1", "memory": "2Gi"})}
    problems = limit_range_violations(bad, ranges)
    assert any("cpu request 20m is below the minimum 50m" in p for p in problems)
    assert any("memory limit 2Gi is above the maximum 1Gi" in p for p in problems)
    assert any("limit/request 50.00 is above maxLimitRequestRatio 4" in p for p in problems)
    assert all(p.startswith("LimitRange bounds: container app:") for p in problems)


def test_a_missing_limit_takes_the_limit_range_default_then_max():
    ranges = [limit_range(max={"cpu": "500m"})]
    no_limit = {"app": res({"cpu": "800m"})}
    assert any(
        "cpu request 800m is above the maximum 500m" in p for p in limit_range_violations(no_limit, ranges)
    )
    assert limit_range_violations({"app": res({"cpu": "100m"})}, ranges) == []


def test_a_limit_range_default_is_the_limit_of_a_container_without_one():
    """LimitRanger gives a container without a limit the range's ``default``, not its ``max``: the
    ratio to the request is judged on that default (150m / 100m = 1.5, not 1 / 100m = 10)."""
    ranges = [limit_range(default={"cpu": "150m"}, max={"cpu": "1"}, maxLimitRequestRatio={"cpu": "2"})]
    assert limit_range_violations({"app": res({"cpu": "100m"})}, ranges) == []
    (problem,) = limit_range_violations({"app": res({"cpu": "50m"})}, ranges)
    assert (
        problem == "LimitRange bounds: container app: cpu limit/request 3.00 is above maxLimitRequestRatio 2"
    )


def test_pod_and_other_types_are_ignored():
    ranges = [{"metadata": {"name": "x"}, "spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {}}]}}]
    assert limit_range_violations({"app": res({"cpu": "100"})}, ranges) == []


def quota(hard, used):
    return {"metadata": {"name": "team"}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}}


def test_quota_counts_only_the_increase_times_replicas():
    before = {"app": res({"cpu": "100m", "memory": "100Mi"})}
    after = {"app": res({"cpu": "200m", "memory": "100Mi"})}
    roomy = [quota({"requests.cpu": "2"}, {"requests.cpu": "1"})]
    assert quota_violations(before, after, 3, roomy) == []  # 1 + 3 x 100m = 1.3
    tight = [quota({"requests.cpu": "1200m"}, {"requests.cpu": "1"})]
    (problem,) = quota_violations(before, after, 3, tight)
    assert "requests.cpu would reach 1300m of 1200m (3 pods)" in problem
    shrinking = {"app": res({"cpu": "50m"})}
    assert quota_violations(before, shrinking, 3, tight) == []


def test_quota_on_limits_requires_every_container_to_set_the_limit():
    quotas = [quota({"limits.cpu": "10"}, {"limits.cpu": "1"})]
    (problem,) = quota_violations({"app": res(limits={"cpu": "1"})}, {"app": res({"cpu": "1"})}, 1, quotas)
    assert "no cpu limit on container(s) app" in problem


def node(name, cpu, memory):
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": memory}}}


def test_requests_must_fit_one_node():
    nodes = [node("small", "2", "4Gi"), node("big", "8", "16Gi")]
    pod = {"app": res({"cpu": "6", "memory": "8Gi"}), "sidecar": res({"cpu": "1", "memory": "1Gi"})}
    assert node_fit_violations(pod, nodes) == []
    too_big = {"app": res({"cpu": "9", "memory": "1Gi"})}
    (problem,) = node_fit_violations(too_big, nodes)
    assert "fit no node (largest: big with cpu 8" in problem
    assert node_fit_violations(too_big, []) == []

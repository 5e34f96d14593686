"""The workload-history generator: determinism, Kubernetes naming, OOM kills, throttling, OpenMetrics."""

from __future__ import annotations

import itertools
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rightsizer_demo.history import (
    CFS_PERIODS_PER_SECOND,
    DAY,
    MIB,
    POD_NAME_ALPHABET,
    TRUTH_COLUMNS,
    Autoscaling,
    ContainerSpec,
    Recording,
    Rollout,
    ShortPod,
    UsageModel,
    WorkloadSpec,
    demo_scenario,
    ground_truth,
    pod_plans,
    window_ending_now,
    write_openmetrics,
    write_recorded_openmetrics,
)
from rightsizer_demo.prometheus import load_history

T0 = 1_699_920_000  # 2023-11-14 00:00 UTC
STEP = 60
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:\w+="[^"\\]*",?)*)\} (\S+) (\d+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')
KSM_FAMILIES = (
    "kube_pod_owner",
    "kube_replicaset_owner",
    "kube_pod_container_resource_requests",
    "kube_pod_container_resource_limits",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_status_last_terminated_reason",
)

Series = dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[int, float]]]


def read_openmetrics(path: Path) -> Series:
    """Samples by (name, labels), checking the structure promtool and the OpenMetrics spec require."""
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    families: list[str] = []
    sample_name = ""
    series: Series = defaultdict(list)
    for line in lines[:-1]:
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            assert family not in families, f"family {family} interleaved"
            assert kind in ("counter", "gauge")
            families.append(family)
            sample_name = f"{family}_total" if kind == "counter" else family
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, labels, value, timestamp = match.groups()
        assert name == sample_name, line
        series[(name, frozenset(LABEL.findall(labels)))].append((int(timestamp), float(value)))
    for samples in series.values():
        timestamps = [ts for ts, _ in samples]
        assert timestamps == sorted(set(timestamps))
    return series


def by_label(series: Series, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], list]:
    wanted = set(labels.items())
    return {key: samples for (n, key), samples in series.items() if n == name and wanted <= key}


def web(**options: Any) -> WorkloadSpec:
    app = ContainerSpec(
        "app",
        UsageModel(0.2, 100 * MIB, cpu_daily_amplitude_cores=0.2, bursts_per_day=20, burst_cores=0.5),
        requests={"cpu": "250m", "memory": "128Mi"},
        limits={"cpu": "1", "memory": "256Mi"},
    )
    sidecar = ContainerSpec("sidecar", UsageModel(0.01, 20 * MIB))
    return WorkloadSpec("ns", "web", (app, sidecar), replicas=2, created_at=T0, **options)


@pytest.fixture(scope="module")
def demo() -> tuple[list[WorkloadSpec], pd.DataFrame]:
    workloads = demo_scenario(T0, T0 + 2 * DAY)
    return workloads, ground_truth(workloads, T0, T0 + 2 * DAY, STEP)


@pytest.fixture(scope="module")
def demo_series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    path = tmp_path_factory.mktemp("history") / "demo.om"
    write_openmetrics(demo_scenario(T0, T0 + 2 * DAY), path, T0, T0 + 2 * DAY, STEP)
    return read_openmetrics(path)


def test_same_seed_same_history_other_seed_other_history():
    workloads = [web()]
    first = ground_truth(workloads, T0, T0 + DAY, STEP, seed=7)
    pd.testing.assert_frame_equal(first, ground_truth(workloads, T0, T0 + DAY, STEP, seed=7))
    other = ground_truth(workloads, T0, T0 + DAY, STEP, seed=8)
    assert not np.allclose(first["cpu_cores"], other["cpu_cores"])
    assert set(first["pod"]).isdisjoint(other["pod"])


def test_a_later_window_is_a_slice_of_the_same_trajectory(tmp_path: Path):
    """Learn on days 0-1, score on days 1-2: both windows must come from one history."""
    workloads = demo_scenario(T0, T0 + 2 * DAY)
    whole = ground_truth(workloads, T0, T0 + 2 * DAY, 300)
    later = ground_truth(workloads, T0 + DAY, T0 + 2 * DAY, 300)
    tail = whole[whole["timestamp"] >= pd.Timestamp(T0 + DAY, unit="s", tz="UTC")].reset_index(drop=True)
    pd.testing.assert_frame_equal(tail, later)

    write_openmetrics(workloads, tmp_path / "whole.om", T0, T0 + 2 * DAY, 300)
    write_openmetrics(workloads, tmp_path / "later.om", T0 + DAY, T0 + 2 * DAY, 300)
    whole_series = read_openmetrics(tmp_path / "whole.om")
    later_series = read_openmetrics(tmp_path / "later.om")
    assert set(later_series) <= set(whole_series)
    for key, samples in later_series.items():
        assert [s for s in whole_series[key] if s[0] >= T0 + DAY] == samples, key


def test_ground_truth_columns_and_window(demo):
    _, truth = demo
    assert tuple(truth.columns) == TRUTH_COLUMNS
    assert truth["timestamp"].min() == pd.Timestamp(T0, unit="s", tz="UTC")
    assert truth["timestamp"].max() == pd.Timestamp(T0 + 2 * DAY, unit="s", tz="UTC")
    assert (truth["timestamp"].dt.second == 0).all()  # on the 60 s grid


def test_deployment_pods_are_named_like_kubernetes_names_them():
    plans = pod_plans(web(), seed=3)
    chars = f"[{POD_NAME_ALPHABET}]"
    assert len(plans) == 2
    for plan in plans:
        assert plan.owner_kind == "ReplicaSet"
        assert re.fullmatch(f"web-{chars}{{10}}", plan.owner_name)
        assert re.fullmatch(f"{re.escape(plan.owner_name)}-{chars}{{5}}", plan.name)
    assert len({plan.name for plan in plans}) == 2


def test_statefulset_pods_are_numbered():
    redis = next(w for w in demo_scenario(T0, T0 + DAY) if w.name == "redis")
    assert [(p.name, p.owner_kind, p.owner_name) for p in pod_plans(redis)] == [
        (f"redis-{i}", "StatefulSet", "redis") for i in range(3)
    ]


def test_memory_above_the_limit_is_an_oom_kill_and_a_restart(demo, demo_series):
    _, truth = demo
    cart = truth[truth["workload"] == "cart"]
    limit = 512 * MIB
    assert (cart["memory_limit"] == limit).all()
    assert (cart["memory_bytes"] <= limit).all()
    for pod, rows in cart.groupby("pod"):
        memory, kills = rows["memory_bytes"].to_numpy(), np.flatnonzero(rows["oom_kill"].to_numpy())
        assert len(kills) == 1, pod  # 200Mi growing 250Mi a day hits 512Mi after about 30 h
        kill = kills[0]
        assert 26 * 3600 < kill * STEP < 31 * 3600
        assert memory[kill - 1] > 480 * MIB and memory[kill] < 220 * MIB  # back to base, then growing again
        assert memory[-1] > memory[kill] + 100 * MIB
        assert rows["restarts"].tolist() == [0] * kill + [1] * (len(rows) - kill)
        exported = by_label(demo_series, "kube_pod_container_status_last_terminated_reason", pod=pod)
        ((labels, samples),) = exported.items()
        assert ("reason", "OOMKilled") in labels
        assert samples[0][0] == rows["timestamp"].iloc[kill].timestamp() and {v for _, v in samples} == {1.0}
        (restarts,) = by_label(demo_series, "kube_pod_container_status_restarts_total", pod=pod).values()
        assert [v for _, v in restarts] == rows["restarts"].tolist()
    assert not by_label(demo_series, "kube_pod_container_status_last_terminated_reason", namespace="data")


def test_cpu_counter_resets_with_the_container_and_rates_match_the_truth(demo, demo_series):
    _, truth = demo
    cart = truth[truth["workload"] == "cart"]
    pod = cart["pod"].iloc[0]
    rows = cart[cart["pod"] == pod]
    ((_, samples),) = by_label(
        demo_series, "container_cpu_usage_seconds_total", pod=pod, container="app"
    ).items()
    counter = np.array([v for _, v in samples])
    kill = int(np.flatnonzero(rows["oom_kill"])[0])
    assert counter[kill] < counter[kill - 1]
    increments = np.diff(counter)
    increments[kill - 1] = counter[kill]
    np.testing.assert_allclose(increments / STEP, rows["cpu_cores"].to_numpy()[1:], atol=1e-3)


def test_cpu_is_capped_at_its_limit_and_throttled(demo):
    _, truth = demo
    search = truth[truth["workload"] == "search"]
    assert (search["cpu_limit"] == 0.5).all()
    assert search["cpu_cores"].max() <= 0.5
    assert search["cpu_demand_cores"].mean() > 0.8
    over = search["cpu_demand_cores"] > 0.5 * 1.5
    assert (search.loc[over, "throttled_fraction"] == 1.0).all()
    assert (search.loc[search["cpu_demand_cores"] < 0.45, "throttled_fraction"] == 0.0).all()
    unlimited = truth[truth["cpu_limit"].isna()]
    assert (unlimited["cpu_cores"] == unlimited["cpu_demand_cores"]).all()
    assert (unlimited["throttled_fraction"] == 0.0).all()


def test_cfs_series_only_for_containers_with_a_cpu_limit(demo_series):
    def containers(name: str) -> set[tuple[str, str]]:
        return {
            (dict(key)["pod"].split("-")[0], dict(key)["container"]) for key in by_label(demo_series, name)
        }

    periods = containers("container_cpu_cfs_periods_total")
    assert periods == containers("container_cpu_cfs_throttled_periods_total")
    assert {
        ("search", "app"),
        ("web", "app"),
        ("worker", "worker"),
        ("checkout", "app"),
        ("api", "app"),
    } == periods
    for samples in by_label(demo_series, "container_cpu_cfs_periods_total", namespace="batch").values():
        assert {b[1] - a[1] for a, b in itertools.pairwise(samples)} == {CFS_PERIODS_PER_SECOND * STEP}


def test_rollout_replaces_pods_with_a_new_replicaset(demo, demo_series):
    _, truth = demo
    checkout = truth[truth["workload"] == "checkout"]
    halfway = pd.Timestamp(T0 + DAY, unit="s", tz="UTC")
    old, new = checkout[checkout["timestamp"] < halfway], checkout[checkout["timestamp"] >= halfway]
    assert set(old["pod"]).isdisjoint(new["pod"]) and old["pod"].nunique() == new["pod"].nunique() == 2
    assert set(old["cpu_request"]) == {0.5} and set(new["cpu_request"]) == {0.3}
    assert set(new["memory_limit"]) == {768 * MIB}
    owners = by_label(demo_series, "kube_replicaset_owner", owner_name="checkout")
    replicasets = {dict(key)["replicaset"] for key in owners}
    assert len(replicasets) == 2
    assert all(samples[-1][0] == T0 + 2 * DAY for samples in owners.values())  # the old one is kept
    pod_owners = {dict(k)["pod"]: dict(k)["owner_name"] for k in by_label(demo_series, "kube_pod_owner")}
    assert {pod_owners[pod] for pod in checkout["pod"]} == replicasets


def test_rollout_needs_a_deployment_and_a_later_time():
    with pytest.raises(ValueError, match="rollout"):
        web(rollout=Rollout(T0 - 1))
    with pytest.raises(ValueError, match="kind"):
        web(kind="DaemonSet")


def test_a_young_workload_exists_only_for_its_last_hours(demo, demo_series):
    _, truth = demo
    young = truth[truth["workload"] == "new-feature"]
    assert young["timestamp"].min() == pd.Timestamp(T0 + 2 * DAY - 6 * 3600, unit="s", tz="UTC")
    assert len(young) == 6 * 3600 // STEP + 1
    (pod,) = set(young["pod"])
    (samples,) = by_label(
        demo_series, "container_memory_working_set_bytes", pod=pod, container="app"
    ).values()
    assert samples[0][0] == T0 + 2 * DAY - 6 * 3600
    old = by_label(demo_series, "kube_pod_owner", namespace="data").values()
    assert {len(samples) for samples in old} == {2 * DAY // STEP + 1}


def test_no_kube_state_metrics_series_for_a_workload_kube_state_metrics_does_not_see(demo_series):
    for name in KSM_FAMILIES:
        assert not by_label(demo_series, name, namespace="legacy"), name
    pods = {
        dict(key)["pod"]
        for key in by_label(demo_series, "container_memory_working_set_bytes", namespace="legacy")
    }
    assert len(pods) == 2 and all(re.fullmatch(r"api-\w{10}-\w{5}", pod) for pod in pods)


def test_requests_and_limits_in_base_units(demo_series):
    requests = by_label(
        demo_series, "kube_pod_container_resource_requests", namespace="shop", container="app"
    )
    values = {
        (dict(k)["pod"].split("-")[0], dict(k)["resource"], dict(k)["unit"], s[0][1])
        for k, s in requests.items()
    }
    assert ("web", "cpu", "core", 1.0) in values
    assert ("web", "memory", "byte", 1024.0 * MIB) in values
    assert ("cart", "cpu", "core", 0.25) in values
    limits = by_label(demo_series, "kube_pod_container_resource_limits", container="log-shipper")
    assert {dict(k)["resource"] for k in limits} == {"memory"}


def test_pod_cgroup_and_pause_container_are_exported_like_cadvisor(demo_series):
    containers = {dict(k)["container"] for k in by_label(demo_series, "container_memory_working_set_bytes")}
    assert {"", "POD", "app", "log-shipper"} <= containers


def test_tiny_output_is_valid_openmetrics(tmp_path: Path):
    path = tmp_path / "tiny.om"
    samples = write_openmetrics([web()], path, T0, T0 + 7200, STEP)
    text = path.read_text()
    assert text.endswith("\n# EOF\n")
    series = read_openmetrics(path)
    assert samples == sum(len(s) for s in series.values())
    assert "# TYPE container_cpu_usage_seconds counter\n" in text
    assert "# TYPE kube_pod_container_status_restarts counter\n" in text
    for (name, _), values in series.items():
        if name.endswith("_total"):
            assert all(b[1] >= a[1] for a, b in itertools.pairwise(values)), name
    if shutil.which("promtool"):
        load_history(path, tmp_path / "tsdb")
        assert any((tmp_path / "tsdb").iterdir())


def test_recorded_usage_is_written_as_recorded_with_the_series_of_its_pod(tmp_path: Path):
    """A recording's scrapes (with a gap) are its container's series, the pod cgroup's adds the pause
    container's, and kube-state-metrics' series name the pod as a Deployment's."""
    spec = ContainerSpec("app", UsageModel(0.0, 0.0), requests={"cpu": "2", "memory": "1Gi"})
    workload = WorkloadSpec("real", "vm-7", (spec,), created_at=T0)
    times = np.array([T0 + 60, T0 + 120, T0 + 600, T0 + 660])
    counter = np.array([30.0, 60.0, 90.0, 150.0])
    memory = np.array([100, 100, 200, 300]) * MIB
    path = tmp_path / "recorded.om"
    recording = Recording(workload, times, counter, memory)
    samples = write_recorded_openmetrics([recording], path, T0 + 100, T0 + 660, STEP)
    series = read_openmetrics(path)
    assert samples == sum(len(s) for s in series.values())
    (pod,) = pod_plans(workload)
    cpu = by_label(series, "container_cpu_usage_seconds_total", pod=pod.name, container="app")
    assert list(cpu.values()) == [[(T0 + 120, 60.0), (T0 + 600, 90.0), (T0 + 660, 150.0)]]
    working_set = by_label(series, "container_memory_working_set_bytes", container="app")
    assert list(working_set.values()) == [
        [(T0 + 120, 100.0 * MIB), (T0 + 600, 200.0 * MIB), (T0 + 660, 300.0 * MIB)]
    ]
    (cgroup,) = by_label(series, "container_cpu_usage_seconds_total", container="").values()
    (pause,) = by_label(series, "container_cpu_usage_seconds_total", container="POD").values()
    assert [c - p for (_, c), (_, p) in zip(cgroup, pause, strict=True)] == pytest.approx([60.0, 90.0, 150.0])
    requests = by_label(series, "kube_pod_container_resource_requests", pod=pod.name, container="app")
    assert {dict(k)["resource"]: s[0][1] for k, s in requests.items()} == {"cpu": 2.0, "memory": 1024.0 * MIB}
    (owner,) = by_label(series, "kube_pod_owner", pod=pod.name).keys()
    assert dict(owner)["owner_kind"] == "ReplicaSet" and dict(owner)["owner_name"].startswith("vm-7-")
    without = tmp_path / "without.om"
    write_recorded_openmetrics([recording], without, T0 + 100, T0 + 660, STEP, pod_series=False)
    containers = {
        dict(k)["container"]
        for k in by_label(read_openmetrics(without), "container_memory_working_set_bytes")
    }
    assert containers == {"app"}
    with pytest.raises(ValueError, match="one pod of one container"):
        Recording(WorkloadSpec("real", "two", (spec, spec), created_at=T0), times, counter, memory)


def test_window_ending_now_ends_on_the_last_step_boundary():
    assert window_ending_now(3600, 60, now=T0 + 119.5) == (T0 + 60 - 3600, T0 + 60)


def test_the_demo_has_the_named_cases(demo):
    workloads, truth = demo
    names = {(w.namespace, w.name) for w in workloads}
    assert names == {
        ("shop", "web"),
        ("shop", "cart"),
        ("shop", "search"),
        ("batch", "worker"),
        ("shop", "checkout"),
        ("data", "redis"),
        ("shop", "new-feature"),
        ("legacy", "api"),
    }
    peak = truth.groupby("workload")[["cpu_cores", "cpu_request"]].max()
    assert peak.loc["worker", "cpu_cores"] < peak.loc["worker", "cpu_request"]  # over-provisioned
    assert peak.loc["search", "cpu_cores"] > peak.loc["search", "cpu_request"]  # under-provisioned
    assert set(truth.loc[truth["workload"] == "web", "container"]) == {"app", "log-shipper"}


def single(usage: UsageModel, **options: Any) -> WorkloadSpec:
    app = ContainerSpec("app", usage, requests={"cpu": "100m", "memory": "128Mi"})
    return WorkloadSpec("ns", "job", (app,), created_at=T0, **options)


def test_a_nightly_batch_adds_its_cores_for_its_hours_every_day():
    usage = UsageModel(0.05, 64 * MIB, cpu_noise=0, batch_start_hour_utc=2, batch_hours=1, batch_cores=2.0)
    truth = ground_truth([single(usage)], T0, T0 + 2 * DAY, STEP)
    hours = truth["timestamp"].dt.hour
    assert np.allclose(truth.loc[hours == 2, "cpu_demand_cores"], 2.05)
    assert np.allclose(truth.loc[hours != 2, "cpu_demand_cores"], 0.05)
    assert (hours == 2).sum() == 2 * 60  # one hour each day


def test_a_load_step_multiplies_cpu_demand_from_its_time_on():
    usage = UsageModel(1.0, 64 * MIB, cpu_noise=0, step_at=T0 + DAY, step_cpu_factor=0.4)
    truth = ground_truth([single(usage)], T0, T0 + 2 * DAY, STEP)
    after = truth["timestamp"] >= pd.Timestamp(T0 + DAY, unit="s", tz="UTC")
    assert np.allclose(truth.loc[~after, "cpu_demand_cores"], 1.0)
    assert np.allclose(truth.loc[after, "cpu_demand_cores"], 0.4)


def test_memory_spikes_multiply_the_working_set_while_they_run():
    usage = UsageModel(
        0.1,
        100 * MIB,
        memory_noise=0,
        memory_spikes_per_day=24,
        memory_spike_ratio=1.0,
        memory_spike_minutes=3,
    )
    memory = ground_truth([single(usage)], T0, T0 + DAY, STEP)["memory_bytes"].to_numpy()
    assert set(np.round(memory / MIB)) == {100.0, 200.0}
    spiking = memory > 150 * MIB
    assert 24 <= spiking.sum() <= 3 * 24 * 2  # about 24 spikes of up to 3 minutes
    starts = np.flatnonzero(np.diff(spiking.astype(int)) == 1)
    assert 10 <= len(starts) <= 40


def test_a_short_pod_lives_its_seconds_in_a_replicaset_of_its_own_with_more_cpu():
    usage = UsageModel(0.1, 64 * MIB, cpu_noise=0)
    workload = single(usage, replicas=2, short_pods=(ShortPod(T0 + 3600, 900, cpu_factor=8.0),))
    plans = pod_plans(workload)
    assert len(plans) == 3
    canary = plans[-1]
    assert canary.owner_name not in {p.owner_name for p in plans[:2]}
    assert (canary.start, canary.end) == (T0 + 3600, T0 + 4500)
    truth = ground_truth([workload], T0, T0 + DAY, STEP)
    rows = truth[truth["pod"] == canary.name]
    assert len(rows) == 15 and np.allclose(rows["cpu_demand_cores"], 0.8)


def test_replica_cpu_factors_make_a_hot_replica():
    usage = UsageModel(0.1, 64 * MIB, cpu_noise=0)
    workload = single(usage, replicas=3, replica_cpu_factors=(2.0,))
    demand = ground_truth([workload], T0, T0 + 3600, STEP).groupby("pod")["cpu_demand_cores"].mean()
    assert sorted(np.round(demand, 3)) == [0.1, 0.1, 0.2]


def test_autoscaled_replicas_come_and_go_with_the_time_of_day():
    usage = UsageModel(0.1, 64 * MIB)
    workload = single(usage, replicas=2, autoscaling=Autoscaling(max_replicas=6, peak_hour_utc=14))
    truth = ground_truth([workload], T0, T0 + 3 * DAY, STEP)
    alive = truth.groupby("timestamp")["pod"].nunique()
    assert alive.min() == 2 and alive.max() == 6
    assert alive[alive.index.hour == 14].min() == 6 and alive[alive.index.hour == 2].max() == 2
    lifetimes = truth.groupby("pod")["timestamp"].agg(lambda t: (t.max() - t.min()).total_seconds())
    assert (lifetimes < DAY).sum() >= 3 * 4  # every day, each added replica is a new pod
    assert truth["pod"].nunique() == len({p.name for p in pod_plans(workload) if p.start < T0 + 3 * DAY})


def test_short_pods_and_autoscaling_need_a_deployment():
    with pytest.raises(ValueError, match="Deployment"):
        single(UsageModel(0.1, MIB), kind="StatefulSet", short_pods=(ShortPod(T0, 60),))
    with pytest.raises(ValueError, match="max_replicas"):
        single(UsageModel(0.1, MIB), replicas=3, autoscaling=Autoscaling(max_replicas=2))

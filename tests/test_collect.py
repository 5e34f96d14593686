"""Per-pod query results become per-workload containers: bucketed history, ownership, rollouts, OOM
kills, throttling per pod, fallbacks."""

from decimal import Decimal

import pandas as pd
import pytest

from rightsizer.collect import KeptUsage, workload_containers
from rightsizer.cost import running_replicas
from rightsizer.discovery import deployment_from_pod_name
from rightsizer.model import HISTORY_COLUMNS, ContainerUsage, HistoryGrid
from rightsizer.promql import LabelConfig
from rightsizer.source import UsageFrames

MIB = 1024 * 1024
OLD_POD = "web-6b5f9c7d8f-abcde"  # not the safe alphabet: still a pod name, owner comes from KSM
NEW_POD = "web-7d9f8b6c5d-x2x4q"
BUCKET = 1800
GRID = HistoryGrid(end=20 * BUCKET, window_seconds=20 * BUCKET, bucket_seconds=BUCKET, cpu_window_seconds=300)
INSTANT = ("memory_peak", "cfs_periods", "cfs_throttled", "cadvisor_spec")
STATE = ("pod_owner", "replicaset_owner", "requests", "limits", "oom_killed", "oom_restarts")


def bucket_rows(
    pod, container, buckets, *, cpu=0.1, peak=0.2, memory=100 * MIB, samples=31, namespace="shop"
):
    """The four bucket queries' rows of one pod container, at the ends of ``buckets`` (bucket numbers).

    31 samples: a 30-minute bucket of 60 s scrapes, both ends included (Prometheus before 3.0).
    """
    values = {"cpu_mean": cpu, "cpu_peak": peak, "memory_mean": memory, "memory_samples": samples}
    return {
        name: [
            {"namespace": namespace, "pod": pod, "container": container, "time": b * BUCKET, "value": value}
            for b in buckets
        ]
        for name, value in values.items()
    }


def usage_frames(*pods, **state):
    """pods: ``bucket_rows`` results; state: any other query's frame."""
    frames = {name: pd.DataFrame([row for pod in pods for row in pod.get(name, [])]) for name in pods[0]}
    for name in (*INSTANT, *STATE):
        frames[name] = state.get(name, pd.DataFrame())
    return UsageFrames(frames, GRID)


def per_pod_frame(rows, namespace="shop"):
    """rows: (pod, container, value) of a per-pod instant query."""
    return pd.DataFrame([{"namespace": namespace, "pod": p, "container": c, "value": v} for p, c, v in rows])


OWNERS = pd.DataFrame(
    [
        {
            "namespace": "shop",
            "pod": pod,
            "owner_kind": "ReplicaSet",
            "owner_name": pod.rsplit("-", 1)[0],
            "value": 1,
        }
        for pod in (OLD_POD, NEW_POD)
    ]
)
RS_OWNERS = pd.DataFrame(
    [
        {"namespace": "shop", "replicaset": rs, "owner_kind": "Deployment", "owner_name": "web", "value": 1}
        for rs in ("web-6b5f9c7d8f", "web-7d9f8b6c5d")
    ]
)


def requests_frame(rows):
    return pd.DataFrame(
        [{"namespace": "shop", "pod": p, "container": c, "resource": r, "value": v} for p, c, r, v in rows]
    )


def rollout():
    """The old pod ran buckets 1-10, the new one 11-20 (with a sidecar)."""
    return (
        bucket_rows(OLD_POD, "app", range(1, 11), cpu=0.3, peak=0.5),
        bucket_rows(NEW_POD, "app", range(11, 21)),
        bucket_rows(NEW_POD, "log-shipper", range(11, 21), cpu=0.01, peak=0.02, memory=20 * MIB),
    )


def test_pods_of_every_rollout_count_and_the_history_keeps_each_pods_buckets():
    frames = usage_frames(
        *rollout(),
        pod_owner=OWNERS,
        replicaset_owner=RS_OWNERS,
        requests=requests_frame([(OLD_POD, "app", "cpu", 1.0), (NEW_POD, "app", "cpu", 0.25)]),
        memory_peak=per_pod_frame([(OLD_POD, "app", 150 * MIB), (NEW_POD, "app", 300 * MIB)]),
    )
    items = {i.key.container: i for i in workload_containers(frames, LabelConfig())}
    app = items["app"]
    assert (app.key.kind, app.key.name) == ("Deployment", "web")
    assert app.usage.pods == 2
    assert app.usage.grid == GRID
    history = app.usage.history
    assert len(history) == 20 and set(history["pod"]) == {OLD_POD, NEW_POD}
    assert history.loc[history["pod"] == OLD_POD, "cpu_peak"].max() == 0.5  # the old rollout's pod
    assert app.usage.memory_peak_bytes == 300 * MIB
    assert app.usage.samples == 620
    assert app.usage.covered_seconds == 20 * BUCKET
    assert app.usage.owner_source == "kube-state-metrics"
    assert app.current.requests == {"cpu": Decimal("0.25")}  # the newest pod's
    assert items["log-shipper"].usage.pods == 1


def test_a_pod_that_ran_part_of_a_bucket_covers_that_part_and_its_mean_is_while_it_ran():
    """15 of 30 samples, a rate over the bucket of 0.35 cores: it ran half the bucket at 0.7."""
    steady = bucket_rows(NEW_POD, "app", range(1, 21))
    canary = bucket_rows("web-7d9f8b6c5d-zzzzz", "app", [5], cpu=0.35, peak=1.0, samples=15)
    (item,) = workload_containers(usage_frames(steady, canary), LabelConfig())
    row = item.usage.history[item.usage.history["pod"] == "web-7d9f8b6c5d-zzzzz"].iloc[0]
    assert row["coverage"] == 0.5
    assert row["cpu_mean"] == 0.7
    assert item.usage.covered_seconds == 20 * BUCKET  # the steady pod covered every bucket


def merged(*parts):
    """``bucket_rows`` of one pod container over several runs of buckets, as one."""
    return {name: [row for part in parts for row in part[name]] for name in parts[0]}


def coverage_by_bucket(item):
    history = item.usage.history
    return dict(zip((history["time"] // BUCKET).astype(int), history["coverage"], strict=True))


def test_a_pods_coverage_comes_from_its_own_samples_not_from_a_denser_neighbour():
    """web scraped every 60 s (31 samples a bucket) beside cart every 15 s (121): web still ran every
    bucket whole; the batch's densest bucket (cart's) would have made it a quarter of each."""
    web = bucket_rows(NEW_POD, "app", range(1, 21))
    cart = bucket_rows("cart-7d9f8b6c5d-x2x4q", "app", range(1, 21), samples=121)
    items = {i.key.name: i for i in workload_containers(usage_frames(web, cart), LabelConfig())}
    assert items["web"].usage.covered_seconds == items["cart"].usage.covered_seconds == 20 * BUCKET
    starting = bucket_rows(NEW_POD, "app", [1], samples=16)
    later = merged(starting, bucket_rows(NEW_POD, "app", range(2, 21)))
    (item, _) = sorted(
        workload_containers(usage_frames(later, cart), LabelConfig()), key=lambda i: i.key.name != "web"
    )
    assert coverage_by_bucket(item)[1] == 16 / 30  # half of its first bucket, at its own interval


def test_a_scrape_interval_changed_inside_the_window_changes_no_coverage():
    """60 s until bucket 10, 15 s from bucket 12, both in bucket 11: every bucket whole. A pod whose samples
    thin out in a bucket between whole ones (a gap) ran part of it."""
    changed = merged(
        bucket_rows(NEW_POD, "app", range(1, 11)),
        bucket_rows(NEW_POD, "app", [11], samples=76),
        bucket_rows(NEW_POD, "app", range(12, 21), samples=121),
    )
    (item,) = workload_containers(usage_frames(changed), LabelConfig())
    assert set(coverage_by_bucket(item).values()) == {1.0}
    gap = merged(
        bucket_rows(NEW_POD, "app", range(1, 5)),
        bucket_rows(NEW_POD, "app", [5], samples=16),
        bucket_rows(NEW_POD, "app", range(6, 21)),
    )
    (item,) = workload_containers(usage_frames(gap), LabelConfig())
    assert coverage_by_bucket(item)[5] == 16 / 30


def web_pods(last_bucket_samples, *, whole=((31,),) * 3, stopped=None):
    """Three web pods over buckets 1-20 (the window): each pod's ``last_bucket_samples`` in the window's
    last bucket (the history ends inside it) and, in turn, its ``whole`` samples in the buckets before
    (at 60 s, 30 or 31 as the scrapes fall against the buckets' ends); ``stopped``: the last bucket the
    third pod ran (it ran the whole window when None)."""
    pods = []
    for index, (last, samples) in enumerate(zip(last_bucket_samples, whole, strict=True)):
        pod = f"web-7d9f8b6c5d-{('x2x4q', 'b2b4c', 'z9z8w')[index]}"
        end = 20 if stopped is None or index < 2 else stopped + 1
        runs = [bucket_rows(pod, "app", [b], samples=samples[b % len(samples)]) for b in range(1, end)]
        if end == 20:
            runs.append(bucket_rows(pod, "app", [20], samples=last))
        pods.append(merged(*runs))
    (item,) = workload_containers(usage_frames(*pods), LabelConfig())
    return running_replicas(item.usage)


@pytest.mark.parametrize(
    "last, whole",
    [
        ((31, 31, 31), ((31,),) * 3),  # the history reaches the window's end
        ((30, 30, 30), ((30, 31),) * 3),  # scrapes off the buckets' ends: some buckets hold one more
        ((25, 25, 25), ((31,),) * 3),  # the query came 5 minutes after the last scrape
        ((1, 1, 1), ((30,),) * 3),  # 29 minutes after
        ((26, 25, 26), ((31, 30), (30, 31), (31,))),  # each pod scraped at its own times
        ((101, 101, 25), ((121,), (120, 121), (31,))),  # 15 s and 60 s pods side by side
    ],
)
def test_three_steady_pods_are_three_replicas_wherever_the_history_ends_in_its_last_bucket(last, whole):
    """Not 2.98 (the last bucket's 25 samples counted against a whole bucket's 30)."""
    assert web_pods(last, whole=whole) == 3


def test_pods_that_stopped_count_for_the_time_they_ran():
    """The window's last bucket, which the history ends inside, left out: 19 buckets."""
    assert web_pods((31, 31, 0), stopped=9) == (2 * 19 + 9) / 19  # a third pod for 9 of them
    assert web_pods((31, 31, 0), stopped=19) == 3  # a third pod gone in the last one: not seen yet
    alone = bucket_rows(NEW_POD, "app", [20], samples=16)  # a pod started in the last bucket, alone
    (item,) = workload_containers(usage_frames(alone), LabelConfig())
    assert running_replicas(item.usage) == item.usage.history["coverage"].iloc[0] == 1.0


def test_pods_without_kube_state_metrics_fall_back_to_the_name_pattern():
    frames = usage_frames(bucket_rows("api-5c4b8d9f7x-q2w4r", "app", [1, 2], namespace="legacy"))
    (item,) = workload_containers(frames, LabelConfig())
    assert (item.key.kind, item.key.name) == ("Deployment", "api")
    assert item.usage.owner_source == "pod-name-pattern"


def test_pods_of_jobs_and_unknown_names_are_left_out():
    owners = pd.DataFrame(
        [
            {
                "namespace": "batch",
                "pod": "report-28391-xk2lp",
                "owner_kind": "Job",
                "owner_name": "report",
                "value": 1,
            }
        ]
    )
    frames = usage_frames(
        bucket_rows("report-28391-xk2lp", "main", [1], namespace="batch"),
        bucket_rows("standalone", "main", [1], namespace="batch"),
        pod_owner=owners,
    )
    assert workload_containers(frames, LabelConfig()) == []


def test_statefulset_pods_belong_to_their_statefulset():
    owners = pd.DataFrame(
        [
            {
                "namespace": "data",
                "pod": "redis-0",
                "owner_kind": "StatefulSet",
                "owner_name": "redis",
                "value": 1,
            }
        ]
    )
    frames = usage_frames(bucket_rows("redis-0", "redis", [1], namespace="data"), pod_owner=owners)
    (item,) = workload_containers(frames, LabelConfig())
    assert (item.key.kind, item.key.name) == ("StatefulSet", "redis")


def oom_restarts(rows):
    """rows: (pod, bucket, restarts) of the oom_restarts range query."""
    return pd.DataFrame(
        [
            {"namespace": "shop", "pod": p, "container": "app", "time": b * BUCKET, "value": v}
            for p, b, v in rows
        ]
    )


def test_oom_kills_count_the_restarts_after_an_oom_kill_not_every_restart():
    """The new pod restarted 5 times in the window, 2 of them OOM kills (the restarts of the buckets at
    whose end the last termination was OOMKilled): 2 kills, not 5."""
    flagged = per_pod_frame([(NEW_POD, "app", 1.0)])
    frames = usage_frames(
        *rollout(),
        pod_owner=OWNERS,
        replicaset_owner=RS_OWNERS,
        oom_killed=flagged,
        oom_restarts=oom_restarts([(NEW_POD, 12, 1.0), (NEW_POD, 17, 1.0)]),
        limits=requests_frame([(NEW_POD, "app", "memory", float(256 * MIB))]),
    )
    items = {i.key.container: i for i in workload_containers(frames, LabelConfig())}
    assert items["app"].usage.oom_kills == 2
    assert items["app"].usage.oom_killed_memory_bytes == 256 * MIB
    assert items["log-shipper"].usage.oom_kills == 0


def test_a_container_still_flagged_oom_killed_without_a_kill_in_the_window_counts_once():
    frames = usage_frames(
        *rollout(),
        pod_owner=OWNERS,
        replicaset_owner=RS_OWNERS,
        oom_killed=per_pod_frame([(NEW_POD, "app", 1.0)]),
    )
    app = next(i for i in workload_containers(frames, LabelConfig()) if i.key.container == "app")
    assert app.usage.oom_kills == 1


def test_old_cadvisor_label_names_are_mapped():
    renamed = [
        {
            name: [{**row, "pod_name": row["pod"], "container_name": row["container"]} for row in rows]
            for name, rows in pod.items()
        }
        for pod in rollout()
    ]
    for pod in renamed:
        for rows in pod.values():
            for row in rows:
                del row["pod"], row["container"]
    frames = usage_frames(*renamed, pod_owner=OWNERS, replicaset_owner=RS_OWNERS)
    labels = LabelConfig(pod="pod_name", container="container_name")
    assert len(workload_containers(frames, labels)) == 2


def test_deployment_pod_name_pattern():
    assert deployment_from_pod_name("my-web-app-7d9f8b6c5d-x2x4q") == "my-web-app"
    assert deployment_from_pod_name("redis-0") is None
    assert deployment_from_pod_name("web-7d9f8b6c5d-xaxaq") is None  # 'a' is not in Kubernetes' alphabet


def spec_frame(rows):
    """rows: (pod, container, spec, value) of the cadvisor_spec query."""
    return pd.DataFrame(
        [{"namespace": "shop", "pod": p, "container": c, "spec": k, "value": v} for p, c, k, v in rows]
    )


def test_throttling_is_kept_per_pod_with_the_cpu_limit_it_ran_under():
    frames = usage_frames(
        *rollout(),
        pod_owner=OWNERS,
        replicaset_owner=RS_OWNERS,
        cfs_periods=per_pod_frame([(OLD_POD, "app", 1000.0), (NEW_POD, "app", 500.0)]),
        cfs_throttled=per_pod_frame([(OLD_POD, "app", 600.0), (NEW_POD, "app", 5.0)]),
        cadvisor_spec=spec_frame([(OLD_POD, "app", "cpu_limit", 0.2), (NEW_POD, "app", "cpu_limit", 0.6)]),
    )
    app = {i.key.container: i for i in workload_containers(frames, LabelConfig())}["app"]
    by_pod = {t.pod: (t.limit_cores, t.periods, t.throttled_periods) for t in app.usage.throttling}
    assert by_pod == {OLD_POD: (0.2, 1000.0, 600.0), NEW_POD: (0.6, 500.0, 5.0)}
    assert app.usage.throttled_ratio == 605 / 1500
    assert app.usage.throttled_ratio_under(Decimal("0.6")) == 0.01


def test_without_kube_state_metrics_current_resources_and_oom_kills_come_from_cadvisor():
    frames = usage_frames(
        bucket_rows(NEW_POD, "app", [1, 2]),
        cadvisor_spec=spec_frame(
            [
                (NEW_POD, "app", "cpu_limit", 0.2),
                (NEW_POD, "app", "cpu_request", 102 / 1024),
                (NEW_POD, "app", "memory_limit", float(64 * MIB)),
                (NEW_POD, "app", "oom_events", 2.0),
            ]
        ),
    )
    (item,) = workload_containers(frames, LabelConfig())
    assert item.current.requests == {"cpu": Decimal("0.1")}  # 102 shares: 100m
    assert item.current.limits == {"cpu": Decimal("0.2"), "memory": Decimal(64 * MIB)}
    assert item.usage.oom_kills == 2
    assert item.usage.oom_killed_memory_bytes == 64 * MIB
    assert item.usage.owner_source == "pod-name-pattern"


def test_owners_known_from_the_kubernetes_api_come_first():
    known = pd.DataFrame(
        [
            {
                "namespace": "shop",
                "pod": NEW_POD,
                "kind": "Deployment",
                "name": "web",
                "owner_source": "kubernetes-api",
            }
        ]
    )
    frames = usage_frames(bucket_rows(NEW_POD, "app", [1]), bucket_rows(OLD_POD, "app", [1]))
    items = workload_containers(frames, LabelConfig(), known_owners=known)
    # The new pod from the API; the old one is gone from the API and its name is not a
    # Deployment pod's (not the safe alphabet): it is left out.
    (item,) = items
    assert item.usage.pods == 1
    assert item.usage.owner_source == "kubernetes-api"


def test_each_reader_of_a_kept_usage_gets_a_history_of_its_own():
    """A shared batch (controller/batches.py) keeps its histories as arrays for many evaluations:
    each gets a frame of its own, so no reader sees another's, and the kept data is no pandas frame
    (a kept frame gathered a weak reference with every read; docs/benchmarks.md)."""
    history = pd.DataFrame(
        {
            "pod": ["web-1", "web-1", "web-2"],
            "time": [BUCKET, 2 * BUCKET, BUCKET],
            "cpu_mean": [0.1, 0.2, 0.3],
            "cpu_peak": [0.2, 0.4, 0.6],
            "memory_mean": [1e8, 2e8, 3e8],
            "samples": [30.0, 30.0, 30.0],
            "coverage": [1.0, 1.0, 0.5],
        }
    )[list(HISTORY_COLUMNS)]
    kept = KeptUsage.of(ContainerUsage(history=history, grid=GRID, memory_peak_bytes=3e8))
    first, second = kept.fresh(), kept.fresh()
    pd.testing.assert_frame_equal(first.history, history)
    assert (first.grid, first.memory_peak_bytes, first.pods, first.samples) == (GRID, 3e8, 2, 90)

    first.history.loc[0, "cpu_mean"] = 9.0
    assert second.history.loc[0, "cpu_mean"] == 0.1
    assert kept.fresh().history.loc[0, "cpu_mean"] == 0.1
    assert not any(isinstance(column, pd.Series | pd.DataFrame) for column in kept.columns)

"""Per-pod query results become per-workload containers: ownership, rollouts, OOM kills, fallbacks."""

from decimal import Decimal

import pandas as pd

from rightsizer.collect import workload_containers
from rightsizer.discovery import deployment_from_pod_name
from rightsizer.promql import LabelConfig
from rightsizer.source import UsageFrames

MIB = 1024 * 1024
OLD_POD = "web-6b5f9c7d8f-abcde"  # not the safe alphabet: still a pod name, owner comes from KSM
NEW_POD = "web-7d9f8b6c5d-x2x4q"


def frame(rows, **columns):
    return pd.DataFrame([{**columns, **row} for row in rows])


def usage_frames(pods, values, **state):
    """pods: list of (namespace, pod, container); values: query name -> list of values in pod order."""
    frames = {}
    for name in ("cpu_percentile", "cpu_max", "memory_peak", "samples", "first_seen", "last_seen"):
        frames[name] = pd.DataFrame(
            [
                {"namespace": n, "pod": p, "container": c, "value": v}
                for (n, p, c), v in zip(pods, values[name], strict=True)
            ]
        )
    for name in (
        "cfs_periods",
        "cfs_throttled",
        "cadvisor_spec",
        "pod_owner",
        "replicaset_owner",
        "requests",
        "limits",
    ):
        frames[name] = state.get(name, pd.DataFrame())
    frames["oom_killed"] = state.get("oom_killed", pd.DataFrame())
    frames["restarts"] = state.get("restarts", pd.DataFrame())
    return UsageFrames(frames)


PODS = [("shop", OLD_POD, "app"), ("shop", NEW_POD, "app"), ("shop", NEW_POD, "log-shipper")]
VALUES = {
    "cpu_percentile": [0.30, 0.10, 0.01],
    "cpu_max": [0.5, 0.2, 0.02],
    "memory_peak": [100 * MIB, 300 * MIB, 20 * MIB],
    "samples": [1000, 2000, 2000],
    "first_seen": [1000.0, 5000.0, 5000.0],
    "last_seen": [4000.0, 9000.0, 9000.0],
}
OWNERS = pd.DataFrame(
    [
        {
            "namespace": "shop",
            "pod": OLD_POD,
            "owner_kind": "ReplicaSet",
            "owner_name": "web-6b5f9c7d8f",
            "value": 1,
        },
        {
            "namespace": "shop",
            "pod": NEW_POD,
            "owner_kind": "ReplicaSet",
            "owner_name": "web-7d9f8b6c5d",
            "value": 1,
        },
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


def test_pods_of_every_rollout_count_and_the_busiest_pod_sets_the_numbers():
    frames = usage_frames(
        PODS,
        VALUES,
        pod_owner=OWNERS,
        replicaset_owner=RS_OWNERS,
        requests=requests_frame([(OLD_POD, "app", "cpu", 1.0), (NEW_POD, "app", "cpu", 0.25)]),
    )
    items = {i.key.container: i for i in workload_containers(frames, LabelConfig())}
    app = items["app"]
    assert (app.key.kind, app.key.name) == ("Deployment", "web")
    assert app.usage.pods == 2
    assert app.usage.cpu_percentile_cores == 0.30  # from the old rollout's pod
    assert app.usage.memory_peak_bytes == 300 * MIB
    assert app.usage.samples == 3000
    assert app.usage.history_seconds == 8000.0
    assert app.usage.owner_source == "kube-state-metrics"
    assert app.current.requests == {"cpu": Decimal("0.25")}  # the newest pod's
    assert items["log-shipper"].usage.pods == 1


def test_pods_without_kube_state_metrics_fall_back_to_the_name_pattern():
    frames = usage_frames([("legacy", "api-5c4b8d9f7x-q2w4r", "app")], {k: [v[0]] for k, v in VALUES.items()})
    (item,) = workload_containers(frames, LabelConfig())
    assert (item.key.kind, item.key.name) == ("Deployment", "api")
    assert item.usage.owner_source == "pod-name-pattern"


def test_pods_of_jobs_and_unknown_names_are_left_out():
    pods = [("batch", "report-28391-xk2lp", "main"), ("batch", "standalone", "main")]
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
    frames = usage_frames(pods, {k: v[:2] for k, v in VALUES.items()}, pod_owner=owners)
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
    frames = usage_frames(
        [("data", "redis-0", "redis")], {k: [v[0]] for k, v in VALUES.items()}, pod_owner=owners
    )
    (item,) = workload_containers(frames, LabelConfig())
    assert (item.key.kind, item.key.name) == ("StatefulSet", "redis")


def test_oom_kills_count_restarts_and_remember_the_limit_that_killed():
    oom = pd.DataFrame([{"namespace": "shop", "pod": NEW_POD, "container": "app", "value": 1.0}])
    restarts = pd.DataFrame(
        [
            {"namespace": "shop", "pod": NEW_POD, "container": "app", "value": 3.0},
            {"namespace": "shop", "pod": OLD_POD, "container": "app", "value": 0.0},
        ]
    )
    limits = requests_frame([(NEW_POD, "app", "memory", float(256 * MIB))])
    frames = usage_frames(
        PODS,
        VALUES,
        pod_owner=OWNERS,
        replicaset_owner=RS_OWNERS,
        oom_killed=oom,
        restarts=restarts,
        limits=limits,
    )
    items = {i.key.container: i for i in workload_containers(frames, LabelConfig())}
    assert items["app"].usage.oom_kills == 3
    assert items["app"].usage.oom_killed_memory_bytes == 256 * MIB
    assert items["log-shipper"].usage.oom_kills == 0


def test_old_cadvisor_label_names_are_mapped():
    frames = usage_frames(PODS, VALUES, pod_owner=OWNERS, replicaset_owner=RS_OWNERS)
    renamed = {
        name: (f.rename(columns={"pod": "pod_name", "container": "container_name"}) if name in VALUES else f)
        for name, f in frames.frames.items()
    }
    labels = LabelConfig(pod="pod_name", container="container_name")
    assert len(workload_containers(UsageFrames(renamed), labels)) == 2


def test_deployment_pod_name_pattern():
    assert deployment_from_pod_name("my-web-app-7d9f8b6c5d-x2x4q") == "my-web-app"
    assert deployment_from_pod_name("redis-0") is None
    assert deployment_from_pod_name("web-7d9f8b6c5d-xaxaq") is None  # 'a' is not in Kubernetes' alphabet


def per_pod_frame(rows):
    """rows: (pod, container, value) of a per-pod query."""
    return pd.DataFrame([{"namespace": "shop", "pod": p, "container": c, "value": v} for p, c, v in rows])


def spec_frame(rows):
    """rows: (pod, container, spec, value) of the cadvisor_spec query."""
    return pd.DataFrame(
        [{"namespace": "shop", "pod": p, "container": c, "spec": k, "value": v} for p, c, k, v in rows]
    )


def test_throttling_is_pooled_by_the_cpu_limit_each_pod_ran_under():
    frames = usage_frames(
        PODS,
        VALUES,
        pod_owner=OWNERS,
        replicaset_owner=RS_OWNERS,
        cfs_periods=per_pod_frame([(OLD_POD, "app", 1000.0), (NEW_POD, "app", 500.0)]),
        cfs_throttled=per_pod_frame([(OLD_POD, "app", 600.0), (NEW_POD, "app", 5.0)]),
        cadvisor_spec=spec_frame([(OLD_POD, "app", "cpu_limit", 0.2), (NEW_POD, "app", "cpu_limit", 0.6)]),
    )
    app = {i.key.container: i for i in workload_containers(frames, LabelConfig())}["app"]
    by_limit = {t.limit_cores: (t.periods, t.throttled_periods) for t in app.usage.throttling}
    assert by_limit == {0.2: (1000.0, 600.0), 0.6: (500.0, 5.0)}
    peak_time = {t.limit_cores: t.cpu_percentile_cores for t in app.usage.throttling}
    assert peak_time == {0.2: 0.30, 0.6: 0.10}  # each limit's busiest pod
    assert app.usage.throttling_under(Decimal("0.6")).ratio == 0.01


def test_without_kube_state_metrics_current_resources_and_oom_kills_come_from_cadvisor():
    frames = usage_frames(
        [("shop", NEW_POD, "app")],
        {k: [v[1]] for k, v in VALUES.items()},
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
    frames = usage_frames(
        [("shop", NEW_POD, "app"), ("shop", OLD_POD, "app")], {k: v[:2] for k, v in VALUES.items()}
    )
    items = workload_containers(frames, LabelConfig(), known_owners=known)
    # The new pod from the API; the old one is gone from the API and its name is not a
    # Deployment pod's (not the safe alphabet): it is left out.
    (item,) = items
    assert item.usage.pods == 1
    assert item.usage.owner_source == "kubernetes-api"


def test_the_pods_of_a_cronjobs_jobs_belong_to_the_cronjob():
    owners = pd.DataFrame(
        [
            {
                "namespace": "batch",
                "pod": "backup-29451680-x2x4q",
                "owner_kind": "Job",
                "owner_name": "backup-29451680",
                "value": 1,
            },
            {
                "namespace": "batch",
                "pod": "adhoc-x2x4q",
                "owner_kind": "Job",
                "owner_name": "adhoc",
                "value": 1,
            },
        ]
    )
    pods = [("batch", "backup-29451680-x2x4q", "main"), ("batch", "adhoc-x2x4q", "main")]
    frames = usage_frames(pods, {k: v[:2] for k, v in VALUES.items()}, pod_owner=owners)
    (item,) = workload_containers(frames, LabelConfig())
    assert (item.key.kind, item.key.name) == ("CronJob", "backup")  # a Job of no CronJob is left out

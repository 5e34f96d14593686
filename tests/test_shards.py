"""A namespace too large for one query, against a real Prometheus started with a low
``--query.max-samples``: the CPU subquery over the whole namespace is refused, the same over shards
of its pods is answered; a pod too large even alone is named, and the other workloads keep their
recommendations (the CLI's report, a policy's status).

The history is written by hand (a day of 60 s samples, no kube-state-metrics: owners from pod
names). ``big`` has 40 pods of one Deployment; in ``mixed``, the one pod of ``heavy`` has its CPU
series 40 times over (40 kubelet ``id`` labels, folded per container), beside 6 pods of ``light``.
The CPU subquery (``cpu_increase``) holds 591 samples a series (Prometheus' peakSamples: the counter's
last sample in each 5-minute window of the day and of two buckets before it, and each window's
increase): 23,562 for 40 series, above the 20,000 allowed; 10 pods, a shard of ``big``, hold 5,892.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rightsizer.controller.evaluate import evaluate
from rightsizer.controller.kube import KubernetesCluster
from rightsizer.controller.outcome import PolicyObject
from rightsizer.discovery import SAFE_ALPHABET
from rightsizer.promql import LabelConfig, QueryScope
from rightsizer.source import PrometheusSource, QueryTooLarge
from rightsizer.workload import WorkloadView
from rightsizer_demo.prometheus import PrometheusServer, load_history

pytestmark = pytest.mark.prometheus

MAX_SAMPLES = 20000
DAY = 86400
STEP = 60
CPU_CORES = 0.25
MIB = 1024 * 1024


def pod_name(deployment: str, index: int) -> str:
    """``<deployment>-<10-char hash>-<5-char suffix>`` from Kubernetes' alphabet (owner by name)."""
    a = SAFE_ALPHABET
    suffix = "".join(a[index // len(a) ** i % len(a)] for i in range(5))
    return f"{deployment}-{a[3] * 10}-{suffix}"


PODS = {
    "big": {"api": [pod_name("api", i) for i in range(40)]},
    "mixed": {"heavy": [pod_name("heavy", 0)], "light": [pod_name("light", i) for i in range(6)]},
}
HEAVY_DUPLICATES = 40


def history(end: int) -> str:
    """A day and an hour of every pod: CPU at 0.25 cores, a 200Mi working set."""
    start = end - DAY - 3600
    times = range(start, end + 1, STEP)
    lines = ["# TYPE container_cpu_usage_seconds counter"]
    for namespace, deployments in PODS.items():
        for deployment, pods in deployments.items():
            copies = HEAVY_DUPLICATES if deployment == "heavy" else 1
            for pod in pods:
                for copy in range(copies):
                    labels = (
                        f'namespace="{namespace}",pod="{pod}",container="app",id="/kubepods/{pod}/{copy}"'
                    )
                    lines += [
                        f"container_cpu_usage_seconds_total{{{labels}}} {(t - start) * CPU_CORES:.1f} {t}"
                        for t in times
                    ]
    lines.append("# TYPE container_memory_working_set_bytes gauge")
    for namespace, deployments in PODS.items():
        for pods in deployments.values():
            for pod in pods:
                labels = f'namespace="{namespace}",pod="{pod}",container="app"'
                lines += [f"container_memory_working_set_bytes{{{labels}}} {200 * MIB} {t}" for t in times]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    tmp = tmp_path_factory.mktemp("shards")
    end = int(time.time()) // STEP * STEP
    (tmp / "history.om").write_text(history(end))
    load_history(tmp / "history.om", tmp / "tsdb")
    server = PrometheusServer(tmp / "tsdb", flags=[f"--query.max-samples={MAX_SAMPLES}"]).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_namespace_too_large_for_one_query_is_answered_in_shards(prometheus):
    source = PrometheusSource(prometheus.url)
    scope = QueryScope(("big",), DAY)
    end = time.time()
    # The whole namespace's CPU subquery is refused by this Prometheus ...
    _, cpu_increase = scope.queries()["cpu_increase"]
    with pytest.raises(QueryTooLarge, match="too many samples"):
        source._query_range(cpu_increase, end - 48 * 1800, end, 1800)
    # ... and the batch is answered all the same, every pod and bucket of it.
    frames = source.fetch(scope, end)
    assert frames.failed == ()
    peaks = frames["cpu_peak"]
    assert sorted(set(peaks["pod"])) == sorted(PODS["big"]["api"])
    assert len(peaks) == 40 * 48
    assert peaks["value"].between(CPU_CORES * 0.99, CPU_CORES * 1.01).all()
    # Only the refused query was asked again: one pod listing, then 4 shards of 10 pods. Then the second
    # round: the owners, requests and limits of the pods kube-state-metrics has no recent series of (all
    # here), and the tiled CPU values of the last bucket if a minute without samples has made it
    # irregular since the history was written (rightsizer.windows).
    assert 1 + 13 + 1 + 4 + 4 <= source.queries_sent <= 1 + 13 + 1 + 4 + 4 + 1


def recommend_mixed(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["recommend", "--prometheus-url", url, "-n", "mixed", "--history", "1d", "--min-history", "12h"]
    return subprocess.run(
        [sys.executable, "-m", "rightsizer.cli", *command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_pod_too_large_even_alone_is_named_and_the_rest_is_recommended_by_the_cli(prometheus):
    heavy = PODS["mixed"]["heavy"][0]
    result = recommend_mixed(prometheus.url, "-o", "json")
    assert result.returncode == 1, result.stderr  # a partial report
    assert f"Prometheus could not answer for mixed/{heavy}" in result.stderr
    document = json.loads(result.stdout)
    (failed,) = document["failedScopes"]
    assert failed["scope"] == f"mixed/{heavy}"
    assert failed["queries"] == ["cpu_increase"] and "too many samples" in failed["error"]
    assert failed["workloads"] == ["Deployment/heavy"]
    (light,) = document["recommendations"]
    assert (light["name"], light["recommended"]["requests"]["cpu"]) == ("light", "335m")  # 250m / 0.75

    table = recommend_mixed(prometheus.url, "-q").stdout
    assert "Deployment/light" in table
    assert (
        f"mixed/{heavy}: ERROR: Prometheus could not answer (no recommendation for Deployment/heavy): "
        in table
    )


def deployment(name: str, replicas: int) -> WorkloadView:
    return WorkloadView.from_body(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "mixed", "uid": f"uid-{name}", "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "1"}}}]},
                },
            },
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas},
        }
    )


def test_a_pod_too_large_even_alone_is_named_in_policy_status(prometheus):
    heavy = PODS["mixed"]["heavy"][0]
    spec: dict[str, Any] = {"selector": {}, "history": {"window": "1d", "minimum": "12h"}}
    outcome = evaluate(
        PolicyObject("all", "mixed", "uid-all", 1, spec, {}),
        [deployment("heavy", 1), deployment("light", 6)],
        [],
        PrometheusSource(prometheus.url),
        KubernetesCluster(),  # Recommend mode: never called
        LabelConfig(),
        datetime.now(UTC),
    )
    status = outcome.status
    assert [s["scope"] for s in status["failedScopes"]] == [f"mixed/{heavy}"]
    reachable = next(c for c in status["conditions"] if c["type"] == "PrometheusReachable")
    assert reachable["reason"] == "PartlyAnswered" and f"mixed/{heavy}: cpu_increase" in reachable["message"]
    entries = {e["name"]: e for e in status["recommendations"]}
    assert "recommended" not in entries["heavy"]
    assert entries["heavy"]["reason"].startswith(f"Prometheus could not answer for mixed/{heavy}")
    assert entries["light"]["recommended"]["requests"]["cpu"] == "335m"
    assert status["readyContainers"] == "1/2"


def test_the_failed_scope_names_a_range_of_pods(tmp_path: Path):
    from rightsizer.shards import FailedScope, split

    assert split(["c", "a", "b", "e", "d"], 2) == [("a", "b", "c"), ("d", "e")]
    assert split(["a"], 4) == [("a",)]
    scope = FailedScope("ns", ("a-1", "a-2", "a-3"), ("cpu_peak",), "too many samples")
    assert scope.name == "ns/a-1..a-3 (3 pods)"

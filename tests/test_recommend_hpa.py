"""`rightsizer recommend` and HorizontalPodAutoscalers seen through kube-state-metrics, against a real
Prometheus with two days of generated history: two identical over-provisioned Deployments, one with
an HPA on 60% CPU utilization (``kube_horizontalpodautoscaler_*`` series), one without."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest

from rightsizer.hpa import retuned_utilization
from rightsizer.quantity import parse
from rightsizer_demo.history import (
    DAY,
    MIB,
    ContainerSpec,
    HpaTarget,
    UsageModel,
    WorkloadSpec,
    window_ending_now,
)
from rightsizer_demo.prometheus import PrometheusServer
from tests.support.prometheus import start_demo_prometheus

pytestmark = pytest.mark.prometheus

DAYS, STEP = 2, 60


def workload(name: str, hpa: HpaTarget | None, start: float) -> WorkloadSpec:
    app = ContainerSpec(
        "app",
        UsageModel(0.15, 300 * MIB, cpu_daily_amplitude_cores=0.1),
        requests={"cpu": "1", "memory": "1Gi"},
        limits={"cpu": "2", "memory": "1Gi"},
    )
    return WorkloadSpec("hpa", name, (app,), replicas=2, created_at=start, hpa=hpa)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    start, _ = window_ending_now(DAYS * DAY, STEP)
    workloads = [workload("web", HpaTarget("cpu", 60), start), workload("api", None, start)]
    prometheus = start_demo_prometheus(tmp_path_factory.mktemp("hpa"), DAYS, STEP, workloads)
    try:
        yield prometheus
    finally:
        prometheus.stop()


def recommend(server: PrometheusServer, *flags: str) -> dict[str, dict]:
    command = ["recommend", "--prometheus-url", server.url, "-n", "hpa", "--history", f"{DAYS}d"]
    result = subprocess.run(
        [sys.executable, "-m", "rightsizer.cli", *command, "-o", "json", "-q", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return {r["name"]: r for r in json.loads(result.stdout)["recommendations"]}


def test_the_cpu_request_an_hpa_scales_on_is_kept_and_the_report_says_why(server):
    found = recommend(server)
    web, api = found["web"], found["api"]
    # Without an HPA the same usage lowers the request (control) ...
    assert parse(api["recommended"]["requests"]["cpu"]) < Decimal("0.5")
    assert "horizontalPodAutoscalers" not in api["evidence"]
    # ... with one, the CPU request stays; memory is sized as usual (down from 1Gi).
    assert web["recommended"]["requests"]["cpu"] == "1"
    assert parse(web["recommended"]["requests"]["memory"]) < parse("512Mi")
    assert web["warnings"] == [
        "cpu request left at 1: HorizontalPodAutoscaler web scales on 60% CPU utilization of it"
    ]
    assert web["evidence"]["horizontalPodAutoscalers"] == [
        {"name": "web", "resource": "cpu", "averageUtilization": 60}
    ]


def test_retune_recommends_the_request_and_the_target_that_scales_out_at_the_same_usage(server):
    web = recommend(server, "--hpa", "Retune")["web"]
    new = parse(web["recommended"]["requests"]["cpu"])
    assert new < Decimal("0.5")
    (entry,) = web["evidence"]["horizontalPodAutoscalers"]
    assert entry["retunedUtilization"] == retuned_utilization(60, Decimal(1), new) > 100
    assert "to scale out at the same 600m a pod" in web["warnings"][0]

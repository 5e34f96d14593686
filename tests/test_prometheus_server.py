"""The generated history served by a real Prometheus: what rightsizer's queries will run against."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from prometheus_api_client import PrometheusConnect

from rightsizer_demo import prometheus
from rightsizer_demo.history import (
    DAY,
    MIB,
    ContainerSpec,
    UsageModel,
    WorkloadSpec,
    demo_scenario,
    ground_truth,
    window_ending_now,
    write_openmetrics,
)
from rightsizer_demo.prometheus import (
    PROMTOOL_BIN_ENV,
    PrometheusError,
    PrometheusServer,
    load_history,
)
from tests.support.prometheus import start_demo_prometheus

STEP = 60
pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(
        not (shutil.which("prometheus") and shutil.which("promtool")),
        reason="prometheus/promtool not installed",
    ),
]


class Served:
    """The module's server, the window it serves and the ground truth of that window.

    Instant queries are evaluated at the window's end, not at the wall clock's now: however long the
    history took to load, they see its last samples (a query at now looks back only 5 minutes)."""

    def __init__(self, server: PrometheusServer, generated_at: float) -> None:
        self.server = server
        self.generated_at = generated_at
        self.client = PrometheusConnect(server.url, disable_ssl=True)
        self.start, self.end = window_ending_now(2 * DAY, STEP, generated_at)
        self.truth = ground_truth(demo_scenario(self.start, self.end), self.start, self.end, STEP)

    def query(self, promql: str, **params: str) -> list[dict]:
        return self.client.custom_query(promql, params={"time": str(self.end), **params})

    def scalar(self, promql: str, **params: str) -> float:
        (result,) = self.query(promql, **params)
        return float(result["value"][1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    generated_at = time.time()
    server = start_demo_prometheus(
        tmp_path_factory.mktemp("prometheus"), days=2, step_seconds=STEP, now=generated_at
    )
    try:
        yield Served(server, generated_at)
    finally:
        server.stop()


def test_history_ends_now_and_instant_queries_see_it(served: Served):
    # The last sample is at the last step boundary before the history was generated: an instant
    # query at that time (within the 5-minute lookback) sees every pod alive then.
    assert served.end <= served.generated_at < served.end + STEP
    assert served.scalar("max(timestamp(container_memory_working_set_bytes))") == served.end
    alive = served.truth[served.truth["timestamp"] == served.truth["timestamp"].max()]
    assert (
        served.scalar("count(count by (pod) (container_memory_working_set_bytes))") == alive["pod"].nunique()
    )


def test_every_generated_pod_is_in_the_window(served: Served):
    pods = served.scalar("count(count by (pod) (last_over_time(container_memory_working_set_bytes[3d])))")
    assert pods == served.truth["pod"].nunique() == 19


def test_every_sample_is_served_once_with_no_gap(served: Served):
    """The loaded blocks cover the whole window, up to the (empty) head block, without overlap."""
    count = served.scalar(
        'count_over_time(container_memory_working_set_bytes{pod="redis-0",container="redis"}[2d])',
        time=str(served.end),
    )
    assert count == 2 * DAY // STEP + 1
    status = json.loads(urllib.request.urlopen(f"{served.server.url}/api/v1/status/tsdb").read())
    assert status["data"]["headStats"]["numSeries"] == 0
    log = served.server.log_path.read_text()
    assert "level=error" not in log and "overlap" not in log


def test_values_are_the_ground_truth(served: Served):
    truth = served.truth[(served.truth["pod"] == "redis-1")].set_index("timestamp")
    (series,) = served.client.custom_query_range(
        'container_memory_working_set_bytes{pod="redis-1",container="redis"}',
        start_time=pd.Timestamp(served.end - 3600, unit="s").to_pydatetime(),
        end_time=pd.Timestamp(served.end, unit="s").to_pydatetime(),
        step=str(STEP),
    )
    served_values = pd.Series(
        [float(v) for _, v in series["values"]],
        index=pd.to_datetime([t for t, _ in series["values"]], unit="s", utc=True),
    )
    assert len(served_values) == 61
    expected = truth.loc[served_values.index, "memory_bytes"].round()
    assert (served_values == expected).all()


def test_oom_kills_are_reported_for_cart_only(served: Served):
    killed = served.query('kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}')
    assert {(r["metric"]["namespace"], r["metric"]["pod"].split("-")[0]) for r in killed} == {
        ("shop", "cart")
    }
    assert len(killed) == 2
    restarts = served.query('kube_pod_container_status_restarts_total{namespace="shop",pod=~"cart-.*"}')
    assert {r["value"][1] for r in restarts} == {"1"}


def test_throttling_for_search_and_no_cfs_series_without_a_cpu_limit(served: Served):
    throttled = served.query(
        "sum by (pod) (increase(container_cpu_cfs_throttled_periods_total[1h]))"
        " / sum by (pod) (increase(container_cpu_cfs_periods_total[1h]))"
    )
    ratios = {r["metric"]["pod"].split("-")[0]: float(r["value"][1]) for r in throttled}
    assert ratios["search"] > 0.3 and ratios["web"] == 0.0
    assert not served.query('container_cpu_cfs_periods_total{pod=~"cart-.*|redis-.*"}')


def test_owners_come_from_kube_state_metrics_except_for_legacy(served: Served):
    owners = served.query("count by (namespace) (last_over_time(kube_pod_owner[3d]))")
    assert {r["metric"]["namespace"]: r["value"][1] for r in owners} == {
        "shop": "12",
        "batch": "2",
        "data": "3",
    }
    replicasets = served.query('last_over_time(kube_replicaset_owner{owner_name="checkout"}[3d])')
    assert len(replicasets) == 2


def test_old_history_survives_a_restart_and_stop_frees_the_port(tmp_path: Path):
    """Retention must not delete history from 2023; stop() must release the listening port."""
    start = 1_699_920_000
    app = ContainerSpec("app", UsageModel(0.1, 64 * MIB), requests={"cpu": "100m"})
    write_openmetrics(
        [WorkloadSpec("ns", "tiny", (app,), created_at=start)], tmp_path / "h.om", start, start + 7200, STEP
    )
    load_history(tmp_path / "h.om", tmp_path / "tsdb")
    for _ in range(2):
        with PrometheusServer(tmp_path / "tsdb") as server:
            client = PrometheusConnect(server.url, disable_ssl=True)
            (result,) = client.custom_query("kube_pod_owner", params={"time": str(start + 3600)})
            assert result["metric"]["owner_kind"] == "ReplicaSet"
            flags = json.loads(urllib.request.urlopen(f"{server.url}/api/v1/status/flags").read())["data"]
            assert flags["storage.tsdb.retention.time"] == "100y"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2)


def test_a_port_taken_between_its_choice_and_the_start_is_chosen_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Another Prometheus binds the port this one chose before it starts: this one is started again
    on another port, and serves its own history, not the other's; a restart keeps its port."""
    start = 1_699_920_000
    for name in ("mine", "theirs"):
        app = ContainerSpec("app", UsageModel(0.1, 64 * MIB), requests={"cpu": "100m"})
        history = tmp_path / f"{name}.om"
        write_openmetrics(
            [WorkloadSpec(name, "w", (app,), created_at=start)], history, start, start + 600, STEP
        )
        load_history(history, tmp_path / name)
    with PrometheusServer(tmp_path / "theirs") as theirs:
        chosen, free_port = iter([theirs.port]), prometheus.free_port
        monkeypatch.setattr(prometheus, "free_port", lambda: next(chosen, None) or free_port())
        mine = PrometheusServer(tmp_path / "mine")
        assert mine.port == theirs.port
        with mine:
            assert mine.port != theirs.port
            client = PrometheusConnect(mine.url, disable_ssl=True)
            (owner,) = client.custom_query("kube_pod_owner", params={"time": str(start + 300)})
            assert owner["metric"]["namespace"] == "mine"
        port = mine.port
        mine.start()
        assert mine.port == port
        mine.stop()


def test_promtool_errors_carry_its_output(tmp_path: Path):
    bad = tmp_path / "bad.om"
    bad.write_text('# TYPE x gauge\nx{a="1"} not-a-number 1\n# EOF\n')
    with pytest.raises(PrometheusError, match=r"promtool failed \(exit 1\) on .*bad\.om: .+"):
        load_history(bad, tmp_path / "tsdb")


def test_a_binary_override_that_does_not_exist_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PROMTOOL_BIN_ENV, str(tmp_path / "no-such-promtool"))
    with pytest.raises(PrometheusError, match=PROMTOOL_BIN_ENV):
        load_history(tmp_path / "h.om", tmp_path / "tsdb")

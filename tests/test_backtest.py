"""`rightsizer backtest` on a real Prometheus holding a small generated history with a known answer:
an over-provisioned service whose savings are computed here by hand, and a memory leak that a too-tight
policy would have had OOM-killed, at the time its usage crosses the replayed limit."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from rightsizer.backtest import operator_parts
from rightsizer.backtest.replay import ReplayConfig, _Replay, _Watch
from rightsizer.backtest.timeline import Timeline
from rightsizer.engine import recommend
from rightsizer.model import ContainerKey, ContainerUsage, Resources
from rightsizer.policy import parse_policy
from rightsizer.promql import EXACT_TERM_LABEL, LabelConfig
from rightsizer.quantity import parse
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import RecommendationSettings
from rightsizer.source import PrometheusSource
from rightsizer.timestamps import parse_time
from rightsizer_demo.history import DAY, MIB, ContainerSpec, UsageModel, WorkloadSpec, window_ending_now
from rightsizer_demo.prometheus import PrometheusServer
from tests.support.cli import run_rightsizer
from tests.support.prometheus import queries_run, start_demo_prometheus

pytestmark = pytest.mark.prometheus

DAYS = 4
STEP = 60
NAMESPACE = "bt"
HOUR = 3600
CPU_PRICE, MEMORY_PRICE = 0.04048, 0.004445


def scenario(start: float) -> list[WorkloadSpec]:
    """``steady``: 2 pods at exactly 100m and 200Mi, asking for 1 core and 1Gi. ``leak``: one pod whose
    working set starts at 200Mi and grows 100Mi a day, under a 2Gi limit it never reaches."""
    steady = ContainerSpec(
        "app",
        UsageModel(0.1, 200 * MIB, cpu_noise=0.0, memory_noise=0.0),
        requests={"cpu": "1", "memory": "1Gi"},
    )
    leak = ContainerSpec(
        "app",
        UsageModel(0.05, 200 * MIB, cpu_noise=0.0, memory_noise=0.0, memory_growth_bytes_per_day=100 * MIB),
        requests={"cpu": "100m", "memory": "256Mi"},
        limits={"memory": "2Gi"},
    )
    return [
        WorkloadSpec(NAMESPACE, "steady", (steady,), created_at=start, replicas=2),
        WorkloadSpec(NAMESPACE, "leak", (leak,), created_at=start),
    ]


@pytest.fixture(scope="module")
def known_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    start, _ = window_ending_now(DAYS * DAY, STEP)
    server = start_demo_prometheus(tmp_path_factory.mktemp("backtest"), DAYS, STEP, workloads=scenario(start))
    try:
        yield server
    finally:
        server.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_rightsizer("backtest", *args)


def policy_file(tmp_path: Path, name: str, spec: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    document = {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def backtest(url: str, policy: Path, *extra: str) -> dict[str, Any]:
    result = run_cli(
        "--prometheus-url", url, "--policy", str(policy), "--days", str(DAYS), "-o", "json", *extra
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def container(document: dict[str, Any], workload: str) -> dict[str, Any]:
    (namespace,) = document["namespaces"]
    (found,) = [w for w in namespace["workloads"] if w["name"] == workload]
    (first,) = found["containers"]
    return {**first, "evaluations": found["evaluations"]}


# A one-day window: the history is fully deep after a day, so the confident part is the whole
# recommendation and the first evaluation with a day of history applies it at once.
ONE_DAY = {"history": {"window": "1d"}, "mode": "Auto", "auto": {"maxStepPercent": 1000}}


def test_an_over_provisioned_service_saves_what_the_hand_computes(known_prometheus, tmp_path):
    """100m at a 75% target is 133m, rounded up to 135m; 200Mi + 10% is 220Mi; limits 3x and 1.5x.
    The first evaluation with 24 h of history (a day into the span) applies them; from then on each of
    the 2 pods holds 865m and 804Mi less: by hand, over the 3 days left of the 4."""
    policy = policy_file(tmp_path, "steady", {"targetRef": {"name": "steady"}, **ONE_DAY})
    document = backtest(known_prometheus.url, policy)
    steady = container(document, "steady")
    (move,) = steady["moves"]
    assert move["action"] == "change"
    assert move["to"] == {
        "requests": {"cpu": "135m", "memory": "220Mi"},
        "limits": {"cpu": "405m", "memory": "330Mi"},
    }
    span_start = document["span"]["start"]
    assert _hours_between(span_start, move["time"]) == pytest.approx(24, abs=0.01)
    hours_after = DAYS * 24 - 24
    cpu_saved = (1 - 0.135) * 2 * hours_after * CPU_PRICE
    memory_saved = (1 - 220 / 1024) * 2 * hours_after * MEMORY_PRICE
    assert steady["saved"] == pytest.approx(cpu_saved + memory_saved, rel=0.01)
    assert steady["today"]["coreHours"] == pytest.approx(2 * DAYS * 24, rel=0.01)
    assert steady["replayed"]["coreHours"] == pytest.approx(2 * (24 + 0.135 * hours_after), rel=0.01)
    assert steady["savedPerMonth"] == pytest.approx(steady["saved"] * 730 / (DAYS * 24), rel=0.01)
    # Nothing it would have broken: the usage stayed below the new requests and limits.
    replayed = steady["replayed"]
    assert (
        replayed["oomKills"] == 0
        and replayed["cpuWindowsOverLimit"] == 0
        and replayed["cpuWindowsOverRequest"] == 0
    )
    assert steady["today"]["cpuWindows"] == 2 * DAYS * 24 * 12  # 2 pods x 12 five-minute windows an hour
    # Evaluated once a day: the change was the whole recommendation, so nothing to step toward after
    # its cooldown.
    assert steady["evaluations"] == DAYS


def test_a_leak_under_a_too_tight_policy_is_oom_killed_when_it_crosses_the_replayed_limit(
    known_prometheus, tmp_path
):
    """maxAllowed 320Mi caps the leak's memory (its projected growth asks for far more): at 24 h the
    replay sets 320Mi (request and limit), the working set (200Mi + 100Mi a day) crosses it at 28.8 h,
    the bucket ending at 29 h holds the would-be OOM kill; the engine then asks for more, which
    maxAllowed refuses, so the usage stays above the limit to the end: one kill, 67 hours above.
    Today's 2Gi limit never kills it."""
    spec = {
        "targetRef": {"name": "leak"},
        **ONE_DAY,
        "containerPolicies": [{"containerName": "app", "maxAllowed": {"memory": "320Mi"}}],
    }
    document = backtest(known_prometheus.url, policy_file(tmp_path, "tight", spec))
    leak = container(document, "leak")
    changes = [m for m in leak["moves"] if m["action"] == "change"]
    assert changes[0]["to"]["limits"]["memory"] == "320Mi"
    assert _hours_between(document["span"]["start"], changes[0]["time"]) == pytest.approx(24, abs=0.01)
    assert leak["today"]["oomKills"] == 0
    assert leak["replayed"]["oomKills"] == 1
    crossing = (320 - 200) / 100 * 24  # hours after the pod started: 28.8
    assert leak["replayed"]["memoryOverLimitHours"] == pytest.approx(DAYS * 24 - crossing, abs=1.0)

    # The same leak under the defaults: the growth is projected a week ahead, and nothing is killed.
    relaxed = policy_file(tmp_path, "relaxed", {"targetRef": {"name": "leak"}, **ONE_DAY})
    leak = container(backtest(known_prometheus.url, relaxed), "leak")
    assert leak["replayed"]["oomKills"] == 0
    assert parse(leak["resourcesAtEnd"]["limits"]["memory"]) > 900 * MIB


def test_the_engine_sees_the_would_be_oom_kills_of_its_window_and_only_those():
    """An evaluation's usage holds the kills the replay counted in the window before it, at the limit
    it had set, and none from after it: the engine then raises memory as after a real kill."""
    tl = timeline(hours=48)
    tl.sim_kills[tl.time == tl.time[60]] = 1
    tl.sim_kill_limit[:] = 300 * MIB
    at = float(tl.time[70])
    usage = tl.usage_at(at, DAY, 1800, 300)
    assert usage.oom_kills == 1 and usage.oom_killed_memory_bytes == 300 * MIB
    assert len(usage.history) == 48  # a day of buckets, the one ending at ``at`` included
    assert tl.usage_at(float(tl.time[59]), DAY, 1800, 300).oom_kills == 0  # not before it happened
    current = Resources({"cpu": Decimal("0.1"), "memory": Decimal(256 * MIB)}, {"memory": Decimal(300 * MIB)})
    rec = recommend(tl.key, usage, current, RecommendationSettings())
    assert rec.recommended is not None
    assert rec.recommended.requests["memory"] >= 400 * MIB  # 300Mi + 100Mi: VPA's bump
    assert "1 OOM kill(s) at 300Mi" in rec.reason


def timeline(hours: int) -> Timeline:
    """One pod, flat at 100m and 200Mi, a bucket every half hour."""
    rows = hours * 2
    flat = lambda value: np.full(rows, float(value))  # noqa: E731
    return Timeline(
        key=ContainerKey("ns", "Deployment", "w", "app"),
        today=Resources(),
        usage=ContainerUsage(),
        pods=np.array(["w-1"], dtype=object),
        pod=np.zeros(rows, dtype=int),
        time=1_700_000_000.0 + 1800 * np.arange(1, rows + 1),
        cpu_mean=flat(0.1),
        cpu_peak=flat(0.1),
        memory_mean=flat(200 * MIB),
        samples=flat(30),
        coverage=flat(1),
        memory_max=flat(200 * MIB),
        cfs_periods=flat("nan"),
        cfs_throttled=flat("nan"),
        oom_kills=flat(0),
        pod_cpu_limit=np.array([np.nan]),
    )


def test_the_table_sums_each_namespace_and_says_what_was_replayed(known_prometheus, tmp_path):
    policy = policy_file(tmp_path, "both", {"selector": {"matchLabels": {"team": "a"}}, **ONE_DAY})
    result = run_cli("--prometheus-url", known_prometheus.url, "--policy", str(policy), "--days", str(DAYS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAMESPACE", "WORKLOAD", "CONTAINER", "CHANGES"]
    assert any(line.startswith("bt") and "Deployment/steady" in line for line in lines)
    assert any(line.startswith("bt") and "(all)" in line for line in lines)
    assert "saved " in result.stdout and "a month) at 0.04048 per core-hour" in result.stdout
    assert "selector is not evaluated" in result.stdout  # Prometheus has no workload labels: said
    assert "Prometheus queries" in result.stderr


def recording(url: str) -> tuple[PrometheusSource, list[str]]:
    """A source and the list of what it sends (each query's PromQL, ``series`` for the series listing)."""
    source = PrometheusSource(url)
    sent: list[str] = []
    send = source._call

    def recorded(request, what):  # type: ignore[no-untyped-def]
        sent.append(what)
        return send(request, what)

    source._call = recorded  # type: ignore[method-assign]
    return source, sent


def test_one_fetch_for_the_whole_span(known_prometheus, tmp_path):
    """One fetch per namespace, whatever the days and evaluations: ``rightsizer recommend``'s queries over
    the span (its two rounds, the series listing and the HPA query), and the 3 per-bucket ones of the
    replay in its first round; the CLI adds the connectivity check."""
    end = float(round(time.time()))
    backtest_source, fetched = recording(known_prometheus.url)
    operator_parts.fetch_span(backtest_source, NAMESPACE, LabelConfig(), DAYS * DAY, 1800, 300, end)
    recommend_source, scanned = recording(known_prometheus.url)
    request = ScanRequest(namespaces=(NAMESPACE,), history_seconds=DAYS * DAY)
    scan(recommend_source, request, RecommendationSettings(), end=end)
    span = operator_parts.SpanScope((NAMESPACE,), DAYS * DAY, LabelConfig(), 300, span_bucket_seconds=1800)
    assert sorted(fetched) == sorted(
        [q for q in scanned if q != "vector(1)"] + list(span.span_queries().values())
    )
    assert any(EXACT_TERM_LABEL in q for q in fetched)  # the pods' first buckets: a second round

    policy = policy_file(tmp_path, "steady", {"targetRef": {"name": "steady"}, **ONE_DAY})
    before = queries_run(known_prometheus.url)
    document = backtest(known_prometheus.url, policy)
    assert document["queries"] == 1 + len(fetched)
    # As Prometheus' engine counted them (the series listing is not a query of its engine).
    assert queries_run(known_prometheus.url) - before == document["queries"] - 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "--days must be between 1 and 90"),
        (["--step", "45m"], "--step must be a multiple of the policy's history bucket (1800s)"),
        (["-o", "html"], "-o html needs --output FILE"),
    ],
)
def test_bad_flags_are_one_line(known_prometheus, args, message):
    result = run_cli("--prometheus-url", known_prometheus.url, "-n", NAMESPACE, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_a_policy_file_that_is_not_a_policy_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Deployment\nspec: {}\n")
    result = run_cli("--prometheus-url", "http://127.0.0.1:9", "--policy", str(bad), "-n", "x")
    assert result.returncode == 2 and "is a Deployment, not a RightSizePolicy" in result.stderr
    bad.write_text(yaml.safe_dump({"spec": {"targetRef": {"name": "web"}, "interval": "1s"}}))
    result = run_cli("--prometheus-url", "http://127.0.0.1:9", "--policy", str(bad), "-n", "x")
    assert result.returncode == 2 and "spec.interval" in result.stderr
    result = run_cli("--prometheus-url", "http://127.0.0.1:9")
    assert result.returncode == 2 and "-n NAMESPACE is needed" in result.stderr


def _hours_between(first: str, second: str) -> float:
    return (parse_time(second) - parse_time(first)).total_seconds() / HOUR


def test_the_replay_in_worker_processes_gives_what_one_process_gives(demo_prometheus, monkeypatch):
    """The demo's shop (6 workloads) replayed in 2 spawned workers, and in this process: the same
    document, figure for figure."""
    from rightsizer.backtest import run as runner
    from rightsizer.backtest.report import to_document
    from rightsizer.cost import Prices
    from rightsizer.source import PrometheusSource

    monkeypatch.setattr(runner, "PARALLEL_WORKLOADS", 2)
    end = time.time()
    documents = []
    for jobs in (1, 2):
        request = runner.BacktestRequest(("shop",), 3, runner.load_policy(None), DAY, jobs=jobs)
        result = runner.run_backtest(PrometheusSource(demo_prometheus.url), request, Prices(), end=end)
        documents.append(to_document(result))
    assert documents[0]["summary"]["changes"] > 0
    assert documents[0] == documents[1]
    # Changes that applied part of the recommendation (the confident part, three days in) are
    # followed an hour later, off the daily grid, when the cooldown is over.
    start = parse_time(documents[0]["span"]["start"]).timestamp()
    times = [
        parse_time(move["time"]).timestamp()
        for workload in documents[0]["namespaces"][0]["workloads"]
        for container in workload["containers"]
        for move in container["moves"]
    ]
    assert any((t - start) % DAY for t in times)


@pytest.mark.parametrize(
    ("limit_after", "rolled_back"),
    [(300, True), (500, False)],
    ids=["a kill under a lowered limit: the change's", "a kill under a raised limit: the container's"],
)
def test_a_watched_change_is_rolled_back_only_for_what_it_can_have_caused(limit_after, rolled_back):
    """The operator's rule (``pod_progress.exposure``): a kill rolls a change back only in a container
    whose memory limit it lowered; one killed under a limit it raised was too small before, and the
    kill raises memory next (rolling the raise back, and backing memory-up off, would not)."""
    tl = timeline(hours=4)
    tl.memory_max[4] = 600 * MIB  # above either limit, in the watch
    before = Resources({"memory": Decimal(256 * MIB)}, {"memory": Decimal(400 * MIB)})
    after = Resources({"memory": Decimal(256 * MIB)}, {"memory": Decimal(limit_after * MIB)})
    spec = parse_policy({"targetRef": {"kind": "Deployment", "name": "w"}, "mode": "Auto"})
    start = float(tl.time[0]) - 1800
    replay = _Replay([tl], ReplayConfig(spec, start, float(tl.time[-1]), 1800, DAY))
    replay.resources["app"] = after
    replay.watch = _Watch(float(tl.time[-1]), {"app": before}, {"app": after})
    event, rolled = replay._advance(start, float(tl.time[-1]))
    assert event == float(tl.time[4])  # the would-be kill, either way
    assert rolled is rolled_back
    assert (replay.resources["app"] == before) is rolled_back

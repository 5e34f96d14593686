"""The real-trace benchmark's harness (bench/real_trace_bench.py): the trace's samples as scrapes, the
baselines, the scoring, where the trace is looked for, and the whole run on a small made-up trace
through a real Prometheus and the installed ``rightsizer recommend`` (the real trace is not needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.doc_sections import write_section
from bench.real_trace import baselines
from bench.real_trace.learn import Shift, plan_shift
from bench.real_trace.report import plot
from bench.real_trace.scoring import score
from bench.real_trace.trace import (
    TRACE_ENV,
    TRACE_NAME,
    TraceMissing,
    candidate_paths,
    find_trace,
    scrapes,
    split,
)
from bench.real_trace_bench import main

from rightsizer.quantity import parse

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def test_samples_become_scrapes_that_hold_memory_and_grow_the_counter_at_their_rate():
    """Each sample stands for the 5 minutes before it (less after a denser one); a gap is not filled."""
    ts = np.array([300, 600, 900, 1800, 1950, 2100])
    cpu = np.array([1.0, 2.0, 0.5, 4.0, 1.0, 3.0])
    memory = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    seen = scrapes(ts, cpu, memory, 60, 0, 2160)
    expected = [*range(60, 901, 60), *range(1560, 2101, 60)]  # nothing in the gap (900, 1500]
    assert seen.times.tolist() == expected
    held = dict(zip(seen.times.tolist(), seen.memory_mib.tolist(), strict=True))
    assert [held[t] for t in (60, 300, 360, 900, 1560, 1800, 1860, 1920, 1980, 2100)] == [
        10,
        10,
        20,
        30,
        40,
        40,
        50,
        50,
        60,
        60,
    ]
    counter = dict(zip(seen.times.tolist(), seen.cpu_seconds.tolist(), strict=True))
    assert counter[300] == pytest.approx(300)  # 1 core for 300 s
    assert counter[600] - counter[300] == pytest.approx(2 * 300)  # a window's rate is its sample's
    assert counter[900] == pytest.approx(1050)
    assert counter[1560] == pytest.approx(1050 + 4 * 60)  # flat over the gap, then the sample's rate
    assert counter[1800] == pytest.approx(1050 + 4 * 300)
    assert counter[1920] - counter[1800] == pytest.approx(1 * 120)  # 150 s samples: 150 s each
    assert counter[2100] - counter[1950 - 30] == pytest.approx(1 * 30 + 3 * 150)


def test_scrapes_start_where_asked_and_stop_before_the_end():
    ts = np.arange(300, 3001, 300)
    seen = scrapes(ts, np.ones(len(ts)), np.ones(len(ts)), 60, 1000, 2000)
    assert seen.times[0] == 1000 and seen.times[-1] == 1960
    assert seen.cpu_seconds[0] == pytest.approx(1000)  # the counter counts from the first sample's start


def trace_frame(vm: int, ts: np.ndarray, cpu: np.ndarray, memory: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "vm": vm,
            "ts": ts,
            "cpu_cores": cpu,
            "memory_mib": memory,
            "provisioned_cores": 4,
            "provisioned_memory_mib": 4096,
        }
    )


def test_the_baselines_follow_their_rules():
    ts = np.arange(0, 14 * 86400, 300)
    rng = np.random.default_rng(1)
    cpu = rng.uniform(0, 1, len(ts))
    memory = np.where(ts % 86400 < 3600, 500.0, 100.0)  # an hour at 500Mi a day
    memory[150] = 1000.0  # one peak, 13 days before the end of learning
    learning = trace_frame(7, ts, cpu, memory)
    p95 = float(np.quantile(cpu, 0.95))
    krr = baselines.krr_simple(learning).loc[7]
    assert krr["cpu_request"] == pytest.approx(p95) and math.isnan(krr["cpu_limit"])
    assert krr["memory_request"] == krr["memory_limit"] == pytest.approx(1000 * 1.15)
    seed = baselines.seed_rule(learning).loc[7]
    assert seed["cpu_request"] == pytest.approx(p95 / 0.75)
    assert seed["cpu_limit"] == pytest.approx(3 * p95 / 0.75)
    assert (seed["memory_request"], seed["memory_limit"]) == (1000, 2000)
    vpa = baselines.vpa_like(learning).loc[7]
    # p90 of the days' peaks (500Mi; the one day at 1000Mi is above it), not of the samples (100Mi);
    # 5% histogram buckets, x 1.15
    assert 500 * 1.15 <= vpa["memory_request"] <= 500 * 1.05 * 1.15
    assert vpa["memory_limit"] == vpa["memory_request"]
    assert 0.9 * 1.15 * 0.95 <= vpa["cpu_request"] <= 0.9 * 1.15 * 1.1 and math.isnan(vpa["cpu_limit"])
    oracle = baselines.oracle(trace_frame(7, ts[:10], np.arange(10) / 10, np.arange(10.0))).loc[7]
    assert oracle["cpu_request"] == pytest.approx(np.quantile(np.arange(10) / 10, 0.95))
    assert oracle["memory_request"] == oracle["memory_limit"] == 9


def test_scores_are_shares_of_all_samples_and_vms_over_their_memory_limit():
    scoring = pd.concat(
        [
            trace_frame(1, np.arange(4), np.array([0.1, 0.2, 0.3, 0.4]), np.array([100, 200, 300, 400])),
            trace_frame(2, np.arange(4), np.full(4, 0.1), np.full(4, 5000)),
        ]
    )
    allocations = baselines.allocation(
        pd.Series({1: 0.25, 2: 1.0}),
        pd.Series({1: 0.35, 2: np.nan}),
        pd.Series({1: 250.0, 2: 1024.0}),
        pd.Series({1: 350.0, 2: np.nan}),
    )
    result = score(scoring, allocations)
    assert result.cpu_cores == pytest.approx(1.25)
    assert result.cpu_above_request == pytest.approx(2 / 8)
    assert result.cpu_above_limit == pytest.approx(1 / 8)
    assert result.memory_above_request == pytest.approx(6 / 8)
    assert result.would_oom == 1  # VM 2 has no memory limit: above its request, never killed
    assert result.memory_request_gib == pytest.approx((250 + 1024) / 1024)
    unlimited = baselines.allocation(
        allocations["cpu_request"], None, allocations["memory_request"], allocations["memory_limit"]
    )
    assert score(scoring, unlimited).cpu_above_limit is None
    with pytest.raises(ValueError, match="no allocation for VM"):
        score(scoring, allocations.loc[[1]])


def test_the_trace_is_looked_for_beside_the_checkout_and_a_missing_one_says_where(tmp_path, monkeypatch):
    monkeypatch.delenv(TRACE_ENV, raising=False)
    assert REPO.parent / "shared" / "data" / TRACE_NAME in candidate_paths(REPO)
    missing = tmp_path / "nowhere.csv.gz"
    monkeypatch.setenv(TRACE_ENV, str(missing))
    with pytest.raises(TraceMissing, match=str(missing)):
        find_trace(None, REPO)
    assert main(["--no-doc"]) == 2  # a clear error, no run
    present = tmp_path / "trace.csv.gz"
    present.write_bytes(b"")
    assert find_trace(present, REPO) == present


def test_the_learning_days_end_a_lead_from_now_on_a_shift_of_whole_cpu_windows():
    """Runs at any time put the trace's samples at the same places in the epoch-aligned 5-minute windows."""
    shift = plan_shift(boundary=1_000_000, samples=0, lead=100, now=5_000_000.0)
    assert shift.seconds % 300 == 0
    assert 5_000_100 <= shift.learning_end < 5_000_400
    later = plan_shift(boundary=1_000_000, samples=0, lead=100, now=5_000_123.0)
    assert (later.seconds - shift.seconds) % 300 == 0
    assert shift == Shift(shift.seconds, 1_000_000 + shift.seconds)


def made_up_trace(path: Path) -> pd.DataFrame:
    """Four days of three VMs: a steady one, one with a busy hour a day and a 3-hour gap while
    learning, one sampled every 150 s."""
    start = 1_372_629_600
    ts = np.arange(start, start + 4 * 86400, 300)
    hours = (ts - start) % 86400 / 3600
    steady = trace_frame(1, ts, np.full(len(ts), 0.5), np.full(len(ts), 100.0))
    busy = trace_frame(2, ts, np.where(hours < 1, 1.5, 0.2), np.full(len(ts), 300.0))
    busy = busy[(busy["ts"] < start + 30 * 3600) | (busy["ts"] >= start + 33 * 3600)]
    dense_ts = np.arange(start, start + 4 * 86400, 150)
    dense = trace_frame(3, dense_ts, np.full(len(dense_ts), 0.1), np.full(len(dense_ts), 50.0))
    frame = pd.concat([steady, busy, dense], ignore_index=True)
    frame.sample(frac=1, random_state=0).to_csv(path, index=False)  # any order: it is sorted on reading
    return frame


@pytest.mark.prometheus
def test_the_benchmark_runs_rightsizer_through_prometheus_and_scores_every_strategy(tmp_path):
    """Two days learned, two scored, through promtool, a real Prometheus and ``rightsizer recommend``.

    The steady VM (0.5 cores, 100Mi) gets exactly what the engine makes of a steady container, so the
    scrapes carried its rate and working set: 500m at 75% -> 670m, 100Mi + 10% -> 110Mi. The VM with a
    busy hour a day and a gap has its busy hour's 1.5 cores and 3 hours less history; the VM sampled every
    150 s is seen as any other.
    """
    csv = tmp_path / "trace.csv.gz"
    frame = made_up_trace(csv)
    out = tmp_path / "result.json"
    arguments = ["--trace", str(csv), "--learn-days", "2", "--score-days", "2", "--lead", "15"]
    assert main([*arguments, "--no-doc", "--json", str(out), "--workdir", str(tmp_path)]) == 0
    result = json.loads(out.read_text())
    answers = {r["name"]: r for r in result["rightsizer"]["rightsizer (defaults)"]}
    assert set(answers) == {"vm-1", "vm-2", "vm-3"}
    steady = answers["vm-1"]
    assert steady["evidence"]["cpuPeakTime"] == "500m"
    assert steady["recommended"]["requests"] == {"cpu": "670m", "memory": "110Mi"}
    assert steady["current"]["requests"] == {"cpu": "4", "memory": "4Gi"}
    assert answers["vm-3"]["evidence"]["memoryPeak"] == "50Mi"
    assert answers["vm-3"]["evidence"]["cpuPeakTime"] == "100m"
    hours = {name: answers[name]["evidence"]["historyHours"] for name in answers}
    assert hours["vm-2"] == pytest.approx(hours["vm-1"] - 3, abs=0.6)
    assert answers["vm-2"]["evidence"]["cpuMax"] == "1500m"  # its busy hour came through the scrapes
    faster = {r["name"]: r for r in result["rightsizer"]["rightsizer --target-utilization 0.95"]}
    assert parse(faster["vm-1"]["recommended"]["requests"]["cpu"]) == parse("530m")  # 500m / 0.95

    scores = result["scores"]
    assert set(scores) == {
        "rightsizer (defaults)",
        "rightsizer --target-utilization 0.95",
        "KRR simple",
        "VPA-like",
        "seed rule",
        "oracle",
    }
    requested = sum(float(parse(a["recommended"]["requests"]["cpu"])) for a in answers.values())
    assert scores["rightsizer (defaults)"]["cpu_cores"] == pytest.approx(requested)
    boundary = frame["ts"].min() + 2 * 86400
    learning, scoring = frame[frame["ts"] < boundary], frame[frame["ts"] >= boundary]
    assert scores["KRR simple"]["cpu_cores"] == pytest.approx(
        learning.groupby("vm")["cpu_cores"].quantile(0.95).sum()
    )
    assert scores["oracle"]["memory_request_gib"] == pytest.approx(
        scoring.groupby("vm")["memory_mib"].max().sum() / 1024
    )
    assert scores["oracle"]["would_oom"] == 0


def test_the_plots_are_pngs(tmp_path):
    days = split(trace_frame(1, np.arange(0, 4 * 86400, 300), np.full(1152, 0.2), np.full(1152, 10.0)), 2, 2)
    scores = {
        "a": score(days.scoring, baselines.seed_rule(days.learning)),
        "b": score(days.scoring, baselines.krr_simple(days.learning)),
    }
    cpu, memory = tmp_path / "cpu.png", tmp_path / "memory.png"
    plot(scores, ["a"], cpu, memory)
    assert cpu.read_bytes()[:8] == memory.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_section_is_replaced_between_its_markers_and_appended_when_missing(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nbefore\n<!-- a:begin -->\nold\n<!-- a:end -->\nafter\n")
    write_section(doc, "<!-- a:begin -->", "<!-- a:end -->", "new\n")
    assert doc.read_text() == "# Benchmarks\n\nbefore\n<!-- a:begin -->\nnew\n<!-- a:end -->\nafter\n"
    write_section(doc, "<!-- b:begin -->", "<!-- b:end -->", "more")
    assert doc.read_text().endswith("after\n\n<!-- b:begin -->\nmore\n<!-- b:end -->\n")

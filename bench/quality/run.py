"""One benchmark run per seed: ground truth, every strategy's allocations, their scores."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from rightsizer.model import ContainerKey, Recommendation
from rightsizer.settings import RecommendationSettings
from rightsizer_demo.history import DAY, ground_truth

from .allocation import Allocations
from .learn import learn_through_prometheus, rightsizer_allocations
from .scenarios import EPOCH, learning_end, scenario, usage_models
from .scoring import ContainerScore, PodTrace, pod_traces, replay_oom_kills, score_strategy
from .strategies import KEY_COLUMNS, container_key, current_allocations, krr_simple, vpa_like

RIGHTSIZER = "rightsizer (defaults)"
CURRENT = "current allocation"
KRR = "KRR simple"
VPA = "VPA-style"
STRATEGIES = (RIGHTSIZER, CURRENT, KRR, VPA)

KRR_AS_QUERIED = "KRR simple, memory max via `[336h:75s]` subquery"
KRR_SUBQUERY_STEP = 75
WHAT_IFS: dict[str, dict[str, object]] = {
    "rightsizer, `memory_headroom=0.15` (KRR's and VPA's margin)": {"memory_headroom": 0.15},
    "rightsizer, no OOM bump (`oom_bump_ratio=0`, `oom_bump_min_bytes=0`)": {
        "oom_bump_ratio": 0.0,
        "oom_bump_min_bytes": Decimal(0),
    },
}
"""rightsizer settings overrides scanned against the same Prometheus (latency-sensitive profile)."""


@dataclass(frozen=True)
class BenchConfig:
    """Periods, resolution and seeds."""

    learn_days: int = 7
    score_days: int = 7
    step: int = 60
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass
class SeedRun:
    """Everything one seed produced: per-container scores by strategy and what explains them."""

    seed: int
    scores: dict[str, list[ContainerScore]] = field(default_factory=dict)
    recommendations: dict[ContainerKey, Recommendation] = field(default_factory=dict)
    learning_throttled: dict[ContainerKey, float] = field(default_factory=dict)
    """Share of learning samples whose CPU demand was above the CPU limit then in force."""


def run_seed(config: BenchConfig, seed: int) -> SeedRun:
    """Learn on [0, N) days, score on [N, N+M) days, for every strategy and what-if variant."""
    boundary = int(learning_end(config.learn_days))
    workloads = scenario(EPOCH, boundary)
    stop = boundary + config.score_days * DAY - config.step
    truth = ground_truth(workloads, EPOCH, stop, config.step, seed=seed)
    start = pd.Timestamp(boundary, unit="s", tz="UTC")
    learning = truth[truth["timestamp"] < start]
    traces = pod_traces(truth, usage_models(workloads), start)
    current = current_allocations(learning)
    check_replay(traces, truth[truth["timestamp"] >= start], current)

    variants = {RIGHTSIZER: RecommendationSettings.for_profile("latency-sensitive")}
    variants |= {
        name: RecommendationSettings.for_profile("latency-sensitive", **o) for name, o in WHAT_IFS.items()
    }
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as workdir:
        learned = learn_through_prometheus(
            workloads,
            seed=seed,
            start=EPOCH,
            end=boundary,
            step=config.step,
            workdir=Path(workdir),
            variants=variants,
        )
    allocations: dict[str, Allocations] = {
        name: rightsizer_allocations(recommendations, current) for name, recommendations in learned.items()
    }
    allocations[CURRENT] = current
    allocations[KRR] = krr_simple(learning, current)
    allocations[VPA] = vpa_like(learning, current)
    allocations[KRR_AS_QUERIED] = krr_simple(learning, current, memory_subquery_step=KRR_SUBQUERY_STEP)
    return SeedRun(
        seed,
        scores={name: score_strategy(traces, allocation) for name, allocation in allocations.items()},
        recommendations={r.key: r for r in learned[RIGHTSIZER]},
        learning_throttled=throttled_shares(learning),
    )


def check_replay(
    traces: dict[ContainerKey, list[PodTrace]], scoring: pd.DataFrame, current: Allocations
) -> None:
    """The memory replay under the limits in force must find the ground truth's own OOM kills."""
    kills = scoring.groupby([*KEY_COLUMNS, "pod"])["oom_kill"].sum()
    for key, pods in traces.items():
        for trace in pods:
            replayed = int(replay_oom_kills(trace, current[key].memory_limit).sum())
            expected = int(kills[(key.namespace, key.kind, key.name, key.container, trace.pod)])
            if replayed != expected:
                raise AssertionError(
                    f"{key} {trace.pod}: replay found {replayed} OOM kills, truth {expected}"
                )


def throttled_shares(learning: pd.DataFrame) -> dict[ContainerKey, float]:
    """Per workload container, the share of learning samples with CPU demand above the limit in force."""
    above = (learning["cpu_demand_cores"] > learning["cpu_limit"]).to_numpy()
    shares = pd.Series(above, index=learning.index).groupby([learning[c] for c in KEY_COLUMNS]).mean()
    return {container_key(values): float(np.round(share, 4)) for values, share in shares.items()}

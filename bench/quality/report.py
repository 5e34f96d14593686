"""The benchmark's markdown: method, scenarios, the strategy table, conclusions drawn from the numbers,
the per-container appendix and how to rerun."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd

from rightsizer.model import ContainerKey
from rightsizer.quantity import parse
from rightsizer.settings import RecommendationSettings
from rightsizer_demo.history import MIB, WorkloadSpec

from .run import CURRENT, KRR, KRR_AS_QUERIED, RIGHTSIZER, STRATEGIES, VPA, WHAT_IFS, BenchConfig, SeedRun
from .scenarios import EPOCH, extra_workloads, learning_end, pattern_workloads, scenario
from .scoring import TARGET_BAND, StrategyScore, mean_score, summarize
from .strategies import KRR_MIN_MEMORY

GIB = 1024 * MIB
DEMO_CASES = {
    "web": "over-provisioned; daily cycle, 12 bursts a day (+ a log-shipper sidecar)",
    "cart": "leaks 250Mi a day under a 512Mi limit: OOM-killed about every 30 h",
    "search": "CPU limit 500m far below demand: throttled most of the time",
    "worker": "over-provisioned batch work, long bursts at night",
    "checkout": "over-provisioned; rolled out with new resources halfway through learning",
    "redis": "StatefulSet, memory grows 20Mi a day",
    "new-feature": "created 6 h before the end of learning (too young)",
    "api": "no kube-state-metrics series: owner from the pod name",
}
APPENDIX_COLUMNS = (
    "CPU req",
    "CPU limit",
    "mem req",
    "mem limit",
    "CPU slack",
    "demand > req",
    "demand > limit",
    "WS > mem req",
    "OOM kills",
    "peak / req",
)


def render(runs: Sequence[SeedRun], config: BenchConfig, seconds: float, environment: str) -> str:
    """The whole ``## Quality`` section."""
    means = {name: mean_score([summarize(run.scores[name]) for run in runs]) for name in runs[0].scores}
    per_container = container_table(runs)
    parts = [
        "## Quality\n",
        _intro(config),
        _method(config),
        _scenarios(config),
        "### Results\n",
        f"Mean of {len(runs)} seeds ({', '.join(str(r.seed) for r in runs)}) over one "
        f"{config.score_days}-day scoring period; CPU in cores, memory in GiB, shares over all samples "
        "of all containers.\n",
        strategy_table({name: means[name] for name in STRATEGIES}),
        "\nVariants: rightsizer with settings overrides (what-if runs, same Prometheus, same learning "
        "period), and KRR reading its memory peak the way its query does.\n",
        strategy_table({name: means[name] for name in means if name not in STRATEGIES}),
        pattern_table(per_container, config),
        _conclusions(means, per_container),
        _appendix(per_container),
        _rerun(config, seconds, environment),
    ]
    return "\n".join(parts)


def strategy_table(means: dict[str, StrategyScore]) -> str:
    """One row per strategy: what it reserves and how it did."""
    header = (
        "| strategy | CPU reserved | memory reserved | CPU slack | demand > request | demand > limit "
        "(throttled) | working set > memory request | OOM kills | OOM-killed containers | peak-time CPU / "
        "request (median) | in 70-80% band |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {name} | {s.reserved_cpu:.2f} | {s.reserved_memory / GIB:.2f} | {s.cpu_slack:.1%} | "
        f"{s.above_request:.1%} | {s.above_limit:.1%} | {s.above_memory_request:.1%} | "
        f"{_count(s.oom_kills)} | {_count(s.killed_containers)} | {s.peak_median:.2f} | "
        f"{_count(s.in_band)} of {s.containers:.0f} |"
        for name, s in means.items()
    ]
    return header + "\n".join(rows) + "\n"


def pattern_table(table: pd.DataFrame, config: BenchConfig) -> str:
    """The patterns of issue 7: each aim, what every strategy scored on it, and whether rightsizer met it."""
    lines = [
        "### Patterns\n",
        "The patterns of issue 7, each with its aim for rightsizer (mean of the seeds; the other strategies "
        "for comparison).\n",
        f"| pattern | aim | {' | '.join(STRATEGIES)} | met |",
        f"|---|---|{'---|' * len(STRATEGIES)}---|",
    ]
    values = table.set_index(["container", "strategy"])
    for workload in pattern_workloads(EPOCH, learning_end(config.learn_days)):
        spec = workload.spec
        container = f"{spec.namespace}/{spec.name}/{spec.containers[0].name}"
        for aim in workload.aims:
            scores = [values.loc[(container, name), aim.metric] for name in STRATEGIES]
            met = "yes" if aim.met(scores[0]) else "**no**"
            cells = " | ".join(_aim_value(aim.metric, v) for v in scores)
            lines.append(f"| `{container}` | {aim.text} | {cells} | {met} |")
    return "\n".join(lines) + "\n"


def _aim_value(metric: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    if metric in ("worst_pod_above_limit", "above_memory_request"):
        return f"{value:.1%}"
    if metric == "oom_kills":
        return _count(value)
    if metric == "memory_request_mib":
        return f"{value:.0f}Mi"
    return f"{value:.2f}"


def container_table(runs: Sequence[SeedRun]) -> pd.DataFrame:
    """Per workload container and strategy, every score averaged over seeds (limits: NaN when unset)."""
    rows = []
    for run in runs:
        for strategy, scores in run.scores.items():
            for score in scores:
                allocation = asdict(score.allocation)
                rows.append(
                    {
                        "container": _name(score.key),
                        "strategy": strategy,
                        **{k: math.nan if v is None else v for k, v in allocation.items() if k != "note"},
                        "note": score.allocation.note,
                        "pods": score.pods,
                        "replicas": score.replicas,
                        "cpu_slack": score.cpu_slack,
                        "above_request": score.above_request,
                        "above_limit": score.above_limit,
                        "above_memory_request": score.above_memory_request,
                        "oom_kills": score.oom_kills,
                        "peak_to_request": score.peak_to_request,
                        "busy_to_request": score.busy_to_request,
                        "worst_pod_above_limit": score.worst_pod_above_limit,
                        "throttled_while_learning": run.learning_throttled.get(score.key, 0.0),
                        **_learned(run, score.key),
                    }
                )
    frame = pd.DataFrame(rows)
    frame["cpu_limit_ratio"] = frame["cpu_limit"] / frame["cpu_request"]
    frame["memory_request_mib"] = frame["memory_request"] / MIB
    numbers = frame.drop(columns=["note"]).groupby(["container", "strategy"], sort=False).mean()
    notes = frame.groupby(["container", "strategy"], sort=False)["note"].first()
    return numbers.join(notes).reset_index()


def _learned(run: SeedRun, key: ContainerKey) -> dict[str, float]:
    """What rightsizer's evidence said of a container: OOM kills, growth per day, peak time (cores) and
    whether a day's busiest sustained bucket set it (1.0) or the p95 of its windows (0.0)."""
    evidence = run.recommendations[key].evidence if key in run.recommendations else {}
    growth, peak = evidence.get("memoryGrowthPerDay"), evidence.get("cpuPeakTime")
    killed_at = evidence.get("oomKilledAt")
    return {
        "oom_kills_learned": float(evidence.get("oomKills", 0)),
        "oom_killed_at": float(parse(str(killed_at))) if killed_at else math.nan,
        "memory_growth_mib_per_day": float(parse(str(growth))) / MIB if growth else 0.0,
        "cpu_peak_time_learned": float(parse(str(peak))) if peak else math.nan,
        "peak_from_busy_bucket": float(str(evidence.get("cpuPeakTimeFrom", "")).startswith("busiest")),
    }


def _intro(config: BenchConfig) -> str:
    return (
        f"How good are the recommendations? Learn from the first {config.learn_days} days of generated "
        f"history, apply the result, and score the {config.score_days} days that follow against what the "
        "containers really did. The aim stated in the issue: **fewer OOM kills than KRR with no more "
        "memory reserved, and peak-time CPU at 70-80% of the request.**\n"
    )


def _method(config: BenchConfig) -> str:
    return f"""### Method

- **History**: `rightsizer_demo.history`, one sample every {config.step} s. Learning: days [0, N), scoring:
  days [N, N+M), with N = {config.learn_days} and M = {config.score_days}; both are slices of one trajectory
  (the generator is deterministic). Each seed changes every random draw.
- **rightsizer** learns through a real Prometheus: the learning history is written with `write_openmetrics`,
  loaded with promtool (`load_history`), served by `PrometheusServer`; `scan()` evaluates at the end of
  day N with an N-day history window and default settings (latency-sensitive profile). Where it gives no
  recommendation (too little history), the current allocation stays.
- **The others** are computed from the learning ground truth (pandas, every raw sample):
  - *current allocation*: the requests and limits in force at the end of learning;
  - *KRR simple*: CPU request = p95 of CPU usage (busiest pod), no CPU limit; memory request = limit =
    max working set x 1.15; floors 10m / 100Mi. KRR reads the max through a `[336h:75s]` subquery, so it
    would see less than the raw max used here (the variant row measures how much on this data);
  - *VPA-style*: decaying histograms (24 h half-life, buckets 5% apart, CPU samples weighted by the
    request); CPU target = p90 x 1.15; memory target = p90 of per-pod, per-day peaks x 1.15, a day with
    an OOM kill counting max(+20%, +100Mi) above the larger of request and peak; minimums 25m / 250Mi
    per pod split over its containers; limits kept in proportion to the current request/limit ratio.
- **Scoring** applies each allocation at the start of the scoring period, in place (no restart), to every
  pod of the workload container:
  - CPU is scored on *demand* (what the container wanted, before any limit); usage = demand capped at the
    CPU limit. *CPU slack* = mean over samples of max(0, 1 - usage / request). *Demand > request* and
    *demand > limit* are shares of samples (the latter is throttling; none without a limit).
    *Peak-time CPU / request* = p95 of 5-minute average usage (rightsizer's own definition of peak time,
    `rate(...[5m])`) of all pods / request; the table gives the median over workload containers and how
    many are inside 70-80%. *Busy-hour CPU / request* = the median, over pods and days, of each day's
    busiest hour (rolling 60-minute mean of usage) / request. *Worst pod above limit*: the largest share,
    over pods, of one pod's samples with demand above the CPU limit.
  - Memory: the working set the container would have had under the allocation. The generator documents it
    as `(base + growth x age) x noise`, age counted from the container's last start; the ground truth gives
    age and noise at every sample, so the container keeps growing from where it was at the end of learning,
    is OOM-killed whenever it goes above the allocation's memory **limit**, and starts over (age 0).
    Replaying the limits in force reproduces the ground truth's own OOM kills exactly (checked on every
    run). *Working set > memory request* is the share of samples above the request (the pod is then first
    in line for eviction under node memory pressure).
  - Reserved CPU / memory = sum of requests x replicas (pods alive on average over the scoring period:
    autoscaled pods count for the time they run).
"""


def _scenarios(config: BenchConfig) -> str:
    boundary = learning_end(config.learn_days)
    extra = {e.spec.name: e.case for e in extra_workloads(EPOCH, boundary)}
    rows = [
        f"| {w.namespace}/{w.name} | {w.kind} x {_replicas(w)} | {_resources(w)} | "
        f"{DEMO_CASES.get(w.name) if w.namespace != 'extra' else extra[w.name]} |"
        for w in scenario(EPOCH, boundary)
    ]
    return (
        "### Scenarios\n\nThe demo cluster (`demo_scenario` for the learning window) and the workloads of "
        "`bench/quality/scenarios.py` built with the generator's public API (`WorkloadSpec`, "
        "`ContainerSpec`, `UsageModel`, `ShortPod`, `Autoscaling`): five general cases, then the patterns "
        "of issue 7. Resources are those in force at the end of learning.\n\n"
        "| workload | kind x pods | containers: requests / limits (cpu, memory) | case |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


def _replicas(workload: WorkloadSpec) -> str:
    scaling = workload.autoscaling
    return f"{workload.replicas}-{scaling.max_replicas}" if scaling else str(workload.replicas)


def _resources(workload: WorkloadSpec) -> str:
    containers = workload.rollout.containers if workload.rollout and workload.rollout.containers else None
    return "; ".join(
        f"{c.name}: {c.requests.get('cpu', '-')}, {c.requests.get('memory', '-')} / "
        f"{c.limits.get('cpu', '-')}, {c.limits.get('memory', '-')}"
        for c in containers or workload.containers
    )


def _conclusions(means: dict[str, StrategyScore], table: pd.DataFrame) -> str:
    rs, krr = means[RIGHTSIZER], means[KRR]
    parts = [
        "### Conclusions\n",
        _kills_conclusion(rs, krr, table),
        _memory_conclusion(rs, krr, table),
        _peak_conclusion(rs, means, table),
        _what_if_conclusion(means),
        _cost_conclusion(means, table),
        _engine_findings(means, table),
    ]
    return "\n".join(parts)


def _kills_conclusion(rs: StrategyScore, krr: StrategyScore, table: pd.DataFrame) -> str:
    met = rs.oom_kills < krr.oom_kills
    lines = [
        f"**Fewer OOM kills than KRR: {'met' if met else 'not met'}.** rightsizer "
        f"{_count(rs.oom_kills)} kills ({_count(rs.killed_containers)} containers) against KRR's "
        f"{_count(krr.oom_kills)} ({_count(krr.killed_containers)}) in the scoring period. KRR sets the "
        "memory limit at the request, peak x 1.15; rightsizer's request is the level and the peak's swing "
        "above the half-hourly means x 1.10 (a growing container's projected a week ahead), its limit 1.5x "
        "above that (latency-sensitive profile) and at least the peak plus 1.5x its height above the typical "
        "level, so growth between evaluations hits a limit well above the level instead of 15% above the "
        "peak:\n",
    ]
    kills = table.pivot(index="container", columns="strategy", values="oom_kills")
    for container, row in kills[(kills[KRR] > 0) | (kills[RIGHTSIZER] > 0)].iterrows():
        lines.append(
            f"- `{container}`: KRR {_count(row[KRR])}, rightsizer {_count(row[RIGHTSIZER])}, "
            f"VPA-style {_count(row[VPA])}, current {_count(row[CURRENT])}"
        )
    learned = table[table["strategy"] == RIGHTSIZER].set_index("container")
    growers = learned[(learned["memory_growth_mib_per_day"] > 0) & (learned["oom_kills_learned"] == 0)]
    killed = growers[growers["oom_kills"] > 0]
    names = ", ".join(f"`{name}`" for name in growers.index)
    outcome = (
        f"none of them ({names}) was OOM-killed under rightsizer's limit"
        if killed.empty
        else "still killed: " + ", ".join(f"`{n}` {_count(k)}" for n, k in killed["oom_kills"].items())
    )
    lines.append(
        "\nLeaks that were OOM-killed while learning are killed again under any finite limit; a higher "
        "limit only spaces the kills out. The slow growers are the case that matters: they never restart, "
        "so a limit 15% above the learned peak is reached a few days into the scoring period. rightsizer "
        f"projects their growth a week ahead: {outcome}.\n"
    )
    return "\n".join(lines)


def _memory_conclusion(rs: StrategyScore, krr: StrategyScore, table: pd.DataFrame) -> str:
    difference = rs.reserved_memory - krr.reserved_memory
    met = difference <= 0
    lines = [
        f"**No more memory reserved than KRR: {'met' if met else 'not met'}.** rightsizer reserves "
        f"{rs.reserved_memory / GIB:.2f} GiB, KRR {krr.reserved_memory / GIB:.2f} GiB "
        f"({difference / MIB:+.0f} Mi, {difference / krr.reserved_memory:+.1%}). KRR takes the highest "
        "sample x 1.15; rightsizer the p99 of half-hourly means and the peak's swing above them x 1.10, "
        "projected a week ahead where it grows; where they differ (reserved = request x replicas):\n",
    ]
    memory = table.pivot(index="container", columns="strategy", values="memory_request")
    pods = table.pivot(index="container", columns="strategy", values="replicas")[RIGHTSIZER]
    delta = (memory[RIGHTSIZER] - memory[KRR]) * pods
    small = delta.abs() <= 2 * MIB * pods
    for container in delta[~small].index:
        reason = _memory_reason(table, container)
        lines.append(f"- `{container}`: {delta[container] / MIB:+.0f} Mi ({reason})")
    if small.any():
        lines.append(
            f"- the {int(small.sum())} other containers: {delta[small].sum() / MIB:+.0f} Mi "
            "(rightsizer rounds memory up to a whole Mi)"
        )
    return "\n".join(lines) + "\n"


def _memory_reason(table: pd.DataFrame, container: str) -> str:
    rows = table[table["container"] == container].set_index("strategy")
    if rows.loc[RIGHTSIZER, "note"]:
        return f"rightsizer: {rows.loc[RIGHTSIZER, 'note']}"
    if rows.loc[RIGHTSIZER, "oom_kills_learned"] > 0:
        return (
            f"{rows.loc[RIGHTSIZER, 'oom_kills_learned']:.0f} OOM kills while learning: rightsizer's OOM "
            "bump, max(killed x 1.2, killed + 100Mi), raises the request"
        )
    growth = rows.loc[RIGHTSIZER, "memory_growth_mib_per_day"]
    if growth > 0:
        return f"grew {growth:.0f}Mi a day while learning: rightsizer projects it a week ahead"
    if abs(rows.loc[KRR, "memory_request"] - KRR_MIN_MEMORY) < 1:
        return "KRR's 100Mi floor"
    return "rightsizer: the level and the swing x 1.10; KRR: the highest sample x 1.15"


def _peak_conclusion(rs: StrategyScore, means: dict[str, StrategyScore], table: pd.DataFrame) -> str:
    low, high = TARGET_BAND
    met = low <= rs.peak_median <= high
    others = ", ".join(f"{name} {means[name].peak_median:.2f}" for name in (KRR, VPA, CURRENT))
    raw = ", ".join(f"{name} {means[name].peak_median_raw:.2f}" for name in (RIGHTSIZER, KRR, VPA))
    lines = [
        f"**Peak-time CPU at 70-80% of the request: {'met' if met else 'not met'} by the median, not by "
        f"every container.** rightsizer's median is {rs.peak_median:.2f} ({others}); {_count(rs.in_band)} of "
        f"{rs.containers:.0f} containers are inside the band. Measured on single 60 s samples instead of "
        f"5-minute averages the medians are higher: {raw}. Outside the band:\n",
    ]
    rows = table[table["strategy"] == RIGHTSIZER]
    outside = rows[(rows["peak_to_request"] < low) | (rows["peak_to_request"] > high)]
    for _, row in outside.iterrows():
        lines.append(f"- `{row['container']}`: {row['peak_to_request']:.3f} ({_peak_reason(row)})")
    return "\n".join(lines) + "\n"


def _peak_reason(row: pd.Series) -> str:
    if row["note"]:
        return row["note"]
    if row["peak_from_busy_bucket"] >= 0.5:
        return (
            "sized for the busiest half hour of its typical day: its busiest hour runs at "
            f"{row['busy_to_request']:.2f} of the request (the busy-hour aim); the p95 of all its windows "
            "is idle time"
        )
    throttled = row["throttled_while_learning"]
    if throttled > 0.01 and row["peak_to_request"] > TARGET_BAND[1]:
        return (
            f"CPU demand was above the limit in force in {throttled:.1%} of learning samples: the learned "
            "peak time is of throttled usage, and the request is sized from it"
        )
    if throttled > 0.01:
        bump = RecommendationSettings().throttling_limit_bump
        used = row["cpu_peak_time_learned"] / bump
        demand = row["peak_to_request"] * row["cpu_request"]
        return (
            f"CPU demand was above the limit in force in {throttled:.1%} of learning samples: the throttled "
            f"pod's usage counted x{bump:g} (`throttling_limit_bump`): peak time "
            f"{row['cpu_peak_time_learned'] * 1000:.0f}m, while the peak-time demand was only "
            f"{demand * 1000:.0f}m, {demand / used:.2f}x the {used * 1000:.0f}m of throttled usage"
        )
    return "day-to-day variation"


def _what_if_conclusion(means: dict[str, StrategyScore]) -> str:
    krr = means[KRR]
    lines = ["**What-if runs** (rightsizer settings overrides, same learning period):\n"]
    for name in WHAT_IFS:
        s = means[name]
        memory = s.reserved_memory - krr.reserved_memory
        both = memory <= 0 and s.oom_kills < krr.oom_kills
        lines.append(
            f"- {name}: {s.reserved_memory / GIB:.2f} GiB ({memory / MIB:+.0f} Mi against KRR), "
            f"{_count(s.oom_kills)} OOM kills, working set above the request in {s.above_memory_request:.1%} "
            f"of samples: {'meets both memory aims' if both else 'does not meet both memory aims'}."
        )
    queried = means[KRR_AS_QUERIED]
    lines.append(
        f"- {KRR_AS_QUERIED}: {(queried.reserved_memory - krr.reserved_memory) / MIB:+.0f} Mi and "
        f"{_count(queried.oom_kills)} OOM kills against KRR on raw samples. The generated working sets have "
        "no short spikes, so skipping one sample in five costs KRR almost nothing here; on real spiky memory "
        "it reads lower peaks (a 400Mi peak read as 310Mi, as its users report).\n"
    )
    return "\n".join(lines)


def _cost_conclusion(means: dict[str, StrategyScore], table: pd.DataFrame) -> str:
    rs, krr, vpa, current = means[RIGHTSIZER], means[KRR], means[VPA], means[CURRENT]
    cpu = table.pivot(index="container", columns="strategy", values="cpu_request")
    pods = table.pivot(index="container", columns="strategy", values="replicas")[RIGHTSIZER]
    largest = ((cpu[RIGHTSIZER] - cpu[KRR]) * pods).nlargest(3)
    peak = table[table["strategy"] == RIGHTSIZER].set_index("container")["peak_to_request"]
    low, high = TARGET_BAND
    throttled = (
        "no sample would be throttled"
        if rs.above_limit == 0
        else f"{rs.above_limit:.1%} of samples would be throttled"
    )
    return (
        f"**The price.** Putting peak-time CPU at 75% of the request reserves {rs.reserved_cpu:.2f} cores "
        f"against KRR's {krr.reserved_cpu:.2f} ({rs.reserved_cpu / krr.reserved_cpu - 1:+.0%}) and the "
        f"current {current.reserved_cpu:.2f}; the largest differences: "
        + ", ".join(
            f"`{name}` {cores:+.2f}"
            + ("" if low <= peak[name] <= high else " (outside the peak-time band: see above)")
            for name, cores in largest.items()
        )
        + f". In return CPU demand is above the request in "
        f"{rs.above_request:.1%} of samples (KRR {krr.above_request:.1%}) and {throttled}. "
        f"The memory limit above the request means the working set runs above the request in "
        f"{rs.above_memory_request:.1%} of samples (KRR {krr.above_memory_request:.1%}: its limit is its "
        f"request; VPA-style {vpa.above_memory_request:.1%}). VPA-style has the fewest kills "
        f"({_count(vpa.oom_kills)}) but reserves {vpa.reserved_memory / GIB:.2f} GiB of memory "
        f"({(vpa.reserved_memory - krr.reserved_memory) / krr.reserved_memory:+.1%} against KRR). "
        f"{_spiky_sentence(table)}\n"
    )


def _spiky_sentence(table: pd.DataFrame) -> str:
    rows = table[table["container"] == "extra/spiky/app"].set_index("strategy")
    rs, krr = rows.loc[RIGHTSIZER], rows.loc[KRR]
    return (
        "Short frequent spikes are expensive: for `extra/spiky` rightsizer requests "
        f"{rs['cpu_request'] * 1000:.0f}m against KRR's {krr['cpu_request'] * 1000:.0f}m "
        f"({rs['cpu_slack']:.0%} slack), because 24 two-minute spikes a day touch about a tenth of the "
        "5-minute windows, so the p95 of 5-minute rates lands inside them; KRR's p95 of 60 s samples stays "
        "below them (its request is then exceeded in every spike, but it sets no limit)."
    )


def _engine_findings(means: dict[str, StrategyScore], table: pd.DataFrame) -> str:
    rows = table.set_index(["container", "strategy"])
    search, searched = rows.loc[("shop/search/app", RIGHTSIZER)], rows.loc[("shop/search/app", CURRENT)]
    spiky = rows.loc[("extra/spiky/app", RIGHTSIZER)]
    no_bump = next(name for name in WHAT_IFS if "OOM bump" in name)
    rs, bump, krr = means[RIGHTSIZER], means[no_bump], means[KRR]
    settings = RecommendationSettings()
    learned = table[table["strategy"] == RIGHTSIZER].set_index("container")
    killed = learned[learned["oom_kills_learned"] > 0].index
    limits = [
        f"`{name}` killed at {rows.loc[(name, RIGHTSIZER), 'oom_killed_at'] / MIB:.0f}Mi: "
        f"{rows.loc[(name, no_bump), 'memory_limit'] / MIB:.0f}Mi without the bump, "
        f"{rows.loc[(name, RIGHTSIZER), 'memory_limit'] / MIB:.0f}Mi with it, "
        f"{_count(rows.loc[(name, no_bump), 'oom_kills'])} and "
        f"{_count(rows.loc[(name, RIGHTSIZER), 'oom_kills'])} kills"
        for name in killed
    ]
    oom_bump = (
        "- *Memory: the OOM bump* (`engine._memory_request`). After an OOM kill the **request** is raised to "
        "max(killed x 1.2, killed + 100Mi). Without it the request is the level (the p99 of half-hourly "
        "means, just below the memory that was killed, and the swing) x 1.10, and the limit 1.5x that, "
        "above the "
        f"killed amount; the bump raises both ({'; '.join(limits)}). Without it (what-if) rightsizer "
        f"reserves {(rs.reserved_memory - bump.reserved_memory) / MIB:.0f} Mi less, and the containers "
        f"OOM-killed while learning get {_count(bump.oom_kills - rs.oom_kills)} more kills "
        f"({_count(bump.oom_kills)} in all, against KRR's {_count(krr.oom_kills)}). Kept, as VPA does it: "
        "a kill is certain evidence, and the aims are met with it. The default `memory_headroom` is 0.10 "
        "rather than KRR's 0.15 because the limit, not the request, is what kills (the price: the working "
        "set runs above the request more often, see the table)."
    )
    demand = search["peak_to_request"] * search["cpu_request"]
    throttled = (
        "- *CPU of throttled containers* (`engine._cpu_request`, `engine._cpu_limit`). Throttled usage "
        "hides the demand, so the windows of pods throttled in more than "
        f"{settings.throttling_threshold:.0%} of their CFS periods (`throttling_threshold`) count "
        f"{settings.throttling_limit_bump:g}x (`throttling_limit_bump`) for the request as for the limit. "
        "The demand itself is not in the data, so the factor is a guess, wrong both ways here. "
        f"`shop/search` learned under a {searched['cpu_limit'] * 1000:.0f}m limit: request "
        f"{search['cpu_request'] * 1000:.0f}m, demand above it in {search['above_request']:.0%} of scoring "
        f"samples, peak-time at {search['peak_to_request']:.2f}x the request: still short, because its "
        f"peak-time demand was {demand * 1000:.0f}m, {demand / searched['cpu_limit']:.1f}x the limit it was "
        "capped at. `extra/hot-replica`'s hot pod is the opposite (its demand was little above its limit): "
        "its request is too high. `extra/spiky`, whose demand was above its limit in "
        f"{spiky['throttled_while_learning']:.1%} of learning samples, is under the threshold and sized "
        f"from its capped usage as measured: peak-time at {spiky['peak_to_request']:.2f}x. In each case the "
        "next evaluation, under the raised limit, sees the real demand and corrects the request."
    )
    return f"**What is still off, and why.**\n\n{oom_bump}\n{throttled}\n"


def _appendix(table: pd.DataFrame) -> str:
    header = (
        "### Appendix: per workload container\n\nMean of the seeds. CPU in millicores, memory in Mi, `-` = "
        "not set. *WS > mem req*: working set above the memory request.\n\n"
        f"| container | strategy | {' | '.join(APPENDIX_COLUMNS)} |\n"
        f"|---|---|{'---|' * len(APPENDIX_COLUMNS)}\n"
    )
    strategies = [*STRATEGIES]
    rows = table[table["strategy"].isin(strategies)].copy()
    rows["order"] = rows["strategy"].map(strategies.index)
    lines = [_appendix_row(row) for _, row in rows.sort_values(["container", "order"]).iterrows()]
    return header + "\n".join(lines) + "\n"


def _appendix_row(row: pd.Series) -> str:
    cells = [
        _milli(row["cpu_request"]),
        _milli(row["cpu_limit"]),
        _mib(row["memory_request"]),
        _mib(row["memory_limit"]),
        f"{row['cpu_slack']:.0%}",
        f"{row['above_request']:.1%}",
        f"{row['above_limit']:.1%}",
        f"{row['above_memory_request']:.1%}",
        _count(row["oom_kills"]),
        f"{row['peak_to_request']:.2f}",
    ]
    strategy = row["strategy"] + (" (kept)" if row["note"] else "")
    return f"| `{row['container']}` | {strategy} | {' | '.join(cells)} |"


def _rerun(config: BenchConfig, seconds: float, environment: str) -> str:
    seeds = " ".join(str(s) for s in config.seeds)
    return f"""### How to rerun

```
python bench/quality_bench.py --seeds {seeds} \\
    --learn-days {config.learn_days} --score-days {config.score_days}
```

Needs `prometheus` and `promtool` on PATH (or `RIGHTSIZER_PROMETHEUS_BIN` / `RIGHTSIZER_PROMTOOL_BIN`).
The report goes to stdout and into this section of `docs/benchmarks.md` (`--no-doc` to skip). This run:
{environment}, {seconds:.0f} s wall time. The scoring functions are tested in
`tests/test_quality_bench.py` without running the benchmark.
"""


def _name(key: ContainerKey) -> str:
    return f"{key.namespace}/{key.name}/{key.container}"


def _count(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _milli(cores: float) -> str:
    return "-" if math.isnan(cores) else f"{cores * 1000:.0f}"


def _mib(amount: float) -> str:
    return "-" if math.isnan(amount) else f"{amount / MIB:.0f}"

"""The benchmark's table, its comparison with issue 16's baselines, and the two trade-off plots."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .learn import SCRAPE_SECONDS, Run
from .scoring import Score
from .trace import DAY, SAMPLE_SECONDS, Split

ISSUE_BASELINES: dict[str, tuple[float, float, float | None, float, float, float, int]] = {
    "KRR simple": (52.8, 0.053, None, 674.6, 674.6, 0.0020, 56),
    "VPA-like": (49.3, 0.038, None, 458.8, 458.8, 0.0048, 109),
    "seed rule": (70.4, 0.021, 0.008, 586.6, 1173.3, 0.0033, 14),
    "oracle": (55.1, 0.036, None, 535.9, 535.9, 0.0, 0),
}
"""Issue 16's table, measured on the same month (train 14 d, score 14 d): the baselines must match it."""
HEADER = (
    "| strategy | CPU cores | CPU > req | CPU > limit | mem req GiB | mem limits GiB | mem > req "
    "| would-OOM |\n"
    "|---|---|---|---|---|---|---|---|\n"
)


def table(scores: Mapping[str, Score]) -> str:
    """One row per strategy, the issue's columns."""
    return HEADER + "\n".join(_row(name, s) for name, s in scores.items()) + "\n"


def _row(name: str, s: Score) -> str:
    limit = "-" if s.cpu_above_limit is None else f"{s.cpu_above_limit:.1%}"
    return (
        f"| {name} | {s.cpu_cores:.1f} | {s.cpu_above_request:.1%} | {limit} | {s.memory_request_gib:.1f} | "
        f"{s.memory_limit_gib:.1f} | {s.memory_above_request:.2%} | {s.would_oom} |"
    )


def issue_comparison(scores: Mapping[str, Score]) -> str:
    """Each baseline beside the issue's figure for it: ``this run (issue)`` where they differ."""
    rows = []
    for name, issue in ISSUE_BASELINES.items():
        if name not in scores:
            continue
        s = scores[name]
        ours = (
            s.cpu_cores,
            s.cpu_above_request,
            s.cpu_above_limit,
            s.memory_request_gib,
            s.memory_limit_gib,
            s.memory_above_request,
            s.would_oom,
        )
        formats = ("{:.1f}", "{:.1%}", "{:.1%}", "{:.1f}", "{:.1f}", "{:.2%}", "{}")
        cells = [_compared(fmt, a, b) for fmt, a, b in zip(formats, ours, issue, strict=True)]
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return HEADER + "\n".join(rows) + "\n"


def _compared(fmt: str, ours: float | None, issue: float | None) -> str:
    if ours is None or issue is None:
        return "-" if ours is None and issue is None else f"{_show(fmt, ours)} ({_show(fmt, issue)})"
    mine, theirs = fmt.format(ours), fmt.format(issue)
    return mine if mine == theirs else f"{mine} ({theirs})"


def _show(fmt: str, value: float | None) -> str:
    return "-" if value is None else fmt.format(value)


@dataclass(frozen=True)
class Earlier:
    """rightsizer's rows of an earlier run (``--earlier``): drawn beside this run's, hollow."""

    label: str
    measured: str
    scores: dict[str, Score]

    @classmethod
    def read(cls, path: Path) -> Earlier:
        document = json.loads(path.read_text())
        scores = {name: Score(**values) for name, values in document["scores"].items()}
        return cls(document["label"], document.get("measured", ""), scores)

    def named(self) -> dict[str, Score]:
        return {f"{name}, {self.label}": s for name, s in self.scores.items()}


def plot(
    scores: Mapping[str, Score],
    curve: Sequence[str],
    cpu_png: Path,
    memory_png: Path,
    earlier: Earlier | None = None,
) -> None:
    """Cores vs CPU samples above request, and memory requested vs would-OOM containers: a point per
    strategy; ``curve``: rightsizer's runs, defaults first, joined by a line (its CPU trade-off; the
    memory plot has the defaults only, the other runs change CPU alone); ``earlier``'s runs hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        (cpu_png, "cpu", "CPU requested (cores)", "5-minute samples above the CPU request (%)"),
        (
            memory_png,
            "memory",
            "memory requested (GiB)",
            "would-OOM containers (a sample above the memory limit)",
        ),
    )
    for path, kind, xlabel, ylabel in panels:
        runs = list(curve) if kind == "cpu" else list(curve[:1])
        points = {name: s for name, s in scores.items() if name in runs or name not in curve}
        hollow = (
            {} if earlier is None else {k: v for k, v in earlier.named().items() if k.split(", ")[0] in runs}
        )
        figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=110)
        for line, style in (([points[n] for n in runs if n in points], "-"), (list(hollow.values()), "--")):
            if len(line) > 1:
                ordered = sorted(line, key=lambda s: _xy(kind, s)[0])
                xs, ys = zip(*(_xy(kind, s) for s in ordered), strict=True)
                axes.plot(xs, ys, style, color="tab:blue", alpha=0.4)
        others = iter(
            zip("sDvPX", ("tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"), strict=True)
        )
        for name, s in [*points.items(), *hollow.items()]:
            x, y = _xy(kind, s)
            if name in runs or name in hollow:
                marker, color = "o^sD"[runs.index(name.split(", ")[0]) % 4], "tab:blue"
            else:
                marker, color = next(others)
            face = "none" if name in hollow else color
            axes.scatter(x, y, marker=marker, s=45, zorder=3, label=name, edgecolors=color, facecolors=face)
        axes.legend(fontsize=7.5, loc="upper right", framealpha=0.9)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        top = max(_xy(kind, s)[1] for s in [*points.values(), *hollow.values()])
        axes.set_ylim(bottom=-0.03 * top)
        axes.margins(x=0.15)
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)


def _xy(kind: str, s: Score) -> tuple[float, float]:
    if kind == "cpu":
        return s.cpu_cores, s.cpu_above_request * 100
    return s.memory_request_gib, float(s.would_oom)


def render(
    scores: Mapping[str, Score],
    kept: Mapping[str, list[str]],
    runs: Sequence[Run],
    days: Split,
    trace_name: str,
    environment: str,
    seconds: float,
    *,
    whole: bool,
    earlier: Earlier | None = None,
) -> str:
    """The benchmark's section of docs/benchmarks.md."""
    learn_days, score_days = days.learn_seconds / DAY, _score_days(days)
    vms = days.learning["vm"].nunique()
    parts = [
        "## Real trace\n",
        f"`{trace_name}`: {vms} VMs, each one container; learn {learn_days:g} days, score the next "
        f"{score_days:g} ({len(days.scoring):,} 5-minute samples). rightsizer learns through a real "
        f"Prometheus and the installed `rightsizer recommend -o json`; the other strategies are computed "
        "from the trace. Method: below the table.\n",
        table({**scores, **(earlier.named() if earlier else {})}),
        _earlier(earlier),
        _kept(kept),
        "![CPU requested against samples above the request](real-trace-cpu.png)\n",
        "![memory requested against would-OOM containers](real-trace-memory.png)\n",
    ]
    if whole:
        parts += [
            "The baselines against issue 16's table (`this run (issue)` where they differ):\n",
            issue_comparison(scores),
        ]
    parts += [_method(runs), _rerun(environment, seconds, runs)]
    return "\n".join(parts)


def _earlier(earlier: Earlier | None) -> str:
    if earlier is None:
        return ""
    return (
        f"Rows *{earlier.label}*: an earlier run of this benchmark ({earlier.measured}; hollow in the "
        "plots).\n"
    )


def _score_days(days: Split) -> float:
    return round(float(days.scoring["ts"].max() - days.boundary) / DAY)


def _kept(kept: Mapping[str, list[str]]) -> str:
    lines = [
        f"- {name}: {len(reasons)} VM(s) without a recommendation kept what they were provisioned "
        f"({'; '.join(reasons[:3])}{'...' if len(reasons) > 3 else ''})."
        for name, reasons in kept.items()
        if reasons
    ]
    return (
        ("\n".join(lines) + "\n") if lines else "Every VM got a recommendation from every rightsizer run.\n"
    )


def _method(runs: Sequence[Run]) -> str:
    return f"""### Method

- **The trace's samples as scrapes.** A sample is what the VM used over the time before it: since the
  previous sample, at most {SAMPLE_SECONDS // 60} minutes (a sample after a gap does not stand for the gap).
  A scrape every {SCRAPE_SECONDS} s inside that time reads the sample's memory (held: what happened inside
  5 minutes is not in the trace), and the CPU counter grows at the sample's rate, so the rate over any
  window is the time-weighted mean of the samples it covers. Where no sample stands (the trace's gaps)
  nothing is scraped and the counter does not grow. Scrapes are written as cAdvisor's CPU counter and
  working set of the container (not of the pod cgroup and the pause container, which rightsizer's selectors
  leave out) and kube-state-metrics' owner, requests and restarts, and backfilled with promtool
  (`rightsizer_demo.history.write_recorded_openmetrics`).
- **Each VM is a container**: a Deployment `vm-<n>` of one pod in namespace `bitbrains`, requesting what
  the VM was provisioned, with no limits (the trace says nothing of throttling; cAdvisor exports CFS
  counters only under a CPU limit). A VM without a recommendation keeps what it was provisioned (listed
  above the plots).
- **When**: `rightsizer recommend` evaluates at "now", so the trace's clock is moved forward by whole
  minutes (every run scrapes the samples at the same places) to end the learning days just after the
  backfill is ready; the runs start together at that moment, with the default `--history 14d`.
  This run started {max(r.late_seconds for r in runs):.0f} s after it.
- **Scoring**: each scoring sample against its VM's allocation: CPU used above the request and the limit,
  working set above the memory request; a VM with any sample above its memory limit would be OOM-killed
  (counted once). Shares over all samples of all VMs.
- **Baselines** (`bench/real_trace/baselines.py`): KRR simple: CPU p95 of the samples, no limit; memory
  the peak x 1.15, request and limit (KRR's 10m / 100Mi floors left out, as in the issue). VPA-like: p90 of a
  decaying histogram (half-life 24 h, 5% buckets) x 1.15; memory the p90 of the days' peaks x 1.15, limit
  at the request (VPA's per-pod floors left out). Seed rule: CPU p95 / 0.75, limit 3x; memory the peak,
  limit 2x. Oracle: the scoring days' CPU p95 and memory peak, no headroom.
"""


def _rerun(environment: str, seconds: float, runs: Sequence[Run]) -> str:
    arguments = "; ".join(" ".join(r.arguments) or "(defaults)" for r in runs)
    return f"""### How to rerun

```
.venv/bin/python bench/real_trace_bench.py
```

Needs the trace in `../shared/data/` beside the checkout (or `--trace PATH`, `$RIGHTSIZER_REAL_TRACE`),
`prometheus` and `promtool` on PATH, and about 7 GB of temporary disk for the whole trace (`--workdir`).
The report goes to stdout and into this section (`--no-doc` to skip), the plots to `docs/real-trace-*.png`.
rightsizer's runs: {arguments}. This run: {environment}, {seconds:.0f} s wall time.
`tests/test_real_trace_bench.py` runs the harness on a small made-up trace in CI.
"""

"""The benchmark's table, its comparison with issue 16's baselines, and the two trade-off plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def plot(scores: Mapping[str, Score], curve: list[str], cpu_png: Path, memory_png: Path) -> None:
    """Cores vs CPU samples above request, and memory requested vs would-OOM containers: a point per
    strategy; ``curve``: the names of rightsizer's runs, joined by a line (its trade-off)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for path, x, y, xlabel, ylabel in (
        (
            cpu_png,
            lambda s: s.cpu_cores,
            lambda s: s.cpu_above_request * 100,
            "CPU requested (cores)",
            "5-minute samples above the CPU request (%)",
        ),
        (
            memory_png,
            lambda s: s.memory_request_gib,
            lambda s: float(s.would_oom),
            "memory requested (GiB)",
            "would-OOM containers (a sample above the memory limit)",
        ),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
        line = [scores[name] for name in curve if name in scores]
        if len(line) > 1:
            ordered = sorted(line, key=x)
            axes.plot([x(s) for s in ordered], [y(s) for s in ordered], color="tab:blue", alpha=0.4)
        for name, s in scores.items():
            ours = name in curve
            axes.scatter(x(s), y(s), color="tab:blue" if ours else "tab:gray", zorder=3)
            axes.annotate(name, (x(s), y(s)), textcoords="offset points", xytext=(5, 4), fontsize=8)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        axes.set_ylim(bottom=0)
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)


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
        table(scores),
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
  working set (the container, the pod cgroup and the pause container) and kube-state-metrics' owner,
  requests and restarts, and backfilled with promtool (`rightsizer_demo.history.write_recorded_openmetrics`).
- **Each VM is a container**: a Deployment `vm-<n>` of one pod in namespace `bitbrains`, requesting what
  the VM was provisioned, with no limits (the trace says nothing of throttling; cAdvisor exports CFS
  counters only under a CPU limit). A VM without a recommendation keeps what it was provisioned (listed
  above the plots).
- **When**: `rightsizer recommend` evaluates at "now", so the trace's clock is moved forward by a multiple
  of 5 minutes (the samples keep their place in rightsizer's 5-minute windows) to end the learning days just
  after the backfill is ready; the runs start together at that moment, with the default `--history 14d`.
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
`prometheus` and `promtool` on PATH, and about 10 GB of temporary disk for the whole trace (`--workdir`).
The report goes to stdout and into this section (`--no-doc` to skip), the plots to `docs/real-trace-*.png`.
rightsizer's runs: {arguments}. This run: {environment}, {seconds:.0f} s wall time.
`tests/test_real_trace_bench.py` runs the harness on a small made-up trace in CI.
"""


def write_section(doc: Path, begin: str, end: str, text: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``doc`` (appended at the end if missing)."""
    current = doc.read_text()
    section = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + section + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + section + "\n"
    doc.write_text(current)

"""Real-trace benchmark: rightsizer and its baselines on a month of real VM usage (issue 16).

Learn from the first 14 days of the Bitbrains trace (310 VMs, 5-minute CPU and memory samples), written as
cAdvisor and kube-state-metrics series at a 60 s scrape into a real Prometheus; run the installed
``rightsizer recommend -o json`` on it (defaults, and ``--target-utilization 0.95`` for the CPU
trade-off); compute KRR ``simple``, a VPA-like recommender, the seed rule and an oracle from the trace
itself; score all of them on the next 14 days. See ``bench/real_trace/`` and the "Real trace" section of
docs/benchmarks.md.

Usage: ``python bench/real_trace_bench.py [--trace PATH] [--vms N] [--no-doc]``. The trace is read from
``../shared/data/`` beside the checkout (or ``--trace``, ``$RIGHTSIZER_REAL_TRACE``), never copied into the
repository. The report goes to stdout and, with the plots, to docs/. A measurement, not a test: it takes
about 10 minutes (more on a busy machine) and 7 GB of temporary disk for the whole trace.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench.* and rightsizer_demo live beside the package, not in it

from bench.doc_sections import write_section  # noqa: E402
from bench.real_trace import baselines, learn, report  # noqa: E402
from bench.real_trace.scoring import Score, score  # noqa: E402
from bench.real_trace.trace import TRACE_NAME, TraceMissing, find_trace, read_trace, split  # noqa: E402

from rightsizer_demo.prometheus import PROMETHEUS_BIN_ENV, find_binary  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
CPU_PNG = REPO / "docs" / "real-trace-cpu.png"
MEMORY_PNG = REPO / "docs" / "real-trace-memory.png"
EARLIER = REPO / "docs" / "real-trace-before.json"
"""rightsizer's scores before issue 16's engine changes, from this benchmark (``--json``, its scores)."""
BEGIN, END = "<!-- real-trace:begin -->", "<!-- real-trace:end -->"
DEFAULTS = "rightsizer (defaults)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", type=Path, help="the trace (default: in ../shared/data/)")
    parser.add_argument("--learn-days", type=float, default=14.0)
    parser.add_argument("--score-days", type=float, default=14.0)
    parser.add_argument("--vms", type=int, help="only the first N VMs (a quick run)")
    parser.add_argument(
        "--target-utilization",
        type=float,
        nargs="*",
        default=[0.95],
        help="more rightsizer runs at these --target-utilization values (default 0.95)",
    )
    parser.add_argument(
        "--lead",
        type=float,
        help="seconds from now to the learning days' end (default: the expected preparation time)",
    )
    parser.add_argument("--workdir", type=Path, help="for the backfill (default: a temporary directory)")
    parser.add_argument("--no-doc", action="store_true", help="write no docs, no plots")
    parser.add_argument("--json", type=Path, help="also write every score and rightsizer's answers here")
    parser.add_argument(
        "--earlier",
        type=Path,
        default=EARLIER,
        help=f"rightsizer's rows of an earlier run of the whole trace (default {EARLIER.relative_to(REPO)})",
    )
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[real-trace] {message}", file=sys.stderr, flush=True)


def variants(utilizations: list[float]) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = {DEFAULTS: []}
    for value in utilizations:
        runs[f"rightsizer --target-utilization {value:g}"] = ["--target-utilization", f"{value:g}"]
    return runs


def environment() -> str:
    prometheus = find_binary("prometheus", PROMETHEUS_BIN_ENV)
    version = subprocess.run([prometheus, "--version"], capture_output=True, text=True, check=False)
    first_line = (version.stdout or version.stderr).splitlines()[0].split(" (")[0]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{first_line}, {len(os.sched_getaffinity(0))} CPUs, load average {load} at the end"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        path = find_trace(args.trace, REPO)
    except TraceMissing as error:
        print(f"real_trace_bench: error: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    log(f"reading {path}")
    days = split(read_trace(path, args.vms), args.learn_days, args.score_days)
    vms = days.learning["vm"].nunique()
    log(f"{vms} VMs: {len(days.learning):,} learning samples, {len(days.scoring):,} scoring samples")
    shift = learn.plan_shift(days.boundary, learn.expected_samples(days.learning), args.lead, time.time())
    log(f"the learning days end at {time.strftime('%H:%M:%S', time.localtime(shift.learning_end))}")
    with tempfile.TemporaryDirectory(prefix="real-trace-", dir=args.workdir) as workdir:
        server = learn.backfill(days, shift, Path(workdir), log)
        try:
            log(f"Prometheus ready at {server.url}; waiting for the learning days' end, then rightsizer")
            runs = learn.run_recommend(server.url, variants(args.target_utilization), shift.learning_end)
        finally:
            server.stop()
    scores: dict[str, Score] = {}
    kept: dict[str, list[str]] = {}
    for run in runs:
        allocation, kept[run.name] = learn.allocations(run, days)
        scores[run.name] = score(days.scoring, allocation)
    scores["KRR simple"] = score(days.scoring, baselines.krr_simple(days.learning))
    scores["VPA-like"] = score(days.scoring, baselines.vpa_like(days.learning))
    scores["seed rule"] = score(days.scoring, baselines.seed_rule(days.learning))
    scores["oracle"] = score(days.scoring, baselines.oracle(days.scoring))
    whole = args.vms is None and (args.learn_days, args.score_days) == (14, 14) and path.name == TRACE_NAME
    earlier = report.Earlier.read(args.earlier) if whole and args.earlier and args.earlier.is_file() else None
    text = report.render(
        scores,
        kept,
        runs,
        days,
        path.name,
        environment(),
        time.monotonic() - started,
        whole=whole,
        earlier=earlier,
    )
    print(text)
    if args.json:
        answers = {run.name: run.recommendations for run in runs}
        document = {"scores": {name: asdict(s) for name, s in scores.items()}, "rightsizer": answers}
        args.json.write_text(json.dumps(document, indent=1) + "\n")
    if not args.no_doc:
        write_section(DOC, BEGIN, END, text)
        report.plot(scores, [run.name for run in runs], CPU_PNG, MEMORY_PNG, earlier)
        log(
            f"written to {DOC.relative_to(REPO)}, {CPU_PNG.relative_to(REPO)}, {MEMORY_PNG.relative_to(REPO)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

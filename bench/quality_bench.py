"""Quality benchmark: learn from N days of generated history, score the M days that follow.

rightsizer (default settings) learns through a real Prometheus (promtool-loaded history, ``scan`` at the end
of day N); the current allocation, KRR ``simple`` and a VPA-style recommender are computed from the same
learning period's ground truth. Each allocation is then scored against the scoring period's ground truth:
reserved CPU and memory, CPU slack, demand above request and limit, OOM kills, peak-time CPU / request.
See ``bench/quality/`` and the "Quality" section of docs/benchmarks.md.

Usage: ``python bench/quality_bench.py [--seeds 0 1 2] [--learn-days 7] [--score-days 7] [--no-doc]``.
The markdown report goes to stdout and to the "Quality" section of docs/benchmarks.md.
A measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # rightsizer_demo lives beside the package, not in it

from bench.doc_sections import write_section  # noqa: E402

from quality.report import render  # noqa: E402
from quality.run import BenchConfig, run_seed  # noqa: E402
from rightsizer_demo.prometheus import PROMETHEUS_BIN_ENV, find_binary  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learn-days", type=int, default=7, help="N: days of history to learn from")
    parser.add_argument("--score-days", type=int, default=7, help="M: days scored after the learning period")
    parser.add_argument("--step", type=int, default=60, help="sample interval, seconds")
    parser.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.relative_to(REPO)}")
    return parser.parse_args(argv)


def environment() -> str:
    """Prometheus version, Python version and CPU count, for the report."""
    prometheus = find_binary("prometheus", PROMETHEUS_BIN_ENV)
    version = subprocess.run([prometheus, "--version"], capture_output=True, text=True, check=False)
    first_line = (version.stdout or version.stderr).splitlines()[0].split(" (")[0]
    cpus = len(os.sched_getaffinity(0))
    return f"{first_line}, Python {platform.python_version()}, {cpus} CPUs"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = BenchConfig(args.learn_days, args.score_days, args.step, tuple(args.seeds))
    started = time.monotonic()
    runs = []
    for seed in config.seeds:
        print(f"seed {seed}: learning and scoring ...", file=sys.stderr, flush=True)
        runs.append(run_seed(config, seed))
    report = render(runs, config, time.monotonic() - started, environment())
    print(report)
    if not args.no_doc:
        write_section(DOC, BEGIN, END, report)
        print(f"written to {DOC.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

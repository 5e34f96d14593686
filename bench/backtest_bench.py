"""Benchmark of ``rightsizer backtest``: its speed at scale, and what its replay step costs in fidelity.

**Speed.** The scale benchmark's Go generator (``bench/scale``, shared with ``scale_bench.py``) writes
``--days`` of 60 s history for a synthetic cluster into one TSDB block; Prometheus serves it, and
``rightsizer backtest -o json`` over every namespace runs as a child process: its wall time, peak RSS
(``wait4``), and its own split between the fetch and the replay (its closing line). Two shapes of
1,000 containers: the scale benchmark's (5 pods of 2 containers per Deployment: 200 workload
containers, the engine's histories 5 pods deep) and one pod per Deployment (1,000 workload
containers: 5 times the evaluations).

**Fidelity of the replay step.** On the demo history (``rightsizer_demo``, ``--fidelity-days``), the
replay at each ``--steps`` against the finest the engine can see (one evaluation per history bucket,
30 min): changes, would-be OOM kills, CPU windows above the limit and the request, requested
core-hours and GiB-hours, and the replay's time.

Usage: ``python bench/backtest_bench.py [--containers 1000] [--days 28] [--fidelity-days 14]``.
Prints markdown for docs/benchmarks.md (with the machine's load); asserts no time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import scale_bench  # noqa: E402
from rightsizer_demo.prometheus import PrometheusServer  # noqa: E402

DAY = 86400
CLOSING = re.compile(
    r"(?P<containers>\d+) containers replayed in (?P<namespaces>\d+) namespaces: (?P<queries>\d+) "
    r"Prometheus queries \((?P<fetch>[\d.]+)s\), replay (?P<replay>[\d.]+)s of CPU"
)


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def generate(binary: Path, containers: int, pods: int, days: int, namespaces: int) -> Path:
    """A fresh TSDB ending now (the backtest replays up to now)."""
    base = scale_bench.cache_dir() / f"backtest-{containers}c-{pods}p-{days}d"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    run = scale_bench.run_measured(
        [
            str(binary),
            f"-out={base / 'tsdb'}",
            f"-containers={containers}",
            f"-namespaces={namespaces}",
            f"-pods-per-deployment={pods}",
            f"-history={days * DAY + 1800}s",
            "-step=60s",
        ]
    )
    if run.returncode != 0:
        raise SystemExit(f"generator failed: {run.stderr}")
    print(
        f"generated {containers} containers ({pods} pods a Deployment) x {days} d in {run.seconds:.1f}s",
        file=sys.stderr,
    )
    return base / "tsdb"


def speed(binary: Path, containers: int, pods: int, days: int, namespaces: int) -> dict[str, object]:
    tsdb = generate(binary, containers, pods, days, namespaces)
    server = PrometheusServer(tsdb).start()
    try:
        scale_bench.range_query(server.url, "vector(1)", time.time() - 60, time.time(), 60)  # warm
        names = [f"team-{i:02d}" for i in range(namespaces)]
        command = [
            str(Path(sys.executable).parent / "rightsizer"),
            "backtest",
            "--prometheus-url",
            server.url,
            *[arg for name in names for arg in ("-n", name)],
            "--days",
            str(days),
            "-o",
            "json",
        ]
        before = load()
        run = scale_bench.run_measured(command)
        if run.returncode != 0:
            raise SystemExit(f"backtest failed: {run.stderr[-2000:]}")
        closing = CLOSING.search(run.stderr)
        assert closing, run.stderr
        document = json.loads(run.stdout)
        return {
            "shape": f"{containers} containers, {pods} pod(s) per Deployment",
            "workloadContainers": int(closing["containers"]),
            "wall": run.seconds,
            "cpu": run.cpu_seconds,
            "rss": run.max_rss_mib,
            "fetch": float(closing["fetch"]),
            "replay": float(closing["replay"]),
            "queries": int(closing["queries"]),
            "changes": document["summary"]["changes"],
            "load": f"{before} before, {load()} after",
        }
    finally:
        server.stop()


def fidelity(days: int, steps: list[str]) -> list[dict[str, object]]:
    """The demo's namespaces replayed at every step, from one fetch."""
    from rightsizer.backtest.report import figures
    from rightsizer.backtest.run import BacktestRequest, load_policy, run_backtest
    from rightsizer.cost import Prices
    from rightsizer.duration import parse_duration
    from rightsizer.source import PrometheusSource
    from tests.support.prometheus import start_demo_prometheus

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        server = start_demo_prometheus(Path(scratch), days, 60)
        try:
            end = time.time()
            for step in ["30m", *steps]:
                request = BacktestRequest(
                    ("shop", "batch", "data", "legacy"), days, load_policy(None), parse_duration(step)
                )
                result = run_backtest(PrometheusSource(server.url), request, Prices(), end=end)
                containers = [c for n in result.namespaces for w in n.workloads for c in w.containers]
                found = figures(result, containers)
                replayed = found.replayed
                rows.append(
                    {
                        "step": step,
                        "evaluations": sum(w.evaluations for n in result.namespaces for w in n.workloads),
                        "changes": found.changes,
                        "rollbacks": found.rollbacks,
                        "kills": replayed.oom_kills,
                        "overLimit": replayed.share(replayed.cpu_over_limit),
                        "overRequest": replayed.share(replayed.cpu_over_request),
                        "coreHours": replayed.core_hours,
                        "gibHours": replayed.gib_hours,
                        "saved": found.saved,
                        "replay": result.replay_seconds,
                    }
                )
                print(f"step {step}: {rows[-1]}", file=sys.stderr)
        finally:
            server.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--pods", type=int, nargs="+", default=[5, 1], help="pods per Deployment, per run")
    parser.add_argument("--fidelity-days", type=int, default=14)
    parser.add_argument("--steps", nargs="+", default=["1h", "6h", "12h", "1d"])
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-fidelity", action="store_true")
    args = parser.parse_args()
    print(f"machine: {scale_bench.machine()}")
    if not args.no_speed:
        binary = scale_bench.build_generator(scale_bench.cache_dir())
        print(
            "\n| shape | workload containers | wall | fetch | replay (CPU) | CPU, all processes | peak RSS "
            "| queries | load |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for pods in args.pods:
            r = speed(binary, args.containers, pods, args.days, args.namespaces)
            print(
                f"| {r['shape']} x {args.days} d | {r['workloadContainers']} | **{r['wall']:.1f} s** | "
                f"{r['fetch']:.1f} s | {r['replay']:.1f} s | {r['cpu']:.1f} s | {r['rss']:.0f} MiB | "
                f"{r['queries']} | {r['load']} |",
                flush=True,
            )
    if not args.no_fidelity:
        rows = fidelity(args.fidelity_days, args.steps)
        print(f"\nThe demo, {args.fidelity_days} days, against a replay every bucket (30m); {load()}:\n")
        print(
            "| step | evaluations | changes (rolled back) | would-be OOM kills | CPU windows > limit "
            "| > request | core-hours | GiB-hours | saved | replay |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['step']} | {r['evaluations']} | {r['changes']} ({r['rollbacks']}) | {r['kills']} | "
                f"{r['overLimit']:.2%} | {r['overRequest']:.2%} | {r['coreHours']:.0f} | "
                f"{r['gibHours']:.0f} | {r['saved']:.2f} | {r['replay']:.1f} s |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Profile one policy's evaluation on a shared batch, as the operator benchmark runs it.

The operator benchmark's dataset (``bench/scale``: 1,000 containers over 100 namespaces, 14 days of
60 s samples) in a real Prometheus; one namespace's Deployment (5 pods x 2 containers) and a policy
targeting it, evaluated through ``SharedBatches``: the first evaluation fetches and collects the
batch, the next ``--evaluations`` share it. Prints the seconds of the first and the mean of the
others, the collected batch's size, a cProfile of the shared ones (``--top`` lines) and the memory
one allocates (tracemalloc). A measurement, not a test; results in docs/benchmarks.md (Operator).

Usage: ``python bench/evaluation_profile.py [--evaluations 20] [--top 30]``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import operator_bench  # noqa: E402
import scale_bench  # noqa: E402
from rightsizer.controller.batches import SharedBatches  # noqa: E402
from rightsizer.controller.evaluate import evaluate  # noqa: E402
from rightsizer.controller.kube import KubernetesCluster  # noqa: E402
from rightsizer.controller.outcome import Outcome, PolicyObject  # noqa: E402
from rightsizer.promql import LabelConfig  # noqa: E402
from rightsizer.source import PrometheusSource  # noqa: E402
from rightsizer.workload import WorkloadView  # noqa: E402
from rightsizer_demo.prometheus import PrometheusServer  # noqa: E402

NAMESPACE, TARGET = "team-00", "svc-00000"
"""The benchmark's first namespace and its Deployment."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=20)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    cache = scale_bench.cache_dir()
    data = scale_bench.dataset(
        scale_bench.build_generator(cache), cache, 1000, 100, scale_bench.HISTORY, 1800, 300
    )
    prometheus = PrometheusServer(data.tsdb).start()
    try:
        body = operator_bench.deployment(NAMESPACE, TARGET)
        body["metadata"].update(uid="uid-svc", generation=1)
        workloads = [WorkloadView.from_body(body)]
        batches = SharedBatches(PrometheusSource(prometheus.url))
        spec = {"targetRef": {"name": TARGET}, "interval": "1m", "profile": "background"}
        now = datetime.now(UTC)

        def one(index: int) -> Outcome:
            policy = PolicyObject(f"p{index}", NAMESPACE, f"uid-{index}", 1, spec, {})
            return evaluate(
                policy, workloads, [], batches.source, KubernetesCluster(), LabelConfig(), now, batches
            )

        started = time.perf_counter()
        outcome = one(0)
        print(
            f"first evaluation (fetch and collect): {time.perf_counter() - started:.3f} s, "
            f"ready {outcome.status['readyContainers']}"
        )
        started = time.perf_counter()
        for index in range(args.evaluations):
            one(index)
        shared = (time.perf_counter() - started) / args.evaluations
        print(f"evaluation on the shared batch: {shared:.3f} s (mean of {args.evaluations})")
        print(f"collected batches {len(batches)}, fetched {batches.fetches}, shared {batches.shared}")
        profile = cProfile.Profile()
        profile.enable()
        for index in range(args.evaluations):
            one(index)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
        tracemalloc.start()
        one(-1)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"one shared evaluation allocates {peak / 1024:.0f} KiB at its peak, "
            f"keeps {current / 1024:.0f} KiB"
        )
    finally:
        prometheus.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

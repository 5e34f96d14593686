"""rightsizer's side of the benchmark: learning through a real Prometheus, as in a cluster.

The history of the learning period is written as OpenMetrics, turned into TSDB blocks by promtool and
served by ``prometheus``; ``scan`` then evaluates every query at the end of learning with a history window
of exactly the learning period. Several settings can be scanned against the same server (what-if runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from rightsizer.model import Recommendation
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import RecommendationSettings
from rightsizer.source import PrometheusSource
from rightsizer_demo.history import WorkloadSpec, write_openmetrics
from rightsizer_demo.prometheus import PrometheusServer, load_history

from .allocation import Allocation, Allocations


def learn_through_prometheus(
    workloads: Sequence[WorkloadSpec],
    *,
    seed: int,
    start: int,
    end: int,
    step: int,
    workdir: Path,
    variants: Mapping[str, RecommendationSettings],
) -> dict[str, list[Recommendation]]:
    """rightsizer's recommendations at ``end`` from the history of [start, end), one list per variant.

    The last sample written is at ``end - step``: the scoring period owns ``end`` itself.
    """
    openmetrics = workdir / "history.om"
    write_openmetrics(workloads, openmetrics, start, end - step, step, seed=seed)
    load_history(openmetrics, workdir / "tsdb")
    openmetrics.unlink()
    request = ScanRequest(history_seconds=end - start)
    with PrometheusServer(workdir / "tsdb") as server:
        source = PrometheusSource(server.url)
        return {
            name: scan(source, request, settings, end=end).recommendations
            for name, settings in variants.items()
        }


def rightsizer_allocations(recommendations: Sequence[Recommendation], current: Allocations) -> Allocations:
    """Recommended resources per container; where rightsizer gives none, what is set stays (and says why).

    Containers rightsizer did not list at all keep their allocation too, noted as such.
    """
    result = {
        key: replace(allocation, note="not seen by rightsizer: allocation kept")
        for key, allocation in current.items()
    }
    for recommendation in recommendations:
        if recommendation.recommended is not None:
            result[recommendation.key] = Allocation.from_resources(recommendation.recommended)
        elif recommendation.key in result:
            kept = f"{recommendation.reason}: allocation kept"
            result[recommendation.key] = replace(current[recommendation.key], note=kept)
    return result

"""``cost.running_replicas``: the pods a container ran on average over its last day."""

from __future__ import annotations

import pandas as pd
import pytest

from rightsizer.cost import running_replicas
from rightsizer.model import ContainerUsage, HistoryGrid

BUCKET = 1800
DAY_BUCKETS = 48


def usage(coverage_by_bucket: list[list[float]]) -> ContainerUsage:
    """A history with, per bucket (oldest first), each pod's coverage."""
    rows = [
        {"pod": f"p{pod}", "time": (index + 1) * BUCKET, "cpu_mean": 0.1, "cpu_peak": 0.1,
         "memory_mean": 1.0, "samples": 30.0, "coverage": share}
        for index, pods in enumerate(coverage_by_bucket)
        for pod, share in enumerate(pods)
    ]  # fmt: skip
    end = len(coverage_by_bucket) * BUCKET
    return ContainerUsage(history=pd.DataFrame(rows), grid=HistoryGrid(end, end, BUCKET, 300))


def test_three_pods_are_three_though_the_history_ends_inside_its_last_bucket() -> None:
    # The demo's history ended ten minutes before the query: its last bucket a third empty.
    assert running_replicas(usage([[1, 1, 1]] * DAY_BUCKETS + [[2 / 3] * 3])) == pytest.approx(3)


def test_a_workload_scaled_from_two_to_four_half_way_through_the_day_ran_three() -> None:
    day = [[1, 1]] * (DAY_BUCKETS // 2) + [[1, 1, 1, 1]] * (DAY_BUCKETS // 2)
    assert running_replicas(usage([*day, [1, 1, 1, 1]])) == pytest.approx(3, abs=0.05)


def test_one_bucket_of_history_is_its_pods() -> None:
    assert running_replicas(usage([[1, 1]])) == 2
    assert running_replicas(ContainerUsage()) == 0

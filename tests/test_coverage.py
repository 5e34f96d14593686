"""A pod's history is measured by its own samples (issue 16): a neighbour scraped four times as often, or a
scrape interval changed inside the window, changes neither the history hours nor the recommendations.

One trajectory (the generator at 15 s), exported three ways into real Prometheus servers (promtool): every
pod's cAdvisor series at 60 s (the reference); ``web`` at 60 s beside ``cart`` at 15 s in the same namespace;
and every series at 60 s until a day before the end, at 15 s after (a Prometheus configuration change).
Same pods, same usage: only the samples Prometheus holds differ (docs/metrics.md, "Coverage").

Each runs on Debian's Prometheus and, marked ``backends`` (RIGHTSIZER_BACKENDS=1), on Prometheus 3 and
VictoriaMetrics (tests/support/backends.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rightsizer.quantity import parse
from rightsizer_demo.history import DAY, MIB, ContainerSpec, UsageModel, WorkloadSpec, write_openmetrics
from tests.support.backends import RecommendationKey, backend_params, recommend, serve_history

pytestmark = pytest.mark.prometheus

STEP = 15
"""The generator's step: the finest scrape interval here."""
WINDOW_DAYS = 2
"""rightsizer recommend's window in these tests (``--history``), of a history a quarter day longer."""
TOLERANCE = 0.02


def workloads(start: float, *, cart: int, web: int, changed_at: float | None = None) -> list[WorkloadSpec]:
    """``web`` (2 replicas) and ``cart`` (2 replicas) of one namespace, their cAdvisor series scraped every
    ``web`` and ``cart`` seconds, or every 60 s until ``changed_at`` and every 15 s from it."""

    def scrape(seconds: int) -> tuple[tuple[float, int], ...]:
        if changed_at is not None:
            return ((start, 60), (changed_at, 15))
        return ((start, seconds),)

    web_app = ContainerSpec(
        "app",
        UsageModel(0.3, 300 * MIB, cpu_daily_amplitude_cores=0.2, cpu_noise=0.05, memory_noise=0.005),
        {"cpu": "1", "memory": "512Mi"},
        {"memory": "1Gi"},
    )
    cart_app = ContainerSpec(
        "app",
        UsageModel(0.1, 200 * MIB, cpu_daily_amplitude_cores=0.05, cpu_noise=0.05, memory_noise=0.005),
        {"cpu": "250m", "memory": "256Mi"},
        {"memory": "512Mi"},
    )
    return [
        WorkloadSpec("shop", "web", (web_app,), replicas=2, created_at=start, scrape_intervals=scrape(web)),
        WorkloadSpec(
            "shop", "cart", (cart_app,), replicas=2, created_at=start, scrape_intervals=scrape(cart)
        ),
    ]


Exports = dict[str, dict[RecommendationKey, dict[str, Any]]]


@pytest.fixture(scope="module", params=backend_params())
def exports(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exports]:
    """``rightsizer recommend --history 2d`` (its defaults otherwise) over each export, by name."""
    end = math.floor(time.time() / 300) * 300
    start = end - (WINDOW_DAYS + 0.25) * DAY
    cases = {
        "reference": workloads(start, web=60, cart=60),
        "neighbour at 15 s": workloads(start, web=60, cart=15),
        "changed to 15 s a day ago": workloads(start, web=60, cart=60, changed_at=end - DAY),
    }
    found: Exports = {}
    for name, specs in cases.items():
        tmp = tmp_path_factory.mktemp(name.replace(" ", "-"))
        write_openmetrics(specs, tmp / "history.om", start, end, STEP)
        server = serve_history(request.param, tmp / "history.om", tmp)
        try:
            found[name] = recommend(server.url, end, "--history", f"{WINDOW_DAYS}d")
        finally:
            server.stop()
            Path(tmp / "history.om").unlink()
    yield found


def near(value: float, reference: float) -> bool:
    return abs(value - reference) <= TOLERANCE * abs(reference)


def amounts(document: dict[str, Any]) -> dict[str, float]:
    """The recommended requests and limits, in cores and bytes."""
    recommended = document["recommended"]
    return {
        f"{kind}.{resource}": float(parse(quantity))
        for kind in ("requests", "limits")
        for resource, quantity in recommended[kind].items()
    }


@pytest.mark.parametrize("case", ["neighbour at 15 s", "changed to 15 s a day ago"])
def test_history_hours_and_recommendations_are_those_of_one_interval_everywhere(exports: Exports, case: str):
    reference, other = exports["reference"], exports[case]
    assert set(other) == set(reference) == {("shop", "web", "app"), ("shop", "cart", "app")}
    for key, expected in reference.items():
        found = other[key]
        assert expected["recommended"] and found["recommended"], (key, found["reason"])
        hours, expected_hours = found["evidence"]["historyHours"], expected["evidence"]["historyHours"]
        assert expected_hours == WINDOW_DAYS * 24  # every pod ran the whole window
        assert near(hours, expected_hours), (key, hours, expected_hours)
        for name, amount in amounts(expected).items():
            assert near(amounts(found)[name], amount), (key, name, amounts(found)[name], amount)

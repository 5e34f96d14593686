"""`rightsizer recommend` over the demo history on Prometheus 3 and VictoriaMetrics gives what it gives on
Debian's Prometheus 2.42: the same recommended requests and limits and the same CPU percentiles.

Marked ``backends``: deselected unless RIGHTSIZER_BACKENDS=1 (tests/conftest.py); the backends are built
by hack/backends/build.sh into ~/.cache/rightsizer/backends (docs/metrics.md, "Backends")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rightsizer_demo.history import DAY, demo_scenario, window_ending_now, write_openmetrics
from tests.support.backends import (
    DEBIAN,
    PROMETHEUS_3,
    VICTORIAMETRICS,
    RecommendationKey,
    differences,
    recommend,
    serve_history,
)

pytestmark = [pytest.mark.prometheus, pytest.mark.backends]

DAYS = 3
STEP_SECONDS = 60


@pytest.fixture(scope="module")
def demo_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, float]]:
    """The demo scenario's history as OpenMetrics text, and where it ends (now)."""
    start, end = window_ending_now(DAYS * DAY, STEP_SECONDS)
    path = tmp_path_factory.mktemp("backends") / "history.om"
    write_openmetrics(demo_scenario(start, end), path, start, end, STEP_SECONDS)
    yield path, end
    path.unlink()


def recommendations_on(
    backend: str, demo_history: tuple[Path, float], tmp: Path
) -> dict[RecommendationKey, dict[str, Any]]:
    openmetrics, end = demo_history
    server = serve_history(backend, openmetrics, tmp)
    try:
        return recommend(server.url, end)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def on_debian(demo_history, tmp_path_factory) -> dict[RecommendationKey, dict[str, Any]]:
    return recommendations_on(DEBIAN, demo_history, tmp_path_factory.mktemp(DEBIAN))


@pytest.mark.parametrize("backend", [PROMETHEUS_3, VICTORIAMETRICS])
def test_recommend_over_the_demo_history_agrees_with_debian_prometheus(
    backend, on_debian, demo_history, tmp_path_factory
):
    assert len(on_debian) == 9
    assert sum(1 for r in on_debian.values() if r["recommended"]) >= 8
    other = recommendations_on(backend, demo_history, tmp_path_factory.mktemp(backend))
    assert differences(on_debian, other) == []

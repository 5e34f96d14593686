"""The demo keeps its word an hour later (issue 16): with ``--keep``, the live cart on the node is
scraped every 2 s in namespace ``shop``, beside the other workloads' generated history at 60 s. Every
recommendation the demo shows at its start must still be there an hour later, and the workloads whose
history did not change must have the numbers they would have beside a cart scraped every 60 s: a
neighbour's scrape interval is not history lost.

Replayed here without waiting an hour: the demo's history ends an hour ago (the demo's start), the
live cart's hour at 2 s follows it, and the namespace is evaluated at both moments."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from rightsizer.model import Recommendation
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import RecommendationSettings
from rightsizer.source import PrometheusSource
from rightsizer_demo.history import DAY, demo_scenario, window_ending_now, write_openmetrics
from rightsizer_demo.prometheus import PrometheusServer, load_history

pytestmark = pytest.mark.prometheus

HISTORY_DAYS = 3
STEP_SECONDS = 60
LIVE_STEP_SECONDS = 2
"""The demo's Prometheus scrapes the node's kubelet every 2 s (tests/support/node.py)."""
HOUR = 3600


def _demo_an_hour_on(directory: Path, started: float, now: float, live_step: int) -> PrometheusServer:
    """Prometheus with the demo's history up to its start, then the live cart's hour scraped every
    ``live_step`` seconds."""
    workloads = demo_scenario(started - HISTORY_DAYS * DAY, started)
    cart = next(w for w in workloads if (w.namespace, w.name) == ("shop", "cart"))
    # The demo replaces the cart's pods with live ones (another ReplicaSet: another seed, other names).
    live_cart = replace(cart, created_at=started + live_step)
    files = [
        (workloads, started - HISTORY_DAYS * DAY, started, STEP_SECONDS, 0),
        ([live_cart], started + live_step, now, live_step, 1),
    ]
    for index, (specs, start, end, step, seed) in enumerate(files):
        openmetrics = directory / f"history-{index}.om"
        write_openmetrics(specs, openmetrics, start, end, step, seed=seed)
        load_history(openmetrics, directory / "tsdb")
        openmetrics.unlink()
    return PrometheusServer(Path(directory / "tsdb")).start()


@pytest.fixture(scope="module")
def demo_an_hour_on(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrometheusServer, PrometheusServer, float]]:
    """The demo an hour on, with the live cart scraped every 2 s (as on the node) and, to compare, every
    60 s as the rest; and the demo's start."""
    _, now = window_ending_now(HOUR, STEP_SECONDS)
    started = now - HOUR
    live = _demo_an_hour_on(tmp_path_factory.mktemp("live-at-2s"), started, now, LIVE_STEP_SECONDS)
    try:
        steady = _demo_an_hour_on(tmp_path_factory.mktemp("live-at-60s"), started, now, STEP_SECONDS)
        try:
            yield live, steady, started
        finally:
            steady.stop()
    finally:
        live.stop()


def _shop_at(server: PrometheusServer, when: float) -> dict[tuple[str, str], Recommendation]:
    result = scan(
        PrometheusSource(server.url), ScanRequest(namespaces=("shop",)), RecommendationSettings(), end=when
    )
    return {(rec.key.name, rec.key.container): rec for rec in result.recommendations}


def test_every_recommendation_shown_at_the_start_is_there_an_hour_later(
    demo_an_hour_on: tuple[PrometheusServer, PrometheusServer, float],
) -> None:
    live, steady, started = demo_an_hour_on
    at_start, an_hour_later = _shop_at(live, started), _shop_at(live, started + HOUR)
    shown = {key for key, rec in at_start.items() if rec.recommended is not None}
    assert {("web", "app"), ("web", "log-shipper"), ("cart", "app"), ("search", "app")} <= shown
    lost = {key: an_hour_later[key].reason for key in shown if an_hour_later[key].recommended is None}
    assert not lost, f"recommendations lost an hour after the demo's start: {lost}"
    # The workloads that did not run on the node kept their history: the same confidence as at the
    # start, and the numbers they would have with the cart scraped every 60 s as they are (their
    # window slid by the hour, which may move a number by a few percent; the neighbour moves none).
    with_cart_at_60s = _shop_at(steady, started + HOUR)
    for key in shown - {("cart", "app")}:
        before, after, steady_after = at_start[key], an_hour_later[key], with_cart_at_60s[key]
        assert before.confidence is not None and after.confidence is not None
        assert after.confidence.level == before.confidence.level, key
        assert after.confidence.days == pytest.approx(before.confidence.days, rel=0.02), key
        assert after.confidence.coverage == pytest.approx(before.confidence.coverage, rel=0.02), key
        assert after.recommended is not None and steady_after.recommended is not None
        for kind in ("requests", "limits"):
            live_amounts, steady_amounts = (
                getattr(after.recommended, kind),
                getattr(steady_after.recommended, kind),
            )
            assert set(live_amounts) == set(steady_amounts), (key, kind)
            for resource, amount in steady_amounts.items():
                assert float(live_amounts[resource]) == pytest.approx(float(amount), rel=0.02), (
                    key,
                    kind,
                    resource,
                )

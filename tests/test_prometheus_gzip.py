"""Prometheus' answers come as they are, not gzipped, unless ``gzip`` (``--prometheus-gzip``) asks:
gzip is a third of Prometheus' CPU for a history query (settings.PROMETHEUS_GZIP). Either way the
recommendations are the same."""

from __future__ import annotations

import json
import time

import requests

from rightsizer.report import render
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import DEFAULTS, PROMETHEUS_GZIP
from rightsizer.source import PrometheusSource


def _scan_recording_encodings(url: str, gzip: bool, end: float) -> tuple[dict[str, object], list[str]]:
    """One scan of ``legacy`` and ``shop``: its JSON report, and each answer's ``Content-Encoding``."""
    source = PrometheusSource(url, gzip=gzip)
    encodings: list[str] = []

    def record(response: requests.Response, *args: object, **kwargs: object) -> None:
        encodings.append(response.headers.get("Content-Encoding", "identity"))

    source._client._session.hooks["response"].append(record)
    result = scan(source, ScanRequest(namespaces=("legacy", "shop")), DEFAULTS, end=end)
    report = json.loads(render(result.recommendations, "json", end=result.end, failed=result.failed))
    return report, encodings


def test_answers_are_not_gzipped_unless_asked_and_recommend_the_same(demo_prometheus):
    assert PROMETHEUS_GZIP is False
    end = time.time()
    plain, plain_encodings = _scan_recording_encodings(demo_prometheus.url, gzip=False, end=end)
    gzipped, gzipped_encodings = _scan_recording_encodings(demo_prometheus.url, gzip=True, end=end)
    assert plain_encodings and set(plain_encodings) == {"identity"}
    # Prometheus gzips what it is asked to (its smallest answers too).
    assert "gzip" in gzipped_encodings
    assert plain["recommendations"] and plain == gzipped

"""The query backends the history tests run on: Debian's Prometheus (2.42, on PATH, always), and, in the
tests marked ``backends`` (run only with RIGHTSIZER_BACKENDS=1, tests/conftest.py), Prometheus 3 and
VictoriaMetrics built by hack/backends/build.sh into ~/.cache/rightsizer/backends (docs/metrics.md).

``serve_history`` loads an OpenMetrics file into one of them and returns the started server (``url``,
``stop()``), whatever the backend.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any, Protocol

import pytest

from rightsizer.cli import build_parser
from rightsizer.promql import LabelConfig
from rightsizer.quantity import parse as parse_quantity
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import RecommendationSettings
from rightsizer.source import PrometheusSource
from rightsizer_demo.prometheus import PrometheusServer, load_history
from rightsizer_demo.victoriametrics import VictoriaMetricsServer

DEBIAN = "prometheus-debian"
"""Debian's prometheus and promtool (2.42 on bookworm), what every other test uses."""
PROMETHEUS_3 = "prometheus-3.7.3"
VICTORIAMETRICS = "victoriametrics-1.153.0"
BACKENDS = (DEBIAN, PROMETHEUS_3, VICTORIAMETRICS)
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "backends" / "build.sh"
BUILD_TIMEOUT = 40 * 60
"""A first build of Prometheus 3 takes about 10 minutes on this 2-core machine, more when it is busy."""


class Server(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


class BackendBuildError(RuntimeError):
    """hack/backends/build.sh failed."""


def backend_params() -> list[object]:
    """``pytest.param`` per backend: Debian's unmarked, the others marked ``backends``."""
    return [
        pytest.param(name, id=name, marks=() if name == DEBIAN else pytest.mark.backends) for name in BACKENDS
    ]


@functools.cache
def built(kind: str) -> Path:
    """The directory of the binaries of ``kind`` (``prometheus`` or ``victoriametrics``), built once."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), kind],
        stdout=subprocess.PIPE,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise BackendBuildError(f"hack/backends/build.sh {kind} failed with exit code {result.returncode}")
    return Path(lines[-1])


def serve_history(backend: str, openmetrics: Path, tmp_dir: Path) -> Server:
    """``backend`` started on the history of ``openmetrics``, in ``tmp_dir``."""
    if backend == DEBIAN:
        load_history(openmetrics, tmp_dir / "tsdb")
        return PrometheusServer(tmp_dir / "tsdb").start()
    if backend == PROMETHEUS_3:
        bin_dir = built("prometheus")
        load_history(openmetrics, tmp_dir / "tsdb", promtool=str(bin_dir / "promtool"))
        return PrometheusServer(tmp_dir / "tsdb", binary=str(bin_dir / "prometheus")).start()
    if backend == VICTORIAMETRICS:
        server = VictoriaMetricsServer(tmp_dir / "vm", str(built("victoriametrics") / "victoria-metrics"))
        server.start()
        try:
            server.load(openmetrics)
        except BaseException:
            server.stop()
            raise
        return server
    raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")


RecommendationKey = tuple[str, str, str]


def recommend(url: str, end: float, *options: str) -> dict[RecommendationKey, dict[str, Any]]:
    """What ``rightsizer recommend -o json`` (its defaults, or ``options``) says at ``end``, by (namespace,
    name, container): the same ``end`` on each backend, so that their answers compare."""
    args = build_parser().parse_args(["recommend", "--prometheus-url", url, *options])
    settings = RecommendationSettings.for_profile(
        args.profile,
        cpu_target_utilization=args.target_utilization,
        cpu_percentile=args.cpu_percentile,
        min_history_seconds=args.min_history,
    )
    request = ScanRequest(tuple(args.namespace), args.history, LabelConfig(), args.resolution)
    result = scan(PrometheusSource(url), request, settings, end=end)
    documents = (rec.to_dict() for rec in result.recommendations)
    return {(d["namespace"], d["name"], d["container"]): d for d in documents}


def cpu_percentile(document: dict[str, Any]) -> float | None:
    """The CPU percentile a recommendation was sized on (``cpuPeakTime``), in cores."""
    text = document.get("evidence", {}).get("cpuPeakTime")
    return None if text is None else float(parse_quantity(text))


def differences(
    base: dict[RecommendationKey, dict[str, Any]], other: dict[RecommendationKey, dict[str, Any]]
) -> list[str]:
    """Where ``other``'s recommendations differ from ``base``'s: the recommended requests and limits,
    and the CPU percentile (relative change); empty when they agree."""
    found = [f"{'/'.join(key)}: only in one" for key in sorted(set(base) ^ set(other))]
    for key in sorted(set(base) & set(other)):
        a, b = base[key], other[key]
        name = "/".join(key)
        if a.get("recommended") != b.get("recommended"):
            found.append(f"{name}: recommended {a.get('recommended')} != {b.get('recommended')}")
        pa, pb = cpu_percentile(a), cpu_percentile(b)
        if pa != pb:
            change = "" if not pa or pb is None else f" ({(pb - pa) / pa:+.1%})"
            found.append(f"{name}: CPU percentile {pa} -> {pb}{change}")
    return found

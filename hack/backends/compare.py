"""Compare the recommendations of Debian's Prometheus, Prometheus 3 and VictoriaMetrics on one demo history.

Usage: .venv/bin/python hack/backends/compare.py [--days 3] [BACKEND ...]

Writes the demo history (ending now, a sample a minute), loads it into each backend (building the ones
from the Go module proxy first, hack/backends/build.sh), runs `rightsizer recommend`'s scan on each at
the same end, and prints each backend's CPU percentiles and recommendations beside Debian's and where
they differ (docs/metrics.md, "Backends").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [
    str(Path(__file__).resolve().parents[2]),
    str(Path(__file__).resolve().parents[2] / "operator"),
]

from rightsizer_demo.history import DAY, demo_scenario, window_ending_now, write_openmetrics  # noqa: E402
from tests.support.backends import BACKENDS, DEBIAN, cpu_percentile, differences, recommend, serve_history  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="*", default=list(BACKENDS))
    parser.add_argument("--days", type=float, default=3)
    args = parser.parse_args()
    backends = [DEBIAN, *(b for b in args.backends if b != DEBIAN)]
    start, end = window_ending_now(args.days * DAY, 60)
    with tempfile.TemporaryDirectory(prefix="rightsizer-backends-") as tmp:
        openmetrics = Path(tmp) / "history.om"
        write_openmetrics(demo_scenario(start, end), openmetrics, start, end, 60)
        results = {}
        for backend in backends:
            began = time.monotonic()
            server = serve_history(backend, openmetrics, Path(tmp) / backend)
            loaded = time.monotonic() - began
            try:
                began = time.monotonic()
                results[backend] = recommend(server.url, end)
                print(f"{backend}: loaded in {loaded:.0f}s, recommended in {time.monotonic() - began:.1f}s")
            finally:
                server.stop()
    base = results[DEBIAN]
    print(f"\n{'container':40} " + " ".join(f"{b:>24}" for b in backends))
    for key in sorted(base):
        cells = []
        for backend in backends:
            document = results[backend].get(key, {})
            percentile = cpu_percentile(document) if document else None
            requests = (document.get("recommended") or {}).get("requests", {})
            cells.append(f"{percentile if percentile is not None else '-'} {requests.get('cpu', '-')}")
        print(f"{'/'.join(key):40} " + " ".join(f"{c:>24}" for c in cells))
    status = 0
    for backend in backends[1:]:
        found = differences(base, results[backend])
        verdict = f"{len(found)} differences" if found else "the same recommendations"
        print(f"\n{backend} vs {DEBIAN}: {verdict}")
        for line in found:
            print(f"  {line}")
        status |= bool(found)
    return status


if __name__ == "__main__":
    sys.exit(main())

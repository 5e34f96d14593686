"""A real Prometheus serving the demo history, for tests that query it.

``start_demo_prometheus`` generates the history (ending now, so instant queries see it), loads it with
promtool and starts prometheus on a free 127.0.0.1 port. Stop the server returned when done.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rightsizer_demo.history import DAY, WorkloadSpec, demo_scenario, window_ending_now, write_openmetrics
from rightsizer_demo.prometheus import PrometheusServer, load_history


def start_demo_prometheus(
    tmp_dir: Path,
    days: float = 3,
    step_seconds: int = 60,
    workloads: Sequence[WorkloadSpec] | None = None,
    now: float | None = None,
) -> PrometheusServer:
    """A started server with ``days`` of history up to now (or up to ``now``, a Unix time, for a test
    that needs to know where its history ends): the demo scenario unless ``workloads`` is given.

    Custom ``workloads`` should be built for ``window_ending_now(days * DAY, step_seconds)``.
    """
    start, end = window_ending_now(days * DAY, step_seconds, now)
    if workloads is None:
        workloads = demo_scenario(start, end)
    openmetrics = tmp_dir / "history.om"
    write_openmetrics(workloads, openmetrics, start, end, step_seconds)
    load_history(openmetrics, tmp_dir / "tsdb")
    openmetrics.unlink()  # about 45 MB a day of history: the blocks are all that is needed now
    return PrometheusServer(tmp_dir / "tsdb").start()


def queries_run(url: str) -> int:
    """Queries the Prometheus at ``url`` has evaluated since it started (instant and range alike),
    counted by its own engine: what rightsizer sent, not what it says it sent."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("prometheus_engine_query_duration_seconds_count") and 'slice="inner_eval"' in line:
            return int(float(line.split()[-1]))
    raise AssertionError("prometheus_engine_query_duration_seconds_count{slice=inner_eval} not exported")


@contextmanager
def refusing_url() -> Iterator[str]:
    """The URL of a loopback port that refuses connections for as long as the context lasts: bound
    and never listened on, so no other process can take it meanwhile (as it could a port found free
    and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"

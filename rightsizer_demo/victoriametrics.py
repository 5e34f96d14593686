"""A real single-node VictoriaMetrics serving generated history, to run the queries on another engine.

VictoriaMetrics answers the Prometheus query API (``/api/v1/query``, ``/api/v1/query_range``, series and
labels) with its own engine (MetricsQL). History goes in through ``/api/v1/import/prometheus``, which takes
the Prometheus text format: the OpenMetrics file the generator writes for promtool, with each timestamp
turned from seconds (OpenMetrics) into milliseconds (the Prometheus text format). The binary is built by
``hack/backends/build.sh victoriametrics`` (docs/metrics.md, "Backends").
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from rightsizer_demo.prometheus import (
    ADDRESS_IN_USE,
    PrometheusError,
    free_port,
    get_body,
    log_tail,
    terminate,
)

FLAGS = (
    "-retentionPeriod=100y",  # generated history is old by design: retention must never delete it
    "-search.latencyOffset=0s",  # by default the last 30 s are hidden; the history runs up to now
    "-search.disableCache",  # no cached range results: each test queries its own fresh history
)
IMPORT_CHUNK_BYTES = 8 * 1024 * 1024


def prometheus_text(openmetrics_path: str | Path) -> Iterator[bytes]:
    """The samples of an OpenMetrics file in the Prometheus text format, in chunks of about
    ``IMPORT_CHUNK_BYTES``: comments (``# TYPE``, ``# EOF``) left out, timestamps in milliseconds."""
    chunk: list[str] = []
    size = 0
    with Path(openmetrics_path).open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            sample, _, seconds = line.rstrip("\n").rpartition(" ")
            text = f"{sample} {round(float(seconds) * 1000)}\n"
            chunk.append(text)
            size += len(text)
            if size >= IMPORT_CHUNK_BYTES:
                yield "".join(chunk).encode()
                chunk, size = [], 0
    if chunk:
        yield "".join(chunk).encode()


class VictoriaMetricsServer:
    """``victoria-metrics`` on 127.0.0.1, storing in ``data_dir``; ``load`` imports an OpenMetrics file.

    ``start()`` (or ``with``) returns once it answers; ``load()`` returns once the imported samples
    are searchable. Its log sits next to ``data_dir`` unless ``log_path`` says otherwise.
    """

    def __init__(
        self,
        data_dir: str | Path,
        binary: str,
        *,
        log_path: str | Path | None = None,
        startup_timeout: float = 60.0,
        flags: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.flags = tuple(flags)
        self.port = free_port()
        self.log_path = (
            Path(log_path) if log_path else self.data_dir.with_name(f"{self.data_dir.name}.vm.log")
        )
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 5) -> VictoriaMetricsServer:
        """Start it and wait until it answers; on a port taken meanwhile, start again on another."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
            except PrometheusError:
                if not (attempt < attempts and ADDRESS_IN_USE in self._log_tail()):
                    raise
                self.port = free_port()
                continue
            return self
        raise PrometheusError(f"no free port after {attempts} attempts")

    def load(self, openmetrics_path: str | Path) -> int:
        """Import the samples of an OpenMetrics file; returns how many lines were sent."""
        sent = 0
        for chunk in prometheus_text(openmetrics_path):
            request = urllib.request.Request(
                f"{self.url}/api/v1/import/prometheus", data=chunk, method="POST"
            )
            with urllib.request.urlopen(request, timeout=120) as response:
                if response.status not in (200, 204):
                    raise PrometheusError(f"import answered {response.status}: {response.read()[:500]!r}")
            sent += chunk.count(b"\n")
        # Make what was imported searchable now rather than within a second or so.
        self._get("/internal/force_flush")
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._series_count() > 0:
                return sent
            time.sleep(0.2)
        raise PrometheusError(f"victoria-metrics at {self.url} shows no series after the import")

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        terminate(process, timeout)

    def __enter__(self) -> VictoriaMetricsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start_once(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            f"-storageDataPath={self.data_dir}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            *FLAGS,
            *self.flags,
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise PrometheusError(f"victoria-metrics exited at start; its log:\n{self._log_tail()}")
                if self._get("/health") == b"OK" and self._serves_our_data():
                    return
                time.sleep(0.1)
            raise PrometheusError(
                f"victoria-metrics at {self.url} did not answer; its log:\n{self._log_tail()}"
            )
        except BaseException:
            self.stop()
            raise

    def _serves_our_data(self) -> bool:
        """Not another process that holds the port ours could not bind (ours then exits)."""
        body = self._get("/flags")
        return body is not None and f'-storageDataPath="{self.data_dir}"'.encode() in body

    def _series_count(self) -> int:
        body = self._get("/api/v1/series/count")
        data = [] if body is None else json.loads(body).get("data") or []
        return int(data[0]) if data else 0

    def _get(self, path: str) -> bytes | None:
        return get_body(self.url + path, timeout=10)

    def _log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

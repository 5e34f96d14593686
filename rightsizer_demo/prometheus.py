"""A real Prometheus serving generated history, so queries run on the real engine, not on a mock.

``promtool tsdb create-blocks-from openmetrics`` turns an OpenMetrics file into TSDB blocks; ``prometheus``,
started on them with no scrape targets, serves them. Its head block stays empty, so history may run right
up to "now" without overlapping data Prometheus is still writing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

PROMETHEUS_BIN_ENV = "RIGHTSIZER_PROMETHEUS_BIN"
PROMTOOL_BIN_ENV = "RIGHTSIZER_PROMTOOL_BIN"
RETENTION = "100y"
"""Generated history is old by design: time-based retention must never delete it."""
MAX_BLOCK_DURATION = "744h"
"""promtool re-reads the whole file once per block: 31-day blocks keep that to one or two passes."""
CONFIG = "global:\n  scrape_interval: 1m\nscrape_configs: []\n"


class PrometheusError(RuntimeError):
    """promtool or prometheus is missing, failed, or did not come up; the message carries their output."""


def find_binary(name: str, override_env: str) -> str:
    """The path of ``name``: the environment variable ``override_env`` if set, else found on PATH."""
    override = os.environ.get(override_env)
    path = shutil.which(override or name)
    if path is None:
        where = f"{override_env}={override} is not an executable" if override else f"{name} is not on PATH"
        raise PrometheusError(f"{where}; install Prometheus or set {override_env} to the binary")
    return path


def load_history(
    openmetrics_path: str | Path,
    tsdb_dir: str | Path,
    *,
    max_block_duration: str = MAX_BLOCK_DURATION,
    promtool: str | None = None,
) -> Path:
    """Turn an OpenMetrics file into TSDB blocks in ``tsdb_dir`` (created if missing); returns ``tsdb_dir``.

    Load before starting Prometheus on the directory: it reads its blocks at start. ``promtool``: the
    binary to use (another Prometheus version's, tests/support/backends.py), else the one found.
    """
    command = [
        promtool or find_binary("promtool", PROMTOOL_BIN_ENV),
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        f"--max-block-duration={max_block_duration}",
        str(openmetrics_path),
        str(tsdb_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise PrometheusError(f"promtool failed (exit {result.returncode}) on {openmetrics_path}: {output}")
    return Path(tsdb_dir)


ADDRESS_IN_USE = "address already in use"
"""What prometheus logs when its listen address is taken."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusServer:
    """``prometheus`` serving the blocks of ``tsdb_dir`` on 127.0.0.1, without scrape targets.

    ``start()`` (or ``with``) returns once the server is ready and its query API lists the loaded series,
    so a caller can query right away. Its configuration and log sit next to ``tsdb_dir``
    (``<tsdb_dir>.prometheus.yml``, ``<tsdb_dir>.prometheus.log``) unless ``log_path`` says otherwise.
    """

    def __init__(
        self,
        tsdb_dir: str | Path,
        *,
        port: int | None = None,
        log_path: str | Path | None = None,
        startup_timeout: float = 60.0,
        flags: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        self.tsdb_dir = Path(tsdb_dir)
        self.binary = binary
        """The prometheus binary (another version's, tests/support/backends.py), else the one found."""
        self.flags = tuple(flags)
        """More command-line flags, e.g. ``--query.max-samples=5000``."""
        self.port = port or free_port()
        self._choose_port = port is None
        """A port it chose, until it first served on it: taken by someone else meanwhile, another is
        chosen. Never on a restart: who knows its URL expects it back on the same port."""
        self.log_path = Path(log_path) if log_path else self._beside_tsdb("log")
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 5) -> PrometheusServer:
        """Start prometheus and wait until it serves the loaded history; raises PrometheusError if not.

        A free port is only free when it is chosen: if another process binds it before prometheus
        does, prometheus exits and, on a first start, is started again on another (``attempts``)."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
            except PrometheusError:
                if not (self._choose_port and attempt < attempts and ADDRESS_IN_USE in self._log_tail()):
                    raise
                self.port = free_port()
                continue
            self._choose_port = False
            return self
        raise PrometheusError(f"no free port after {attempts} attempts")

    def _start_once(self) -> None:
        config = self._beside_tsdb("yml")
        config.write_text(CONFIG)
        command = [
            self.binary or find_binary("prometheus", PROMETHEUS_BIN_ENV),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.tsdb_dir}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.flags,
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Prometheus closes its TSDB cleanly), then SIGKILL after ``timeout`` seconds."""
        process, self._process = self._process, None
        terminate(process, timeout)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _beside_tsdb(self, suffix: str) -> Path:
        return self.tsdb_dir.with_name(f"{self.tsdb_dir.name}.prometheus.{suffix}")

    def _wait_until_serving(self) -> None:
        """Ready is not enough: wait until the API lists metric names, i.e. the blocks are queryable."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited at start; its log:\n{self._log_tail()}")
            if self._get("/-/ready") is not None and self._metric_names() and self._serves_our_tsdb():
                return
            time.sleep(0.1)
        raise PrometheusError(
            f"prometheus at {self.url} served no series from {self.tsdb_dir} within {self.startup_timeout} s;"
            f" its log:\n{self._log_tail()}"
        )

    def _serves_our_tsdb(self) -> bool:
        """Not another prometheus that holds the port ours could not bind (ours then exits)."""
        body = self._get("/api/v1/status/flags")
        flags = {} if body is None else json.loads(body).get("data") or {}
        return Path(flags.get("storage.tsdb.path", "")).resolve() == self.tsdb_dir.resolve()

    def _metric_names(self) -> list[str]:
        body = self._get("/api/v1/label/__name__/values")
        return [] if body is None else json.loads(body).get("data") or []

    def _get(self, path: str) -> bytes | None:
        return get_body(self.url + path, timeout=2)

    def _log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


def terminate(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a server, then SIGKILL it after ``timeout`` seconds; nothing if it is not running."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def get_body(url: str, timeout: float) -> bytes | None:
    """The body of a 200 answer, or None while the server is not up or not ready."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"

"""Scale benchmark of ``rightsizer recommend`` against a real Prometheus holding 14 days of 60 s history.

For each case (a container count, laid out over ``--namespaces`` namespaces): build the Go generator in
``bench/scale`` (once), write a TSDB block with the metric contract's series (docs/metrics.md), start
``prometheus`` on it, warm it with one query, then run ``rightsizer recommend -o json -q`` as a child process
``--runs`` times and measure each run's wall time, CPU time and peak RSS (``wait4``, as ``/usr/bin/time -v``
does), the machine's load, the Prometheus queries it sent (the server's own request counters, before and
after), Prometheus' CPU time and summed handler time, the number of recommendations, and Prometheus' RSS
while it answered. A run without ``-q`` cross-checks the query count against rightsizer's closing line.
Then, to show where the time goes: the client's time per stage (fetch, collect, engine, render; one
in-process scan with each stage timed) and every query of one namespace's batch run alone, with
Prometheus' own handler time, the samples it read (``stats=all``) and the bytes of its answer.

Usage: ``python bench/scale_bench.py --containers 1000 10000``; the comparison with KRR of issue 18 (one
namespace of 357 single-container pods): ``--containers 357 --namespaces 1 --pods-per-deployment 1
--containers-per-pod 1``. Results are printed as markdown and written between the ``scale-results`` /
``scale-queries`` markers of docs/benchmarks.md (``--no-doc`` to skip), together with the last results of
cases not measured this time (``--no-keep`` to drop them). This is a measurement, not a test: nothing here
asserts a time.

``rightsizer recommend`` evaluates at "now", so a dataset must end at "now": the generator writes history
ending at the current minute, with ``--lead`` more than the window at its start, and a dataset is reused
only while it ended at most ``--max-age-minutes`` ago (else it is regenerated).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # rightsizer_demo lives beside the package, not in it

from rightsizer.promql import QueryScope  # noqa: E402
from rightsizer_demo.prometheus import PrometheusServer, find_binary  # noqa: E402

GENERATOR_SOURCE = REPO / "bench" / "scale"
DOC = REPO / "docs" / "benchmarks.md"
RESULTS_BEGIN = "<!-- scale-results:begin -->"
RESULTS_END = "<!-- scale-results:end -->"
QUERIES_BEGIN = "<!-- scale-queries:begin -->"
QUERIES_END = "<!-- scale-queries:end -->"
DAY = 86400
HISTORY = 14 * DAY
"""rightsizer recommend's default window, which the benchmark runs with."""
MIB = 1024 * 1024
CLOSING_LINE = re.compile(
    r"(?P<containers>\d+) containers \((?P<ready>\d+) with a recommendation\) in (?P<namespaces>\d+) "
    r"namespaces: (?P<queries>\d+) Prometheus queries, (?P<seconds>[\d.]+)s"
)
SAMPLE_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
PROFILED_NAMESPACE = "team-00"
"""Deployments go round-robin over the namespaces: the first one is (one of) the largest."""


@dataclass(frozen=True)
class Shape:
    """How the generator lays containers out (its defaults: Deployments of 5 pods of 2 containers)."""

    pods_per_deployment: int = 5
    containers_per_pod: int = 2

    def is_default(self) -> bool:
        return self == Shape()

    def suffix(self) -> str:
        """Of the dataset's directory name (none for the default shape, whose datasets came first)."""
        return "" if self.is_default() else f"-{self.pods_per_deployment}p{self.containers_per_pod}c"

    def wanted(self) -> dict[str, int]:
        """What a reused dataset must have been generated with."""
        if self.is_default():
            return {}
        return {"podsPer": self.pods_per_deployment, "containersPer": self.containers_per_pod}

    def flags(self) -> list[str]:
        return [
            f"-pods-per-deployment={self.pods_per_deployment}",
            f"-containers-per-pod={self.containers_per_pod}",
        ]

    @property
    def containers_per_deployment(self) -> int:
        return self.pods_per_deployment * self.containers_per_pod


@dataclass(frozen=True)
class Case:
    """One measured configuration: containers over namespaces, in a shape."""

    containers: int
    namespaces: int
    shape: Shape = Shape()

    @property
    def key(self) -> str:
        return f"{self.containers}c-{self.namespaces}ns{self.shape.suffix()}"

    def title(self) -> str:
        """The column heading of the results."""
        title = f"{self.containers:,} containers"
        if self.namespaces != 20 or not self.shape.is_default():
            pods = "pod" if self.shape.pods_per_deployment == 1 else "pods"
            per_pod = "container" if self.shape.containers_per_pod == 1 else "containers"
            title += (
                f" ({self.namespaces} namespace{'s' if self.namespaces != 1 else ''}, "
                f"{self.shape.pods_per_deployment} {pods} x {self.shape.containers_per_pod} {per_pod} "
                "a Deployment)"
            )
        return title

    def largest_namespace(self) -> int:
        """Containers in the first (largest) namespace."""
        per = self.shape.containers_per_deployment
        deployments = self.containers // per
        return -(-deployments // self.namespaces) * per


@dataclass
class Dataset:
    """A generated TSDB and what the generator reported about it."""

    tsdb: Path
    summary: dict[str, object]
    generated: bool
    """False when an existing, fresh enough dataset was reused."""
    seconds: float | None = None
    generator_rss_mib: float | None = None


@dataclass
class Run:
    """One child process, measured as ``/usr/bin/time -v`` would (``wait4``)."""

    returncode: int
    seconds: float
    max_rss_mib: float
    cpu_seconds: float
    """User + system CPU time of the process."""
    stdout: str
    stderr: str


@dataclass
class QueryTiming:
    """One query of the batch, run alone against one namespace."""

    name: str
    seconds: float
    """The client's wall time for the request."""
    rows: int
    error: str | None = None
    """Prometheus' error (e.g. its 2 min query timeout), if the query failed."""
    handler_seconds: float | None = None
    """Prometheus' own HTTP handler time for the request (``prometheus_http_request_duration_seconds``)."""
    samples: int | None = None
    """Samples Prometheus read for it (``stats=all``: ``totalQueryableSamples``)."""
    peak_samples: int | None = None
    """Most samples it held at once (``stats=all``: ``peakSamples``)."""
    bytes: int | None = None
    """Size of the answer (JSON)."""


@dataclass
class RecommendRun:
    """One measured ``rightsizer recommend -o json -q`` against the served dataset."""

    seconds: float
    rss_mib: float
    cpu_seconds: float
    """rightsizer's own CPU time (user + system): the client side of the wall time."""
    queries_server: int
    queries_by_handler: dict[str, int]
    prometheus_handler_seconds: float
    """Sum over the run's requests of Prometheus' HTTP handler time (requests overlap: not wall time)."""
    prometheus_rss_mib: float
    """Peak of Prometheus' ``process_resident_memory_bytes``, sampled every 0.5 s during the run."""
    prometheus_anon_mib: float | None
    recommendations: int | None
    ready: int | None
    error: str | None
    """rightsizer's last stderr line when it failed."""
    prometheus_cpu_seconds: float | None = None
    """Prometheus' CPU time during the run (``process_cpu_seconds_total``)."""
    load: tuple[float, float] | None = None
    """The machine's 1-minute load average before and after the run."""


@dataclass
class StageTimes:
    """The client's time per stage of one in-process scan (docs/benchmarks.md, "Where the time goes")."""

    fetch: float
    """Waiting for and reading Prometheus' answers (wall)."""
    collect: float
    """Turning the answers into each workload container's usage."""
    engine: float
    """The recommendations."""
    render: float
    """The JSON report."""
    total: float
    rss_mib: float
    """Peak RSS of that process (the stage timers add nothing to speak of)."""


@dataclass
class Result:
    """Everything measured for one case."""

    containers: int
    namespaces: int
    series: int
    samples: int
    block_mib: float
    generation_seconds: float | None
    generator_rss_mib: float | None
    prometheus_start_seconds: float
    runs: list[RecommendRun] = field(default_factory=list)
    pods_per_deployment: int = 5
    containers_per_pod: int = 2
    queries_client: int | None = None
    """The query count on rightsizer's own closing line (a run without ``-q``)."""
    query_timings: list[QueryTiming] = field(default_factory=list)
    profiled_namespace: str | None = None
    stages: StageTimes | None = None
    measured: str = ""
    """UTC date and time of the measurement."""
    rightsizer_version: str = ""
    """``git describe``-like commit of the rightsizer measured (``+dirty`` if operator/ had changes)."""

    @property
    def case(self) -> Case:
        return Case(
            self.containers, self.namespaces, Shape(self.pods_per_deployment, self.containers_per_pod)
        )

    @property
    def run(self) -> RecommendRun | None:
        """The run of median wall time."""
        done = sorted(self.runs, key=lambda r: r.seconds)
        return done[(len(done) - 1) // 2] if done else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """The inverse of ``dataclasses.asdict`` (for results kept from earlier runs)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        runs = values.get("runs") or ([data["run"]] if "run" in data else [])
        run_fields = {f.name for f in fields(RecommendRun)}
        values["runs"] = [RecommendRun(**{k: v for k, v in r.items() if k in run_fields}) for r in runs]
        timing_fields = {f.name for f in fields(QueryTiming)}
        values["query_timings"] = [
            QueryTiming(**{k: v for k, v in t.items() if k in timing_fields})
            for t in values.get("query_timings") or []
        ]
        if values.get("stages"):
            values["stages"] = StageTimes(**values["stages"])
        return cls(**values)


def cache_dir() -> Path:
    """``${RIGHTSIZER_CACHE_DIR:-~/.cache/rightsizer}/bench``: binaries and datasets, outside the repo."""
    root = os.environ.get("RIGHTSIZER_CACHE_DIR") or str(Path.home() / ".cache" / "rightsizer")
    return Path(root) / "bench"


def generator_version() -> str:
    """A hash of the generator's source: a changed generator gets a new binary and new datasets."""
    digest = hashlib.sha256()
    for path in sorted(GENERATOR_SOURCE.glob("*")):
        if path.suffix in (".go", ".mod", ".sum"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def build_generator(cache: Path) -> Path:
    """``go build`` the generator into the cache (once per source version); returns the binary."""
    binary = cache / f"scalegen-{generator_version()}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    log(f"building the generator into {binary}")
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=GENERATOR_SOURCE, check=True)
    return binary


def run_measured(command: list[str], *, cwd: Path | None = None) -> Run:
    """Run ``command`` to completion: wall time, CPU time and peak RSS of exactly that process (``wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        returncode=process.returncode,
        seconds=seconds,
        max_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        stdout=stdout,
        stderr=stderr,
    )


def dataset(
    binary: Path,
    cache: Path,
    containers: int,
    namespaces: int,
    history: int,
    lead: int,
    max_age: float,
    shape: Shape | None = None,
) -> Dataset:
    """A TSDB with ``containers`` containers whose history ends within ``max_age`` seconds of now."""
    shape = shape or Shape()
    base = cache / f"data-{containers}c-{namespaces}ns{shape.suffix()}"
    tsdb = base / "tsdb"
    summary_path = base / "dataset.json"
    wanted = {
        "version": generator_version(),
        "containers": containers,
        "namespaces": namespaces,
        "historySeconds": history + lead,
        **shape.wanted(),
    }
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        age = time.time() - int(summary["maxTimeMs"]) / 1000
        if all(summary.get(k) == v for k, v in wanted.items()) and age <= max_age:
            log(f"reusing {tsdb} (ends {age:.0f} s ago)")
            return Dataset(tsdb, summary, generated=False)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    log(f"generating {containers} containers x {(history + lead) / DAY:.2f} days into {tsdb}")
    run = run_measured(
        [
            str(binary),
            f"-out={tsdb}",
            f"-containers={containers}",
            f"-namespaces={namespaces}",
            f"-history={history + lead}s",
            "-step=60s",
            *shape.flags(),
        ]
    )
    if run.returncode != 0:
        raise SystemExit(f"generator failed (exit {run.returncode}): {run.stderr.strip()}")
    summary = {**json.loads(run.stdout), **wanted, "wallSeconds": run.seconds, "maxRssMib": run.max_rss_mib}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return Dataset(tsdb, summary, generated=True, seconds=run.seconds, generator_rss_mib=run.max_rss_mib)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def post_query(url: str, path: str, form: dict[str, str]) -> tuple[dict[str, Any], int]:
    """POST one query to the HTTP API: the ``data`` of the answer and the answer's size in bytes."""
    request = urllib.request.Request(f"{url}{path}", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        raw = response.read()
    body = json.loads(raw)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body}")
    data: dict[str, Any] = body["data"]
    return data, len(raw)


def instant_query(url: str, query: str, at: float, *, stats: bool = False) -> dict[str, Any]:
    """POST one instant query to the HTTP API; the ``data`` of the answer."""
    form = {"query": query, "time": f"{at:.3f}"}
    if stats:
        form["stats"] = "all"
    return post_query(url, "/api/v1/query", form)[0]


def range_query(url: str, query: str, start: float, end: float, step: int) -> dict[str, Any]:
    """POST one range query to the HTTP API; the ``data`` of the answer."""
    form = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
    return post_query(url, "/api/v1/query_range", form)[0]


def metric_samples(url: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Prometheus' own ``/metrics`` as (name, labels, value)."""
    for line in http_get(f"{url}/metrics").splitlines():
        match = SAMPLE_LINE.match(line)
        if match is None or line.startswith("#"):
            continue
        labels = dict(LABEL_PAIR.findall(match["labels"] or ""))
        yield match["name"], labels, float(match["value"])


@dataclass
class ServerCounters:
    """The server-side counters that tell how many API requests arrived, how long they took, and the
    server's CPU time."""

    requests: dict[str, float]
    handler_seconds: dict[str, float]
    cpu_seconds: float | None = None

    @classmethod
    def read(cls, url: str) -> ServerCounters:
        requests: dict[str, float] = {}
        seconds: dict[str, float] = {}
        cpu = None
        for name, labels, value in metric_samples(url):
            if name == "process_cpu_seconds_total":
                cpu = value
            handler = labels.get("handler", "")
            if not handler.startswith("/api/v1/"):
                continue
            if name == "prometheus_http_requests_total":
                requests[handler] = requests.get(handler, 0) + value
            elif name == "prometheus_http_request_duration_seconds_sum":
                seconds[handler] = seconds.get(handler, 0) + value
        return cls(requests, seconds, cpu)

    def minus(self, before: ServerCounters) -> tuple[dict[str, int], float]:
        """Requests per handler and total handler seconds since ``before``."""
        counts = {h: round(v - before.requests.get(h, 0)) for h, v in self.requests.items()}
        seconds = sum(v - before.handler_seconds.get(h, 0) for h, v in self.handler_seconds.items())
        return {h: n for h, n in counts.items() if n}, seconds

    def cpu_since(self, before: ServerCounters) -> float | None:
        if self.cpu_seconds is None or before.cpu_seconds is None:
            return None
        return self.cpu_seconds - before.cpu_seconds


class RssSampler:
    """Samples Prometheus' resident memory every ``interval`` seconds and keeps the peaks.

    ``process_resident_memory_bytes`` from its ``/metrics``; and, where its process is found in /proc,
    ``RssAnon`` (its heap, without the file-backed pages of the mmapped block, which the kernel can drop).
    """

    def __init__(self, url: str, interval: float = 0.5) -> None:
        self.url = url
        self.interval = interval
        self.peak = 0.0
        self.peak_anon: float | None = None
        self._status = prometheus_status_path(url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for name, _, value in metric_samples(self.url):
            if name == "process_resident_memory_bytes":
                self.peak = max(self.peak, value)
        if self._status is None:
            return
        try:
            for line in self._status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
                    self.peak_anon = max(self.peak_anon or 0, anon)
        except (OSError, ValueError):
            self._status = None


def prometheus_status_path(url: str) -> Path | None:
    """``/proc/<pid>/status`` of the prometheus listening at ``url`` (matched by its listen flag)."""
    flag = f"--web.listen-address={urllib.parse.urlsplit(url).netloc}".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if flag in cmdline.read_bytes().split(b"\0"):
                return cmdline.with_name("status")
        except OSError:
            continue
    return None


def recommend_command(url: str, *, quiet: bool = True, gzip: bool = False) -> list[str]:
    """The installed ``rightsizer`` command (or the module, if it is not on PATH)."""
    program = shutil.which("rightsizer")
    launcher = [program] if program else [sys.executable, "-m", "rightsizer.cli"]
    command = [*launcher, "recommend", "--prometheus-url", url, "-o", "json"]
    if gzip:
        command.append("--prometheus-gzip")
    return [*command, "-q"] if quiet else command


def query_error(error: urllib.error.HTTPError) -> str:
    """Prometheus' ``error`` field of a failed API answer (else the HTTP status)."""
    try:
        return f"{error.code}: {json.loads(error.read())['error']}"
    except (ValueError, KeyError, OSError):
        return f"HTTP {error.code}"


def batch_queries(namespace: str) -> dict[str, tuple[bool, str]]:
    """Every query of one namespace's batch as rightsizer builds it: (is it a range query, PromQL)."""
    return QueryScope((namespace,), HISTORY).queries()


def time_query_kinds(url: str, namespace: str) -> list[QueryTiming]:
    """Each query of one namespace's batch, run alone and in turn, as rightsizer builds it (the instant
    queries at now, the range queries over the window's buckets), with Prometheus' own handler time, the
    samples it read and the bytes it answered."""
    scope = QueryScope((namespace,), HISTORY)
    at = float(round(time.time()))
    first = at - (scope.buckets - 1) * scope.bucket_seconds
    timings = []
    for name, (is_range, query) in batch_queries(namespace).items():
        if is_range:
            path = "/api/v1/query_range"
            form = {
                "query": query,
                "start": f"{first:.3f}",
                "end": f"{at:.3f}",
                "step": str(scope.bucket_seconds),
            }
        else:
            path, form = "/api/v1/query", {"query": query, "time": f"{at:.3f}"}
        before = ServerCounters.read(url)
        started = time.perf_counter()
        try:
            data, size = post_query(url, path, {**form, "stats": "all"})
            error = None
        except urllib.error.HTTPError as failure:
            data, size, error = {}, None, query_error(failure)
        seconds = time.perf_counter() - started
        _, handler = ServerCounters.read(url).minus(before)
        samples = (data.get("stats") or {}).get("samples") or {}
        timings.append(
            QueryTiming(
                name,
                seconds,
                len(data.get("result") or []),
                error,
                handler_seconds=handler,
                samples=samples.get("totalQueryableSamples"),
                peak_samples=samples.get("peakSamples"),
                bytes=size,
            )
        )
        log(f"  {name}: {seconds:.2f} s" + (f" ({error})" if error else ""))
    return timings


def wait_until_idle(url: str, timeout: float = 600) -> None:
    """Wait until Prometheus evaluates no query, so a failed run's leftovers don't load the next one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [v for name, _, v in metric_samples(url) if name == "prometheus_engine_queries"]
        if not running or running[0] == 0:
            return
        time.sleep(1)
    log(f"Prometheus still evaluates queries after {timeout:.0f} s; measuring anyway")


def recommend_once(url: str, gzip: bool = False) -> RecommendRun:
    """One measured ``rightsizer recommend -o json -q`` with the server-side counters around it."""
    wait_until_idle(url)
    load_before = os.getloadavg()[0]
    before = ServerCounters.read(url)
    with RssSampler(url) as rss:
        run = run_measured(recommend_command(url, gzip=gzip))
    after = ServerCounters.read(url)
    by_handler, handler_seconds = after.minus(before)
    recommendations = ready = error = None
    if run.returncode == 0:
        found = json.loads(run.stdout)["recommendations"]
        recommendations = len(found)
        ready = sum(1 for r in found if r["recommended"] is not None)
    else:
        lines = run.stderr.strip().splitlines() or [f"exit {run.returncode}"]
        error = f"killed by signal {-run.returncode}" if run.returncode < 0 else lines[-1][:300]
        log(f"rightsizer failed after {run.seconds:.0f} s: {error}")
    log(f"  {run.seconds:.1f} s, {run.cpu_seconds:.1f} s CPU, {run.max_rss_mib:.0f} MiB")
    return RecommendRun(
        seconds=run.seconds,
        rss_mib=run.max_rss_mib,
        cpu_seconds=run.cpu_seconds,
        queries_server=sum(by_handler.values()),
        queries_by_handler=by_handler,
        prometheus_handler_seconds=handler_seconds,
        prometheus_rss_mib=rss.peak / MIB,
        prometheus_anon_mib=None if rss.peak_anon is None else rss.peak_anon / MIB,
        recommendations=recommendations,
        ready=ready,
        error=error,
        prometheus_cpu_seconds=after.cpu_since(before),
        load=(load_before, os.getloadavg()[0]),
    )


STAGE_SCRIPT = """
import inspect, json, resource, sys, time
from collections import defaultdict
import rightsizer.collect as collect_module
import rightsizer.scan as scan_module
from rightsizer.report import render
from rightsizer.settings import DEFAULTS
from rightsizer.source import PrometheusSource
totals = defaultdict(float)
def each(stage, items):
    while True:
        started = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            totals[stage] += time.perf_counter() - started
        yield item
def timed(stage, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            result = function(*args, **kwargs)
        finally:
            totals[stage] += time.perf_counter() - started
        return each(stage, result) if inspect.isgenerator(result) else result
    return wrapper
for stage, owner, name in STAGES:
    target = {"scan": scan_module, "collect": collect_module, "PrometheusSource": PrometheusSource}[owner]
    if hasattr(target, name):
        setattr(target, name, timed(stage, getattr(target, name)))
started = time.perf_counter()
source = PrometheusSource(sys.argv[1], gzip=sys.argv[2] == "gzip")
result = scan_module.scan(source, scan_module.ScanRequest(), DEFAULTS)
scanned = time.perf_counter()
text = render(result.recommendations, "json", end=result.end, failed=result.failed)
totals["render"] = time.perf_counter() - scanned
totals["total"] = time.perf_counter() - started
totals["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(totals))
"""
STAGES = (
    ("fetch", "PrometheusSource", "fetch"),
    ("collect", "scan", "workload_containers"),
    ("collect", "collect", "_gathered"),
    ("engine", "scan", "recommend"),
)
"""What each stage's timer wraps (as rightsizer.scan calls them: ``workload_containers`` before issue 18,
``collect._gathered`` through ``each_workload_container`` since)."""


def stage_times(url: str, gzip: bool = False) -> StageTimes | None:
    """One in-process scan of every namespace with each stage of the client timed (a child process)."""
    script = f"STAGES = {STAGES!r}\n{STAGE_SCRIPT}"
    run = run_measured([sys.executable, "-c", script, url, "gzip" if gzip else "identity"])
    if run.returncode != 0:
        log(f"stage timing failed: {run.stderr.strip().splitlines()[-1:]}")
        return None
    totals = json.loads(run.stdout)
    return StageTimes(**{f.name: float(totals.get(f.name, 0.0)) for f in fields(StageTimes)})


def measure(args: argparse.Namespace, binary: Path, case: Case) -> Result:
    """Generate (or reuse) a dataset, serve it, and measure ``rightsizer recommend`` against it."""
    data = dataset(
        binary,
        cache_dir(),
        case.containers,
        case.namespaces,
        HISTORY,
        args.lead,
        args.max_age_minutes * 60,
        case.shape,
    )
    started = time.perf_counter()
    with PrometheusServer(data.tsdb, startup_timeout=300) as server:
        summary = data.summary
        result = Result(
            containers=case.containers,
            namespaces=case.namespaces,
            pods_per_deployment=case.shape.pods_per_deployment,
            containers_per_pod=case.shape.containers_per_pod,
            series=int(summary["series"]),
            samples=int(summary["samples"]),
            block_mib=int(summary["bytes"]) / MIB,
            # A reused dataset keeps the numbers of the run that generated it.
            generation_seconds=data.seconds or _float(summary.get("wallSeconds")),
            generator_rss_mib=data.generator_rss_mib or _float(summary.get("maxRssMib")),
            prometheus_start_seconds=time.perf_counter() - started,
        )
        wait_until_idle(server.url)
        instant_query(server.url, "count(container_memory_working_set_bytes)", time.time())  # warm-up
        for index in range(args.runs):
            log(f"{case.title()}: rightsizer recommend -o json -q ({index + 1} of {args.runs})")
            result.runs.append(recommend_once(server.url, args.gzip))
        if all(r.error is None for r in result.runs) and not args.single_run:
            log(f"{case.title()}: a run without -q, for rightsizer's closing line")
            closing = run_measured(recommend_command(server.url, quiet=False, gzip=args.gzip))
            match = CLOSING_LINE.search(closing.stderr)
            result.queries_client = int(match["queries"]) if match else None
        if not args.no_stages:
            log(f"{case.title()}: the client's time per stage")
            wait_until_idle(server.url)
            result.stages = stage_times(server.url, args.gzip)
        if not args.no_query_timings:
            result.profiled_namespace = PROFILED_NAMESPACE
            log(f"{case.title()}: timing each query alone on namespace {PROFILED_NAMESPACE}")
            wait_until_idle(server.url)
            result.query_timings = time_query_kinds(server.url, PROFILED_NAMESPACE)
    result.measured = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    result.rightsizer_version = args.version_label or rightsizer_version()
    return result


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def rightsizer_version() -> str:
    """The repository's commit, ``+dirty`` if the rightsizer sources differ from it ("?" without git)."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return "?"
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "operator"], check=False).returncode != 0
    return head.stdout.strip() + ("+dirty" if dirty else "")


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def spread(values: list[float], digits: int = 1, unit: str = "") -> str:
    """The median, and the range when there are several values: ``**12.3 s** (11.9 to 13.0)``."""
    if not values:
        return "-"
    text = f"**{fmt(statistics.median(values), digits)}{unit}**"
    if len(values) > 1:
        text += f" ({fmt(min(values), digits)} to {fmt(max(values), digits)})"
    return text


def results_table(results: list[Result]) -> str:
    """The headline numbers: one column per case, one row per measurement (the median of the runs, and
    their range)."""

    def outcome(r: Result) -> str:
        run = r.run
        if run is None:
            return "-"
        if run.error is None:
            return f"{run.recommendations:,} ({run.ready:,} ready)"
        return f"**failed**: {run.error.replace('|', '/')}"

    def over_runs(
        pick: Callable[[RecommendRun], float | None], digits: int = 1, unit: str = ""
    ) -> Callable[[Result], str]:
        return lambda r: spread([v for v in map(pick, r.runs) if v is not None], digits, unit)

    def load(r: Result) -> str:
        values = [v for run in r.runs if run.load for v in run.load]
        return f"{min(values):.1f} to {max(values):.1f}" if values else "-"

    def stages(r: Result) -> str:
        s = r.stages
        if s is None:
            return "-"
        return (
            f"{s.fetch:.1f} s, {s.collect:.1f} s, {s.engine:.1f} s, {s.render:.1f} s "
            f"(of {s.total:.1f} s; {s.rss_mib:.0f} MiB)"
        )

    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("pods, namespaces", lambda r: f"{r.containers // r.containers_per_pod:,}, {r.namespaces}"),
        ("series, samples", lambda r: f"{r.series:,}, {r.samples / 1e9:.2f} G"),
        ("runs", lambda r: str(len(r.runs))),
        ("**wall time**", over_runs(lambda run: run.seconds, unit=" s")),
        ("**rightsizer peak RSS**", over_runs(lambda run: run.rss_mib, 0, " MiB")),
        ("rightsizer CPU (user + system)", over_runs(lambda run: run.cpu_seconds, unit=" s")),
        ("the machine's load (1 min) around the runs", load),
        (
            "**Prometheus queries** (server's count)",
            lambda r: f"**{r.run.queries_server}**" if r.run else "-",
        ),
        ("queries on rightsizer's closing line", lambda r: fmt(r.queries_client, 0)),
        ("recommendations", outcome),
        ("Prometheus CPU", over_runs(lambda run: run.prometheus_cpu_seconds, unit=" s")),
        (
            "Prometheus handler time (summed)",
            over_runs(lambda run: run.prometheus_handler_seconds, unit=" s"),
        ),
        (
            "Prometheus peak RSS (of it anonymous)",
            lambda r: (
                f"{fmt(r.run.prometheus_rss_mib, 0)} MiB ({fmt(r.run.prometheus_anon_mib, 0)} MiB)"
                if r.run
                else "-"
            ),
        ),
        ("client stages: fetch, collect, engine, render", stages),
        (
            "generation: time, peak RSS, block size",
            lambda r: (
                f"{fmt(r.generation_seconds)} s, {fmt(r.generator_rss_mib, 0)} MiB, {fmt(r.block_mib, 0)} MiB"
            ),
        ),
        ("rightsizer measured", lambda r: f"{r.rightsizer_version or '?'}, {r.measured or '?'}"),
    ]
    lines = [
        "| | " + " | ".join(r.case.title() for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |" for label, cell in rows]
    return "\n".join(lines) + "\n"


def timings_table(results: list[Result]) -> str:
    """Per query: Prometheus' handler time, the samples it read and the bytes of its answer, alone on one
    namespace (sequential, nothing else of the benchmark running)."""
    measured = [r for r in results if r.query_timings]
    if not measured:
        return "(query timings not measured)\n"
    head = "| query | " + " | ".join(
        f"{r.case.title()}: {r.case.largest_namespace():,} in `{r.profiled_namespace}`" for r in measured
    )
    lines = [head + " |", "|---|" + "---|" * len(measured)]
    names = list(dict.fromkeys(t.name for r in measured for t in r.query_timings))

    def cell(t: QueryTiming | None) -> str:
        if t is None:
            return "-"
        if t.error:
            return f"{t.seconds:.2f} s **{t.error}**"
        seconds = t.handler_seconds if t.handler_seconds is not None else t.seconds
        samples = "-" if t.samples is None else f"{t.samples / 1e6:,.1f} M"
        size = "-" if t.bytes is None else f"{t.bytes / 1e6:,.2f} MB"
        return f"{seconds:.2f} s, {samples}, {size}"

    for name in names:
        cells = [cell(next((t for t in r.query_timings if t.name == name), None)) for r in measured]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")

    def total(r: Result) -> str:
        seconds = sum(
            t.handler_seconds if t.handler_seconds is not None else t.seconds for t in r.query_timings
        )
        samples = sum(t.samples or 0 for t in r.query_timings)
        size = sum(t.bytes or 0 for t in r.query_timings)
        return f"**{seconds:.2f} s**, {samples / 1e6:,.1f} M, {size / 1e6:,.2f} MB"

    lines.append(
        f"| the {len(names)} queries, one after the other | " + " | ".join(map(total, measured)) + " |"
    )
    return "\n".join(lines) + "\n"


def machine() -> str:
    """One line about where the numbers were measured."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    prometheus = subprocess.run(
        [find_binary("prometheus", "RIGHTSIZER_PROMETHEUS_BIN"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    version = (prometheus.stdout or prometheus.stderr).splitlines()[0] if prometheus.returncode == 0 else "?"
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kib / 1024 / 1024:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, {version}"
    )


def replace_between(text: str, begin: str, end: str, body: str) -> str | None:
    """``text`` with what lies between the ``begin`` and ``end`` markers replaced; None if not found."""
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        return None
    return text[: start + len(begin)] + "\n" + body + text[stop:]


def merge_kept(results: list[Result], kept_path: Path) -> list[Result]:
    """``results`` plus the kept results of cases not measured now; keeps the union in ``kept_path``."""
    kept: dict[str, Result] = {}
    if kept_path.exists():
        try:
            kept = {r.case.key: r for r in map(Result.from_dict, json.loads(kept_path.read_text()))}
        except (ValueError, TypeError, KeyError) as error:
            log(f"ignoring {kept_path}: {error}")
    kept.update({r.case.key: r for r in results})
    merged = sorted(kept.values(), key=lambda r: (r.namespaces != 20, r.containers))
    kept_path.write_text(json.dumps([asdict(r) for r in merged], indent=2) + "\n")
    return merged


def write_doc(results: list[Result]) -> None:
    """Put the tables between the markers of docs/benchmarks.md; leaves everything else alone."""
    if not DOC.exists():
        log(f"{DOC} does not exist: not written")
        return
    text = DOC.read_text()
    when = ", ".join(sorted({r.measured for r in results if r.measured})) or "?"
    versions = ", ".join(sorted({r.rightsizer_version for r in results if r.rightsizer_version})) or "?"
    summary = f"Measured {when} UTC (rightsizer {versions}) on {machine()}.\n\n" + results_table(results)
    updated = replace_between(text, RESULTS_BEGIN, RESULTS_END, summary)
    if updated is not None:
        updated = replace_between(updated, QUERIES_BEGIN, QUERIES_END, timings_table(results)) or updated
    if updated is None:
        log(f"{DOC} has no {RESULTS_BEGIN} ... {RESULTS_END} markers: not written")
        return
    DOC.write_text(updated)
    log(f"wrote the results into {DOC}")


def log(message: str) -> None:
    print(f"scale_bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[1000, 10000], help="sizes to measure")
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--pods-per-deployment", type=int, default=Shape.pods_per_deployment)
    parser.add_argument("--containers-per-pod", type=int, default=Shape.containers_per_pod)
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each case (default 3)")
    parser.add_argument(
        "--lead", type=int, default=1800, help="history generated before the window, s (default 1800)"
    )
    parser.add_argument(
        "--max-age-minutes",
        type=float,
        default=5,
        help="reuse a dataset that ended at most this long ago (default 5; 0 always regenerates)",
    )
    parser.add_argument("--single-run", action="store_true", help="skip the run for the closing line")
    parser.add_argument("--no-stages", action="store_true", help="skip timing the client's stages")
    parser.add_argument("--no-query-timings", action="store_true", help="skip timing each query alone")
    parser.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.relative_to(REPO)}")
    parser.add_argument(
        "--gzip",
        action="store_true",
        help="run rightsizer with --prometheus-gzip (its answers gzipped, as before)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--version-label",
        help="what to record as the rightsizer measured (default: this checkout's commit); e.g. when "
        "PYTHONPATH puts another checkout's operator/ first",
    )
    parser.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="document the last results of cases not measured now too (kept in the cache; default on)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    binary = build_generator(cache)
    shape = Shape(args.pods_per_deployment, args.containers_per_pod)
    # SIGTERM (a stopped benchmark) unwinds like ^C: the servers and children started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = []
    for containers in args.containers:
        results.append(measure(args, binary, Case(containers, args.namespaces, shape)))
        if args.json:  # after each case, so that a long run stopped later keeps what it measured
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=2, default=str) + "\n")
    print(f"Measured on {machine()}.\n")
    print(results_table(results))
    print(timings_table(results))
    if not args.no_doc:
        write_doc(merge_kept(results, cache / "scale-results.json") if args.keep else results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale benchmark of ``rightsizer recommend`` against a real Prometheus holding 14 days of 60 s history.

For each container count: build the Go generator in ``bench/scale`` (once), write a TSDB block with the
metric contract's series (docs/metrics.md), start ``prometheus`` on it, warm it with one query, then run
``rightsizer recommend -o json -q`` as a child process and measure its wall time and peak RSS (``wait4``),
the Prometheus queries it sent (the server's own request counters, before and after), the number of
recommendations, and Prometheus' RSS while it answered. A second run without ``-q`` cross-checks the query
count against rightsizer's closing line, and every query kind is then timed alone on one namespace with
the HTTP API, to show where the time goes.

Usage: ``python bench/scale_bench.py --containers 1000 10000``. Results are printed as markdown and written
between the ``scale-results`` / ``scale-queries`` markers of docs/benchmarks.md (``--no-doc`` to skip),
together with the last results of sizes not measured this time (``--no-keep`` to drop them). This is a
measurement, not a test: nothing here asserts a time.

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
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
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
CONTAINERS_PER_DEPLOYMENT = 10
"""The generator's defaults: 5 pods of 2 containers."""
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
    """One ``rightsizer recommend`` child process."""

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
    rows: int
    error: str | None = None
    """Prometheus' error (e.g. its 2 min query timeout), if the query failed."""


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


@dataclass
class Result:
    """Everything measured for one container count."""

    containers: int
    namespaces: int
    series: int
    samples: int
    block_mib: float
    generation_seconds: float | None
    generator_rss_mib: float | None
    prometheus_start_seconds: float
    run: RecommendRun
    queries_client: int | None = None
    """The query count on rightsizer's own closing line (second run, without ``-q``)."""
    second_run_seconds: float | None = None
    query_timings: list[QueryTiming] = field(default_factory=list)
    profiled_namespace: str | None = None
    measured: str = ""
    """UTC date of the measurement."""
    rightsizer_version: str = ""
    """``git describe``-like commit of the rightsizer measured (``+dirty`` if operator/ had changes)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """The inverse of ``dataclasses.asdict`` (for results kept from earlier runs)."""
        values = dict(data)
        values.pop("what_if", None)  # kept by runs before issue 7, whose first/last-seen queries are gone
        values["run"] = RecommendRun(**values["run"])
        values["query_timings"] = [QueryTiming(**t) for t in values.get("query_timings") or []]
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
    """Run ``command`` to completion; wall time and the peak RSS of exactly that process (``wait4``)."""
    out_path = cache_dir() / "child.stdout"
    err_path = cache_dir() / "child.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        returncode=process.returncode,
        seconds=seconds,
        max_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def dataset(
    binary: Path, cache: Path, containers: int, namespaces: int, history: int, lead: int, max_age: float
) -> Dataset:
    """A TSDB with ``containers`` containers whose history ends within ``max_age`` seconds of now."""
    base = cache / f"data-{containers}c-{namespaces}ns"
    tsdb = base / "tsdb"
    summary_path = base / "dataset.json"
    wanted = {
        "version": generator_version(),
        "containers": containers,
        "namespaces": namespaces,
        "historySeconds": history + lead,
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


def instant_query(url: str, query: str, at: float, *, stats: bool = False) -> dict[str, object]:
    """POST one instant query to the HTTP API; the ``data`` of the answer."""
    form = {"query": query, "time": f"{at:.3f}"}
    if stats:
        form["stats"] = "all"
    request = urllib.request.Request(f"{url}/api/v1/query", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body}")
    return body["data"]


def range_query(url: str, query: str, start: float, end: float, step: int) -> dict[str, object]:
    """POST one range query to the HTTP API; the ``data`` of the answer."""
    form = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
    request = urllib.request.Request(f"{url}/api/v1/query_range", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body}")
    return body["data"]


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
    """The server-side counters that tell how many API requests arrived and how long they took."""

    requests: dict[str, float]
    handler_seconds: dict[str, float]

    @classmethod
    def read(cls, url: str) -> ServerCounters:
        requests: dict[str, float] = {}
        seconds: dict[str, float] = {}
        for name, labels, value in metric_samples(url):
            handler = labels.get("handler", "")
            if not handler.startswith("/api/v1/"):
                continue
            if name == "prometheus_http_requests_total":
                requests[handler] = requests.get(handler, 0) + value
            elif name == "prometheus_http_request_duration_seconds_sum":
                seconds[handler] = seconds.get(handler, 0) + value
        return cls(requests, seconds)

    def minus(self, before: ServerCounters) -> tuple[dict[str, int], float]:
        """Requests per handler and total handler seconds since ``before``."""
        counts = {h: round(v - before.requests.get(h, 0)) for h, v in self.requests.items()}
        seconds = sum(v - before.handler_seconds.get(h, 0) for h, v in self.handler_seconds.items())
        return {h: n for h, n in counts.items() if n}, seconds


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


def recommend_command(url: str, *, quiet: bool = True) -> list[str]:
    """The installed ``rightsizer`` command (or the module, if it is not on PATH)."""
    program = shutil.which("rightsizer")
    launcher = [program] if program else [sys.executable, "-m", "rightsizer.cli"]
    command = [*launcher, "recommend", "--prometheus-url", url, "-o", "json"]
    return [*command, "-q"] if quiet else command


def query_error(error: urllib.error.HTTPError) -> str:
    """Prometheus' ``error`` field of a failed API answer (else the HTTP status)."""
    try:
        return f"{error.code}: {json.loads(error.read())['error']}"
    except (ValueError, KeyError, OSError):
        return f"HTTP {error.code}"


def time_query_kinds(url: str, namespace: str) -> list[QueryTiming]:
    """Each query of one namespace's batch, run alone and in turn, as rightsizer builds it: the
    instant queries at now, the history queries over the window's buckets."""
    scope = QueryScope((namespace,), HISTORY)
    at = float(round(time.time()))
    first = at - (scope.buckets - 1) * scope.bucket_seconds
    queries: dict[str, Callable[[], dict[str, object]]] = {
        name: (lambda q=q: instant_query(url, q, at))
        for name, q in {**scope.usage_queries(), **scope.state_queries()}.items()
    }
    queries |= {
        f"{name} (range)": (lambda q=q: range_query(url, q, first, at, scope.bucket_seconds))
        for name, q in scope.history_queries().items()
    }
    timings = []
    for name, send in queries.items():
        started = time.perf_counter()
        try:
            rows, error = len(send()["result"]), None  # type: ignore[arg-type]
        except urllib.error.HTTPError as failure:
            rows, error = 0, query_error(failure)
        timings.append(QueryTiming(name, time.perf_counter() - started, rows, error))
        log(f"  {name}: {timings[-1].seconds:.2f} s" + (f" ({error})" if error else ""))
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


def recommend_once(url: str) -> RecommendRun:
    """One measured ``rightsizer recommend -o json -q`` with the server-side counters around it."""
    wait_until_idle(url)
    before = ServerCounters.read(url)
    with RssSampler(url) as rss:
        run = run_measured(recommend_command(url))
    by_handler, handler_seconds = ServerCounters.read(url).minus(before)
    recommendations = ready = error = None
    if run.returncode == 0:
        found = json.loads(run.stdout)["recommendations"]
        recommendations = len(found)
        ready = sum(1 for r in found if r["recommended"] is not None)
    else:
        lines = run.stderr.strip().splitlines() or [f"exit {run.returncode}"]
        error = f"killed by signal {-run.returncode}" if run.returncode < 0 else lines[-1][:300]
        log(f"rightsizer failed after {run.seconds:.0f} s: {error}")
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
    )


def measure(args: argparse.Namespace, binary: Path, containers: int) -> Result:
    """Generate (or reuse) a dataset, serve it, and measure ``rightsizer recommend`` against it."""
    data = dataset(
        binary, cache_dir(), containers, args.namespaces, HISTORY, args.lead, args.max_age_minutes * 60
    )
    started = time.perf_counter()
    with PrometheusServer(data.tsdb, startup_timeout=300) as server:
        summary = data.summary
        result = Result(
            containers=containers,
            namespaces=args.namespaces,
            series=int(summary["series"]),
            samples=int(summary["samples"]),
            block_mib=int(summary["bytes"]) / MIB,
            # A reused dataset keeps the numbers of the run that generated it.
            generation_seconds=data.seconds or _float(summary.get("wallSeconds")),
            generator_rss_mib=data.generator_rss_mib or _float(summary.get("maxRssMib")),
            prometheus_start_seconds=time.perf_counter() - started,
            run=RecommendRun(0, 0, 0, 0, {}, 0, 0, None, None, None, "not run"),
        )
        wait_until_idle(server.url)
        instant_query(server.url, "count(container_memory_working_set_bytes)", time.time())  # warm-up
        log(f"{containers} containers: rightsizer recommend -o json -q")
        result.run = recommend_once(server.url)
        if result.run.error is None and not args.single_run:
            log(f"{containers} containers: second run, without -q, for rightsizer's closing line")
            second = run_measured(recommend_command(server.url, quiet=False))
            match = CLOSING_LINE.search(second.stderr)
            result.queries_client = int(match["queries"]) if match else None
            result.second_run_seconds = second.seconds
        if not args.no_query_timings:
            # Deployments go round-robin over the namespaces: the first one is (one of) the largest.
            result.profiled_namespace = "team-00"
            log(f"{containers} containers: timing each query kind alone on namespace team-00")
            wait_until_idle(server.url)
            result.query_timings = time_query_kinds(server.url, "team-00")
    result.measured = time.strftime("%Y-%m-%d", time.gmtime())
    result.rightsizer_version = rightsizer_version()
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


def run_cells(run: RecommendRun) -> str:
    """Wall time, peak RSS, queries, recommendations, Prometheus RSS and handler time of one run."""
    if run.error is None:
        outcome = f"{run.recommendations:,} ({run.ready:,})"
    else:
        outcome = f"**failed**: {run.error.replace('|', '/')}"
    return (
        f"**{fmt(run.seconds)} s** | **{fmt(run.rss_mib, 0)} MiB** | {fmt(run.cpu_seconds)} s "
        f"| **{run.queries_server}** | {outcome} "
        f"| {fmt(run.prometheus_rss_mib, 0)} MiB | {fmt(run.prometheus_handler_seconds)} s"
    )


def results_table(results: list[Result]) -> str:
    """The headline numbers: one column per container count, one row per measurement."""

    def outcome(r: Result) -> str:
        if r.run.error is None:
            return f"{r.run.recommendations:,} ({r.run.ready:,} ready)"
        return f"**failed**: {r.run.error.replace('|', '/')}"

    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("pods, namespaces", lambda r: f"{r.containers // 2:,}, {r.namespaces}"),
        ("series, samples", lambda r: f"{r.series:,}, {r.samples / 1e9:.2f} G"),
        ("**wall time**", lambda r: f"**{fmt(r.run.seconds)} s**"),
        ("**rightsizer peak RSS**", lambda r: f"**{fmt(r.run.rss_mib, 0)} MiB**"),
        ("rightsizer CPU (user + system)", lambda r: f"{fmt(r.run.cpu_seconds)} s"),
        ("**Prometheus queries** (server's count)", lambda r: f"**{r.run.queries_server}**"),
        ("queries on rightsizer's closing line", lambda r: fmt(r.queries_client, 0)),
        ("recommendations", outcome),
        ("wall time, second run", lambda r: f"{fmt(r.second_run_seconds)} s"),
        (
            "Prometheus peak RSS (of it anonymous)",
            lambda r: f"{fmt(r.run.prometheus_rss_mib, 0)} MiB ({fmt(r.run.prometheus_anon_mib, 0)} MiB)",
        ),
        ("Prometheus handler time (summed)", lambda r: f"{fmt(r.run.prometheus_handler_seconds)} s"),
        (
            "generation: time, peak RSS, block size",
            lambda r: (
                f"{fmt(r.generation_seconds)} s, {fmt(r.generator_rss_mib, 0)} MiB, {fmt(r.block_mib, 0)} MiB"
            ),
        ),
        ("Prometheus start", lambda r: f"{fmt(r.prometheus_start_seconds)} s"),
        ("rightsizer measured", lambda r: f"{r.rightsizer_version or '?'}, {r.measured or '?'}"),
    ]
    lines = [
        "| | " + " | ".join(f"{r.containers:,} containers" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |" for label, cell in rows]
    return "\n".join(lines) + "\n"


def largest_namespace(result: Result) -> int:
    """Containers in the first (largest) namespace: Deployments of 10 containers go round-robin."""
    deployments = result.containers // CONTAINERS_PER_DEPLOYMENT
    return -(-deployments // result.namespaces) * CONTAINERS_PER_DEPLOYMENT


def timings_table(results: list[Result]) -> str:
    """Per query kind: seconds alone on one namespace (sequential, nothing else running)."""
    measured = [r for r in results if r.query_timings]
    if not measured:
        return "(query timings not measured)\n"
    head = "| query | " + " | ".join(
        f"{r.containers:,} containers ({largest_namespace(r):,} in `{r.profiled_namespace}`)"
        for r in measured
    )
    lines = [head + " |", "|---|" + "---|" * len(measured)]
    names = list(dict.fromkeys(t.name for r in measured for t in r.query_timings))
    for name in names:
        cells = []
        for r in measured:
            t = next((t for t in r.query_timings if t.name == name), None)
            cells.append("-" if t is None else f"{t.seconds:.2f} s" + (f" **{t.error}**" if t.error else ""))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    total = [sum(t.seconds for t in r.query_timings) for r in measured]
    count = len(names)
    lines.append(
        f"| the {count} queries, one after the other | " + " | ".join(f"**{v:.2f} s**" for v in total) + " |"
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
    """``results`` plus the kept results of sizes not measured now; keeps the union in ``kept_path``."""
    kept: dict[int, Result] = {}
    if kept_path.exists():
        try:
            kept = {r.containers: r for r in map(Result.from_dict, json.loads(kept_path.read_text()))}
        except (ValueError, TypeError, KeyError) as error:
            log(f"ignoring {kept_path}: {error}")
    kept.update({r.containers: r for r in results})
    merged = [kept[n] for n in sorted(kept)]
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
    summary = f"Measured {when} (rightsizer {versions}) on {machine()}.\n\n" + results_table(results)
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
    parser.add_argument(
        "--lead", type=int, default=1800, help="history generated before the window, s (default 1800)"
    )
    parser.add_argument(
        "--max-age-minutes",
        type=float,
        default=5,
        help="reuse a dataset that ended at most this long ago (default 5; 0 always regenerates)",
    )
    parser.add_argument("--single-run", action="store_true", help="skip the second (closing line) run")
    parser.add_argument("--no-query-timings", action="store_true", help="skip timing each query kind")
    parser.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.relative_to(REPO)}")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="document the last results of sizes not measured now too (kept in the cache; default on)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    binary = build_generator(cache)
    results = [measure(args, binary, n) for n in args.containers]
    print(f"Measured on {machine()}.\n")
    print(results_table(results))
    print(timings_table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2, default=str) + "\n")
    if not args.no_doc:
        write_doc(merge_kept(results, cache / "scale-results.json") if args.keep else results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

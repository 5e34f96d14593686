"""Operator benchmark: 1,000 policies over 100 namespaces, against a real kube-apiserver and a real
Prometheus holding 14 days of 60 s history (the scale benchmark's generator, ``bench/scale``).

Every namespace has one Deployment of 5 pods x 2 containers (as generated) and 10 policies targeting
it (``interval: 1m`` unless ``--interval``). The policies are created first, then ``rightsizer
operator`` is started (as ``deploy/`` runs it: a Kopf tick of 10 s) and measured:

- how long until every policy is Ready (``RecommendationsReady=True``), in intervals;
- then, over ``--intervals`` intervals: the queries Prometheus answered (its own
  ``prometheus_http_requests_total`` of ``/api/v1/query`` and ``/api/v1/query_range``) per interval,
  Prometheus' CPU (``process_cpu_seconds_total``) per interval, and the operator's RSS (``VmRSS``
  at the end, ``VmHWM`` its peak).

Usage: ``python bench/operator_bench.py`` (needs Go, ``prometheus`` on PATH and the control plane's
binaries, built by ``tests/support/k8s.py``). Prints markdown and writes it between the
``operator-results`` markers of docs/benchmarks.md (``--no-doc`` to skip). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import scale_bench  # noqa: E402
from rightsizer_demo.prometheus import PrometheusServer  # noqa: E402
from tests.support.k8s import kubectl, start_control_plane  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402

BEGIN, END = "<!-- operator-results:begin -->", "<!-- operator-results:end -->"
QUERY_HANDLERS = ("/api/v1/query", "/api/v1/query_range")
FIRST_ROUND_QUERIES = 13
"""docs/metrics.md: a namespace's batch is a first round of 13 queries and a second round of what those
call for (none for the benchmark's pods, which run through the whole window)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prometheus_counters(url: str) -> tuple[float, float]:
    """(queries answered, CPU seconds) of the Prometheus server so far."""
    queries = cpu = 0.0
    for name, labels, value in scale_bench.metric_samples(url):
        if name == "prometheus_http_requests_total" and labels.get("handler") in QUERY_HANDLERS:
            queries += value
        elif name == "process_cpu_seconds_total":
            cpu = value
    return queries, cpu


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def apply(k: Callable[..., Any], objects: list[dict[str, Any]]) -> None:
    for start in range(0, len(objects), 200):
        items = objects[start : start + 200]
        k(
            "apply",
            "--server-side",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )


def deployment(namespace: str, name: str) -> dict[str, Any]:
    containers = [
        {
            "name": c,
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        }
        for c in ("app", "proxy")
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}},
        },
    }


def policy(namespace: str, name: str, target: str, interval: str, profile: str) -> dict[str, Any]:
    return {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": {"name": target}, "interval": interval, "profile": profile},
    }


def ready_count(k: Callable[..., Any]) -> tuple[int, int]:
    items = json.loads(k("get", "rsp", "-A", "-o", "json").stdout)["items"]
    ready = sum(
        any(
            c["type"] == "RecommendationsReady" and c["status"] == "True"
            for c in i.get("status", {}).get("conditions", [])
        )
        for i in items
    )
    return ready, len(items)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rightsizer-operator-bench-"))
    cache = scale_bench.cache_dir()
    binary = scale_bench.build_generator(cache)
    containers = args.namespaces * 10
    data = scale_bench.dataset(binary, cache, containers, args.namespaces, scale_bench.HISTORY, 1800, 300)
    interval = args.interval_seconds
    prometheus = PrometheusServer(data.tsdb, log_path=work / "prometheus.log").start()
    plane = start_control_plane(work / "k8s")
    operator: OperatorProcess | None = None
    try:

        def k(*a: str, input: str | None = None, check: bool = True) -> Any:
            return kubectl(*a, kubeconfig=plane.kubeconfig, input=input, check=check)

        k("apply", "-f", str(REPO / "crds" / "rightsizepolicy.yaml"))
        k("wait", "--for", "condition=established", "--timeout=60s", "crd/rightsizepolicies.rightsizer.io")
        namespaces = [f"team-{n:02d}" for n in range(args.namespaces)]
        targets = {f"team-{d % args.namespaces:02d}": f"svc-{d:05d}" for d in range(args.namespaces)}
        apply(k, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces])
        apply(k, [deployment(ns, targets[ns]) for ns in namespaces])
        profiles = ("latency-sensitive", "background")
        policies = [
            policy(ns, f"p{i}", targets[ns], f"{interval}s", profiles[i % 2])
            for ns in namespaces
            for i in range(args.policies_per_namespace)
        ]
        apply(k, policies)
        log(f"{len(policies)} policies over {len(namespaces)} namespaces; starting the operator")
        queries0, cpu0 = prometheus_counters(prometheus.url)
        operator = OperatorProcess(
            plane.kubeconfig, prometheus.url, work / "operator.log", tick_seconds=10
        ).start()
        started = time.monotonic()
        assert operator.process is not None
        pid = operator.process.pid
        ready, total = 0, len(policies)
        loads = [os.getloadavg()[0]]
        while ready < total:
            if time.monotonic() - started > 10 * interval:
                raise SystemExit(f"only {ready}/{total} Ready after 10 intervals:\n{operator.log_tail()}")
            time.sleep(5)
            ready, _ = ready_count(k)
            loads.append(os.getloadavg()[0])
            log(f"{ready}/{total} Ready after {time.monotonic() - started:.0f} s")
        all_ready = time.monotonic() - started
        queries1, cpu1 = prometheus_counters(prometheus.url)
        log(f"measuring {args.intervals} intervals of {interval} s")
        time.sleep(args.intervals * interval)
        queries2, cpu2 = prometheus_counters(prometheus.url)
        rss, hwm = rss_mib(pid)
        return {
            "policies": total,
            "namespaces": len(namespaces),
            "containers": containers,
            "interval_seconds": interval,
            "all_ready_seconds": round(all_ready, 1),
            "all_ready_intervals": round(all_ready / interval, 2),
            "load_until_ready": [round(min(loads), 1), round(max(loads), 1)],
            "queries_until_ready": int(queries1 - queries0),
            "queries_per_interval": round((queries2 - queries1) / args.intervals, 1),
            "query_budget_per_interval": 16 * len(namespaces),
            "batch_per_interval": FIRST_ROUND_QUERIES * len(namespaces),
            "prometheus_cpu_per_interval": round((cpu2 - cpu1) / args.intervals, 2),
            "prometheus_cpu_until_ready": round(cpu1 - cpu0, 2),
            "operator_rss_mib": round(rss, 1),
            "operator_peak_rss_mib": round(hwm, 1),
            "machine": scale_bench.machine(),
            "rightsizer": args.version_label or scale_bench.rightsizer_version(),
        }
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()
        prometheus.stop()


def table(r: dict[str, Any]) -> str:
    n = r["namespaces"]
    return (
        "\n".join(
            [
                f"Measured {time.strftime('%Y-%m-%d')} (rightsizer {r['rightsizer']}) on {r['machine']}.",
                "",
                f"| {r['policies']:,} policies over {n} namespaces ({r['containers']:,} containers), "
                f"`interval: {r['interval_seconds'] // 60}m` | aim | result |",
                "|---|---|---|",
                f"| Prometheus queries per interval (steady) | at most 16 x {n} = {16 * n:,} | "
                f"**{r['queries_per_interval']:,.0f}** (a batch's first round is "
                f"{FIRST_ROUND_QUERIES} x {n} = {FIRST_ROUND_QUERIES * n:,}) |",
                f"| every policy Ready | within two intervals | **{r['all_ready_seconds']:.0f} s** "
                f"({r['all_ready_intervals']:.2f} intervals) |",
                f"| queries until every policy was Ready | | {r['queries_until_ready']:,} |",
                "| the machine's load average (1 min) until every policy was Ready | | "
                f"{r['load_until_ready'][0]} to {r['load_until_ready'][1]} |",
                f"| operator RSS (at the end; peak) | under 300 MiB | **{r['operator_rss_mib']:.0f} MiB**; "
                f"{r['operator_peak_rss_mib']:.0f} MiB |",
                f"| Prometheus CPU per interval (steady) | | {r['prometheus_cpu_per_interval']:.1f} s |",
                f"| Prometheus CPU until every policy was Ready | | {r['prometheus_cpu_until_ready']:.1f} s"
                " |",
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--policies-per-namespace", type=int, default=10)
    parser.add_argument("--interval-seconds", type=int, default=60)
    parser.add_argument("--intervals", type=int, default=3, help="steady intervals measured")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--version-label", help="what to record as the rightsizer measured (default: the commit)"
    )
    args = parser.parse_args(argv)
    result = run(args)
    body = table(result)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_doc:
        text = scale_bench.DOC.read_text()
        replaced = scale_bench.replace_between(text, BEGIN, END, body)
        if replaced is None:
            log(f"no {BEGIN} markers in {scale_bench.DOC}: not written")
        else:
            scale_bench.DOC.write_text(replaced)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

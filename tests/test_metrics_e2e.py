"""The operator's metrics, the Grafana dashboard and the alerting rules, for real.

A real kube-apiserver (with its controller manager, so Deployments have Pods) and a real Prometheus
with the demo history, as in test_operator_e2e.py; two operators as the ServiceAccount of deploy/,
each serving ``/metrics`` on loopback: one for namespace ``obs`` (its Prometheus reachable), one
for ``obs-down`` pointed at a port nothing listens on. A second real Prometheus scrapes both every
second, as deploy/monitoring/servicemonitor.yaml would (same job name), with the rules of
deploy/monitoring/prometheusrule.yaml loaded. Then every panel's expression of
deploy/dashboards/rightsizer.json and every alert's expression is run against it.

The conditions of three alerts are provoked for real, so their whole expression must return a
series: Prometheus unreachable (the second operator), a policy stuck without data (a workload with
six hours of history), and an OOM kill after a change (Deployment ``web`` annotated as changed by
Auto mode ten minutes ago, and one of its pods' status then showing an OOM kill a minute ago: what
the kubelet would write). The other two must stay quiet in a healthy run (an operator that is up
and evaluates): their expressions must run and return nothing, and the series they compare must
exist, with values on the healthy side of the threshold.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from rightsizer.controller import metrics, policy_gauges
from rightsizer.timestamps import format_time
from rightsizer_demo.history import DAY, WorkloadSpec, demo_scenario, window_ending_now
from rightsizer_demo.manifests import deployment_manifests, namespace_manifests
from rightsizer_demo.prometheus import PROMETHEUS_BIN_ENV, PrometheusServer, find_binary
from tests.support.k8s import (
    ControlPlane,
    kubectl,
)
from tests.support.operator import OperatorProcess, free_port, install_identity
from tests.support.prometheus import start_demo_prometheus

pytestmark = [pytest.mark.k8s, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "dashboards" / "rightsizer.json"
RULES = ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"
NS, DOWN = "obs", "obs-down"
LAYOUT = {NS: ("web", "new-feature", "cart"), DOWN: ("web",)}
JOB = "rightsizer-metrics"
"""The job label a ServiceMonitor gives: the Service's name (deploy/metrics.yaml)."""
HISTORY_DAYS = 3
WAIT_SECONDS = 180
GRAFANA = {"$namespace": ".*", "$policy": ".*", "$__rate_interval": "1m", "${datasource}": ""}
"""Dashboard variables as Grafana fills them with "All" selected; 1m rate windows over 1s scrapes."""
FIRING = {
    "RightsizerPrometheusUnreachable",
    "RightsizerOOMKilledAfterChange",
    "RightsizerPolicyStuckWithoutData",
}
QUIET = {"RightsizerDown", "RightsizerNotEvaluating"}
T = TypeVar("T")


# ---------------------------------------------------------------- the cluster and its operators


@pytest.fixture(scope="module")
def k(cluster: ControlPlane) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, kubeconfig=cluster.kubeconfig, input=input)

    return run


@pytest.fixture(scope="module")
def workloads() -> list[WorkloadSpec]:
    start, end = window_ending_now(HISTORY_DAYS * DAY, 60)
    demo = {w.name: w for w in demo_scenario(start, end)}
    return [replace(demo[name], namespace=ns) for ns, names in LAYOUT.items() for name in names]


@pytest.fixture(scope="module")
def history(
    tmp_path_factory: pytest.TempPathFactory, workloads: list[WorkloadSpec]
) -> Iterator[PrometheusServer]:
    server = start_demo_prometheus(tmp_path_factory.mktemp("history"), HISTORY_DAYS, 60, workloads)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def identity(cluster, workloads, tmp_path_factory) -> Path:
    """The CRD, the operator's ServiceAccount and RBAC (deploy/), the namespaces and workloads."""
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in LAYOUT]
    objects = namespaces + namespace_manifests(workloads) + deployment_manifests(workloads)
    return install_identity(cluster.kubeconfig, objects, tmp_path_factory.mktemp("sa") / "sa.kubeconfig")


@pytest.fixture(scope="module")
def oom_after_change(k, identity) -> None:
    """``obs/web`` as Auto mode leaves a workload it changed (``rightsizer.io/applied-at``, ten minutes
    ago), then one of its pods OOM-killed a minute ago, in the pod status the kubelet would write."""
    now = datetime.now(UTC)
    k(
        "annotate",
        "deployment",
        "web",
        "-n",
        NS,
        "--overwrite",
        f"rightsizer.io/applied-at={format_time(now - timedelta(minutes=10))}",
    )
    pod = wait_until(
        lambda: (
            json.loads(k("get", "pods", "-n", NS, "-l", "app=web", "-o", "json").stdout)["items"] or [None]
        )[0],
        "a pod of obs/web",
    )
    container = pod["spec"]["containers"][0]
    status = {
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {
                        "reason": "OOMKilled",
                        "exitCode": 137,
                        "startedAt": format_time(now - timedelta(minutes=5)),
                        "finishedAt": format_time(now - timedelta(minutes=1)),
                    }
                },
            }
        ]
    }
    name = pod["metadata"]["name"]
    k(
        "patch",
        "pod",
        name,
        "-n",
        NS,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


@pytest.fixture(scope="module")
def operators(
    identity, history, oom_after_change, k, tmp_path_factory
) -> Iterator[dict[str, OperatorProcess]]:
    """One operator per namespace; ``obs-down``'s Prometheus is a port nothing listens on."""
    logs = tmp_path_factory.mktemp("operators")
    running = {
        NS: OperatorProcess(identity, history.url, logs / "obs.log", namespaces=(NS,)),
        DOWN: OperatorProcess(
            identity, f"http://127.0.0.1:{free_port()}", logs / "down.log", namespaces=(DOWN,)
        ),
    }
    try:
        for process in running.values():
            process.start()
        for namespace, name, spec in (
            (NS, "web", {"targetRef": {"name": "web"}}),
            (NS, "new-feature", {"targetRef": {"name": "new-feature"}}),
            (NS, "cart", {"targetRef": {"name": "cart"}, "mode": "Auto"}),
            (DOWN, "web", {"targetRef": {"name": "web"}}),
        ):
            apply_policy(k, namespace, name, {**spec, "interval": "10s"})
        yield running
    finally:
        for process in running.values():
            process.stop()
            print(process.log_tail(80))


@pytest.fixture(scope="module")
def scraper(operators, tmp_path_factory) -> Iterator[str]:
    """A second real Prometheus: scrapes both operators every second, with the alerting rules loaded.
    Returns its URL."""
    directory = tmp_path_factory.mktemp("scraper")
    rules = directory / "rules.yaml"
    rules.write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"]))
    targets = [f"127.0.0.1:{process.metrics_port}" for process in operators.values()]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            find_binary("prometheus", PROMETHEUS_BIN_ENV),
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is None and _ready(url), "the scraping Prometheus to be ready")
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


# ---------------------------------------------------------------- tests


def test_every_metric_the_operator_defines_is_scraped(scraper: str) -> None:
    """Each family of the registry (``metrics``, ``policy_gauges``) has series in Prometheus."""
    assert policy_gauges.CURRENT  # registered on import
    expected = set()
    for family in metrics.REGISTRY.collect():
        if family.name.startswith("rightsizer_"):
            expected.add(
                {"counter": family.name + "_total", "histogram": family.name + "_bucket"}.get(
                    family.type, family.name
                )
            )

    def missing() -> set[str] | None:
        names = set(api(scraper, "/api/v1/label/__name__/values"))
        return None if expected <= names else expected - names

    gone = poll(missing, lambda left: left is None)
    assert gone is None, f"never scraped: {sorted(gone or ())}"


def test_every_dashboard_panel_returns_data(scraper: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = {
        f"{panel['title']} [{target['refId']}]": grafana_filled(target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }
    assert len(expressions) >= len(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            expressions[f"variable {variable['name']}"] = label_values_selector(variable["definition"])

    def empty() -> list[str]:
        return [title for title, expr in expressions.items() if not has_data(query(scraper, expr))]

    left = poll(empty, lambda titles: not titles)
    assert not left, "panels without data:\n" + "\n".join(f"{t}: {expressions[t]}" for t in left)


def test_the_provoked_alerts_fire_and_the_others_stay_quiet(scraper: str) -> None:
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load(RULES.read_text())["spec"]["groups"]
        for rule in group["rules"]
    }
    assert set(rules) == FIRING | QUIET, "a new alert: provoke it here, or show why it stays quiet"
    loaded = {r["name"]: r for g in api(scraper, "/api/v1/rules")["groups"] for r in g["rules"]}
    assert set(loaded) == set(rules)
    assert all(rule["health"] == "ok" for rule in loaded.values()), loaded

    def firing() -> dict[str, list[dict[str, Any]]]:
        return {name: query(scraper, rules[name]["expr"]) for name in FIRING}

    fired = poll(firing, lambda results: all(has_data(r) for r in results.values()))
    assert {s["metric"]["namespace"] for s in fired["RightsizerPrometheusUnreachable"]} == {DOWN}
    assert {s["metric"]["policy"] for s in fired["RightsizerPolicyStuckWithoutData"]} == {"new-feature"}
    [oom] = fired["RightsizerOOMKilledAfterChange"]
    assert (oom["metric"]["namespace"], oom["metric"]["workload"], oom["metric"]["workload_kind"]) == (
        NS,
        "web",
        "Deployment",
    )

    for name in QUIET:
        expr = rules[name]["expr"]
        assert query(scraper, expr) == [], f"{name} fires in a healthy run"
    # Quiet because the operators are up and evaluate, not because a series is missing:
    [inner] = absent_argument(rules["RightsizerDown"]["expr"])
    assert len(query(scraper, inner)) == 2  # both operators scraped
    since, threshold = comparison_sides(rules["RightsizerNotEvaluating"]["expr"])
    ages, limits = by_policy(query(scraper, since)), by_policy(query(scraper, threshold))
    assert set(ages) == set(limits) == {(NS, "web"), (NS, "new-feature"), (NS, "cart"), (DOWN, "web")}
    assert all(ages[policy] < limits[policy] for policy in ages), (ages, limits)


def test_a_deleted_policy_leaves_metrics(k, operators: dict[str, OperatorProcess]) -> None:
    operator = operators[NS]
    apply_policy(k, NS, "doomed", {"targetRef": {"name": "web"}, "interval": "10s"})
    wait_until(lambda: 'policy="doomed"' in scrape(operator), "series of the policy doomed")
    k("delete", "rsp", "doomed", "-n", NS)
    wait_until(lambda: 'policy="doomed"' not in scrape(operator), "the series of the deleted policy to go")
    assert 'policy="web"' in scrape(operator)


# ---------------------------------------------------------------- helpers


def apply_policy(k, namespace: str, name: str, spec: dict[str, Any]) -> None:
    policy = {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    k("apply", "-f", "-", input=json.dumps(policy))


def poll(get: Callable[[], T], done: Callable[[T], bool]) -> T:
    """``get()`` until ``done`` says so or the deadline passes; the last value either way."""
    deadline = time.monotonic() + WAIT_SECONDS
    value = get()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(1)
        value = get()
    return value


def wait_until(get: Callable[[], T], what: str) -> T:
    value = poll(get, bool)
    assert value, f"no {what} within {WAIT_SECONDS}s"
    return value


def api(url: str, path: str, **params: str) -> Any:
    full = f"{url}{path}?{urllib.parse.urlencode(params)}" if params else url + path
    try:
        with urllib.request.urlopen(full, timeout=30) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{path} {params}: {error.read().decode()}") from None
    assert body["status"] == "success", body
    return body["data"]


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's samples; an expression Prometheus refuses fails the test."""
    data = api(url, "/api/v1/query", query=expr)
    return data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]


def has_data(samples: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(s["value"][1])) for s in samples)


def by_policy(samples: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(s["metric"]["namespace"], s["metric"]["policy"]): float(s["value"][1]) for s in samples}


def grafana_filled(expr: str) -> str:
    for variable, value in GRAFANA.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a dashboard variable the test does not fill: {expr}"
    return expr


def label_values_selector(definition: str) -> str:
    """``label_values(SELECTOR, LABEL)`` (a Grafana variable) -> SELECTOR, filled."""
    match = re.fullmatch(r"label_values\((.+), *\w+\)", definition)
    assert match, definition
    return grafana_filled(match.group(1))


def absent_argument(expr: str) -> list[str]:
    match = re.fullmatch(r"absent\((.+)\)", expr.strip())
    assert match, f"not an absent(...) expression: {expr}"
    return [match.group(1)]


def comparison_sides(expr: str) -> tuple[str, str]:
    """The two sides of ``A > B`` (one comparison at the top level)."""
    left, sep, right = expr.partition(" > ")
    assert sep and " > " not in right, f"not one comparison: {expr}"
    return left.strip(), right.strip()


def scrape(operator: OperatorProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10) as response:
        return response.read().decode()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False

"""`rightsizer recommend` against a real Prometheus loaded with the demo history."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import yaml

import rightsizer.scan as scan_module
from rightsizer.cli import main
from rightsizer.discovery import name_group
from rightsizer.promql import EXACT_TERM_LABEL, LabelConfig, QueryScope
from rightsizer.quantity import parse
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import RecommendationSettings
from rightsizer.source import QUERY_MAX_BYTES, PrometheusAuth, PrometheusSource, PrometheusUnavailable
from rightsizer_demo.history import DAY
from tests.support.prometheus import queries_run

pytestmark = pytest.mark.prometheus


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rightsizer.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def report(demo_prometheus) -> dict[tuple[str, str, str], dict]:
    result = run_cli("recommend", "--prometheus-url", demo_prometheus.url, "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    return {(r["namespace"], r["name"], r["container"]): r for r in document["recommendations"]}


def test_every_workload_container_is_discovered_from_prometheus_alone(report):
    assert set(report) == {
        ("shop", "web", "app"),
        ("shop", "web", "log-shipper"),
        ("shop", "cart", "app"),
        ("shop", "search", "app"),
        ("shop", "checkout", "app"),
        ("shop", "new-feature", "app"),
        ("batch", "worker", "worker"),
        ("data", "redis", "redis"),
        ("legacy", "api", "app"),
    }
    assert report[("data", "redis", "redis")]["kind"] == "StatefulSet"


def test_over_provisioned_web_is_sized_down_with_peak_time_cpu_at_75_percent(report):
    web = report[("shop", "web", "app")]
    assert web["current"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    requests = web["recommended"]["requests"]
    cpu_request = float(parse(requests["cpu"]))
    peak = float(parse(web["evidence"]["cpuPeakTime"]))
    assert cpu_request < 1.0
    assert 0.70 <= peak / cpu_request <= 0.80
    assert web["recommended"]["limits"]["cpu"]  # latency-sensitive: a CPU limit, 3x the request
    assert web["qosClass"] == "Burstable"
    assert web["evidence"]["pods"] == 3


def test_oom_killed_cart_gets_more_memory_than_the_limit_that_killed_it(report):
    cart = report[("shop", "cart", "app")]
    assert cart["evidence"]["oomKills"] >= 1
    assert cart["evidence"]["oomKilledAt"] == "512Mi"
    memory_request = int(cart["recommended"]["requests"]["memory"].removesuffix("Mi"))
    assert memory_request >= 612  # 512Mi + max(20%, 100Mi)
    assert "OOM kill" in cart["reason"]


def test_throttled_search_gets_a_higher_cpu_limit(report):
    search = report[("shop", "search", "app")]
    assert search["evidence"]["throttledRatio"] > 0.05
    assert search["current"]["limits"]["cpu"] == "500m"
    limit = search["recommended"]["limits"]["cpu"]
    limit_cores = float(parse(limit))
    assert limit_cores >= 0.75  # at least 1.5x the limit that throttled
    assert "throttled" in search["reason"]


def test_pods_of_both_rollouts_count(report):
    checkout = report[("shop", "checkout", "app")]
    assert checkout["evidence"]["pods"] == 4  # 2 replicas before the rollout, 2 after
    assert checkout["current"]["requests"] == {"cpu": "300m", "memory": "384Mi"}  # the new template


def test_every_recommendation_says_how_far_it_can_be_trusted(report):
    """3 days of a week's confident history: medium at best, bounds around the recommendation, and a
    confident part between the current and the recommended requests."""
    web = report[("shop", "web", "app")]
    assert web["confidence"]["level"] in ("medium", "low")
    assert web["confidence"]["days"] == pytest.approx(3, abs=0.1)
    lower, upper = web["bounds"]["lower"]["requests"], web["bounds"]["upper"]["requests"]
    assert set(lower) == set(upper) == {"cpu", "memory"}
    assert web["confident"]["requests"]["cpu"]  # web is over-provisioned: down toward the upper bound
    cart = report[("shop", "cart", "app")]
    assert cart["confident"]["requests"]["memory"] == cart["recommended"]["requests"]["memory"]  # OOM kills


def test_too_young_workload_gets_no_recommendation_and_says_why(report):
    young = report[("shop", "new-feature", "app")]
    assert young["recommended"] is None
    assert "insufficient history" in young["reason"]


def test_without_kube_state_metrics_the_owner_comes_from_pod_names(report):
    legacy = report[("legacy", "api", "app")]
    assert legacy["evidence"]["ownerSource"] == "pod-name-pattern"
    assert legacy["current"] == {"requests": {}, "limits": {}}
    assert legacy["recommended"] is not None


def test_table_and_yaml_outputs(demo_prometheus):
    table = run_cli("recommend", "--prometheus-url", demo_prometheus.url, "-n", "shop", "-o", "table")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "WORKLOAD", "CONTAINER"]
    assert lines[0].split()[-3:] == ["CONFIDENCE", "MONTHLY", "COST"]
    web = next(line for line in lines if "Deployment/web" in line and " app " in line)
    assert "1 -> " in web and "%)" in web
    assert "medium (3.0d)" in web  # the level, and the days of history when not high
    # 3 pods x (1 core x 0.04048 + 1 GiB x 0.004445) x 730 h = 98.386 a month today
    assert "  98.39 -> " in web
    assert "monthly cost of the requests: " in table.stdout
    assert "shop/new-feature/app: no recommendation: insufficient history" in table.stdout
    assert "Prometheus queries" in table.stderr  # progress and summary go to stderr

    as_yaml = run_cli("recommend", "--prometheus-url", demo_prometheus.url, "-n", "batch", "-o", "yaml", "-q")
    assert as_yaml.returncode == 0, as_yaml.stderr
    document = yaml.safe_load(as_yaml.stdout)
    assert [r["name"] for r in document["recommendations"]] == ["worker"]
    assert as_yaml.stderr == ""


def test_monthly_cost_is_the_requests_at_the_prices_times_the_pods_for_730_hours(report, demo_prometheus):
    """Checked by hand: web's app container runs 3 pods with 1 core and 1Gi requested."""
    web = report[("shop", "web", "app")]
    assert web["monthlyCost"]["replicas"] == 3
    assert web["monthlyCost"]["current"] == pytest.approx(3 * (0.04048 + 0.004445) * 730, abs=0.01)
    requests = web["recommended"]["requests"]
    cores, gib = float(parse(requests["cpu"])), float(parse(requests["memory"])) / 2**30
    assert web["monthlyCost"]["recommended"] == pytest.approx(
        3 * (cores * 0.04048 + gib * 0.004445) * 730, abs=0.01
    )
    young = report[("shop", "new-feature", "app")]  # six hours old, one pod; no recommendation: no change
    assert young["monthlyCost"]["replicas"] == pytest.approx(1, abs=0.1)  # its first bucket is partly covered
    assert young["monthlyCost"]["difference"] == 0
    # Other prices: 1 a core-hour, nothing for memory.
    result = run_cli(
        "recommend", "--prometheus-url", demo_prometheus.url, "-n", "shop", "-o", "json", "-q",
        "--cpu-price", "1", "--memory-price", "0",
    )  # fmt: skip
    document = json.loads(result.stdout)
    web = next(r for r in document["recommendations"] if (r["name"], r["container"]) == ("web", "app"))
    assert web["monthlyCost"]["current"] == 3 * 730
    assert document["monthlyCost"]["prices"] == {"cpuPerCoreHour": 1.0, "memoryPerGiBHour": 0.0}
    total = sum(r["monthlyCost"]["current"] for r in document["recommendations"])
    assert document["monthlyCost"]["current"] == pytest.approx(total, abs=0.05)


def last_sample_time(source: PrometheusSource, namespace: str) -> float:
    """When the namespace's last working-set sample was taken. The session's demo history ended when the
    session began, often more than the 5 minutes an instant query looks back: the subquery looks back a
    day, and ``timestamp`` of a selector is its sample's own time."""
    last = source._query(
        f'max(max_over_time(timestamp(container_memory_working_set_bytes{{namespace="{namespace}"}})[1d:1m]))',
        time.time(),
    )
    return float(last["value"][0])


@pytest.mark.parametrize("late_seconds", [0, 37, 5 * 60, 29 * 60 + 30])
def test_web_runs_three_pods_however_late_after_the_last_scrape_the_report_is(demo_prometheus, late_seconds):
    """The window's last bucket holds only the samples up to the history's end (cost.running_replicas):
    exactly 3, not 2.98, when the report comes minutes after the last scrape (CI under load did)."""
    source = PrometheusSource(demo_prometheus.url)
    end = last_sample_time(source, "shop") + late_seconds
    result = scan(source, ScanRequest(namespaces=("shop",)), RecommendationSettings(), end=end)
    replicas = {(key.name, key.container): count for key, count in result.replicas.items()}
    assert replicas[("web", "app")] == 3


def test_background_profile_and_no_cpu_limit(demo_prometheus):
    result = run_cli(
        "recommend",
        "--prometheus-url",
        demo_prometheus.url,
        "-n",
        "batch",
        "-o",
        "json",
        "-q",
        "--profile",
        "background",
        "--no-cpu-limit",
        "--target-utilization",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    (worker,) = json.loads(result.stdout)["recommendations"]
    assert "cpu" not in worker["recommended"]["limits"]
    peak = float(parse(worker["evidence"]["cpuPeakTime"]))
    request = worker["recommended"]["requests"]["cpu"]
    request_cores = float(parse(request))
    # The evidence shows the peak rounded up to the millicore: up to 1m above the one the request
    # was computed from (a run saw 1413m against 2825m, 0.50018).
    assert 0.45 <= peak / request_cores <= 0.5 + 0.001 / request_cores


def test_query_count_depends_on_namespaces_not_containers(demo_prometheus):
    """docs/metrics.md, "Queries": a first round of 13 queries per namespace, whatever its pods, a second
    one for what the first calls for, and one query for the HorizontalPodAutoscalers of all of them."""
    source = PrometheusSource(demo_prometheus.url)
    sent: list[str] = []
    send = source._call

    def recorded(request, what):
        sent.append(what)
        return send(request, what)

    source._call = recorded  # type: ignore[method-assign]
    before = queries_run(demo_prometheus.url)
    result = scan(source, ScanRequest(namespaces=("shop", "batch")), RecommendationSettings())
    # As Prometheus' engine counted them, and the CLI's own count (which counts the series listing too).
    assert queries_run(demo_prometheus.url) - before == result.queries_sent - 1 == len(sent) - 1
    first_round = set(QueryScope(("shop",), 14 * DAY).queries().values())
    first_round |= set(QueryScope(("batch",), 14 * DAY).queries().values())
    assert sum(1 for q in sent if (True, q) in first_round or (False, q) in first_round) == 2 * 13
    # Then one connectivity check (vector(1)), one listing of the pods' series, one for the HPAs; and the
    # second round: the tiled CPU values of the buckets where pods started, ended or restarted (as many
    # queries as 15,000 bytes hold: shop has a rollout and OOM kills, batch its first bucket); for
    # shop, the owners, requests and limits of checkout's pods gone at its rollout, and the OOM restarts
    # of cart.
    second = [q for q in sent if (True, q) not in first_round and (False, q) not in first_round]
    exact = [q for q in second if EXACT_TERM_LABEL in q]
    assert len(exact) >= 2 and all(len(q) <= QUERY_MAX_BYTES for q in exact)
    assert len(second) - len(exact) == 3 + 3 + 1
    assert len(result.recommendations) == 7
    # Within two days of the three, up to the last sample, batch's pods ran through the whole window: no
    # second round.
    two_days = ScanRequest(namespaces=("batch",), history_seconds=2 * DAY)
    steady = scan(
        PrometheusSource(demo_prometheus.url),
        two_days,
        RecommendationSettings(),
        end=last_sample_time(source, "batch"),
    )
    assert steady.queries_sent == 3 + 13


def test_a_namespace_with_more_containers_than_a_shard_is_fetched_in_shards_of_whole_workloads(
    demo_prometheus, monkeypatch
):
    """scan.workload_shards: shop (12 pods, 14 containers) in shards of at most 4 containers, each
    workload's pods together: the recommendations of the namespace fetched whole, in more batches."""
    request = ScanRequest(namespaces=("shop",))
    end = time.time()
    whole = scan(PrometheusSource(demo_prometheus.url), request, RecommendationSettings(), end=end)
    monkeypatch.setattr(scan_module, "STREAM_CONTAINERS", 4)
    shards = scan_module.workload_shards(
        PrometheusSource(demo_prometheus.url).containers(("shop",), 14 * DAY, end, LabelConfig())["shop"]
    )
    assert len(shards) > 3
    by_workload = {}
    for index, shard in enumerate(shards):
        for pod in shard:
            by_workload.setdefault(name_group(pod), set()).add(index)
    assert all(len(found) == 1 for found in by_workload.values())  # no workload split
    streamed = scan(PrometheusSource(demo_prometheus.url), request, RecommendationSettings(), end=end)
    assert streamed.queries_sent > whole.queries_sent
    documents = sorted(json.dumps(r.to_dict(), sort_keys=True) for r in streamed.recommendations)
    assert documents == sorted(json.dumps(r.to_dict(), sort_keys=True) for r in whole.recommendations)


def test_workload_shards_keep_each_workloads_pods_together():
    pods = {f"web-7d9f8b6c5d-{s}": 2 for s in ("bbbbb", "ccccc", "ddddd")} | {"redis-0": 1, "redis-1": 1}
    pods |= {f"web-api-5c4b8d9f7b-{s}": 2 for s in ("bbbbb", "ccccc")}
    assert scan_module.workload_shards(pods) == [()]  # small: fetched whole
    shards = scan_module.workload_shards(pods | {f"big-5c4b8d9f7b-{i:05d}": 2 for i in range(1100)})
    together = [set(map(name_group, shard)) for shard in shards]
    assert all(sum(1 for groups in together if group in groups) == 1 for group in ("web", "web-api", "redis"))
    assert [len(s) for s in shards][:1] == [1100]  # one workload larger than a shard is a shard of its own


SEEN_HEADERS: list[dict[str, str]] = []


@pytest.fixture
def not_prometheus() -> Iterator[str]:
    """An HTTP server that answers 404 to everything (a wrong URL, not an unreachable one) and
    records the headers it was sent in ``SEEN_HEADERS``."""
    SEEN_HEADERS.clear()

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            SEEN_HEADERS.append(dict(self.headers))
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_wrong_url_is_one_clear_line(not_prometheus):
    result = run_cli("recommend", "--prometheus-url", not_prometheus)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "refused" in result.stderr and "404" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--prometheus-url", "http://127.0.0.1:9"], 1, "cannot connect to Prometheus at http://127.0.0.1:9"),
        (["--prometheus-url", "prometheus:9090"], 2, "must start with http:// or https://"),
        (["--prometheus-url", "http://x", "--history", "two weeks"], 2, "is not a duration"),
        (["--prometheus-url", "http://x", "--target-utilization", "1.5"], 2, "must be in (0, 1]"),
        (["--prometheus-url", "http://x", "--profile", "fast"], 2, "invalid choice"),
        (["--prometheus-url", "http://x", "--extra-matcher", "cluster"], 2, "not of the form"),
        (["--prometheus-url", "http://x", "--header", "novalue"], 2, "not of the form 'Name: value'"),
        (["--prometheus-url", "http://x", "--ca-file", "/nonexistent/ca.pem"], 1, "does not exist"),
        (["--prometheus-url", "http://x", "--no-such-flag"], 2, "unrecognized arguments"),
        (["--prometheus-url", "http://x", "--cpu-price", "-1"], 2, "must be a number >= 0"),
        (["--prometheus-url", "http://x", "--memory-price", "cheap"], 2, "is not a number"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(args, code, message):
    result = run_cli("recommend", *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_bearer_token_and_headers_are_sent(monkeypatch, not_prometheus, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    source = PrometheusSource(not_prometheus)
    assert source.auth.request_headers() == {}

    auth = PrometheusAuth(bearer_token_file=token, headers={"X-Scope-OrgID": "team-a"})
    assert auth.request_headers() == {"X-Scope-OrgID": "team-a", "Authorization": "Bearer s3cret"}
    token.write_text("rotated\n")
    assert auth.request_headers()["Authorization"] == "Bearer rotated"  # re-read: rotation works
    optional = PrometheusAuth(bearer_token_file=tmp_path / "not-mounted")
    assert optional.request_headers() == {}  # an optional Secret that is absent: no token


def test_main_returns_exit_codes_in_process(demo_prometheus, capsys):
    assert (
        main(["recommend", "--prometheus-url", demo_prometheus.url, "-n", "legacy", "-q", "-o", "json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["recommendations"][0]["name"] == "api"


@pytest.mark.parametrize(
    ("flags", "env", "header", "value"),
    [
        ([], {"PROMETHEUS_TOKEN": "from-env"}, "Authorization", "Bearer from-env"),
        (["--username", "ops"], {"PROMETHEUS_PASSWORD": "pw"}, "Authorization", "Basic b3BzOnB3"),
        (["--header", "X-Scope-OrgID: team-a"], {}, "X-Scope-OrgID", "team-a"),
        ([], {}, "Accept-Encoding", "identity"),  # PROMETHEUS_GZIP: answers not gzipped
        (["--prometheus-gzip"], {}, "Accept-Encoding", "gzip"),
        (["--header", "Accept-Encoding: br"], {}, "Accept-Encoding", "br"),  # the user's header wins
    ],
)
def test_auth_reaches_prometheus(not_prometheus, flags, env, header, value):
    result = subprocess.run(
        [sys.executable, "-m", "rightsizer.cli", "recommend", "--prometheus-url", not_prometheus, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode == 1  # the 404 server is no Prometheus
    assert SEEN_HEADERS and SEEN_HEADERS[0].get(header) == value


def test_a_rotated_token_file_is_read_again_for_the_next_query(not_prometheus, tmp_path):
    token = tmp_path / "token"
    token.write_text("first")
    source = PrometheusSource(not_prometheus, PrometheusAuth(bearer_token_file=token))
    for expected in ("first", "second"):
        token.write_text(expected)
        with pytest.raises(PrometheusUnavailable):
            source.check()
        assert SEEN_HEADERS[-1]["Authorization"] == f"Bearer {expected}"

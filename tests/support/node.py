"""Real usage on a real node: Prometheus scraping the kubelet, and workloads of the load image.

The cluster of ``start_control_plane(..., node=True)`` runs inside a network namespace
(``hack/k8s/start.sh --node``). ``NodePrometheus`` runs inside it too, scraping the kubelet's
``/metrics/cadvisor`` the way kube-prometheus does, and is reached from the host through a
loopback forwarder (``hack/k8s/forward.py``): every connection stays on loopback or inside the
namespace. ``load_deployment`` writes Deployments of the load image (hack/images), whose CPU and
memory demand follow a schedule given on its command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from rightsizer_demo.prometheus import PROMETHEUS_BIN_ENV, RETENTION, PrometheusError, find_binary, terminate
from tests.support.k8s import HACK_DIR, ControlPlane

LOAD_IMAGE = "rightsizer.local/load:v1"
"""Built and imported into the node's containerd by hack/images/build.sh and start.sh --node."""
SCRAPE_INTERVAL = "2s"
"""Short for tests: a policy whose history is minutes still sees hundreds of samples. The kubelet
of the test node refreshes cAdvisor's stats every 2 s to match (--housekeeping-interval)."""


def scrape_config(state_dir: Path, node_ip: str, node_name: str, interval: str) -> str:
    """A Prometheus configuration that scrapes the kubelet's cAdvisor endpoint as kube-prometheus does.

    kube-prometheus (its kubelet ServiceMonitor) scrapes ``https://<node>:10250/metrics/cadvisor``
    with ``honorLabels`` (cAdvisor's own ``namespace``, ``pod``, ``container`` labels stay),
    without cAdvisor's timestamps, and adds ``node`` and ``metrics_path``. Debian's Prometheus is
    built without Kubernetes service discovery, so the node is a static target carrying the label
    that discovery would give it. Prometheus authenticates with its own client certificate (the
    ``rightsizer-test:prometheus`` ClusterRole of hack/k8s/node.sh grants ``nodes/metrics``).
    """
    pki = state_dir / "pki"
    tls = {
        "ca_file": str(pki / "ca.crt"),
        "cert_file": str(pki / "prometheus.crt"),
        "key_file": str(pki / "prometheus.key"),
    }
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "kubelet",
                "scheme": "https",
                "metrics_path": "/metrics/cadvisor",
                "honor_labels": True,
                "honor_timestamps": False,
                "tls_config": tls,
                "static_configs": [{"targets": [f"{node_ip}:10250"], "labels": {"node": node_name}}],
                "relabel_configs": [{"target_label": "metrics_path", "replacement": "/metrics/cadvisor"}],
                "metric_relabel_configs": [
                    # kube-prometheus drops these cAdvisor families: high cardinality, unused.
                    {
                        "source_labels": ["__name__"],
                        "regex": "container_(network_tcp_usage_total|network_udp_usage_total"
                        "|tasks_state|cpu_load_average_10s)",
                        "action": "drop",
                    }
                ],
            }
        ],
    }
    return json.dumps(config, indent=2)  # JSON is YAML


class NodePrometheus:
    """Prometheus inside the cluster's network namespace, scraping the node's kubelet.

    ``start()`` returns once the kubelet target is up and container series are stored; ``url``
    is the forwarder's address on the host's loopback. ``stop()`` and a later ``start()`` keep the
    data directory and the host port, as a Prometheus that went away and came back. History
    loaded into ``data_dir/tsdb`` beforehand (``load_history``) is served beside what it scrapes.
    """

    def __init__(
        self,
        cluster: ControlPlane,
        data_dir: Path,
        scrape_interval: str = SCRAPE_INTERVAL,
        listen_ip: str = "127.0.0.1",
    ) -> None:
        if cluster.netns is None or cluster.state_dir is None:
            raise PrometheusError("NodePrometheus needs a cluster started with a node (start.sh --node)")
        self.cluster = cluster
        self.netns: str = cluster.netns
        self.data_dir = data_dir
        self.scrape_interval = scrape_interval
        self.listen_ip = listen_ip
        """Inside the namespace: its loopback (the default), or the node's address for pods to reach."""
        self.host_port = 0
        self.inner_port = 0
        self._prometheus: subprocess.Popen[bytes] | None = None
        self._forwarder: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def inner_url(self) -> str:
        """Its address inside the namespace (for pods, with ``listen_ip`` the node's address)."""
        return f"http://{self.listen_ip}:{self.inner_port}"

    def start(self, timeout: float = 90) -> NodePrometheus:
        assert self.cluster.state_dir is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (self.cluster.state_dir / "env").read_text().splitlines()
            if line.startswith("export ")
        )
        node_ip = env["RIGHTSIZER_K8S_NODE_IP"].strip("'")
        config = self.data_dir / "prometheus.yml"
        config.write_text(
            scrape_config(
                self.cluster.state_dir, node_ip, self.cluster.node_name or "node", self.scrape_interval
            )
        )
        if not self.inner_port:
            self.inner_port = self._free_port_inside()
        with (self.data_dir / "prometheus.log").open("ab") as log:
            self._prometheus = subprocess.Popen(
                [
                    "nsenter",
                    f"--net={self.netns}",
                    find_binary("prometheus", PROMETHEUS_BIN_ENV),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                    f"--storage.tsdb.retention.time={RETENTION}",
                    f"--web.listen-address={self.listen_ip}:{self.inner_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._start_forwarder()
        try:
            self._wait_until_scraping(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15) -> None:
        for attribute in ("_prometheus", "_forwarder"):
            process = getattr(self, attribute)
            setattr(self, attribute, None)
            terminate(process, timeout)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises ``PrometheusError`` on an error answer)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {body}")
        return body["data"]["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        """A range query of one series: (time, value) points (empty when there is no data)."""
        url = f"{self.url}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": promql, "start": start, "end": end, "step": step}
        )
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise PrometheusError(f"query {promql!r} failed: {body}")
        result = body["data"]["result"]
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _free_port_inside(self) -> int:
        probe = "import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])"
        result = subprocess.run(
            ["nsenter", f"--net={self.netns}", sys.executable, "-c", probe, self.listen_ip],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(result.stdout)

    def _start_forwarder(self) -> None:
        port_file = self.data_dir / "forward.port"
        port_file.unlink(missing_ok=True)
        self._forwarder = subprocess.Popen(
            [
                sys.executable,
                str(HACK_DIR / "forward.py"),
                "--netns",
                self.netns,
                "--to",
                f"{self.listen_ip}:{self.inner_port}",
                "--listen-port",
                str(self.host_port),
                "--port-file",
                str(port_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.data_dir / "forward.log").open("ab"),
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self._forwarder.poll() is not None or time.monotonic() > deadline:
                raise PrometheusError(
                    f"the forwarder to Prometheus did not start: {self.data_dir / 'forward.log'}"
                )
            time.sleep(0.05)
        self.host_port = int(port_file.read_text())

    def _wait_until_scraping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._prometheus is None or self._prometheus.poll() is not None:
                raise PrometheusError(f"prometheus exited at start:\n{self.log_tail()}")
            try:
                up = self.query('up{job="kubelet"} == 1')
                if up and self.query("count(container_memory_working_set_bytes)"):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, PrometheusError):
                pass
            time.sleep(0.5)
        raise PrometheusError(f"prometheus did not scrape the kubelet within {timeout}s:\n{self.log_tail()}")


def load_deployment(
    namespace: str,
    name: str,
    args: list[str],
    requests: dict[str, str],
    limits: dict[str, str],
    replicas: int = 1,
) -> dict[str, Any]:
    """A Deployment of the load image: ``args`` set its CPU and memory schedule (hack/images/go/cmd/load)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "app",
                            "image": LOAD_IMAGE,
                            "imagePullPolicy": "Never",
                            "args": args,
                            "resources": {"requests": requests, "limits": limits},
                        }
                    ],
                },
            },
        },
    }

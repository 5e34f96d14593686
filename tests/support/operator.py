"""Run ``rightsizer operator`` as a real process, as the ServiceAccount of deploy/."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.k8s import REPO_ROOT, kubectl, serviceaccount_kubeconfig, wait_for_established_crd

OPERATOR_MANIFESTS = ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml")
"""What of deploy/ gives the operator its identity: its namespace, ServiceAccount and RBAC."""


def install_identity(
    admin_kubeconfig: Path,
    objects: list[dict[str, Any]],
    out: Path,
    manifests: tuple[str, ...] = OPERATOR_MANIFESTS,
) -> Path:
    """The CRD (established), the operator's identity from deploy/ (``manifests``) and ``objects``
    (namespaces, workloads) installed; returns a kubeconfig of the operator's ServiceAccount at ``out``."""
    kubectl("apply", "-f", str(REPO_ROOT / "crds" / "rightsizepolicy.yaml"), kubeconfig=admin_kubeconfig)
    wait_for_established_crd("rightsizepolicies.rightsizer.io", kubeconfig=admin_kubeconfig)
    for manifest in manifests:
        kubectl("apply", "-f", str(REPO_ROOT / "deploy" / manifest), kubeconfig=admin_kubeconfig)
    items = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kubectl("apply", "-f", "-", kubeconfig=admin_kubeconfig, input=items)
    return serviceaccount_kubeconfig(admin_kubeconfig, "rightsizer-system", "rightsizer", out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """``rightsizer operator`` in a subprocess; ``restart()`` stops it with SIGTERM and starts it again."""

    def __init__(
        self,
        kubeconfig: Path,
        prometheus_url: str,
        log_path: Path,
        tick_seconds: float = 1.0,
        namespaces: tuple[str, ...] = (),
        netns: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig, self.prometheus_url, self.log_path = kubeconfig, prometheus_url, log_path
        self.tick_seconds = tick_seconds
        self.namespaces = namespaces
        """Watch only these (``--namespace``); all namespaces when empty."""
        self.netns = netns
        """Run inside this network namespace (the node's: where the API server can call its webhook);
        ``kubeconfig`` and ``prometheus_url`` must then be addresses as seen from inside."""
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.liveness_port = 0
        self.metrics_port = 0
        """Where ``/metrics`` is served (``--metrics-listen``, loopback, a free port at each start)."""

    def start(self, timeout: float = 60, attempts: int = 3) -> OperatorProcess:
        """Start it and wait until it is live. Its ports are chosen free and then released before
        it binds them, so another process may take one meanwhile: then it exits saying the address
        is in use, and it is started again on other ports (up to ``attempts`` times)."""
        for attempt in range(1, attempts + 1):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start_once(timeout)
            except RuntimeError:
                started_log = self.log_path.read_bytes()[offset:].decode(errors="replace")
                if attempt == attempts or "address already in use" not in started_log.lower():
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> OperatorProcess:
        self.liveness_port = self.free_port()
        self.metrics_port = self.free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "RIGHTSIZER_TICK_SECONDS": str(self.tick_seconds),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(["nsenter", f"--net={self.netns}"] if self.netns else []),
                    sys.executable,
                    "-m",
                    "rightsizer.cli",
                    "operator",
                    "--prometheus-url",
                    self.prometheus_url,
                    "--liveness",
                    f"http://127.0.0.1:{self.liveness_port}/healthz",
                    "--metrics-listen",
                    f"127.0.0.1:{self.metrics_port}",
                    *(arg for namespace in self.namespaces for arg in ("--namespace", namespace)),
                    *self.extra_args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._live():
                return self
            time.sleep(0.5)
        raise RuntimeError(f"operator not live after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as Kubernetes does; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def free_port(self) -> int:
        """A free port on the loopback where the operator runs (inside ``netns``, when set)."""
        if self.netns is None:
            return free_port()
        probe = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
        command = ["nsenter", f"--net={self.netns}", sys.executable, "-c", probe]
        return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    def _live(self) -> bool:
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        if self.netns is None:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return True
            except OSError:
                return False
        probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"
        command = ["nsenter", f"--net={self.netns}", sys.executable, "-c", probe]
        return subprocess.run(command, capture_output=True, check=False).returncode == 0

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

"""Scenarios on the real node: workloads of the load image, the operator acting on them, and a
record of everything it did, read by tests whenever they look.

Scenarios of one test module start together, so their minutes overlap; each test reads what
happened from the whole record (``TemplateRecorder``, Prometheus' history, the policy's status),
never only from the moment it starts looking, so each can run alone and in any order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests.support.k8s import ControlPlane, kubectl
from tests.support.node import NodePrometheus
from tests.support.operator import OperatorProcess

T = TypeVar("T")
LABEL = "scenario"
"""Workloads of a scenario carry this label; the recorder follows every one of them."""
KINDS = "deployments,statefulsets,daemonsets,cronjobs"
TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class Stoppable(Protocol):
    def stop(self) -> Any: ...


S = TypeVar("S", bound=Stoppable)


def stopped_on_exit(stack: ExitStack, started: S) -> S:
    """``started`` (a process or thread just started), stopped when ``stack`` closes: a scenario's
    setup that fails half way leaves nothing running."""
    stack.callback(started.stop)
    return started


_shared: dict[str, Any] = {}
_users: dict[str, int] = {}


def shared(stack: ExitStack, key: str, start: Callable[[], S]) -> S:
    """One ``start()`` for every closed-loop module of the session that asks for ``key`` (the node's
    Prometheus, the template recorder: each watches the whole node), stopped when the last of
    them closes ``stack``. On a 2-core node every scraper and poller less is CPU for the pods."""
    if key not in _shared:
        _shared[key] = start()
        _users[key] = 0
    _users[key] += 1

    def release() -> None:
        _users[key] -= 1
        if _users[key] == 0:
            _shared.pop(key).stop()

    stack.callback(release)
    started: S = _shared[key]
    return started


def namespaces_deleted_on_exit(stack: ExitStack, kubeconfig: Path, namespaces: Iterable[str]) -> None:
    """Delete ``namespaces`` (without waiting) when ``stack`` closes."""
    for namespace in namespaces:
        stack.callback(
            kubectl, "delete", "namespace", namespace, "--wait=false", kubeconfig=kubeconfig, check=False
        )


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    node = workload
    for key in TEMPLATE_PATHS[workload["kind"]]:
        node = node[key]
    return node


@dataclass
class TemplateRecorder:
    """Polls the scenarios' workloads every second and keeps every distinct pod-template resources
    (container -> resources) seen, with when it was first seen, per ``namespace/Kind/name``."""

    kubeconfig: Path
    changes: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TemplateRecorder:
        self._thread = threading.Thread(target=self._run, name="template-recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def history(self, namespace: str, kind: str, name: str) -> list[tuple[float, dict[str, Any]]]:
        return list(self.changes.get(f"{namespace}/{kind}/{name}", []))

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            result = kubectl(
                "get", KINDS, "-A", "-l", LABEL, "-o", "json", kubeconfig=self.kubeconfig, check=False
            )
            if result.returncode != 0:
                continue
            for item in json.loads(result.stdout)["items"]:
                spec = pod_template(item)["spec"]
                resources = {
                    c["name"]: c.get("resources", {})
                    for c in [*(spec.get("initContainers") or []), *spec["containers"]]
                }
                key = f"{item['metadata']['namespace']}/{item['kind']}/{item['metadata']['name']}"
                seen = self.changes.setdefault(key, [])
                if not seen or seen[-1][1] != resources:
                    seen.append((time.time(), resources))


@dataclass
class LiveCluster:
    """The node's cluster with what a module's scenarios run on it."""

    cluster: ControlPlane
    prometheus: NodePrometheus
    operator: OperatorProcess
    recorder: TemplateRecorder
    started: float
    extra_logs: dict[str, Callable[[], str]] = field(default_factory=dict)

    def k(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return kubectl(*args, kubeconfig=self.cluster.kubeconfig, input=input, check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return json.loads(self.k("get", kind, name, "-n", namespace, "-o", "json").stdout)

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "pods", "-n", namespace, "-o", "json", *(["-l", selector] if selector else [])]
        return [
            p for p in json.loads(self.k(*args).stdout)["items"] if not p["metadata"].get("deletionTimestamp")
        ]

    def describe(self, namespace: str, policy: str | None = None) -> str:
        """What a failing test prints: policies' status, template history, pods, operator log."""
        names = [policy] if policy else [p["metadata"]["name"] for p in self._policies(namespace)]
        statuses = []
        for name in names:
            try:
                statuses.append(json.dumps(self.get("rsp", name, namespace).get("status"), indent=1))
            except Exception as error:  # the policy may not exist yet
                statuses.append(f"(no policy {name}: {error})")
        history = "\n".join(
            f"  {key} {t - self.started:6.0f}s {r}"
            for key, seen in self.recorder.changes.items()
            if key.startswith(f"{namespace}/")
            for t, r in seen
        )
        pods = [
            (p["metadata"]["name"], p["status"].get("phase"), p["status"].get("containerStatuses"))
            for p in self.pods(namespace)
        ]
        logs = "\n".join(f"{name}:\n{read()}" for name, read in self.extra_logs.items())
        return (
            f"policy status:\n{chr(10).join(statuses)}\ntemplates (seconds since the start):\n{history}\n"
            f"pods: {json.dumps(pods, indent=1)}\noperator log:\n{self.operator.log_tail(80)}\n{logs}"
        )

    def wait(self, namespace: str, what: str, check: Callable[[], T | None], timeout: float) -> T:
        """Poll ``check`` until it returns something truthy; fail with the scenario's state if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(2)
        pytest.fail(
            f"{namespace}: timed out after {timeout:.0f}s waiting for {what}\n{self.describe(namespace)}"
        )

    def events(self, namespace: str, reason: str) -> list[dict[str, Any]]:
        found = json.loads(
            self.k(
                "get", "events", "-n", namespace, "--field-selector", f"reason={reason}", "-o", "json"
            ).stdout
        )
        items: list[dict[str, Any]] = found["items"]
        return items

    def writes_in_order(self, namespace: str) -> list[str]:
        """The operator's writes in ``namespace`` that went through, from the API server's audit log
        (start.sh logs every write of the operator's ServiceAccount, as each completes; one refused, for a
        stale resourceVersion say, is left out): ``verb resource[/subresource]/name``."""
        assert self.cluster.state_dir is not None
        writes = []
        for line in (self.cluster.state_dir / "logs" / "audit.log").read_text().splitlines():
            entry = json.loads(line)
            ref = entry.get("objectRef") or {}
            refused = int((entry.get("responseStatus") or {}).get("code", 200)) >= 300
            if ref.get("namespace") == namespace and ref.get("resource") and not refused:
                resource = "/".join(filter(None, (ref["resource"], ref.get("subresource"))))
                writes.append(f"{entry['verb']} {resource}/{ref.get('name') or ''}")
        return writes

    def _policies(self, namespace: str) -> list[dict[str, Any]]:
        return json.loads(self.k("get", "rsp", "-n", namespace, "-o", "json").stdout)["items"]


def condition(policy: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in policy.get("status", {}).get("conditions", []) if c["type"] == type_), {})

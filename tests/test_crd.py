"""The RightSizePolicy CRD and deploy/'s RBAC against a real kube-apiserver.

One control plane (tests/support/k8s.py: etcd + kube-apiserver + kube-controller-manager on
loopback, or the cluster named by RIGHTSIZER_TEST_KUBECONFIG) serves the whole module. The CRD
is applied from crds/rightsizepolicy.yaml and must become Established; then the examples must be
accepted, invalid policies rejected by the API server's schema and CEL rules with a message naming
the field, defaults filled in, the printer columns and `kubectl explain` work, and the operator's
ServiceAccount can do what the operator needs and nothing dangerous.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from rightsizer.policy import parse_policy
from tests.support.crd import spec_schema, with_crd_defaults
from tests.support.k8s import (
    ControlPlane,
    kubectl,
    serviceaccount_kubeconfig,
    start_control_plane,
    wait_for_established_crd,
)

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "rightsizepolicy.yaml"
DEPLOY = REPO / "deploy"
EXAMPLES = sorted((DEPLOY / "examples").glob("*.yaml"))
CRD_NAME = "rightsizepolicies.rightsizer.io"
OPERATOR_NAMESPACE = "rightsizer-system"
OPERATOR_ACCOUNT = "rightsizer"

T = TypeVar("T")
Mutation = Callable[[dict[str, Any]], None]
"""Changes a policy spec in place."""


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane with the CRD applied and Established; stopped after the module."""
    control_plane = start_control_plane(tmp_path_factory.mktemp("k8s"))
    try:
        kubectl("apply", "-f", str(CRD_FILE), kubeconfig=control_plane.kubeconfig)
        wait_for_established_crd(CRD_NAME, kubeconfig=control_plane.kubeconfig)
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture(scope="module")
def admin(cluster: ControlPlane) -> Path:
    """The admin kubeconfig."""
    return cluster.kubeconfig


@pytest.fixture
def namespace(admin: Path) -> Iterator[str]:
    """A fresh namespace for one test."""
    name = f"rsp-test-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name, kubeconfig=admin)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", kubeconfig=admin, check=False)


def policy(name: str, spec: dict[str, Any]) -> str:
    """A RightSizePolicy manifest as YAML text."""
    return yaml.safe_dump(
        {
            "apiVersion": "rightsizer.io/v1alpha1",
            "kind": "RightSizePolicy",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def poll(
    what: str,
    attempt: Callable[[], T | None],
    timeout: float = 60,
    interval: float = 1,
    details: Callable[[], str] | None = None,
) -> T:
    """Call ``attempt`` until it returns something truthy; return it, or fail after ``timeout`` s.

    ``details``, if given, is called on timeout and its text added to the failure message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = attempt()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def assert_subset(stored: Any, expected: Any, path: str = "spec") -> None:
    """``stored`` holds everything in ``expected`` (the server may add defaults to objects)."""
    if isinstance(expected, dict):
        assert isinstance(stored, dict), path
        for key, value in expected.items():
            assert key in stored, f"{path}.{key} missing"
            assert_subset(stored[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(stored, list) and len(stored) == len(expected), path
        for index, (got, want) in enumerate(zip(stored, expected, strict=True)):
            assert_subset(got, want, f"{path}[{index}]")
    else:
        assert stored == expected, f"{path}: {stored!r} != {expected!r}"


# A valid spec exercising every field the invalid cases below touch; each case breaks one thing.
VALID_SPEC: dict[str, Any] = {
    "targetRef": {"name": "web"},
    "mode": "Auto",
    "interval": "10m",
    "cpu": {"targetUtilization": 0.8, "limitRatio": 2},
    "memory": {"limitRatio": 1.5},
    "containerPolicies": [
        {"containerName": "*", "minAllowed": {"cpu": "100m", "memory": "64Mi"}, "maxAllowed": {"cpu": "2"}}
    ],
}


def _set(path: str, value: Any) -> Mutation:
    """A mutation of VALID_SPEC: set the dotted ``path`` (list indexes as numbers) to ``value``."""

    def mutate(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = spec
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value

    return mutate


def _delete(key: str) -> Mutation:
    """A mutation of VALID_SPEC: remove the top-level ``key``."""

    def mutate(spec: dict[str, Any]) -> None:
        del spec[key]

    return mutate


def _chain(*mutations: Mutation) -> Mutation:
    """Several mutations, in order."""

    def mutate(spec: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(spec)

    return mutate


# (id, mutation of VALID_SPEC, substrings that kubectl's stderr must all contain)
INVALID = [
    (
        "targetRef-and-selector",
        _set("selector", {"matchLabels": {"app": "web"}}),
        ["spec", "set exactly one of spec.targetRef and spec.selector"],
    ),
    (
        "neither-targetRef-nor-selector",
        _delete("targetRef"),
        ["spec", "set exactly one of spec.targetRef and spec.selector"],
    ),
    ("mode-Sometimes", _set("mode", "Sometimes"), ["spec.mode", 'Unsupported value: "Sometimes"']),
    (
        "cpu-targetUtilization-1.2",
        _set("cpu.targetUtilization", 1.2),
        ["spec.cpu.targetUtilization", "less than or equal to 1"],
    ),
    (
        "cpu-targetUtilization-0",
        _set("cpu.targetUtilization", 0),
        ["spec.cpu.targetUtilization", "greater than or equal to 0.1"],
    ),
    (
        "cpu-limitRatio-0.5",
        _set("cpu.limitRatio", 0.5),
        ["spec.cpu.limitRatio", "greater than or equal to 1"],
    ),
    (
        "memory-limitRatio-0.9",
        _set("memory.limitRatio", 0.9),
        ["spec.memory.limitRatio", "greater than or equal to 1"],
    ),
    (
        "minAllowed-cpu-above-maxAllowed",
        _chain(
            _set("containerPolicies.0.minAllowed.cpu", "2"), _set("containerPolicies.0.maxAllowed.cpu", "1")
        ),
        ["spec.containerPolicies[0]", "minAllowed.cpu must not be above maxAllowed.cpu"],
    ),
    (
        "minAllowed-memory-12Q",
        _set("containerPolicies.0.minAllowed.memory", "12Q"),
        ["spec.containerPolicies[0].minAllowed.memory", "must be a Kubernetes quantity"],
    ),
    (
        "maxAllowed-memory-400m",
        _set("containerPolicies.0.maxAllowed.memory", "400m"),
        ["spec.containerPolicies[0].maxAllowed.memory", "did you mean '400Mi'?"],
    ),
    (
        "selector-In-without-values",
        _chain(
            _delete("targetRef"), _set("selector", {"matchExpressions": [{"key": "app", "operator": "In"}]})
        ),
        ["spec.selector.matchExpressions[0]", "In and NotIn need values"],
    ),
    ("interval-5-minutes", _set("interval", "5 minutes"), ["spec.interval", "should match"]),
    (
        "cpu-noLimit-with-limitRatio",
        _set("cpu.noLimit", True),
        ["spec.cpu", "cpu.noLimit and cpu.limitRatio cannot both be set"],
    ),
]


# ---------------------------------------------------------------- the CRD


def test_crd_is_established_and_served(admin: Path) -> None:
    crd = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json", kubeconfig=admin).stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    resources = kubectl("api-resources", "--api-group=rightsizer.io", "-o", "wide", kubeconfig=admin).stdout
    assert "rightsizepolicies" in resources and "rsp" in resources and "RightSizePolicy" in resources


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_applies_cleanly(admin: Path, namespace: str, example: Path) -> None:
    result = kubectl("apply", "-n", namespace, "-f", str(example), kubeconfig=admin)
    assert "created" in result.stdout
    name = yaml.safe_load(example.read_text())["metadata"]["name"]
    stored = json.loads(kubectl("get", "rsp", name, "-n", namespace, "-o", "json", kubeconfig=admin).stdout)
    expected = yaml.safe_load(example.read_text())["spec"]
    assert_subset(stored["spec"], expected)


def test_the_valid_base_policy_is_accepted(admin: Path, namespace: str) -> None:
    """Control for the rejection cases: without their one mutation the policy is valid."""
    kubectl("apply", "-n", namespace, "-f", "-", input=policy("base", VALID_SPEC), kubeconfig=admin)


@pytest.mark.parametrize(("mutation", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_policy_is_rejected_naming_the_field(
    admin: Path, namespace: str, mutation: Mutation, expected: list[str]
) -> None:
    spec = copy.deepcopy(VALID_SPEC)
    mutation(spec)
    result = kubectl(
        "apply", "-n", namespace, "-f", "-", input=policy("bad", spec), kubeconfig=admin, check=False
    )
    assert result.returncode != 0, f"accepted an invalid policy:\n{result.stdout}"
    assert "is invalid" in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, f"{text!r} not in:\n{result.stderr}"
    missing = kubectl("get", "rsp", "bad", "-n", namespace, kubeconfig=admin, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_defaults_are_applied(admin: Path, namespace: str) -> None:
    """The server fills in the schema's defaults (tests/test_defaults.py: they are the settings')."""
    minimal = {"targetRef": {"name": "web"}, "containerPolicies": [{"containerName": "app"}]}
    kubectl("apply", "-n", namespace, "-f", "-", input=policy("minimal", minimal), kubeconfig=admin)
    spec = json.loads(
        kubectl("get", "rsp", "minimal", "-n", namespace, "-o", "json", kubeconfig=admin).stdout
    )["spec"]
    assert spec == with_crd_defaults(spec_schema(), minimal)
    assert spec["auto"]["canary"]["duration"] and spec["containerPolicies"][0]["mode"], "nested defaults"
    assert "limitRatio" not in spec["cpu"], "limit ratios default from the profile, not the schema"
    assert parse_policy(spec) == parse_policy(minimal)


def test_short_name_and_printer_columns(admin: Path, namespace: str) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=policy("auto-web", {"targetRef": {"name": "web"}, "mode": "Auto"}),
        kubeconfig=admin,
    )
    table = kubectl("get", "rsp", "-n", namespace, kubeconfig=admin).stdout.splitlines()
    header = table[0].split()
    assert header[:2] == ["NAME", "MODE"]
    assert {"TARGETS", "READY", "APPLIED", "AGE"} <= set(header)
    assert "PROMETHEUS" not in header, "priority-1 column shows only with -o wide"
    assert table[1].split()[:2] == ["auto-web", "Auto"]
    wide = kubectl("get", "rsp", "-n", namespace, "-o", "wide", kubeconfig=admin).stdout.splitlines()[0]
    assert "PROMETHEUS" in wide.split()
    by_category = kubectl("get", "rightsizer", "-n", namespace, "-o", "name", kubeconfig=admin).stdout
    assert "rightsizepolicy.rightsizer.io/auto-web" in by_category


def test_the_monthly_cost_is_kept_in_status_and_shown_wide(admin: Path, namespace: str) -> None:
    """status.monthlyCost is in the schema (an undeclared field would be pruned) and -o wide shows
    its difference."""
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=policy("costly", {"targetRef": {"name": "web"}}),
        kubeconfig=admin,
    )
    cost = {"current": 98.39, "recommended": 73.6, "difference": -24.79}
    patch = json.dumps({"status": {"monthlyCost": cost}})
    kubectl(
        "patch", "rsp", "costly", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch,
        kubeconfig=admin,
    )  # fmt: skip
    stored = json.loads(
        kubectl("get", "rsp", "costly", "-n", namespace, "-o", "json", kubeconfig=admin).stdout
    )
    assert stored["status"]["monthlyCost"] == cost
    wide = kubectl(
        "get", "rsp", "costly", "-n", namespace, "-o", "wide", kubeconfig=admin
    ).stdout.splitlines()
    header = wide[0].split()
    assert "MONTHLY" in header and "-24.79" in wide[1].split()
    assert "MONTHLY" not in kubectl("get", "rsp", "-n", namespace, kubeconfig=admin).stdout.splitlines()[0]


def test_kubectl_explain_prints_field_descriptions(admin: Path) -> None:
    def explain() -> str | None:
        result = kubectl(
            "explain", "rightsizepolicy.spec.cpu.targetUtilization", kubeconfig=admin, check=False
        )
        return result.stdout if result.returncode == 0 else None

    # The OpenAPI document is republished shortly after the CRD is established.
    text = poll("kubectl explain to know RightSizePolicy", explain, timeout=60)
    assert "targetUtilization" in text
    assert "Peak-time CPU usage as a share of the request" in " ".join(text.split())


# ---------------------------------------------------------------- RBAC of deploy/


@pytest.fixture(scope="module")
def operator_identity(admin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/'s Namespace, ServiceAccount and RBAC applied (not the Deployment); a kubeconfig as that SA."""
    for manifest in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        kubectl("apply", "-f", str(DEPLOY / manifest), kubeconfig=admin)
    out = tmp_path_factory.mktemp("sa") / "rightsizer.kubeconfig"
    return serviceaccount_kubeconfig(admin, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, out)


@pytest.fixture(scope="module")
def workload_namespace(admin: Path, operator_identity: Path) -> Iterator[str]:
    """A namespace holding a Deployment `web` and a policy `web`, created by the admin."""
    name = f"rsp-rbac-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name, kubeconfig=admin)
    kubectl("create", "deployment", "web", "--image=registry.invalid/web:1", "-n", name, kubeconfig=admin)
    kubectl(
        "create", "secret", "generic", "db", "--from-literal=password=hunter2", "-n", name, kubeconfig=admin
    )
    kubectl("apply", "-n", name, "-f", str(DEPLOY / "examples" / "recommend-web.yaml"), kubeconfig=admin)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", kubeconfig=admin, check=False)


ALLOWED = [
    ("list", "rightsizepolicies.rightsizer.io", ["-A"]),
    ("watch", "rightsizepolicies.rightsizer.io", ["-A"]),
    ("patch", "rightsizepolicies.rightsizer.io", ["-n", "anywhere"]),
    ("patch", "rightsizepolicies.rightsizer.io", ["--subresource=status", "-n", "anywhere"]),
    ("update", "rightsizepolicies.rightsizer.io", ["--subresource=status", "-n", "anywhere"]),
    ("patch", "deployments.apps", ["-n", "anywhere"]),
    ("watch", "deployments.apps", ["-A"]),
    ("patch", "statefulsets.apps", ["-n", "anywhere"]),
    ("patch", "daemonsets.apps", ["-n", "anywhere"]),
    ("patch", "cronjobs.batch", ["-n", "anywhere"]),
    ("watch", "pods", ["-A"]),
    ("watch", "horizontalpodautoscalers.autoscaling", ["-A"]),
    ("patch", "horizontalpodautoscalers.autoscaling", ["-n", "anywhere"]),
    ("patch", "pods", ["--subresource=resize", "-n", "anywhere"]),
    ("create", "pods", ["--subresource=eviction", "-n", "anywhere"]),
    ("patch", "replicasets.apps", ["-n", "anywhere"]),
    ("list", "controllerrevisions.apps", ["-A"]),
    ("list", "poddisruptionbudgets.policy", ["-A"]),
    ("list", "nodes", []),
    ("list", "limitranges", ["-A"]),
    ("list", "resourcequotas", ["-A"]),
    ("create", "events", ["-n", "anywhere"]),
    ("create", "events.events.k8s.io", ["-n", "anywhere"]),
    ("watch", "namespaces", []),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", []),
]

DENIED = [
    ("get", "secrets", ["-n", "anywhere"]),
    ("list", "secrets", ["-A"]),
    ("delete", "deployments.apps", ["-n", "anywhere"]),
    ("delete", "statefulsets.apps", ["-n", "anywhere"]),
    ("create", "jobs.batch", ["-n", "anywhere"]),
    ("create", "deployments.apps", ["-n", "anywhere"]),
    ("update", "deployments.apps", ["-n", "anywhere"]),
    ("create", "pods", ["-n", "anywhere"]),
    ("delete", "pods", ["-n", "anywhere"]),
    ("delete", "replicasets.apps", ["-n", "anywhere"]),
    ("create", "pods/exec", ["-n", "anywhere"]),
    ("get", "configmaps", ["-n", "anywhere"]),
    ("create", "rightsizepolicies.rightsizer.io", ["-n", "anywhere"]),
    ("delete", "rightsizepolicies.rightsizer.io", ["-n", "anywhere"]),
    ("patch", "nodes", []),
    ("delete", "horizontalpodautoscalers.autoscaling", ["-n", "anywhere"]),
    ("delete", "namespaces", []),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", []),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", []),
]


def _can_i(kubeconfig: Path, verb: str, resource: str, extra: list[str]) -> tuple[int, str]:
    result = kubectl("auth", "can-i", verb, resource, *extra, kubeconfig=kubeconfig, check=False)
    return result.returncode, result.stdout.strip()


@pytest.mark.parametrize(("verb", "resource", "extra"), ALLOWED, ids=lambda v: str(v))
def test_operator_can(operator_identity: Path, verb: str, resource: str, extra: list[str]) -> None:
    assert _can_i(operator_identity, verb, resource, extra) == (0, "yes")


@pytest.mark.parametrize(("verb", "resource", "extra"), DENIED, ids=lambda v: str(v))
def test_operator_cannot(operator_identity: Path, verb: str, resource: str, extra: list[str]) -> None:
    assert _can_i(operator_identity, verb, resource, extra) == (1, "no")


def test_operator_identity_is_the_service_account(operator_identity: Path) -> None:
    who = json.loads(kubectl("auth", "whoami", "-o", "json", kubeconfig=operator_identity).stdout)
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:rightsizer-system:rightsizer"


def test_operator_real_requests_allowed(operator_identity: Path, workload_namespace: str) -> None:
    ns = workload_namespace
    policies = kubectl("get", "rsp", "-A", "-o", "name", kubeconfig=operator_identity).stdout
    assert "rightsizepolicy.rightsizer.io/web" in policies
    kubectl(
        "patch",
        "rsp",
        "web",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"targetCount": 1, "readyContainers": "0/1"}}),
        kubeconfig=operator_identity,
    )
    kubectl(
        "patch",
        "deployment",
        "web",
        "-n",
        ns,
        "--type=json",
        "-p",
        json.dumps(
            [
                {
                    "op": "add",
                    "path": "/spec/template/spec/containers/0/resources",
                    "value": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "192Mi"}},
                }
            ]
        ),
        kubeconfig=operator_identity,
    )
    kubectl("get", "nodes", kubeconfig=operator_identity)
    kubectl("get", "limitranges,resourcequotas", "-A", kubeconfig=operator_identity)
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"web.{uuid.uuid4().hex[:8]}", "namespace": ns},
        "involvedObject": {
            "apiVersion": "rightsizer.io/v1alpha1",
            "kind": "RightSizePolicy",
            "name": "web",
            "namespace": ns,
        },
        "reason": "Evaluated",
        "message": "test event",
        "type": "Normal",
    }
    kubectl("create", "-f", "-", input=json.dumps(event), kubeconfig=operator_identity)

    # The admin sees the operator's writes.
    stored = json.loads(
        kubectl("get", "rsp", "web", "-n", ns, "-o", "json", kubeconfig=operator_identity).stdout
    )
    assert stored["status"]["targetCount"] == 1
    web = json.loads(
        kubectl("get", "deployment", "web", "-n", ns, "-o", "json", kubeconfig=operator_identity).stdout
    )
    assert web["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "250m",
        "memory": "128Mi",
    }


def test_operator_real_requests_forbidden(operator_identity: Path, workload_namespace: str) -> None:
    ns = workload_namespace
    secrets = kubectl("get", "secrets", "-A", kubeconfig=operator_identity, check=False)
    assert secrets.returncode != 0
    assert "Forbidden" in secrets.stderr and 'cannot list resource "secrets"' in secrets.stderr
    one_secret = kubectl("get", "secret", "db", "-n", ns, kubeconfig=operator_identity, check=False)
    assert one_secret.returncode != 0 and "Forbidden" in one_secret.stderr
    delete = kubectl("delete", "deployment", "web", "-n", ns, kubeconfig=operator_identity, check=False)
    assert delete.returncode != 0 and "Forbidden" in delete.stderr
    pod = kubectl(
        "run", "intruder", "--image=registry.invalid/x:1", "-n", ns, kubeconfig=operator_identity, check=False
    )
    assert pod.returncode != 0 and "Forbidden" in pod.stderr
    create_policy = kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=policy("sneaky", {"targetRef": {"name": "web"}}),
        kubeconfig=operator_identity,
        check=False,
    )
    assert create_policy.returncode != 0 and "Forbidden" in create_policy.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_operator_runs_as_its_service_account_without_forbidden(
    admin: Path, operator_identity: Path, workload_namespace: str, tmp_path: Path
) -> None:
    """The real operator, authenticated as the ServiceAccount, watches, writes status and posts Events.

    Prometheus is a closed loopback port, so each evaluation fails fast and records that in status
    (PrometheusReachable=False) and as a Warning Event: both writes go through the RBAC under test.
    Runs cluster-wide, as deployed (no --namespace), so Kopf's namespace and CRD watches are exercised too.
    """
    # The virtualenv's own console script (the one pip installed beside this interpreter), never
    # whatever "rightsizer" happens to be on PATH: a fresh machine has none there.
    executable = Path(sys.executable).parent / "rightsizer"
    assert executable.is_file(), f"the rightsizer console script is not installed beside {sys.executable}"
    ns = workload_namespace
    port = _free_port()
    log_path = tmp_path / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(operator_identity)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    with log_path.open("w") as sink:
        process = subprocess.Popen(
            [
                str(executable),
                "operator",
                "--prometheus-url",
                f"http://127.0.0.1:{_free_port()}",
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
                "--metrics-listen",
                f"127.0.0.1:{_free_port()}",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def log_text() -> str:
            return log_path.read_text()[-6000:]

        def running() -> None:
            if process.poll() is not None:
                pytest.fail(f"the operator exited with {process.returncode}:\n{log_text()}")

        def evaluated() -> dict[str, Any] | None:
            running()
            status = json.loads(
                kubectl("get", "rsp", "web", "-n", ns, "-o", "json", kubeconfig=admin).stdout
            ).get("status", {})
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            return conditions.get("PrometheusReachable")

        def liveness() -> bool:
            running()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        def warning_event() -> str | None:
            running()
            events = kubectl(
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                "involvedObject.name=web,type=Warning",
                kubeconfig=admin,
            ).stdout
            return events if "PrometheusUnreachable" in events else None

        condition = poll("the operator to evaluate the policy", evaluated, timeout=90, details=log_text)
        assert condition["status"] == "False"
        assert "127.0.0.1" in condition["message"]
        poll("a PrometheusUnreachable Event from the operator", warning_event, timeout=30, details=log_text)
        poll("Kopf's liveness endpoint", liveness, timeout=30, details=log_text)
        assert process.poll() is None, log_text()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the operator ignored SIGTERM for 30s:\n{log_path.read_text()}")
    log = log_path.read_text()
    assert code == 0, log
    assert "Forbidden" not in log and " 403" not in log, log


def test_kustomize_install_is_admitted_under_restricted_pod_security(admin: Path) -> None:
    """`kubectl apply -k deploy/` works, and the operator pod passes the namespace's `restricted` policy."""
    try:
        kubectl("apply", "-k", str(DEPLOY), kubeconfig=admin, timeout=120)

        def pod() -> dict[str, Any] | None:
            pods = json.loads(
                kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "json", kubeconfig=admin).stdout
            )["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return live[0] if live else None

        def events() -> str:
            return kubectl("get", "events", "-n", OPERATOR_NAMESPACE, kubeconfig=admin).stdout

        created = poll("the ReplicaSet to create the operator pod", pod, timeout=60, details=events)
        assert created["spec"]["serviceAccountName"] == OPERATOR_ACCOUNT
        assert created["spec"]["containers"][0]["args"][0] == "operator"
        assert "violates PodSecurity" not in events()
        # Control: the namespace really enforces `restricted`, so a privileged pod is refused.
        privileged = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "privileged", "namespace": OPERATOR_NAMESPACE},
            "spec": {"containers": [{"name": "x", "image": "x:1", "securityContext": {"privileged": True}}]},
        }
        refused = kubectl("create", "-f", "-", input=json.dumps(privileged), kubeconfig=admin, check=False)
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr
    finally:
        kubectl(
            "delete",
            "deployment",
            "rightsizer",
            "-n",
            OPERATOR_NAMESPACE,
            "--ignore-not-found",
            kubeconfig=admin,
        )

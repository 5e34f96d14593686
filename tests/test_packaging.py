"""Static checks of the container image recipe and the deploy/ manifests.

No Docker engine and no cluster are needed: the Dockerfile is parsed as text, the
manifests with PyYAML, and ``kubectl kustomize`` renders deploy/ offline. The same
manifests are applied to a real API server in tests/test_crd.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from rightsizer.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY = REPO / "deploy"
CRD_FILE = REPO / "crds" / "rightsizepolicy.yaml"
IMAGE = "ghcr.io/rightsizer/rightsizer"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
# The only writes the operator may do (resource -> verbs); everything else is read-only.
ALLOWED_WRITES = {
    "rightsizepolicies": {"patch"},
    "rightsizepolicies/status": {"patch", "update"},
    "deployments": {"patch"},
    "statefulsets": {"patch"},
    "daemonsets": {"patch"},
    "cronjobs": {"patch"},
    "pods": {"patch"},
    "pods/resize": {"patch"},
    "pods/eviction": {"create"},  # a rollback's pod whose resize back stays Deferred
    "replicasets": {"patch"},
    "horizontalpodautoscalers": {"patch"},  # spec.hpa Retune in Auto mode
    "events": {"create", "patch"},
    "leases": {"create", "update"},
}
EXPECTED_RULES = {
    ("rightsizer.io", "rightsizepolicies"): {"get", "list", "watch", "patch"},
    ("rightsizer.io", "rightsizepolicies/status"): {"get", "patch", "update"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("apps", "statefulsets"): {"get", "list", "watch", "patch"},
    ("apps", "daemonsets"): {"get", "list", "watch", "patch"},
    ("batch", "cronjobs"): {"get", "list", "watch", "patch"},
    ("", "pods"): {"get", "list", "watch", "patch"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list", "watch", "patch"},
    ("", "pods/resize"): {"patch"},
    ("", "pods/eviction"): {"create"},
    ("apps", "replicasets"): {"get", "patch"},
    ("apps", "controllerrevisions"): {"list"},
    ("policy", "poddisruptionbudgets"): {"get", "list"},
    ("", "limitranges"): {"get", "list", "watch"},
    ("", "resourcequotas"): {"get", "list", "watch"},
    ("", "nodes"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("coordination.k8s.io", "leases"): {"create", "get", "update"},
}
OPERATOR_ROLES = {"rightsizer", "rightsizer-leader-election"}
"""The operator's own roles; the others (deploy/roles.yaml) are for people."""


# ---------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: upper-case keyword and its (continuation-joined) arguments."""

    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Split a Dockerfile into build stages (each starting with FROM) of instructions.

    Handles comments, blank lines and backslash line continuations; enough for the
    invariants checked here, not a full BuildKit parser.
    """
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends with a dangling line continuation"
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if not stages:
            assert instruction.keyword == "ARG", f"instruction before the first FROM: {line}"
            continue  # a global ARG, read by global_args()
        stages[-1].append(instruction)
    return stages


def global_args(text: str) -> dict[str, str]:
    """The ``ARG NAME=default`` lines before the first FROM (the only ones a FROM can use)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.upper().startswith("FROM "):
            break
        if line.upper().startswith("ARG "):
            name, _, default = line[4:].strip().partition("=")
            found[name] = default
    return found


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages."""
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(stages: list[list[Instruction]]) -> list[Instruction]:
    """The last stage: the image that is shipped."""
    return stages[-1]


def _last(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def _exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of an exec-form instruction; fails for the shell form."""
    try:
        value = json.loads(instruction.args)
    except json.JSONDecodeError:
        pytest.fail(f"{instruction.keyword} is not exec form (a JSON array): {instruction.args}")
    assert isinstance(value, list), f"{instruction.keyword} must be a JSON array"
    assert value, f"{instruction.keyword} must not be empty"
    assert all(isinstance(item, str) for item in value), f"{instruction.keyword} items must be strings"
    return value


def test_multi_stage_build_on_one_base_python_3_11_slim_by_default(stages: list[list[Instruction]]) -> None:
    """Both stages on the build argument BASE_IMAGE (python:3.11-slim unless given), so the venv's
    python symlink resolves in the runtime stage, and machines that cannot pull build on a local base."""
    assert global_args(DOCKERFILE.read_text()) == {"BASE_IMAGE": "python:3.11-slim"}
    assert len(stages) >= 2, "expected a builder stage and a runtime stage"
    builder_from = stages[0][0].args.split()
    assert builder_from[0] == "${BASE_IMAGE}"
    assert builder_from[1:] == ["AS", "builder"] or builder_from[1:] == ["as", "builder"]
    assert stages[-1][0].args.split()[0] == "${BASE_IMAGE}"


def test_final_stage_user_is_numeric_non_root(final_stage: list[Instruction]) -> None:
    user = _last(final_stage, "USER").args
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match, f"USER must be numeric (uid or uid:gid) so runAsNonRoot can check it, got {user!r}"
    assert int(match.group(1)) != 0, "USER must not be root"
    if match.group(2) is not None:
        assert int(match.group(2)) != 0, "the group must not be root"
    assert int(match.group(1)) == 65532


def test_entrypoint_is_exec_form_and_runs_the_console_script(final_stage: list[Instruction]) -> None:
    entrypoint = _exec_form(_last(final_stage, "ENTRYPOINT"))
    assert entrypoint == ["rightsizer"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("rightsizer") == "rightsizer.cli:main"


def test_default_cmd_is_exec_form_and_a_valid_cli_invocation(
    final_stage: list[Instruction], capsys: pytest.CaptureFixture[str]
) -> None:
    cmd = _exec_form(_last(final_stage, "CMD"))
    assert cmd[0] == "operator"
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(cmd)  # `operator --help` prints usage and exits 0
    assert exited.value.code == 0
    assert "--prometheus-url" in capsys.readouterr().out


def test_no_pip_install_in_the_final_stage(final_stage: list[Instruction]) -> None:
    for instruction in final_stage:
        if instruction.keyword == "RUN":
            assert not re.search(r"\bpip3?\b.*\binstall\b", instruction.args), instruction.args
            assert "python -m pip" not in instruction.args, instruction.args


def test_final_stage_copies_the_venv_from_the_builder(final_stage: list[Instruction]) -> None:
    copies = [i.args.split() for i in final_stage if i.keyword == "COPY"]
    assert ["--from=builder", "/opt/venv", "/opt/venv"] in copies
    env = " ".join(i.args for i in final_stage if i.keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_dockerignore_keeps_what_the_build_copies() -> None:
    """The context is allow-listed; every COPY source from the context must be re-included."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert patterns[0] == "*", ".dockerignore should exclude everything by default"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for stage in parse_dockerfile(DOCKERFILE.read_text()):
        for instruction in stage:
            if instruction.keyword != "COPY" or instruction.args.startswith("--from"):
                continue
            *sources, _dest = instruction.args.split()
            for source in sources:
                assert source.rstrip("/") in included, f"COPY {source} is excluded by .dockerignore"


# ---------------------------------------------------------------- deploy/ manifests


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            yield document


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    """Every object listed (directly) in deploy/kustomization.yaml, read with PyYAML."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = DEPLOY / resource
        if path.is_dir():
            path = path / "kustomization.yaml"
            for inner in yaml.safe_load(path.read_text())["resources"]:
                objects.extend(_documents(path.parent / inner))
        else:
            objects.extend(_documents(path))
    return objects


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator Deployment."""
    return _one(manifests, "Deployment")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    """The operator container."""
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_container_args_start_with_operator_and_parse(container: dict[str, Any]) -> None:
    args = container["args"]
    assert args[0] == "operator"
    assert "command" not in container, "the image's ENTRYPOINT must run (rightsizer as PID 1)"
    parsed = build_parser().parse_args(args)
    assert parsed.command == "operator"
    assert parsed.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"


def test_bearer_token_file_comes_from_an_optional_secret(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    token_file = Path(build_parser().parse_args(container["args"]).bearer_token_file)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts.get(str(token_file.parent))
    assert mount is not None, f"no volume mounted at {token_file.parent}"
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    secret = volumes[mount["name"]]["secret"]
    assert secret["optional"] is True, "the operator must start without the token Secret"
    paths = [item["path"] for item in secret.get("items", [])] or [token_file.name]
    assert token_file.name in paths


def test_liveness_probe_matches_the_kopf_endpoint(container: dict[str, Any]) -> None:
    liveness = urlsplit(build_parser().parse_args(container["args"]).liveness)
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == liveness.path == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = ports.get(probe["port"], probe["port"])
    assert port == liveness.port == 8080


def test_metrics_are_served_where_the_container_port_and_the_service_say(
    container: dict[str, Any], manifests: list[dict[str, Any]]
) -> None:
    host, port = build_parser().parse_args(container["args"]).metrics_listen
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert host == "0.0.0.0" and ports["metrics"] == port != ports["health"]
    service = _one(manifests, "Service")
    assert service["spec"]["selector"].items() <= container_labels(manifests).items()
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == "metrics"
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    monitoring = DEPLOY / "monitoring"
    monitor = yaml.safe_load((monitoring / "servicemonitor.yaml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service_port["name"]]
    rules = yaml.safe_load((monitoring / "prometheusrule.yaml").read_text())
    exprs = " ".join(rule["expr"] for group in rules["spec"]["groups"] for rule in group["rules"])
    jobs = set(re.findall(r'job="([^"]+)"', exprs))
    assert jobs == {service["metadata"]["name"]}, "a ServiceMonitor's job label is the Service's name"


def container_labels(manifests: list[dict[str, Any]]) -> dict[str, str]:
    return _one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]


def test_the_dashboard_configmap_holds_the_dashboard_and_monitoring_stays_out_of_deploy(
    rendered: list[dict[str, Any]],
) -> None:
    configmap = _one(rendered, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["rightsizer.json"])
    assert dashboard == json.loads((DEPLOY / "dashboards" / "rightsizer.json").read_text())
    # The Prometheus Operator's kinds need its CRDs: never in `kubectl apply -k deploy/`, but in
    # `kubectl apply -k deploy/monitoring/`.
    assert not [o for o in rendered if o["apiVersion"].startswith("monitoring.coreos.com/")]
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "monitoring")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    monitoring = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert monitoring == ["PrometheusRule", "ServiceMonitor"]


def test_deployment_shape(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    spec = deployment["spec"]
    assert deployment["metadata"]["namespace"] == "rightsizer-system"
    # Two replicas, one leading (a Lease): a rollout may overlap them, they never both act.
    assert spec["replicas"] == 2
    assert build_parser().parse_args(container["args"]).leader_elect is True
    assert spec.get("strategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
    anti_affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == selector_labels(spec)
    assert container["image"] == f"{IMAGE}:0.1.0"
    assert {"name": "PYTHONUNBUFFERED", "value": "1"} in container["env"]
    selector = selector_labels(spec)
    labels = spec["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"], "memory is not compressible: keep a limit"


def selector_labels(spec: dict[str, Any]) -> dict[str, str]:
    return spec["selector"]["matchLabels"]


def test_container_security_settings(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[tmp[0]["name"]]
    assert not pod.get("hostNetwork") and not pod.get("hostPID")


def test_service_account_matches_the_binding(
    manifests: list[dict[str, Any]], deployment: dict[str, Any]
) -> None:
    account = _one(manifests, "ServiceAccount")["metadata"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"] == "rightsizer"
    assert account["namespace"] == deployment["metadata"]["namespace"]
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = _one(manifests, kind)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
        assert binding["roleRef"]["kind"] == role_kind
        assert binding["roleRef"]["name"] in OPERATOR_ROLES
    lease_role = _one(manifests, "Role")
    assert lease_role["metadata"]["namespace"] == account["namespace"], (
        "the Lease is in the operator's namespace"
    )
    assert _one(manifests, "Namespace")["metadata"]["name"] == account["namespace"]


def _rules(manifests: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The operator's rules (not those of the roles for people)."""
    for obj in manifests:
        if obj["kind"] in {"Role", "ClusterRole"} and obj["metadata"]["name"] in OPERATOR_ROLES:
            yield from obj.get("rules", [])


def test_rbac_never_grants_secrets_wildcards_or_extra_writes(manifests: list[dict[str, Any]]) -> None:
    rules = list(_rules(manifests))
    assert rules
    for rule in rules:
        assert "*" not in rule["verbs"], rule
        assert "*" not in rule.get("resources", []), rule
        assert "*" not in rule.get("apiGroups", []), rule
        assert "nonResourceURLs" not in rule, rule
        assert "resourceNames" not in rule or rule["resourceNames"], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        for resource in rule["resources"]:
            assert resource != "secrets", rule
            # Pods are read and resized in place (and a revision label set), evicted through the
            # Eviction API by a rollback (budgets respected), never created, deleted, exec'd into or
            # attached to.
            pod_resources = ("pods", "pods/resize", "pods/eviction")
            assert resource in pod_resources or not resource.startswith("pods/"), rule
            assert resource not in ("pods", "pods/resize") or not {"create", "delete", "update"} & set(
                rule["verbs"]
            )
            assert resource != "pods/eviction" or set(rule["verbs"]) == {"create"}, rule
            writes = WRITE_VERBS & set(rule["verbs"])
            assert writes <= ALLOWED_WRITES.get(resource, set()), f"unexpected write {writes} on {resource}"


def test_rbac_grants_exactly_what_the_operator_needs(manifests: list[dict[str, Any]]) -> None:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in _rules(manifests):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_RULES


def test_the_lease_role_names_the_lease_the_operator_uses(
    manifests: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    """get and update are limited to one Lease by name: the one `--leader-elect-lease` defaults to."""
    lease = build_parser().parse_args(container["args"]).leader_elect_lease
    named = [rule for rule in _one(manifests, "Role")["rules"] if "resourceNames" in rule]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update"],
        }
    ]


def _people_roles(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for o in manifests
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] not in OPERATOR_ROLES
    }


def test_people_roles_are_aggregated_into_view_edit_and_admin(manifests: list[dict[str, Any]]) -> None:
    roles = _people_roles(manifests)
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    labels = {
        name: {k for k in role["metadata"]["labels"] if k.startswith(aggregate)}
        for name, role in roles.items()
    }
    assert labels == {
        "rightsizer-policy-viewer": {f"{aggregate}view"},
        "rightsizer-policy-editor": {f"{aggregate}edit", f"{aggregate}admin"},
    }
    for name, role in roles.items():
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["rightsizer.io"], name
            if "rightsizepolicies/status" in rule["resources"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}, "status is the operator's to write"
    viewer_verbs = {v for rule in roles["rightsizer-policy-viewer"]["rules"] for v in rule["verbs"]}
    assert viewer_verbs == {"get", "list", "watch"}


def test_auto_mode_is_admitted_only_for_who_may_patch_its_targets(manifests: list[dict[str, Any]]) -> None:
    """Static shape of deploy/admission.yaml; tests/test_roles.py shows it on a real API server."""
    policy = _one(manifests, "ValidatingAdmissionPolicy")
    binding = _one(manifests, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail", "an error must refuse, not let through"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["rightsizepolicies"], "not the status subresource: that is the operator's"
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    expressions = " ".join(v["expression"] for v in policy["spec"]["variables"])
    assert "authorizer" in expressions and "check('patch')" in expressions


# ---------------------------------------------------------------- kustomize and examples


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/`` parsed; fails (not skips) without kubectl."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH; it is needed to render deploy/ with kustomize")
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_kustomize_renders_everything_including_the_crd(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "Deployment",
            "Service",
            "ConfigMap",
        ]
    )
    crd = _one(rendered, "CustomResourceDefinition")
    source = yaml.safe_load(CRD_FILE.read_text())
    assert crd["metadata"]["name"] == "rightsizepolicies.rightsizer.io"
    assert crd["spec"] == source["spec"], "kustomize must ship the CRD unchanged"
    image = _one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{IMAGE}:0.1.0"


def test_kustomize_images_entry_lets_users_override_the_image() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert {"name": IMAGE, "newTag": "0.1.0"} in kustomization["images"]


@pytest.mark.parametrize("path", sorted((DEPLOY / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_namespace_free_policies(path: Path) -> None:
    (policy,) = _documents(path)
    assert policy["apiVersion"] == "rightsizer.io/v1alpha1"
    assert policy["kind"] == "RightSizePolicy"
    assert "namespace" not in policy["metadata"], "examples are applied with -n NAMESPACE"
    assert ("targetRef" in policy["spec"]) != ("selector" in policy["spec"])


def test_the_three_examples_exist() -> None:
    names = {p.name for p in (DEPLOY / "examples").glob("*.yaml")}
    assert names == {"recommend-web.yaml", "auto-selector.yaml", "background-worker.yaml"}


# ---------------------------------------------------------------- the wheel


def test_the_wheel_holds_the_operator_and_nothing_it_does_not_import(tmp_path: Path) -> None:
    """The history generator and demo harness (rightsizer_demo) stay out of what users install."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("rightsizer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.endswith(".py")}
    assert "rightsizer/engine.py" in modules and "rightsizer/controller/main.py" in modules
    assert not [n for n in modules if not n.startswith("rightsizer/")], modules
    assert not [n for n in modules if "demo" in n], modules

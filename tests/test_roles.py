"""Who may read and write policies, with real users on a real RBAC-enabled API server.

``kubectl apply -k deploy/`` installs the aggregated ClusterRoles (deploy/roles.yaml) and the
admission policy (deploy/admission.yaml). People are client certificates issued by the cluster
(tests/support/users.py), bound in one namespace as an administrator would bind them:

- ``vera``: the built-in ``view``; ``eddie``: ``edit``; ``ada``: ``admin``;
- ``paul``: a Role that may write policies and nothing else (no right on Deployments);
- ``wendy``: paul's Role, and the right to patch the Deployment ``web`` (by name) only.

A policy in Auto mode makes the operator patch workloads with its own rights, so it may only be
written by someone who could patch those workloads themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.k8s import ControlPlane, kubectl, serviceaccount_kubeconfig, start_control_plane
from tests.support.users import user_kubeconfig
from tests.test_crd import poll

pytestmark = pytest.mark.k8s

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NAMESPACE = "team"
POLICY = "rightsizer-auto-mode-needs-workload-rights"
DENIED_BY_ADMISSION = f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request"

ACCESS = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: policy-writer, namespace: {NAMESPACE}}}
rules:
  - apiGroups: [rightsizer.io]
    resources: [rightsizepolicies]
    verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: web-patcher, namespace: {NAMESPACE}}}
rules:
  - apiGroups: [apps]
    resources: [deployments]
    resourceNames: [web]
    verbs: [get, patch]
"""
BINDINGS = {
    "vera": [("ClusterRole", "view")],
    "eddie": [("ClusterRole", "edit")],
    "ada": [("ClusterRole", "admin")],
    "paul": [("Role", "policy-writer")],
    "wendy": [("Role", "policy-writer"), ("Role", "web-patcher")],
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane with deploy/ installed, a namespace with Deployments web and api, and the bindings."""
    control_plane = start_control_plane(tmp_path_factory.mktemp("k8s"))
    try:
        admin = control_plane.kubeconfig
        kubectl("apply", "-k", str(DEPLOY), kubeconfig=admin, timeout=120)
        kubectl("create", "namespace", NAMESPACE, kubeconfig=admin)
        for name in ("web", "api"):
            kubectl(
                "create",
                "deployment",
                name,
                "--image=registry.invalid/app:1",
                "-n",
                NAMESPACE,
                kubeconfig=admin,
            )
        kubectl("apply", "-f", "-", input=ACCESS, kubeconfig=admin)
        for user, roles in BINDINGS.items():
            for kind, role in roles:
                kubectl(
                    "create",
                    "rolebinding",
                    f"{user}-{role}",
                    f"--{kind.lower()}={role}",
                    f"--user={user}",
                    "-n",
                    NAMESPACE,
                    kubeconfig=admin,
                )
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture(scope="module")
def users(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A kubeconfig per user, each with a certificate of its own."""
    out = tmp_path_factory.mktemp("users")
    return {user: user_kubeconfig(cluster.kubeconfig, user, out) for user in BINDINGS}


@pytest.fixture(autouse=True)
def no_policies(cluster: ControlPlane) -> Iterator[None]:
    """Each test starts and ends with no policy in the namespace."""
    yield
    kubectl("delete", "rsp", "--all", "-n", NAMESPACE, kubeconfig=cluster.kubeconfig)


def policy(name: str, mode: str, target: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "rightsizer.io/v1alpha1",
            "kind": "RightSizePolicy",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"mode": mode, **target},
        }
    )


WEB = {"targetRef": {"name": "web"}}
API = {"targetRef": {"name": "api"}}
EVERY_DEPLOYMENT = {"selector": {}}


def create(kubeconfig: Path, name: str, mode: str, target: dict[str, Any]) -> tuple[int, str]:
    result = kubectl(
        "create", "-f", "-", input=policy(name, mode, target), kubeconfig=kubeconfig, check=False
    )
    return result.returncode, result.stderr


def set_mode(kubeconfig: Path, name: str, mode: str) -> tuple[int, str]:
    patch = json.dumps({"spec": {"mode": mode}})
    result = kubectl(
        "patch", "rsp", name, "-n", NAMESPACE, "--type=merge", "-p", patch, kubeconfig=kubeconfig, check=False
    )
    return result.returncode, result.stderr


def can_i(kubeconfig: Path, verb: str, resource: str) -> bool:
    result = kubectl("auth", "can-i", verb, resource, "-n", NAMESPACE, kubeconfig=kubeconfig, check=False)
    return result.stdout.strip() == "yes"


def test_the_users_are_who_their_certificates_say(users: dict[str, Path]) -> None:
    for user, kubeconfig in users.items():
        who = json.loads(kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout)
        assert who["status"]["userInfo"]["username"] == user


def test_the_roles_are_aggregated_into_view_edit_and_admin(cluster: ControlPlane) -> None:
    def rules(role: str) -> dict[str, set[str]]:
        found = json.loads(
            kubectl("get", "clusterrole", role, "-o", "json", kubeconfig=cluster.kubeconfig).stdout
        )
        verbs: dict[str, set[str]] = {}
        for rule in found.get("rules") or []:
            if "rightsizer.io" in rule.get("apiGroups", []):
                for resource in rule["resources"]:
                    verbs.setdefault(resource, set()).update(rule["verbs"])
        return verbs

    writes = {"create", "update", "patch", "delete", "deletecollection"}
    view = poll("the aggregation controller to fill view", lambda: rules("view") or None)
    assert view == {
        "rightsizepolicies": {"get", "list", "watch"},
        "rightsizepolicies/status": {"get", "list", "watch"},
    }
    for role in ("edit", "admin"):
        aggregated = poll(f"the aggregation controller to fill {role}", lambda role=role: rules(role) or None)
        assert writes | {"get", "list", "watch"} <= aggregated["rightsizepolicies"], role
        assert aggregated["rightsizepolicies/status"] == {"get", "list", "watch"}, "status is the operator's"


def test_view_reads_policies_and_cannot_write_them(cluster: ControlPlane, users: dict[str, Path]) -> None:
    vera = users["vera"]
    assert create(cluster.kubeconfig, "web", "Recommend", WEB)[0] == 0
    poll("view to read policies", lambda: can_i(vera, "list", "rightsizepolicies.rightsizer.io"))
    assert "web" in kubectl("get", "rsp", "-n", NAMESPACE, kubeconfig=vera).stdout
    code, error = create(vera, "mine", "Recommend", API)
    assert code != 0 and 'cannot create resource "rightsizepolicies"' in error, error
    code, error = set_mode(vera, "web", "Auto")
    assert code != 0 and 'cannot patch resource "rightsizepolicies"' in error, error
    deleted = kubectl("delete", "rsp", "web", "-n", NAMESPACE, kubeconfig=vera, check=False)
    assert deleted.returncode != 0 and "Forbidden" in deleted.stderr


@pytest.mark.parametrize("user", ["eddie", "ada"])
def test_edit_and_admin_write_policies_in_both_modes(users: dict[str, Path], user: str) -> None:
    kubeconfig = users[user]
    poll(f"{user} to create policies", lambda: can_i(kubeconfig, "create", "rightsizepolicies.rightsizer.io"))
    assert create(kubeconfig, "web", "Recommend", WEB) == (0, "")
    assert set_mode(kubeconfig, "web", "Auto") == (0, "")
    assert create(kubeconfig, "every", "Auto", EVERY_DEPLOYMENT) == (0, "")
    status = kubectl(
        "patch",
        "rsp",
        "web",
        "-n",
        NAMESPACE,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"targetCount": 9}}',
        kubeconfig=kubeconfig,
        check=False,
    )
    assert status.returncode != 0 and "Forbidden" in status.stderr, "only the operator writes status"
    kubectl("delete", "rsp", "web", "every", "-n", NAMESPACE, kubeconfig=kubeconfig)


def test_who_may_not_patch_workloads_may_only_recommend(
    cluster: ControlPlane, users: dict[str, Path]
) -> None:
    paul = users["paul"]
    assert not can_i(paul, "patch", "deployments.apps")
    assert create(paul, "web", "Recommend", WEB) == (0, "")
    code, error = set_mode(paul, "web", "Auto")
    assert code != 0 and DENIED_BY_ADMISSION in error, error
    assert (
        "mode Auto lets rightsizer change Deployment web in namespace team, and paul may not patch it"
        in error
    )
    code, error = create(paul, "api", "Auto", API)
    assert code != 0 and DENIED_BY_ADMISSION in error, error
    code, error = create(paul, "every", "Auto", EVERY_DEPLOYMENT)
    assert code != 0 and "paul may not patch every Deployment there" in error, error
    # An Auto policy someone entitled wrote: paul may not change it (its bounds, its targets)...
    assert create(users["eddie"], "api", "Auto", API) == (0, "")
    bounds = json.dumps(
        {"spec": {"containerPolicies": [{"containerName": "*", "maxAllowed": {"memory": "64Gi"}}]}}
    )
    changed = kubectl(
        "patch", "rsp", "api", "-n", NAMESPACE, "--type=merge", "-p", bounds, kubeconfig=paul, check=False
    )
    assert changed.returncode != 0 and DENIED_BY_ADMISSION in changed.stderr, changed.stderr
    # ... but may delete it, which changes no workload, or turn it back to Recommend.
    assert set_mode(paul, "api", "Recommend") == (0, "")
    kubectl("delete", "rsp", "api", "-n", NAMESPACE, kubeconfig=paul)


def test_the_right_to_patch_one_deployment_allows_auto_for_that_one_only(users: dict[str, Path]) -> None:
    wendy = users["wendy"]
    assert create(wendy, "web", "Auto", WEB) == (0, "")
    code, error = create(wendy, "api", "Auto", API)
    assert code != 0 and "wendy may not patch it" in error, error
    code, error = create(wendy, "every", "Auto", EVERY_DEPLOYMENT)
    assert code != 0 and DENIED_BY_ADMISSION in error, error


def test_the_operator_still_writes_auto_policies(cluster: ControlPlane, tmp_path: Path) -> None:
    """Kopf's bookkeeping patches of an Auto policy, as the operator's ServiceAccount, pass admission."""
    assert create(cluster.kubeconfig, "web", "Auto", WEB)[0] == 0
    operator = serviceaccount_kubeconfig(
        cluster.kubeconfig, "rightsizer-system", "rightsizer", tmp_path / "sa"
    )
    annotate = kubectl(
        "annotate",
        "rsp",
        "web",
        "-n",
        NAMESPACE,
        "kopf.zalando.org/touch=1",
        kubeconfig=operator,
        check=False,
    )
    assert annotate.returncode == 0, annotate.stderr

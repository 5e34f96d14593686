"""Bad policies are refused at apply: careless RightSizePolicies against a real kube-apiserver.

One control plane serves the module (tests/support/k8s.py), with crds/rightsizepolicy.yaml applied.
Every policy is sent as a server-side dry run with strict field validation, as ``kubectl apply
--dry-run=server`` does: nothing is stored, and the answer is the one the user would get. Each
careless policy (tests/support/careless.py) must be refused with a message naming its field; every
policy the repo ships or applies must be accepted; and each bound of ``rightsizer.spec_bounds`` is
where the CRD puts it (the value at the bound accepted, the one just beyond refused, by the API
server and by ``parse_policy`` alike).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from rightsizer.policy import PolicyError, parse_policy
from tests.support.careless import CARELESS, EDGES, SHIPPED, Careless, Edge
from tests.support.k8s import kubectl, start_control_plane, wait_for_established_crd

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "rightsizepolicy.yaml"
CRD_NAME = "rightsizepolicies.rightsizer.io"
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.yaml"))
NAMESPACE = "default"


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A control plane with the CRD applied and Established; stopped after the module."""
    control_plane = start_control_plane(tmp_path_factory.mktemp("k8s"))
    try:
        kubectl("apply", "-f", str(CRD_FILE), kubeconfig=control_plane.kubeconfig)
        wait_for_established_crd(CRD_NAME, kubeconfig=control_plane.kubeconfig)
        yield control_plane.kubeconfig
    finally:
        control_plane.stop()


@pytest.fixture(scope="module")
def api(kubeconfig: Path) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))


def refusal(api: client.CustomObjectsApi, spec: dict[str, Any], name: str = "p") -> str | None:
    """The API server's message refusing a policy with this spec (a dry run), or None if accepted."""
    body = {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    try:
        api.create_namespaced_custom_object(
            "rightsizer.io",
            "v1alpha1",
            NAMESPACE,
            "rightsizepolicies",
            body,
            dry_run="All",
            field_validation="Strict",
        )
    except client.ApiException as error:
        assert error.status in (400, 422), error
        return str(json.loads(error.body)["message"])
    return None


@pytest.mark.parametrize("careless", CARELESS, ids=lambda c: c.id)
def test_a_careless_policy_is_refused_naming_its_field(
    api: client.CustomObjectsApi, careless: Careless
) -> None:
    message = refusal(api, careless.spec)
    assert message is not None, f"accepted: {careless.spec}"
    assert careless.field in message, message
    assert careless.text in message, message


@pytest.mark.parametrize(("where", "spec"), SHIPPED.items(), ids=list(SHIPPED))
def test_every_policy_the_repo_applies_is_accepted(
    api: client.CustomObjectsApi, where: str, spec: dict[str, Any]
) -> None:
    assert refusal(api, spec) is None


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_accepted(api: client.CustomObjectsApi, example: Path) -> None:
    manifest = yaml.safe_load(example.read_text())
    assert refusal(api, manifest["spec"], manifest["metadata"]["name"]) is None


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: e.id)
def test_each_bound_is_where_the_crd_and_the_operator_put_it(
    api: client.CustomObjectsApi, edge: Edge
) -> None:
    message = refusal(api, edge.spec)
    try:
        parse_policy(edge.spec)
        operator_message = None
    except PolicyError as error:
        operator_message = str(error)
    if edge.accepted:
        assert (message, operator_message) == (None, None)
    else:
        assert message is not None and edge.field in message, message
        assert operator_message is not None and edge.field in operator_message, operator_message


def test_kubectl_shows_the_refusal_to_the_user(kubeconfig: Path) -> None:
    """What a user sees: kubectl's own output for one careless policy, nothing stored."""
    manifest = {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": "web"},
        "spec": {"targetRef": {"name": "web"}, "history": {"window": "1d", "minimum": "7d"}},
    }
    result = kubectl(
        "apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(manifest), kubeconfig=kubeconfig, check=False
    )
    assert result.returncode != 0
    assert "spec.history.minimum" in result.stderr and "(7d) is longer than" in result.stderr, result.stderr
    stored = kubectl("get", "rsp", "web", "-n", NAMESPACE, kubeconfig=kubeconfig, check=False)
    assert "NotFound" in stored.stderr

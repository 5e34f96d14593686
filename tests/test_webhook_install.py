"""deploy/webhook, the admission webhook's kustomize Component (auto.updateMode PodsOnly), on a real
API server: it renders and applies beside deploy/, it agrees with the operator's code (the path
Kopf serves, the configuration's name, the flags, the certificate's mount), the operator's
ServiceAccount may update its own configuration's caBundle and nothing else, and pod creation
goes on while the webhook is unreachable (failurePolicy Ignore)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from rightsizer.cli import build_parser
from rightsizer.controller.certs import self_signed
from rightsizer.controller.kube import KubernetesCluster
from rightsizer.controller.webhook import HANDLER_ID
from tests.support.k8s import REPO_ROOT, ControlPlane, kubectl, serviceaccount_kubeconfig

pytestmark = pytest.mark.k8s

SYSTEM = "rightsizer-system"


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a user writes to add the webhook: deploy/ plus the component (docs/deploy.md)."""
    root = tmp_path_factory.mktemp("overlay")
    for directory in ("deploy", "crds"):
        shutil.copytree(REPO_ROOT / directory, root / directory)
    (root / "mine").mkdir()
    (root / "mine" / "kustomization.yaml").write_text(
        "resources: [../deploy]\ncomponents: [../deploy/webhook]\n"
    )
    return root / "mine"


@pytest.fixture(scope="module")
def rendered(overlay: Path) -> dict[tuple[str, str], dict[str, Any]]:
    text = kubectl("kustomize", str(overlay), kubeconfig="/dev/null").stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def test_the_component_agrees_with_the_operator(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    (webhook,) = rendered[("MutatingWebhookConfiguration", "rightsizer")]["webhooks"]
    assert webhook["clientConfig"]["service"]["path"] == f"/{HANDLER_ID}"
    assert webhook["failurePolicy"] == "Ignore" and webhook["timeoutSeconds"] <= 5
    assert webhook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "operations": ["CREATE"],
            "scope": "Namespaced",
        }
    ]
    excluded = webhook["namespaceSelector"]["matchExpressions"][0]
    assert excluded["operator"] == "NotIn" and {"kube-system", SYSTEM} <= set(excluded["values"])

    pod = rendered[("Deployment", "rightsizer")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.admission_configuration == "rightsizer", "the configuration the operator keeps current"
    assert args.admission_listen == "0.0.0.0:9443"
    port = next(p for p in container["ports"] if p["name"] == "webhook")
    assert port["containerPort"] == int(args.admission_listen.rsplit(":", 1)[1])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhook-tls")
    assert Path(mount["mountPath"]) == args.admission_cert_dir
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == "rightsizer-webhook-tls"

    service = rendered[("Service", "rightsizer-webhook")]
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert service["spec"]["selector"].items() <= pod_labels(rendered).items()


def pod_labels(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    return dict(rendered[("Deployment", "rightsizer")]["spec"]["template"]["metadata"]["labels"])


def test_applied_the_operator_may_set_its_own_ca_bundle_and_pods_are_created_while_it_is_down(
    cluster: ControlPlane, overlay: Path, tmp_path: Path
) -> None:
    admin = cluster.kubeconfig
    kubectl("apply", "-k", str(overlay), kubeconfig=admin, timeout=120)
    other = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "someone-elses"},
        "webhooks": [],
    }
    kubectl("apply", "-f", "-", input=json.dumps(other), kubeconfig=admin)
    operator = serviceaccount_kubeconfig(admin, SYSTEM, "rightsizer", tmp_path / "sa.kubeconfig")

    def can_i(verb: str, name: str) -> bool:
        result = kubectl(
            "auth", "can-i", verb, f"mutatingwebhookconfigurations/{name}", kubeconfig=operator, check=False
        )
        return result.stdout.strip() == "yes"

    assert can_i("patch", "rightsizer") and can_i("get", "rightsizer")
    assert not can_i("patch", "someone-elses") and not can_i("delete", "rightsizer")

    # The operator's own call, as its ServiceAccount, as at its start.
    certificate = self_signed(["rightsizer-webhook.rightsizer-system.svc"], tmp_path / "tls")
    previous = client.Configuration.get_default_copy()
    try:
        config.load_kube_config(config_file=str(operator))
        KubernetesCluster().update_webhook_configuration("rightsizer", certificate.ca_pem, None)
    finally:
        client.Configuration.set_default(previous)
    stored = json.loads(
        kubectl("get", "mutatingwebhookconfiguration", "rightsizer", "-o", "json", kubeconfig=admin).stdout
    )
    (webhook,) = stored["webhooks"]
    assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == certificate.ca_pem
    assert webhook["clientConfig"]["service"]["name"] == "rightsizer-webhook", "its Service kept"

    # No operator runs here (no node): the webhook is unreachable, and pods are created anyway.
    kubectl("create", "namespace", "shop", kubeconfig=admin)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "load:1", "resources": {"requests": {"cpu": "1"}}}]},
    }
    created = kubectl("create", "-f", "-", "-o", "json", input=json.dumps(pod), kubeconfig=admin)
    assert json.loads(created.stdout)["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "1"}}

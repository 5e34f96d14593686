"""rightsizer's mutating admission webhook, for ``auto.updateMode: PodsOnly``: a new pod of a
workload whose template rightsizer never edits gets the resources its running pods were resized to
(``admission.POD_RESOURCES``), so GitOps tools never see rightsizer change what they own.

These decorators are not in ``main``: Kopf refuses to start with an admission handler and no
webhook server, so the runner imports this module only when ``--admission-listen`` is given.
The webhook configuration itself is installed beside the operator (deploy/webhook.yaml); the
operator keeps its CA bundle (and, with ``--admission-url``, its URL) up to date at start.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kopf

from rightsizer.controller import handlers
from rightsizer.controller.certs import ServingCertificate, from_directory, self_signed
from rightsizer.workload import WorkloadView

HANDLER_ID = "pod-resources"
"""Kopf routes a request to the handler its URL path names: the configuration calls ``/pod-resources``."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdmissionServing:
    """Where the webhook listens, how the API server reaches it, and the configuration to keep current."""

    listen_host: str
    listen_port: int
    url: str | None
    """e.g. ``https://127.0.0.1:9443`` (the configuration then uses it); None keeps the configuration's
    own clientConfig (a Service, in deploy/)."""
    configuration: str
    cert_dir: Path | None


@kopf.on.startup()
def serve_admission(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    serving: AdmissionServing = memo.admission
    certificate = _certificate(serving)
    host = urlsplit(serving.url).hostname if serving.url else None
    settings.admission.server = kopf.WebhookServer(
        addr=serving.listen_host,
        port=serving.listen_port,
        host=host,
        certfile=str(certificate.certfile),
        pkeyfile=str(certificate.keyfile),
        cadata=certificate.ca_pem,
    )
    url = f"{serving.url.rstrip('/')}/{HANDLER_ID}" if serving.url else None
    memo.cluster.update_webhook_configuration(serving.configuration, certificate.ca_pem, url)
    log.info(
        "admission webhook on %s:%d for %s", serving.listen_host, serving.listen_port, serving.configuration
    )


def _certificate(serving: AdmissionServing) -> ServingCertificate:
    if serving.cert_dir is not None:
        return from_directory(serving.cert_dir)
    hosts = [h for h in (urlsplit(serving.url).hostname if serving.url else None, serving.listen_host) if h]
    hosts = [h for h in hosts if h not in ("0.0.0.0", "::")] or ["localhost"]
    return self_signed(hosts, Path(tempfile.mkdtemp(prefix="rightsizer-webhook-")))


# kopf passes its indexes as keyword arguments named after them; its handler protocols cannot say so.
@kopf.on.mutate("", "v1", "pods", operations=["CREATE"], ignore_failures=True, id=HANDLER_ID)  # type: ignore[arg-type]
def pod_resources(
    body: kopf.Body,
    patch: kopf.Patch,
    namespace: str | None,
    deployments_by_namespace: kopf.Index[str | None, WorkloadView],
    statefulsets_by_namespace: kopf.Index[str | None, WorkloadView],
    daemonsets_by_namespace: kopf.Index[str | None, WorkloadView],
    cronjobs_by_namespace: kopf.Index[str | None, WorkloadView],
    **_: Any,
) -> None:
    ns = namespace or ""
    workloads = [
        *deployments_by_namespace.get(ns, []),
        *statefulsets_by_namespace.get(ns, []),
        *daemonsets_by_namespace.get(ns, []),
        *cronjobs_by_namespace.get(ns, []),
    ]
    handlers.mutate_pod(body, ns, patch, workloads)

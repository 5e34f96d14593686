"""The Kubernetes API calls the operator makes besides Kopf's own (reads for constraints, the patch)."""

from __future__ import annotations

from typing import Any, Protocol

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from rightsizer.errors import ConfigurationError

FIELD_MANAGER = "rightsizer"
"""Who rightsizer's patches are recorded as (managedFields): GitOps tools can be told to ignore it."""


class PatchConflict(RuntimeError):
    """The workload changed since it was read; the patch was not applied."""


class Cluster(Protocol):
    """What an evaluation needs from the cluster (a protocol so tests can count calls)."""

    def limit_ranges(self, namespace: str) -> list[dict[str, Any]]: ...
    def resource_quotas(self, namespace: str) -> list[dict[str, Any]]: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def patch_workload(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


def load_credentials() -> None:
    """In-cluster ServiceAccount credentials, else the user's KUBECONFIG (local runs, tests)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except config.ConfigException as error:
            raise ConfigurationError(
                f"no Kubernetes credentials (in-cluster or KUBECONFIG): {error}"
            ) from None


class KubernetesCluster:
    """``Cluster`` over the official client."""

    def __init__(self) -> None:
        self._api = client.ApiClient()
        self._core = client.CoreV1Api(self._api)
        apps, batch = client.AppsV1Api(self._api), client.BatchV1Api(self._api)
        self._patchers = {
            "Deployment": apps.patch_namespaced_deployment,
            "StatefulSet": apps.patch_namespaced_stateful_set,
            "DaemonSet": apps.patch_namespaced_daemon_set,
            "CronJob": batch.patch_namespaced_cron_job,
        }

    def limit_ranges(self, namespace: str) -> list[dict[str, Any]]:
        return self._items(self._core.list_namespaced_limit_range(namespace))

    def resource_quotas(self, namespace: str) -> list[dict[str, Any]]:
        return self._items(self._core.list_namespaced_resource_quota(namespace))

    def nodes(self) -> list[dict[str, Any]]:
        return self._items(self._core.list_node())

    def patch_workload(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Strategic-merge patch as field manager ``rightsizer``; stale resourceVersion: PatchConflict."""
        try:
            self._patchers[kind](
                name,
                namespace,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type="application/strategic-merge-patch+json",
            )
        except ApiException as error:
            if error.status == 409:
                raise PatchConflict(f"{kind} {namespace}/{name} changed while being evaluated") from None
            raise

    def _items(self, listing: Any) -> list[dict[str, Any]]:
        return [self._api.sanitize_for_serialization(item) for item in listing.items]

"""The Kubernetes API calls the operator makes besides Kopf's own (reads for constraints, the patch)."""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rightsizer.errors import ConfigurationError

FIELD_MANAGER = "rightsizer"
"""Who rightsizer's patches are recorded as (managedFields): GitOps tools can be told to ignore it."""
JSON_PATCH = "application/json-patch+json"
EVENT_TIMEOUT_SECONDS = 10
"""An Event is auxiliary: an API server that does not take it in this time does not hold up the
evaluation's status."""
JSON_PATCH_NOT_APPLIED = "the server rejected our request due to an error in our request"


class PatchConflict(RuntimeError):
    """The workload changed since it was read; the patch was not applied."""


class ResizeRefused(RuntimeError):
    """The API server refused a ``pods/resize`` (a QoS class change, say); the message says why."""


class EvictionRefused(RuntimeError):
    """The Eviction API refused to evict a pod now (429: a PodDisruptionBudget allows no disruption)."""


class Cluster(Protocol):
    """What an evaluation needs from the cluster (a protocol so tests can count calls)."""

    def limit_ranges(self, namespace: str) -> list[dict[str, Any]]: ...
    def resource_quotas(self, namespace: str) -> list[dict[str, Any]]: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def pod_disruption_budgets(self, namespace: str) -> list[dict[str, Any]]: ...
    def patch_workload(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> str: ...
    def read_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...
    def resize_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None: ...
    def evict_pod(self, namespace: str, name: str, uid: str) -> None: ...
    def label_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None: ...
    def read_replicaset(self, namespace: str, name: str) -> dict[str, Any]: ...
    def patch_replicaset(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...
    def controller_revisions(self, namespace: str) -> list[dict[str, Any]]: ...
    def read_autoscaler(self, namespace: str, name: str) -> dict[str, Any]: ...
    def patch_autoscaler(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None: ...
    def update_webhook_configuration(self, name: str, ca_pem: bytes, url: str | None) -> None: ...
    def post_event(self, namespace: str, body: dict[str, Any]) -> None: ...


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
        self._apps, batch = client.AppsV1Api(self._api), client.BatchV1Api(self._api)
        self._policy = client.PolicyV1Api(self._api)
        self._autoscaling = client.AutoscalingV2Api(self._api)
        self._patchers = {
            "Deployment": self._apps.patch_namespaced_deployment,
            "StatefulSet": self._apps.patch_namespaced_stateful_set,
            "DaemonSet": self._apps.patch_namespaced_daemon_set,
            "CronJob": batch.patch_namespaced_cron_job,
        }
        self._readers = {
            "Deployment": self._apps.read_namespaced_deployment,
            "StatefulSet": self._apps.read_namespaced_stateful_set,
            "DaemonSet": self._apps.read_namespaced_daemon_set,
            "CronJob": batch.read_namespaced_cron_job,
        }

    def limit_ranges(self, namespace: str) -> list[dict[str, Any]]:
        return self._items(self._core.list_namespaced_limit_range(namespace))

    def resource_quotas(self, namespace: str) -> list[dict[str, Any]]:
        return self._items(self._core.list_namespaced_resource_quota(namespace))

    def nodes(self) -> list[dict[str, Any]]:
        return self._items(self._core.list_node())

    def patch_workload(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> str:
        """Strategic-merge patch as field manager ``rightsizer``; its new resourceVersion. A stale
        ``metadata.resourceVersion`` in the patch: PatchConflict."""
        updated = _merge_patch(self._patchers[kind], f"{kind} {namespace}/{name}", name, namespace, patch)
        return str(self._plain(updated)["metadata"]["resourceVersion"])

    def pod_disruption_budgets(self, namespace: str) -> list[dict[str, Any]]:
        return self._items(self._policy.list_namespaced_pod_disruption_budget(namespace))

    def read_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(self._readers[kind](name, namespace))

    def resize_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        """``pods/resize`` with a JSON patch (its ``test`` operations guard it): a test that fails is a
        PatchConflict, another refusal (a QoS class change, RBAC) ResizeRefused."""
        try:
            self._core.patch_namespaced_pod_resize(
                name, namespace, operations, field_manager=FIELD_MANAGER, _content_type=JSON_PATCH
            )
        except ApiException as error:
            if _test_failed(error):
                raise PatchConflict(f"pod {namespace}/{name} changed: {_message(error)}") from None
            if error.status in (400, 403, 422):
                raise ResizeRefused(_message(error)) from None
            raise

    def evict_pod(self, namespace: str, name: str, uid: str) -> None:
        """The Eviction API, only for the pod of that uid (a pod recreated under the same name is not
        evicted); a pod gone already is fine; 429 (a PodDisruptionBudget): EvictionRefused."""
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
        )
        try:
            self._core.create_namespaced_pod_eviction(name, namespace, body)
        except ApiException as error:
            if error.status == 404:
                return
            if error.status == 429:
                raise EvictionRefused(_message(error)) from None
            if error.status == 409:
                raise PatchConflict(f"pod {namespace}/{name} is another pod now") from None
            raise

    def label_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        """A JSON patch of the pod's labels, guarded by ``test`` operations (one failed: PatchConflict)."""
        try:
            self._core.patch_namespaced_pod(
                name, namespace, operations, field_manager=FIELD_MANAGER, _content_type=JSON_PATCH
            )
        except ApiException as error:
            if _test_failed(error):
                raise PatchConflict(f"pod {namespace}/{name} changed: {_message(error)}") from None
            raise

    def read_replicaset(self, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(self._apps.read_namespaced_replica_set(name, namespace))

    def patch_replicaset(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Strategic-merge patch; a stale ``metadata.resourceVersion`` in it: PatchConflict."""
        send = self._apps.patch_namespaced_replica_set
        _merge_patch(send, f"ReplicaSet {namespace}/{name}", name, namespace, patch)

    def controller_revisions(self, namespace: str) -> list[dict[str, Any]]:
        return self._items(self._apps.list_namespaced_controller_revision(namespace))

    def read_autoscaler(self, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(self._autoscaling.read_namespaced_horizontal_pod_autoscaler(name, namespace))

    def patch_autoscaler(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        """A JSON patch of an autoscaling/v2 HPA; a ``test`` operation that fails: PatchConflict."""
        try:
            self._autoscaling.patch_namespaced_horizontal_pod_autoscaler(
                name,
                namespace,
                operations,
                field_manager=FIELD_MANAGER,
                _content_type=JSON_PATCH,
            )
        except ApiException as error:
            if error.status in (409, 422) or _test_failed(error):
                what = f"HorizontalPodAutoscaler {namespace}/{name}"
                raise PatchConflict(f"{what} changed while being patched: {_message(error)}") from None
            raise

    def update_webhook_configuration(self, name: str, ca_pem: bytes, url: str | None) -> None:
        """Point every webhook of MutatingWebhookConfiguration ``name`` at this operator: the CA
        bundle it serves with, and ``url`` when given (else its own clientConfig stays)."""
        admission = client.AdmissionregistrationV1Api(self._api)
        current = admission.read_mutating_webhook_configuration(name)
        client_config: dict[str, Any] = {"caBundle": base64.b64encode(ca_pem).decode()}
        if url is not None:
            client_config.update(url=url, service=None)
        webhooks = [{"name": w.name, "clientConfig": client_config} for w in current.webhooks or []]
        admission.patch_mutating_webhook_configuration(
            name, {"webhooks": webhooks}, field_manager=FIELD_MANAGER
        )

    def post_event(self, namespace: str, body: dict[str, Any]) -> None:
        """Create a core/v1 Event (``outcome.event_body``), at once: Kopf's own posting queues Events
        and drops those still queued when the operator stops."""
        event: Any = body  # the client sends a plain body as it is
        self._core.create_namespaced_event(namespace, event, _request_timeout=EVENT_TIMEOUT_SECONDS)

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self._api.sanitize_for_serialization(obj))

    def _items(self, listing: Any) -> list[dict[str, Any]]:
        return [self._api.sanitize_for_serialization(item) for item in listing.items]


def _merge_patch(send: Any, what: str, name: str, namespace: str, patch: dict[str, Any]) -> Any:
    """A strategic-merge patch as field manager ``rightsizer`` with ``send`` (the client's method);
    refused for a stale resourceVersion: PatchConflict."""
    try:
        return send(
            name,
            namespace,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type="application/strategic-merge-patch+json",
        )
    except ApiException as error:
        if error.status == 409:
            raise PatchConflict(f"{what} changed while being patched") from None
        raise


def _test_failed(error: ApiException) -> bool:
    """A JSON patch refused because it could not be applied: one of its ``test`` operations failed
    (the object changed since it was read). The API server says so with a 422 whose message is its
    generic "the server rejected our request due to an error in our request" and no field causes,
    where a validation failure (a QoS class change, say) names the field."""
    if error.status != 422:
        return False
    try:
        status = json.loads(error.body or "")
    except (TypeError, ValueError):
        return False
    return str(status.get("message", "")).startswith(JSON_PATCH_NOT_APPLIED) and not (
        status.get("details") or {}
    ).get("causes")


def _message(error: ApiException) -> str:
    """The API server's own message of a refusal (its Status body), else its reason."""
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"

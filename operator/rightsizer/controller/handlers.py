"""Thin handlers: turn Kopf's arguments into plain values, call ``evaluate``, write back the outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rightsizer.admission import mutated_containers, pod_resources
from rightsizer.controller import metrics, policy_gauges
from rightsizer.controller.deletion import release
from rightsizer.controller.evaluate import evaluate
from rightsizer.controller.kube import Cluster
from rightsizer.controller.outcome import Event, PolicyObject, event_body
from rightsizer.controller.schedule import is_due
from rightsizer.cost import DEFAULT_PRICES
from rightsizer.hpa import Autoscaler
from rightsizer.pods import PodView, workload_owner
from rightsizer.settings import HANDLER_THREADS
from rightsizer.timestamps import format_time, parse_time
from rightsizer.workload import WorkloadView

DELETION_POLL_SECONDS = 1.0
"""How often a deleted policy's timer is checked for having stopped (see ``configure``)."""
DELETION_RETRY = 10.0
"""How often a deleted policy's changes in flight are looked at again while they are rolled back."""


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf settings: no peering CRD, handler logs stay in the log (we post our own Events, ``_post``), and a
    fixed number of handler threads (``HANDLER_THREADS``: Python's default grows with the node's cores).

    A deleted policy keeps Kopf's finalizer until its timer has stopped; a timer caught in the middle
    of an evaluation (run in a thread, so it cannot be cancelled) is checked again only after
    ``cancellation_polling``: Kopf's 60 s made ``kubectl delete`` hang for a minute now and then.
    """
    settings.peering.standalone = True
    settings.background.cancellation_polling = DELETION_POLL_SECONDS
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.execution.max_workers = HANDLER_THREADS


def index_workload(body: Mapping[str, Any]) -> WorkloadView:
    return WorkloadView.from_body(_plain(body))


def index_pod(body: Mapping[str, Any]) -> PodView:
    return PodView.from_body(_plain(body))


def index_autoscaler(body: Mapping[str, Any]) -> Autoscaler:
    return Autoscaler.from_body(_plain(body))


def mutate_pod(
    body: Mapping[str, Any], namespace: str, patch: kopf.Patch, workloads: Iterable[WorkloadView]
) -> None:
    """A new pod of a PodsOnly workload gets the resources its running pods were resized to."""
    pod = _plain(body)
    kind, name = workload_owner(pod.get("metadata") or {})
    workload = next(
        (w for w in workloads if (w.kind.name, w.name) == (kind, name) and w.namespace == namespace), None
    )
    target = pod_resources(workload.annotations) if workload is not None else None
    if not target:
        return
    for field, containers in mutated_containers(pod.get("spec") or {}, target).items():
        patch.setdefault("spec", {})[field] = containers


def tick(
    body: Mapping[str, Any],
    memo: kopf.Memo,
    workloads: Iterable[WorkloadView],
    pods: Iterable[PodView],
    patch: kopf.Patch,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    autoscalers: Iterable[Autoscaler] = (),
) -> None:
    """Evaluate the policy if it is due; write its status and post its Events. Every replica
    first sets the policy's gauges from its status (``policy_gauges``)."""
    raw = _plain(body)
    workloads = list(workloads)
    policy_gauges.observe(raw, workloads)
    if not memo.leadership.leading():
        return  # a standby replica: the leader evaluates (controller/election.py)
    metadata = raw["metadata"]
    policy = PolicyObject(
        name=metadata["name"],
        namespace=metadata["namespace"],
        uid=metadata.get("uid", ""),
        generation=int(metadata.get("generation", 0)),
        spec=raw.get("spec") or {},
        status=raw.get("status") or {},
    )
    now = datetime.now(UTC)
    if not is_due(policy, now):
        return
    started = time.monotonic()
    try:
        outcome = evaluate(
            policy,
            workloads,
            list(pods),
            memo.prometheus,
            memo.cluster,
            memo.labels,
            now,
            memo.batches,
            autoscalers=list(autoscalers),
            prices=memo.get("prices") or DEFAULT_PRICES,
        )
    except Exception:
        metrics.observe_evaluation(policy.namespace, policy.name, time.monotonic() - started, metrics.ERROR)
        raise
    failure = metrics.failure_of(outcome.status)
    metrics.observe_evaluation(policy.namespace, policy.name, time.monotonic() - started, failure)
    patch.status.update(outcome.status)
    for event in outcome.events:
        _post(memo.cluster, event, raw, logger)
    logger.info("evaluated: %s", _summary(outcome.status))


def policy_deleted(
    body: Mapping[str, Any],
    memo: kopf.Memo,
    workloads: Iterable[WorkloadView],
    pods: Iterable[PodView],
    autoscalers: Iterable[Autoscaler],
) -> None:
    """A deleted policy's changes in flight are rolled back before it goes (``deletion``): Kopf
    calls this again (a temporary error) until none is left. A standby waits for the leader."""
    if not memo.leadership.leading():
        raise kopf.TemporaryError(
            "the leader rolls back the policy's changes in flight", delay=DELETION_RETRY
        )
    raw = _plain(body)
    metadata = raw["metadata"]
    policy = PolicyObject(metadata["name"], metadata["namespace"], metadata.get("uid", ""), 0, {}, {})
    deleted_at = parse_time(metadata.get("deletionTimestamp") or format_time(datetime.now(UTC)))
    released = release(
        policy, deleted_at, datetime.now(UTC), memo.cluster, list(workloads), list(pods), list(autoscalers)
    )
    for event in released.events:
        _post(memo.cluster, event, raw, logging.getLogger(__name__))
    if released.in_flight:
        raise kopf.TemporaryError(f"rolling back: {'; '.join(released.in_flight)}", delay=DELETION_RETRY)


def forget_policy(namespace: str, name: str) -> None:
    """A deleted policy's series leave ``/metrics``."""
    metrics.forget(namespace, name)


def _post(
    cluster: Cluster,
    event: Event,
    policy: Mapping[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> None:
    """Post ``event`` now, from the handler's thread, so that it is written before the handler
    returns (the operator stopped right after a change started kept the change and lost its Events
    with Kopf's queue). An Event that cannot be posted is logged, and the evaluation goes on."""
    try:
        cluster.post_event(policy["metadata"]["namespace"], event_body(event, policy, datetime.now(UTC)))
    except (ApiException, HTTPError, OSError) as error:
        logger.warning("could not post the Event %s %r: %s", event.reason, event.message, error)


def _summary(status: dict[str, Any]) -> str:
    conditions = {c["type"]: f"{c['status']}/{c['reason']}" for c in status.get("conditions", [])}
    return f"targets={status.get('targetCount')} ready={status.get('readyContainers')} {conditions}"


def _plain(value: Any) -> Any:
    """Kopf's read-only views -> plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

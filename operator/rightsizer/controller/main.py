"""Kopf registrations, and nothing else: every decorator of the operator is in this file."""

from __future__ import annotations

import os
from typing import Any

import kopf

from rightsizer.controller import api_session, handlers
from rightsizer.hpa import Autoscaler
from rightsizer.pods import PodView
from rightsizer.workload import WorkloadView

GROUP, VERSION, PLURAL = "rightsizer.io", "v1alpha1", "rightsizepolicies"
TICK_SECONDS = float(os.environ.get("RIGHTSIZER_TICK_SECONDS", "10"))
"""How often each policy is looked at; it is evaluated only when due (spec change, interval, retry).
A spec change is therefore picked up within one tick."""


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.AiohttpSession:
    return await api_session.login(memo.namespaces, **kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    handlers.configure(settings)


@kopf.index("apps", "v1", "deployments")
def deployments_by_namespace(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[str | None, WorkloadView]:
    return {namespace: handlers.index_workload(body)}


@kopf.index("apps", "v1", "statefulsets")
def statefulsets_by_namespace(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[str | None, WorkloadView]:
    return {namespace: handlers.index_workload(body)}


@kopf.index("apps", "v1", "daemonsets")
def daemonsets_by_namespace(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[str | None, WorkloadView]:
    return {namespace: handlers.index_workload(body)}


@kopf.index("batch", "v1", "cronjobs")
def cronjobs_by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str | None, WorkloadView]:
    return {namespace: handlers.index_workload(body)}


@kopf.index("", "v1", "pods")
def pods_by_namespace(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str | None, PodView]:
    return {namespace: handlers.index_pod(body)}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers")
def autoscalers_by_namespace(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[str | None, Autoscaler]:
    return {namespace: handlers.index_autoscaler(body)}


@kopf.on.event(GROUP, VERSION, PLURAL)
def policy_event(event: kopf.RawEvent, namespace: str | None, name: str, **_: Any) -> None:
    if event["type"] == "DELETED" and namespace:
        handlers.forget_policy(namespace, name)


# kopf passes its indexes as keyword arguments named after them; its handler protocols cannot say so.
@kopf.on.delete(GROUP, VERSION, PLURAL)  # type: ignore[arg-type]
def policy_deleted(
    body: kopf.Body,
    memo: kopf.Memo,
    deployments_by_namespace: kopf.Index[str | None, WorkloadView],
    statefulsets_by_namespace: kopf.Index[str | None, WorkloadView],
    daemonsets_by_namespace: kopf.Index[str | None, WorkloadView],
    cronjobs_by_namespace: kopf.Index[str | None, WorkloadView],
    pods_by_namespace: kopf.Index[str | None, PodView],
    autoscalers_by_namespace: kopf.Index[str | None, Autoscaler],
    namespace: str | None,
    **_: Any,
) -> None:
    workloads = _workloads(
        namespace,
        deployments_by_namespace,
        statefulsets_by_namespace,
        daemonsets_by_namespace,
        cronjobs_by_namespace,
    )
    pods: list[PodView] = [*pods_by_namespace.get(namespace, [])]
    autoscalers: list[Autoscaler] = [*autoscalers_by_namespace.get(namespace, [])]
    handlers.policy_deleted(body, memo, workloads, pods, autoscalers)


@kopf.timer(GROUP, VERSION, PLURAL, interval=TICK_SECONDS, initial_delay=1.0)  # type: ignore[arg-type]
def evaluate_policy(
    body: kopf.Body,
    memo: kopf.Memo,
    patch: kopf.Patch,
    deployments_by_namespace: kopf.Index[str | None, WorkloadView],
    statefulsets_by_namespace: kopf.Index[str | None, WorkloadView],
    daemonsets_by_namespace: kopf.Index[str | None, WorkloadView],
    cronjobs_by_namespace: kopf.Index[str | None, WorkloadView],
    pods_by_namespace: kopf.Index[str | None, PodView],
    autoscalers_by_namespace: kopf.Index[str | None, Autoscaler],
    namespace: str | None,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    workloads = _workloads(
        namespace,
        deployments_by_namespace,
        statefulsets_by_namespace,
        daemonsets_by_namespace,
        cronjobs_by_namespace,
    )
    pods: list[PodView] = [*pods_by_namespace.get(namespace, [])]
    autoscalers: list[Autoscaler] = [*autoscalers_by_namespace.get(namespace, [])]
    handlers.tick(body, memo, workloads, pods, patch, logger, autoscalers)


def _workloads(namespace: str | None, *indexes: kopf.Index[str | None, WorkloadView]) -> list[WorkloadView]:
    """The namespace's workloads of every kind, from their indexes."""
    return [workload for index in indexes for workload in index.get(namespace, [])]

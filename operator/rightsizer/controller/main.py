"""Kopf registrations, and nothing else: every decorator of the operator is in this file."""

from __future__ import annotations

import os
from typing import Any

import kopf

from rightsizer.controller import handlers

GROUP, VERSION, PLURAL = "rightsizer.io", "v1alpha1", "rightsizepolicies"
TICK_SECONDS = float(os.environ.get("RIGHTSIZER_TICK_SECONDS", "10"))
"""How often each policy is looked at; it is evaluated only when due (spec change, interval, retry).
A spec change is therefore picked up within one tick."""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    handlers.configure(settings)


@kopf.index("apps", "v1", "deployments")
def deployments_by_namespace(body: kopf.Body, namespace: str, **_: Any) -> dict[str, Any]:
    return {namespace: handlers.index_workload(body)}


@kopf.index("apps", "v1", "statefulsets")
def statefulsets_by_namespace(body: kopf.Body, namespace: str, **_: Any) -> dict[str, Any]:
    return {namespace: handlers.index_workload(body)}


@kopf.index("apps", "v1", "daemonsets")
def daemonsets_by_namespace(body: kopf.Body, namespace: str, **_: Any) -> dict[str, Any]:
    return {namespace: handlers.index_workload(body)}


@kopf.index("batch", "v1", "cronjobs")
def cronjobs_by_namespace(body: kopf.Body, namespace: str, **_: Any) -> dict[str, Any]:
    return {namespace: handlers.index_workload(body)}


@kopf.index("", "v1", "pods")
def pods_by_namespace(body: kopf.Body, namespace: str, **_: Any) -> dict[str, Any]:
    return {namespace: handlers.index_pod(body)}


@kopf.on.event(GROUP, VERSION, PLURAL)
def policy_event(event: kopf.RawEvent, namespace: str, name: str, **_: Any) -> None:
    if event["type"] == "DELETED":
        handlers.forget_policy(namespace, name)


@kopf.timer(GROUP, VERSION, PLURAL, interval=TICK_SECONDS, initial_delay=1.0)
def evaluate_policy(
    body: kopf.Body,
    memo: kopf.Memo,
    patch: kopf.Patch,
    deployments_by_namespace: kopf.Index,
    statefulsets_by_namespace: kopf.Index,
    daemonsets_by_namespace: kopf.Index,
    cronjobs_by_namespace: kopf.Index,
    pods_by_namespace: kopf.Index,
    namespace: str,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    workloads = [
        *deployments_by_namespace.get(namespace, []),
        *statefulsets_by_namespace.get(namespace, []),
        *daemonsets_by_namespace.get(namespace, []),
        *cronjobs_by_namespace.get(namespace, []),
    ]
    handlers.tick(body, memo, workloads, pods_by_namespace.get(namespace, []), patch, logger)

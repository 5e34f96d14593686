"""Kubernetes QoS classes, which decide eviction order under node pressure."""

from __future__ import annotations

from collections.abc import Iterable

from rightsizer.model import Resources
from rightsizer.units import RESOURCES

GUARANTEED = "Guaranteed"
BURSTABLE = "Burstable"
BEST_EFFORT = "BestEffort"


def pod_qos_class(containers: Iterable[Resources]) -> str:
    """The QoS class of a pod of these containers: Guaranteed only if every one is, BestEffort
    only if none sets anything (an in-place resize may not change it)."""
    classes = {qos_class(resources) for resources in containers}
    if classes == {GUARANTEED}:
        return GUARANTEED
    if classes <= {BEST_EFFORT}:
        return BEST_EFFORT
    return BURSTABLE


def qos_class(resources: Resources) -> str:
    """The QoS class of a pod whose only container has these resources.

    As in Kubernetes: a request left unset defaults to its limit, Guaranteed needs CPU and
    memory limits equal to their requests, BestEffort has neither requests nor limits.
    """
    if not resources.requests and not resources.limits:
        return BEST_EFFORT
    limits = resources.limits
    if all(r in limits for r in RESOURCES) and all(
        resources.requests.get(r, limits[r]) == limits[r] for r in RESOURCES
    ):
        return GUARANTEED
    return BURSTABLE

"""Kubernetes QoS classes, which decide eviction order under node pressure."""

from __future__ import annotations

from rightsizer.model import Resources
from rightsizer.quantity import RESOURCES

GUARANTEED = "Guaranteed"
BURSTABLE = "Burstable"
BEST_EFFORT = "BestEffort"


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

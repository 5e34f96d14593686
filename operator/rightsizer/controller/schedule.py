"""When a policy is due: at once after a spec change, else every interval, sooner after failures."""

from __future__ import annotations

import hashlib
from datetime import datetime

from rightsizer.controller.outcome import PolicyObject
from rightsizer.policy import PolicyError, parse_policy
from rightsizer.settings import EVALUATION_INTERVAL_SECONDS
from rightsizer.timestamps import parse_time

DEFAULT_INTERVAL_SECONDS = EVALUATION_INTERVAL_SECONDS
"""For a policy whose spec cannot be read: it is re-evaluated (and its error reported) this often."""
RETRY_BASE_SECONDS = 15
"""After a failed Prometheus query: retried after 15 s, 30 s, 60 s ... up to the interval."""
MAX_JITTER = 0.1
"""Up to 10% added to the interval, fixed per policy: policies created together spread out."""
IN_FLIGHT_SECONDS = 10
"""While an Auto-mode change is in flight (a canary watched, pods resized), the policy is looked
at this often: the change moves on, or is rolled back, without waiting for the interval."""


def is_due(policy: PolicyObject, now: datetime) -> bool:
    """Evaluate at once on a new generation; else after the interval plus the policy's jitter, or
    sooner with exponential backoff after Prometheus failed."""
    status = policy.status
    if status.get("observedGeneration") != policy.generation or not status.get("lastEvaluationTime"):
        return True
    return (now - parse_time(status["lastEvaluationTime"])).total_seconds() >= wait_seconds(policy)


def wait_seconds(policy: PolicyObject) -> float:
    """Seconds from the last evaluation to the next one."""
    try:
        interval = parse_policy(policy.spec).interval_seconds
    except PolicyError:
        interval = DEFAULT_INTERVAL_SECONDS
    failures = int(policy.status.get("consecutiveFailures", 0))
    if failures:
        return min(interval, RETRY_BASE_SECONDS * 2.0 ** (failures - 1))
    if policy.status.get("changes"):
        return min(interval, IN_FLIGHT_SECONDS)
    return interval * (1 + jitter(policy.uid))


def jitter(uid: str) -> float:
    """A share of the interval in [0, MAX_JITTER], the same for a policy every time."""
    return int(hashlib.sha256(uid.encode()).hexdigest()[:4], 16) / 0xFFFF * MAX_JITTER

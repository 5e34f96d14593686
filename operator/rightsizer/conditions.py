"""Status conditions as Kubernetes API conventions want them: one per type, transitions timestamped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rightsizer.timestamps import format_time

RECOMMENDATIONS_READY = "RecommendationsReady"
PROMETHEUS_REACHABLE = "PrometheusReachable"
INSUFFICIENT_DATA = "InsufficientData"
APPLIED = "Applied"
ROLLED_BACK = "RolledBack"


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Conditions with ``type_`` replaced; lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    previous = next((c for c in conditions if c.get("type") == type_), None)
    transition = (
        previous["lastTransitionTime"] if previous and previous.get("status") == value else format_time(now)
    )
    updated = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != type_] + [updated]


def get_condition(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)

"""The bounds of a RightSizePolicy's fields, as crds/rightsizepolicy.yaml enforces them at apply.

``policy.parse_policy`` checks them again and reports a breach in status, naming the field, for the
policies the API server did not check: those stored before the CRD had these bounds (it keeps
them, and lets an update that leaves a field alone keep it as it is). tests/test_crd_validation.py
applies each bound's edges to a real API server, so this table and the CRD cannot drift apart.
Why each bound is where it is: docs/operator.md, "Bounds of a policy".
"""

from __future__ import annotations

from decimal import Decimal

from rightsizer.duration import format_duration
from rightsizer.units import MIB

MINUTE = 60
HOUR = 3600
DAY = 86400

DURATIONS: dict[str, tuple[int, int]] = {
    "spec.interval": (10, DAY),
    "spec.history.window": (10 * MINUTE, 30 * DAY),
    "spec.history.minimum": (15, 30 * DAY),
    "spec.history.resolution": (15, HOUR),
    "spec.auto.cooldown": (1, 30 * DAY),
    "spec.auto.canary.duration": (1, DAY),
    "spec.auto.rollbackBackoff": (10 * MINUTE, 30 * DAY),
}
"""Seconds, inclusive. The lower bounds of the interval, the resolution, the cooldown and the canary
are those the repo's own tests and demos need (histories of minutes); production policies keep to
minutes and hours (docs/operator.md)."""

NUMBERS: dict[str, tuple[float, float]] = {
    "spec.cpu.targetUtilization": (0.1, 1),
    "spec.cpu.percentile": (0.5, 1),
    "spec.cpu.limitRatio": (1, 10),
    "spec.cpu.throttlingThreshold": (0, 1),
    "spec.memory.headroom": (0, 1),
    "spec.memory.limitRatio": (1, 10),
    "spec.auto.minChangePercent": (0, 100),
    "spec.auto.maxStepPercent": (1, 1000),
}
"""Inclusive."""

MAX_CPU_WINDOWS = 8640
"""``spec.history.window`` / ``spec.history.resolution`` at most: 30 days at 5 minutes. Every CPU
query reads one sample per CPU window of every container, so this caps a policy's query cost."""
MAX_CPU_CORES = Decimal(1024)
"""A ``minAllowed``/``maxAllowed`` CPU above this is a memory unit written for CPU (``2Gi``)."""
MIN_MEMORY_BYTES = MIB
"""A non-zero ``minAllowed``/``maxAllowed`` memory below this is a unit left out (``512``: bytes)."""


def duration_breach(path: str, seconds: int, text: str) -> str | None:
    """Why ``seconds`` (written ``text``) is out of the bounds of ``path``, or None."""
    low, high = DURATIONS[path]
    if low <= seconds <= high:
        return None
    return f"{path}: {text!r} is not from {format_duration(low)} to {format_duration(high)}"


def number_breach(path: str, value: float) -> str | None:
    """Why ``value`` is out of the bounds of ``path``, or None."""
    low, high = NUMBERS[path]
    if low <= value <= high:
        return None
    return f"{path}: {value:g} is not from {low:g} to {high:g}"


def history_breach(window: int, minimum: int, resolution: int, written: dict[str, str]) -> str | None:
    """Why ``spec.history``'s fields (seconds; ``written`` as the spec has them) do not fit together."""
    if minimum > window:
        return (
            f"spec.history.minimum ({written['minimum']}) is longer than spec.history.window "
            f"({written['window']}): no workload could ever have enough history"
        )
    if minimum < resolution:
        return (
            f"spec.history.minimum ({written['minimum']}) is shorter than spec.history.resolution "
            f"({written['resolution']})"
        )
    if resolution * 2 > window:
        return (
            f"spec.history.resolution ({written['resolution']}) must be at most half of "
            f"spec.history.window ({written['window']})"
        )
    if window > MAX_CPU_WINDOWS * resolution:
        return (
            f"spec.history.resolution ({written['resolution']}) is too fine for spec.history.window "
            f"({written['window']}): at most {MAX_CPU_WINDOWS} CPU windows"
        )
    return None


def quantity_breach(path: str, resource: str, amount: Decimal) -> str | None:
    """Why a ``minAllowed``/``maxAllowed`` amount (base units, not negative) is implausible, or None."""
    if resource == "cpu" and amount > MAX_CPU_CORES:
        return f"{path}: more than {MAX_CPU_CORES} cores (Mi and Gi are for memory)"
    if resource == "memory" and 0 < amount < MIN_MEMORY_BYTES:
        return f"{path}: less than 1Mi of memory (a number without a unit is bytes)"
    return None

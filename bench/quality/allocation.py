"""Requests and limits of one workload container, in base units (cores, bytes), whatever computed them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from rightsizer.model import ContainerKey, Resources
from rightsizer.units import CPU, MEMORY

Allocations = dict[ContainerKey, "Allocation"]
"""One strategy's answer: an allocation per workload container."""


@dataclass(frozen=True)
class Allocation:
    """Requests and limits; a request of 0 is unset, a limit of None is unset (unbounded)."""

    cpu_request: float
    memory_request: float
    cpu_limit: float | None = None
    memory_limit: float | None = None
    note: str = ""
    """Why the allocation is what it is when that is not the strategy's rule (e.g. a fallback)."""

    @classmethod
    def from_resources(cls, resources: Resources, note: str = "") -> Allocation:
        """From rightsizer's ``Resources`` (Decimal quantities, missing keys = unset)."""
        return cls(
            cpu_request=float(resources.requests.get(CPU, 0)),
            memory_request=float(resources.requests.get(MEMORY, 0)),
            cpu_limit=_optional(resources.limits.get(CPU)),
            memory_limit=_optional(resources.limits.get(MEMORY)),
            note=note,
        )

    @classmethod
    def from_truth(
        cls, cpu_request: float, memory_request: float, cpu_limit: float, memory_limit: float
    ) -> Allocation:
        """From ground-truth columns, where NaN means unset; an unset request defaults to the limit, as in
        Kubernetes."""
        cpu_lim, memory_lim = _finite(cpu_limit), _finite(memory_limit)
        return cls(
            cpu_request=_finite(cpu_request) or cpu_lim or 0.0,
            memory_request=_finite(memory_request) or memory_lim or 0.0,
            cpu_limit=cpu_lim,
            memory_limit=memory_lim,
        )


def _optional(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)

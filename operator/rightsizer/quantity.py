"""Kubernetes quantities: parsed with the kubernetes client, formatted for people.

Internally every amount is a ``Decimal`` in base units: CPU in cores, memory in bytes.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

from kubernetes.utils import parse_quantity

MIB = Decimal(1024 * 1024)
GIB = MIB * 1024
MILLI = Decimal("0.001")

CPU = "cpu"
MEMORY = "memory"
RESOURCES = (CPU, MEMORY)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity, or an amount that makes no sense."""


def parse(value: str | int | float | Decimal, *, field: str = "quantity") -> Decimal:
    """Parse a Kubernetes quantity (``250m``, ``512Mi``, ``1.5``) into base units."""
    try:
        amount = parse_quantity(value)
    except (ValueError, TypeError) as error:
        raise QuantityError(f"{field}: {value!r} is not a Kubernetes quantity ({error})") from None
    if amount < 0:
        raise QuantityError(f"{field}: {value!r} is negative")
    return Decimal(amount)


def ceil_cpu(cores: float | Decimal, step_millicores: int = 5) -> Decimal:
    """Round CPU up to a whole multiple of ``step_millicores`` (never down: CPU requests round up)."""
    millicores = Decimal(str(cores)) * 1000
    steps = (millicores / step_millicores).to_integral_value(rounding=ROUND_CEILING)
    return steps * step_millicores * MILLI


def ceil_memory(num_bytes: float | Decimal) -> Decimal:
    """Round memory up to a whole MiB."""
    mib = (Decimal(str(num_bytes)) / MIB).to_integral_value(rounding=ROUND_CEILING)
    return mib * MIB


def format_cpu(cores: Decimal | float) -> str:
    """``Decimal('0.15')`` -> ``150m``; whole cores without a suffix (``2``)."""
    millicores = Decimal(str(cores)) * 1000
    if millicores == millicores.to_integral_value() and millicores % 1000 == 0:
        return str(int(millicores / 1000))
    if millicores == millicores.to_integral_value():
        return f"{int(millicores)}m"
    return f"{math.ceil(millicores)}m"


def format_memory(num_bytes: Decimal | float) -> str:
    """Bytes -> ``Gi`` when whole, else ``Mi`` when whole, else plain bytes."""
    amount = Decimal(str(num_bytes))
    if amount >= GIB and amount % GIB == 0:
        return f"{int(amount / GIB)}Gi"
    if amount >= MIB and amount % MIB == 0:
        return f"{int(amount / MIB)}Mi"
    return str(int(amount.to_integral_value(rounding=ROUND_CEILING)))


def format_quantity(resource: str, amount: Decimal | float) -> str:
    """Format an amount of ``cpu`` or ``memory`` as a Kubernetes quantity string."""
    return format_cpu(amount) if resource == CPU else format_memory(amount)


def suspicious_memory(amount: Decimal) -> bool:
    """True for a memory amount under 1 MiB: almost always ``400m`` (0.4 bytes) meant as ``400Mi``."""
    return amount < MIB

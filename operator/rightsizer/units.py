"""Amounts of CPU and memory in base units (``Decimal``: CPU in cores, memory in bytes): rounding and
formatting for people and for Kubernetes. Pure arithmetic, part of the core (the engine uses it);
parsing what users and the API write is ``quantity.py``'s, with the kubernetes client's parser.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

MIB = Decimal(1024 * 1024)
GIB = MIB * 1024
MILLI = Decimal("0.001")

CPU = "cpu"
MEMORY = "memory"
RESOURCES = (CPU, MEMORY)


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

"""Kubernetes quantities: parsed as the kubernetes client parses them, formatted for people.

Internally every amount is a ``Decimal`` in base units: CPU in cores, memory in bytes. The parser is
the client's (``kubernetes.utils.parse_quantity``, Apache-2.0) without importing the client, which
the engine must not (pyproject.toml, import-linter); tests/test_units.py holds the two equal.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal, DecimalException, InvalidOperation

MIB = Decimal(1024 * 1024)
GIB = MIB * 1024
MILLI = Decimal("0.001")

CPU = "cpu"
MEMORY = "memory"
RESOURCES = (CPU, MEMORY)


EXPONENTS = {"n": -3, "u": -2, "m": -1, "k": 1, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
"""A suffix's power of 1000, or of 1024 followed by ``i`` (``Ki`` ... ``Ei`` only)."""
BINARY_PREFIXES = "KMGTPE"


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity, or an amount that makes no sense."""


def parse(value: str | int | float | Decimal, *, field: str = "quantity") -> Decimal:
    """Parse a Kubernetes quantity (``250m``, ``512Mi``, ``1.5``) into base units."""
    try:
        amount = parse_quantity(value)
    except (ValueError, TypeError) as error:
        raise QuantityError(f"{field}: {value!r} is not a Kubernetes quantity ({error})") from None
    if not amount.is_finite():
        raise QuantityError(f"{field}: {value!r} is not a Kubernetes quantity (not a finite number)")
    if amount < 0:
        raise QuantityError(f"{field}: {value!r} is negative")
    return amount


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """The kubernetes client's parser: a number, then an optional suffix; ``ValueError`` otherwise."""
    if isinstance(value, int | float | Decimal):
        return Decimal(value)
    text = str(value)
    number, suffix = text, ""
    if len(text) >= 2 and text[-1] == "i" and text[-2] in EXPONENTS:
        number, suffix = text[:-2], text[-2:]
    elif text and text[-1] != "i" and text[-1] in EXPONENTS:
        number, suffix = text[:-1], text[-1]
    try:
        amount = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"Invalid number format: {number}") from None
    if not suffix:
        return amount
    if suffix.endswith("i") and suffix[0] not in BINARY_PREFIXES:
        raise ValueError(f"{text} has unknown suffix")
    base = Decimal(1024 if suffix.endswith("i") else 1000)
    try:
        return amount * base ** EXPONENTS[suffix[0]]
    except DecimalException as error:
        raise ValueError(f"Invalid quantity: {text}") from error


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

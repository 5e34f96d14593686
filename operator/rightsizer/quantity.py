"""Kubernetes quantities as users and the API write them (``250m``, ``512Mi``), parsed with the
kubernetes client's ``parse_quantity`` into base units (``units.py``: CPU in cores, memory in bytes).
Not part of the core: the engine works on parsed amounts and never imports the client.
"""

from __future__ import annotations

from decimal import Decimal

from kubernetes.utils import parse_quantity


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity, or an amount that makes no sense."""


def parse(value: str | int | float | Decimal, *, field: str = "quantity") -> Decimal:
    """Parse a Kubernetes quantity (``250m``, ``1.5``, ``512Mi``, ``1G``) into base units."""
    try:
        amount = Decimal(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError) as error:
        raise QuantityError(f"{field}: {value!r} is not a Kubernetes quantity ({error})") from None
    if not amount.is_finite():
        raise QuantityError(f"{field}: {value!r} is not a Kubernetes quantity (not a finite number)")
    if amount < 0:
        raise QuantityError(f"{field}: {value!r} is negative")
    return amount

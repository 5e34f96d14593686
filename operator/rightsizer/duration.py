"""Durations written as Prometheus does: ``90s``, ``30m``, ``24h``, ``14d``, ``2w``, ``1h30m``."""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^(?:\d+[smhdw])+$")
PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in ``text``; ``ValueError`` naming the accepted form when it is not a duration."""
    text = text.strip()
    if not DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 24h, 14d or 1h30m")
    seconds = sum(int(n) * UNITS[unit] for n, unit in PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def format_duration(seconds: int) -> str:
    """The largest whole unit: 1209600 -> ``14d``; 5400 -> ``90m``."""
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"

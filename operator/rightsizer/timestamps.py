"""Times as the Kubernetes API writes them: RFC 3339 in UTC, to the second (``2026-11-23T19:30:15Z``),
or to the microsecond for a MicroTime (a Lease's)."""

from __future__ import annotations

from datetime import UTC, datetime

SECONDS = "%Y-%m-%dT%H:%M:%SZ"
MICROSECONDS = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime(SECONDS)


def format_micro_time(when: datetime) -> str:
    """A MicroTime as the API server parses it (always six fractional digits)."""
    return when.astimezone(UTC).strftime(MICROSECONDS)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time from the API or from rightsizer's own annotations; ``ValueError`` if it is not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

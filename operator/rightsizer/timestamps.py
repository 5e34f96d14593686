"""Times as the Kubernetes API writes them: RFC 3339 in UTC, to the second (``2026-11-23T19:30:15Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time from the API or from rightsizer's own annotations; ``ValueError`` if it is not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

"""Times written as the Kubernetes API writes them, and read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from rightsizer.report import to_document
from rightsizer.timestamps import format_micro_time, format_time, parse_time

WHEN = datetime(2026, 11, 23, 20, 30, 15, 250, tzinfo=timezone(timedelta(hours=1)))


def test_times_are_utc_to_the_second() -> None:
    assert format_time(WHEN) == "2026-11-23T19:30:15Z"
    assert parse_time(format_time(WHEN)) == WHEN.replace(microsecond=0)


def test_micro_times_always_have_six_fractional_digits() -> None:
    assert format_micro_time(WHEN) == "2026-11-23T19:30:15.000250Z"
    assert format_micro_time(WHEN.replace(microsecond=0)) == "2026-11-23T19:30:15.000000Z"
    assert parse_time(format_micro_time(WHEN)) == WHEN.astimezone(UTC)


def test_a_report_says_when_it_was_evaluated_in_the_same_form() -> None:
    assert to_document([], WHEN.timestamp())["evaluatedAt"] == "2026-11-23T19:30:15Z"

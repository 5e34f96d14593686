"""Quantities, durations and QoS classes."""

from decimal import Decimal

import pytest

from rightsizer.duration import format_duration, parse_duration
from rightsizer.model import Resources
from rightsizer.qos import qos_class
from rightsizer.quantity import QuantityError, parse
from rightsizer.units import MIB, ceil_cpu, ceil_memory, format_cpu, format_memory


@pytest.mark.parametrize(
    ("text", "value"), [("250m", Decimal("0.25")), ("2", Decimal(2)), ("512Mi", Decimal(512 * 1024 * 1024))]
)
def test_parse_uses_kubernetes_quantities(text, value):
    assert parse(text) == value


@pytest.mark.parametrize(
    "bad", ["NaN", "Infinity", "-Infinity", "sNaN", float("nan"), float("inf")], ids=repr
)
def test_quantities_are_finite(bad):
    with pytest.raises(QuantityError, match=r"^cpu: .* \(not a finite number\)$"):
        parse(bad, field="cpu")


def test_400m_of_memory_is_0_4_bytes():
    assert parse("400m") == Decimal("0.4")


@pytest.mark.parametrize("bad", ["12Q", "abc", "", "-1"])
def test_parse_rejects_non_quantities_naming_the_field(bad):
    with pytest.raises(QuantityError, match="memory"):
        parse(bad, field="memory")


def test_rounding_goes_up_to_readable_quantities():
    assert format_cpu(ceil_cpu(0.1001)) == "105m"
    assert format_cpu(ceil_cpu(1.0)) == "1"
    assert format_cpu(ceil_cpu(1.5)) == "1500m"
    assert format_memory(ceil_memory(100 * MIB + 1)) == "101Mi"
    assert format_memory(ceil_memory(2048 * MIB)) == "2Gi"


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("14d", 1209600), ("1h30m", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["14", "3x", "", "0s", "1.5h"])
def test_bad_durations_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration_picks_the_largest_whole_unit():
    assert format_duration(1209600) == "14d"
    assert format_duration(5400) == "90m"
    assert format_duration(61) == "61s"


def _res(requests, limits):
    return Resources({k: parse(v) for k, v in requests.items()}, {k: parse(v) for k, v in limits.items()})


@pytest.mark.parametrize(
    ("requests", "limits", "expected"),
    [
        ({}, {}, "BestEffort"),
        ({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}, "Guaranteed"),
        ({}, {"cpu": "1", "memory": "1Gi"}, "Guaranteed"),
        ({"cpu": "500m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}, "Burstable"),
        ({"cpu": "1", "memory": "1Gi"}, {"memory": "1Gi"}, "Burstable"),
    ],
)
def test_qos_class(requests, limits, expected):
    assert qos_class(_res(requests, limits)) == expected

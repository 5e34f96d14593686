"""The operator's own check of a policy's bounds (``parse_policy``, ``rightsizer.spec_bounds``), for
policies the API server did not check (stored before the CRD had its bounds): each careless policy
the operator can be hurt by raises ``PolicyError`` naming its field, which status reports."""

from __future__ import annotations

import pytest

from rightsizer.policy import PolicyError, parse_policy
from tests.support.careless import CARELESS, EDGES, SCHEMA_ONLY, SHIPPED, Careless, Edge

OPERATOR_CHECKED = [c for c in CARELESS if c.id not in SCHEMA_ONLY]


def test_schema_only_names_careless_policies() -> None:
    assert SCHEMA_ONLY.issubset(c.id for c in CARELESS)


@pytest.mark.parametrize("careless", OPERATOR_CHECKED, ids=lambda c: c.id)
def test_a_careless_policy_raises_naming_its_field(careless: Careless) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(careless.spec)
    assert careless.field in str(raised.value)


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: e.id)
def test_a_bound_accepts_its_edge_and_refuses_beyond(edge: Edge) -> None:
    if edge.accepted:
        parse_policy(edge.spec)
    else:
        with pytest.raises(PolicyError, match=edge.field.replace(".", r"\.")):
            parse_policy(edge.spec)


@pytest.mark.parametrize(("where", "spec"), SHIPPED.items(), ids=list(SHIPPED))
def test_every_policy_the_repo_applies_parses(where: str, spec: dict) -> None:
    parse_policy(spec)


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"window": "12h"}, "spec.history.minimum (1d) is longer than spec.history.window (12h)"),
        (
            {"window": "1h", "minimum": "1h", "resolution": "40m"},
            "spec.history.resolution (40m) must be at most half",
        ),
        (
            {"window": "14d", "resolution": "1m"},
            "spec.history.resolution (1m) is too fine for spec.history.window (14d)",
        ),
        ({"minimum": "1m"}, "spec.history.minimum (1m) is shorter than spec.history.resolution (5m)"),
    ],
)
def test_history_fields_must_fit_together(history: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy({"targetRef": {"name": "web"}, "history": history})
    assert message in str(raised.value)


def test_a_policy_within_its_bounds_keeps_its_values() -> None:
    spec = parse_policy(
        {
            "selector": {},
            "interval": "10s",
            "history": {"window": "30d", "minimum": "30d", "resolution": "5m"},
            "cpu": {"targetUtilization": 0.1, "limitRatio": 10},
            "containerPolicies": [{"containerName": "app", "maxAllowed": {"cpu": "1024", "memory": "1Mi"}}],
        }
    )
    assert (spec.interval_seconds, spec.history_seconds, spec.cpu_window_seconds) == (10, 30 * 86400, 300)
    assert spec.settings.min_history_seconds == 30 * 86400
    assert (spec.settings.cpu_target_utilization, spec.settings.cpu_limit_ratio) == (0.1, 10)
    bounds = spec.container_settings("app").max_allowed
    assert (bounds.cpu, bounds.memory) == (1024, 1024 * 1024)

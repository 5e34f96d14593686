"""Careless RightSizePolicies, as a new user writes them; every policy the repo itself applies; the
edges of every bound of ``rightsizer.spec_bounds``.

``CARELESS``: each must be refused at apply (the CRD's schema and CEL rules) with a message naming
its field (tests/test_crd_validation.py, on a real kube-apiserver), and, unless it is in
``SCHEMA_ONLY``, by ``parse_policy`` too (tests/test_spec_bounds.py). ``SHIPPED``: the specs that
the demo and the tests apply (copied from where they are applied; deploy/examples are read from
their files); each must be accepted, so no bound may break them. ``EDGES``: each bound's value
accepted, and the value just beyond it refused, by both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rightsizer.duration import format_duration
from rightsizer.spec_bounds import DURATIONS, NUMBERS

WEB: dict[str, Any] = {"targetRef": {"name": "web"}}


@dataclass(frozen=True)
class Careless:
    id: str
    spec: dict[str, Any]
    field: str
    """The field the refusal must name, as the API server writes it (``spec.history.minimum``)."""
    text: str
    """A part of the message that says what is wrong."""


def _web(**fields: Any) -> dict[str, Any]:
    return {**WEB, **fields}


def _bounds(minimum: dict[str, str] | None = None, maximum: dict[str, str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"containerName": "app"}
    if minimum is not None:
        entry["minAllowed"] = minimum
    if maximum is not None:
        entry["maxAllowed"] = maximum
    return _web(containerPolicies=[entry])


CP0 = "spec.containerPolicies[0]"

CARELESS: list[Careless] = [
    # How often, and over how much history.
    Careless("interval-1s", _web(interval="1s"), "spec.interval", "from 10s to 24h"),
    Careless("interval-0s", _web(interval="0s"), "spec.interval", "from 10s to 24h"),
    Careless("interval-30d", _web(interval="30d"), "spec.interval", "from 10s to 24h"),
    Careless("interval-5-minutes", _web(interval="5 minutes"), "spec.interval", "should match"),
    Careless(
        "history-minimum-7d-window-1d",
        _web(history={"window": "1d", "minimum": "7d"}),
        "spec.history.minimum",
        "longer than spec.history.window",
    ),
    Careless(
        "history-window-12h-default-minimum",
        _web(history={"window": "12h"}),
        "spec.history.minimum",
        "(24h) is longer than spec.history.window (12h)",
    ),
    Careless(
        "history-window-3650d", _web(history={"window": "3650d"}), "spec.history.window", "from 10m to 30d"
    ),
    Careless(
        "history-window-1m",
        _web(history={"window": "1m", "minimum": "1m", "resolution": "15s"}),
        "spec.history.window",
        "from 10m to 30d",
    ),
    Careless("history-minimum-1s", _web(history={"minimum": "1s"}), "spec.history.minimum", "shorter than"),
    Careless(
        "history-resolution-above-window",
        _web(history={"window": "1h", "minimum": "1h", "resolution": "2h"}),
        "spec.history.resolution",
        "at most half of spec.history.window",
    ),
    Careless(
        "history-resolution-1s",
        _web(history={"resolution": "1s"}),
        "spec.history.resolution",
        "from 15s to 1h",
    ),
    Careless(
        "history-resolution-30s-over-30d",
        _web(history={"window": "30d", "resolution": "30s"}),
        "spec.history.resolution",
        "too fine for spec.history.window",
    ),
    Careless(
        "history-window-two-weeks",
        _web(history={"window": "two weeks"}),
        "spec.history.window",
        "should match",
    ),
    # Auto mode's rails.
    Careless("cooldown-0s", _web(auto={"cooldown": "0s"}), "spec.auto.cooldown", "from 1s to 30d"),
    Careless("cooldown-3650d", _web(auto={"cooldown": "3650d"}), "spec.auto.cooldown", "from 1s to 30d"),
    Careless(
        "cooldown-at-the-top-level",
        _web(mode="Auto", cooldown="6h"),
        "spec.cooldown",
        'unknown field "spec.cooldown"',
    ),
    Careless(
        "canary-duration-30d",
        _web(auto={"canary": {"duration": "30d"}}),
        "spec.auto.canary.duration",
        "from 1s to 24h",
    ),
    Careless(
        "rollbackBackoff-1s",
        _web(auto={"rollbackBackoff": "1s"}),
        "spec.auto.rollbackBackoff",
        "from 10m to 30d",
    ),
    Careless(
        "minChangePercent-200",
        _web(auto={"minChangePercent": 200}),
        "spec.auto.minChangePercent",
        "less than or equal to 100",
    ),
    Careless(
        "maxStepPercent-0",
        _web(auto={"maxStepPercent": 0}),
        "spec.auto.maxStepPercent",
        "greater than or equal to 1",
    ),
    Careless("mode-auto-lowercase", _web(mode="auto"), "spec.mode", 'Unsupported value: "auto"'),
    # CPU and memory settings.
    Careless(
        "targetUtilization-0",
        _web(cpu={"targetUtilization": 0}),
        "spec.cpu.targetUtilization",
        "greater than or equal to 0.1",
    ),
    Careless(
        "targetUtilization-5",
        _web(cpu={"targetUtilization": 5}),
        "spec.cpu.targetUtilization",
        "less than or equal to 1",
    ),
    Careless(
        "targetUtilization-0.01",
        _web(cpu={"targetUtilization": 0.01}),
        "spec.cpu.targetUtilization",
        "greater than or equal to 0.1",
    ),
    Careless("percentile-95", _web(cpu={"percentile": 95}), "spec.cpu.percentile", "less than or equal to 1"),
    Careless(
        "percentile-0", _web(cpu={"percentile": 0}), "spec.cpu.percentile", "greater than or equal to 0.5"
    ),
    Careless(
        "percentile-0.05",
        _web(cpu={"percentile": 0.05}),
        "spec.cpu.percentile",
        "greater than or equal to 0.5",
    ),
    Careless(
        "cpu-limitRatio-0.5",
        _web(cpu={"limitRatio": 0.5}),
        "spec.cpu.limitRatio",
        "greater than or equal to 1",
    ),
    Careless(
        "cpu-limitRatio-300", _web(cpu={"limitRatio": 300}), "spec.cpu.limitRatio", "less than or equal to 10"
    ),
    Careless(
        "throttlingThreshold-5",
        _web(cpu={"throttlingThreshold": 5}),
        "spec.cpu.throttlingThreshold",
        "less than or equal to 1",
    ),
    Careless(
        "memory-headroom-10", _web(memory={"headroom": 10}), "spec.memory.headroom", "less than or equal to 1"
    ),
    Careless(
        "memory-limitRatio-0.8",
        _web(memory={"limitRatio": 0.8}),
        "spec.memory.limitRatio",
        "greater than or equal to 1",
    ),
    # Quantities of containerPolicies.
    Careless(
        "minAllowed-cpu-negative", _bounds({"cpu": "-100m"}), f"{CP0}.minAllowed.cpu", "must not be negative"
    ),
    Careless(
        "minAllowed-memory-negative",
        _bounds({"memory": "-1Gi"}),
        f"{CP0}.minAllowed.memory",
        "must not be negative",
    ),
    Careless(
        "maxAllowed-memory-400m",
        _bounds(maximum={"memory": "400m"}),
        f"{CP0}.maxAllowed.memory",
        "did you mean '400Mi'?",
    ),
    Careless(
        "maxAllowed-memory-512-bytes",
        _bounds(maximum={"memory": "512"}),
        f"{CP0}.maxAllowed.memory",
        "less than 1Mi",
    ),
    Careless(
        "maxAllowed-cpu-2Gi", _bounds(maximum={"cpu": "2Gi"}), f"{CP0}.maxAllowed.cpu", "more than 1024 cores"
    ),
    Careless(
        "minAllowed-memory-1-GB",
        _bounds({"memory": "1 GB"}),
        f"{CP0}.minAllowed.memory",
        "must be a Kubernetes quantity",
    ),
    Careless(
        "minAllowed-memory-above-maxAllowed",
        _bounds({"memory": "2Gi"}, {"memory": "1Gi"}),
        CP0,
        "minAllowed.memory must not be above maxAllowed.memory",
    ),
    Careless(
        "minAllowed-cpu-above-maxAllowed",
        _bounds({"cpu": "2"}, {"cpu": "500m"}),
        CP0,
        "minAllowed.cpu must not be above maxAllowed.cpu",
    ),
    # Container policies and targets.
    Careless(
        "containerPolicies-duplicate-name",
        _web(
            containerPolicies=[
                {"containerName": "app", "mode": "Off"},
                {"containerName": "app", "maxAllowed": {"cpu": "1"}},
            ]
        ),
        "spec.containerPolicies[1]",
        "Duplicate value",
    ),
    Careless(
        "containerName-App",
        _web(containerPolicies=[{"containerName": "App"}]),
        f"{CP0}.containerName",
        "should match",
    ),
    Careless(
        "selector-empty-matchLabels",
        {"selector": {"matchLabels": {}}},
        "spec.selector.matchLabels",
        "should have at least 1 properties",
    ),
    Careless(
        "selector-label-value-with-space",
        {"selector": {"matchLabels": {"app": "web server"}}},
        "spec.selector.matchLabels.app",
        "should match",
    ),
    Careless(
        "selector-In-without-values",
        {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
        "spec.selector.matchExpressions[0]",
        "In and NotIn need values",
    ),
    Careless(
        "targetRef-and-selector",
        _web(selector={"matchLabels": {"app": "web"}}),
        "spec",
        "set exactly one of spec.targetRef and spec.selector",
    ),
    Careless(
        "neither-targetRef-nor-selector",
        {"mode": "Recommend"},
        "spec",
        "set exactly one of spec.targetRef and spec.selector",
    ),
    Careless(
        "targetRef-kind-Pod",
        {"targetRef": {"kind": "Pod", "name": "web"}},
        "spec.targetRef.kind",
        'Unsupported value: "Pod"',
    ),
    Careless("targetRef-name-Web", {"targetRef": {"name": "Web"}}, "spec.targetRef.name", "should match"),
    Careless(
        "targetRef-with-kinds-StatefulSet",
        {"targetRef": {"name": "db"}, "kinds": ["StatefulSet"]},
        "spec.kinds",
        "spec.kinds is for a selector",
    ),
]


# Every policy the repo applies, with where it is applied (the files under deploy/examples are
# read by the test itself).
SHIPPED: dict[str, dict[str, Any]] = {
    "defaults": WEB,
    "hack/demo.py cart": {"targetRef": {"name": "cart"}, "mode": "Auto"},
    "tests/test_roles.py every deployment": {"mode": "Auto", "selector": {}},
    "tests/test_roles.py maxAllowed": _web(
        containerPolicies=[{"containerName": "*", "maxAllowed": {"memory": "64Gi"}}]
    ),
    "tests/test_install.py": {
        "targetRef": {"name": "web"},
        "mode": "Auto",
        "interval": "10s",
        "history": {"window": "10m", "minimum": "1m", "resolution": "15s"},
        "auto": {"cooldown": "1h"},
    },
    "tests/test_node_loop.py": {
        "targetRef": {"name": "web"},
        "mode": "Auto",
        "interval": "10s",
        "history": {"window": "10m", "minimum": "2m", "resolution": "30s"},
        "auto": {"cooldown": "30s", "canary": {"duration": "15s"}, "maxStepPercent": 1000},
    },
    "tests/test_node_auto.py in place": {
        "selector": {"matchLabels": {"rightsize": "all-kinds"}},
        "kinds": ["Deployment", "StatefulSet", "DaemonSet", "CronJob"],
        "mode": "Auto",
        "interval": "10s",
        "history": {"window": "10m", "minimum": "2m", "resolution": "30s"},
        "auto": {"updateMode": "InPlace", "canary": {"duration": "5m"}, "maxStepPercent": 1000},
        "containerPolicies": [{"containerName": "app", "maxAllowed": {"memory": "64Mi"}}],
    },
    "tests/test_operator_e2e.py 30s": {"targetRef": {"name": "web"}, "interval": "31s"},
    "tests/test_operator_e2e.py cooldown": {
        "targetRef": {"name": "web"},
        "mode": "Auto",
        "auto": {"maxStepPercent": 10, "cooldown": "1h", "canary": {"duration": "1s"}},
    },
    "tests/test_operator_e2e.py 10s": {
        "targetRef": {"name": "cart"},
        "mode": "Auto",
        "interval": "10s",
        "auto": {"maxStepPercent": 10, "cooldown": "1s", "canary": {"duration": "1s"}},
    },
    "tests/test_crd.py VALID_SPEC": {
        "targetRef": {"name": "web"},
        "mode": "Auto",
        "interval": "10m",
        "cpu": {"targetUtilization": 0.8, "limitRatio": 2},
        "memory": {"limitRatio": 1.5},
        "containerPolicies": [
            {
                "containerName": "*",
                "minAllowed": {"cpu": "100m", "memory": "64Mi"},
                "maxAllowed": {"cpu": "2"},
            }
        ],
    },
}


SCHEMA_ONLY = {
    "cooldown-at-the-top-level",
    "mode-auto-lowercase",
    "containerPolicies-duplicate-name",
    "containerName-App",
    "selector-empty-matchLabels",
    "selector-label-value-with-space",
    "selector-In-without-values",
    "targetRef-kind-Pod",
    "targetRef-name-Web",
    "targetRef-with-kinds-StatefulSet",
}
"""Refused by the schema alone: the operator reads such a policy without error (it selects nothing,
or not what was meant), and nothing of it costs Prometheus or the API server more."""


@dataclass(frozen=True)
class Edge:
    id: str
    spec: dict[str, Any]
    field: str
    accepted: bool


HISTORY_CONTEXT = {
    "low": {"window": "10m", "minimum": "1m", "resolution": "15s"},
    "high": {"window": "30d", "minimum": "24h", "resolution": "5m"},
}
"""The history fields beside the one at an edge (of minutes at a low edge, of days at a high one),
so that only the edge decides."""
INTEGERS = {"spec.auto.minChangePercent", "spec.auto.maxStepPercent"}


def _spec_with(path: str, edge: str, value: Any) -> dict[str, Any]:
    """WEB with ``path`` (``spec.a.b``) set to ``value``."""
    *parents, last = path.split(".")[1:]
    spec: dict[str, Any] = {**WEB}
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    if parents == ["history"]:
        node.update(HISTORY_CONTEXT[edge])
    node[last] = value
    return spec


def _edges() -> list[Edge]:
    edges = []
    for path, (low, high) in DURATIONS.items():
        for name, inside, outside in (("low", low, low - 1), ("high", high, high + 1)):
            edges.append(
                Edge(f"{path}-{name}-ok", _spec_with(path, name, format_duration(inside)), path, True)
            )
            edges.append(Edge(f"{path}-{name}-beyond", _spec_with(path, name, f"{outside}s"), path, False))
    for path, (low, high) in NUMBERS.items():
        step = 1 if path in INTEGERS else 0.01
        for name, inside, outside in (("low", low, low - step), ("high", high, high + step)):
            if path in INTEGERS:
                inside, outside = int(inside), int(outside)
            edges.append(Edge(f"{path}-{name}-ok", _spec_with(path, name, inside), path, True))
            edges.append(
                Edge(f"{path}-{name}-beyond", _spec_with(path, name, round(outside, 2)), path, False)
            )
    return edges


EDGES = _edges()

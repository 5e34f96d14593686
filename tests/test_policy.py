"""Reading a RightSizePolicy spec: defaults, profiles, container policies, selectors."""

import pytest

from rightsizer.policy import PolicyError, parse_policy
from rightsizer.quantity import parse
from rightsizer.selection import select_targets
from rightsizer.workload import WorkloadView


def test_defaults_follow_the_crd():
    spec = parse_policy({"targetRef": {"name": "web"}})
    assert spec.mode == "Recommend"
    assert spec.history_seconds == 14 * 86400
    assert spec.interval_seconds == 300
    assert spec.settings.cpu_limit_ratio == 3.0
    assert spec.auto.cooldown_seconds == 3600


def test_profile_and_overrides():
    spec = parse_policy(
        {"selector": {}, "profile": "background", "cpu": {"noLimit": True}, "memory": {"limitRatio": 2}}
    )
    assert spec.settings.cpu_limit_ratio is None
    assert spec.settings.memory_limit_ratio == 2.0


def test_container_policies_named_first_then_star_and_off():
    spec = parse_policy(
        {
            "targetRef": {"name": "web"},
            "containerPolicies": [
                {"containerName": "*", "minAllowed": {"cpu": "50m"}},
                {"containerName": "istio-proxy", "mode": "Off"},
                {"containerName": "app", "maxAllowed": {"memory": "1Gi"}},
            ],
        }
    )
    assert spec.container_settings("istio-proxy") is None
    assert spec.container_settings("app").max_allowed.memory == parse("1Gi")
    assert spec.container_settings("app").min_allowed.cpu is None
    assert spec.container_settings("other").min_allowed.cpu == parse("50m")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "exactly one of spec.targetRef and spec.selector"),
        ({"targetRef": {"name": "a"}, "selector": {}}, "exactly one"),
        ({"selector": {}, "cpu": {"targetUtilization": 2}}, "spec.cpu.targetUtilization"),
        (
            {"selector": {}, "containerPolicies": [{"containerName": "a", "minAllowed": {"cpu": "lots"}}]},
            "spec.containerPolicies[0].minAllowed.cpu",
        ),
        (
            {
                "selector": {},
                "containerPolicies": [
                    {"containerName": "a", "minAllowed": {"memory": "2Gi"}, "maxAllowed": {"memory": "1Gi"}}
                ],
            },
            "minAllowed.memory is above maxAllowed.memory",
        ),
        ({"selector": {}, "interval": "soon"}, "spec.interval"),
    ],
)
def test_invalid_specs_name_the_field(spec, message):
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_policy(spec)


def view(name, labels, kind="Deployment"):
    return WorkloadView.from_body(
        {
            "kind": kind,
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {},
            "status": {},
        }
    )


def test_selection_by_name_reports_missing_targets():
    spec = parse_policy({"targetRef": {"name": "ghost"}})
    assert select_targets(spec, [view("web", {})]) == ([], ["Deployment/ghost"])


def test_selection_by_labels_and_expressions():
    spec = parse_policy(
        {
            "selector": {
                "matchLabels": {"team": "shop"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
            }
        }
    )
    deployments = [view("web", {"team": "shop"}), view("db", {"team": "shop", "tier": "db"}), view("x", {})]
    targets, missing = select_targets(spec, deployments)
    assert [d.name for d in targets] == ["web"]
    assert missing == []


def test_a_target_is_named_by_kind_and_name():
    spec = parse_policy({"targetRef": {"kind": "StatefulSet", "name": "db"}})
    workloads = [view("db", {}), view("db", {}, kind="StatefulSet")]
    (target,), missing = select_targets(spec, workloads)
    assert (target.kind.name, missing) == ("StatefulSet", [])
    gone = parse_policy({"targetRef": {"kind": "CronJob", "name": "db"}})
    assert select_targets(gone, workloads) == ([], ["CronJob/db"])


def test_a_selector_reaches_only_the_kinds_it_names():
    """Deployments by default: a selector written before other kinds were sized must not start
    patching a StatefulSet that carries the same labels."""
    workloads = [view("web", {"team": "shop"}), view("db", {"team": "shop"}, kind="StatefulSet")]
    by_default = parse_policy({"selector": {"matchLabels": {"team": "shop"}}})
    assert [w.reference_name for w in select_targets(by_default, workloads)[0]] == ["Deployment/web"]
    both = parse_policy(
        {"selector": {"matchLabels": {"team": "shop"}}, "kinds": ["Deployment", "StatefulSet"]}
    )
    assert [w.reference_name for w in select_targets(both, workloads)[0]] == [
        "Deployment/web",
        "StatefulSet/db",
    ]

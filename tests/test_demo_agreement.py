"""The demo's check that the CLI says what the operator wrote (rightsizer_demo/agreement.py)."""

from __future__ import annotations

from typing import Any

from rightsizer_demo.agreement import compare, render, verdict


def entry(name: str, cpu: str | None, memory: str = "256Mi", **extra: Any) -> dict[str, Any]:
    recommended = None
    if cpu is not None:
        recommended = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    return {"kind": "Deployment", "name": name, "container": "app", "recommended": recommended, **extra}


def test_the_same_numbers_agree_and_the_verdict_says_how_many() -> None:
    rows = compare([entry("web", "735m")], [entry("web", "735m", namespace="shop"), entry("other", "1")])
    assert [row.agrees for row in rows] == [True]
    assert verdict(rows).startswith("agree: the CLI and the operator give the same recommendations for 1 ")
    assert "Deployment/web/app" in render(rows) and "cpu=735m" in render(rows)


def test_quantities_agree_within_five_percent_only() -> None:
    assert compare([entry("web", "1000m")], [entry("web", "1049m")])[0].agrees
    assert not compare([entry("web", "1000m")], [entry("web", "1060m")])[0].agrees
    assert not compare([entry("web", "1", memory="256Mi")], [entry("web", "1", memory="300Mi")])[0].agrees


def test_a_recommendation_on_one_side_only_or_another_resource_set_differs() -> None:
    assert not compare([entry("web", "1")], [entry("web", None)])[0].agrees
    assert not compare([entry("web", None)], [])[0].agrees  # the CLI has nothing for it: None vs missing
    assert compare([entry("young", None)], [entry("young", None)])[0].agrees
    with_cpu_limit = entry("web", "1")
    with_cpu_limit["recommended"]["limits"]["cpu"] = "2"
    assert not compare([with_cpu_limit], [entry("web", "1")])[0].agrees
    rows = compare([entry("web", "1"), entry("cart", "1")], [entry("web", "2"), entry("cart", "1")])
    assert verdict(rows) == "DISAGREE: the CLI and the operator differ for Deployment/web/app"
    assert "<- differs" in render(rows)


def test_nothing_to_compare_is_not_agreement() -> None:
    assert verdict([]).startswith("DISAGREE")
    assert render([]).splitlines()[-1].startswith("DISAGREE")

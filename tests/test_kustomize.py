"""`rightsizer recommend -o kustomize`: patches that the real `kubectl kustomize` applies to a base of the
original manifests, changing the containers' resources and nothing else."""

from __future__ import annotations

import copy
import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from rightsizer import kustomize
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.quantity import parse
from rightsizer_demo.manifests import deployment_manifest
from tests.support.cli import run_rightsizer


def build(overlay: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout))


def overlay_of(tmp_path: Path, base: list[dict[str, Any]], component: Path, namespace: str | None) -> Path:
    """A base directory holding ``base`` and an overlay that takes it with the component."""
    (tmp_path / "base").mkdir()
    for index, manifest in enumerate(base):
        (tmp_path / "base" / f"{index}.yaml").write_text(yaml.safe_dump(manifest))
    (tmp_path / "base" / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [f"{i}.yaml" for i in range(len(base))]})
    )
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    relative = Path("..") / component.relative_to(tmp_path)  # kustomize takes no absolute paths
    document: dict[str, Any] = {"resources": ["../base"], "components": [str(relative)]}
    if namespace:
        document["namespace"] = namespace
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(document))
    return overlay


def template_of(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def as_amounts(resources: dict[str, Any]) -> dict[str, dict[str, Decimal]]:
    return {
        kind: {name: parse(str(value)) for name, value in (resources.get(kind) or {}).items()}
        for kind in ("requests", "limits")
        if resources.get(kind)
    }


def assert_amounts_close(got: dict[str, Any], want: dict[str, Any], relative: Decimal, key: object) -> None:
    """The same resources named, each amount within ``relative`` of the one wanted (exact at 0)."""
    got_amounts, want_amounts = as_amounts(got), as_amounts(want)
    assert {k: set(v) for k, v in got_amounts.items()} == {k: set(v) for k, v in want_amounts.items()}, key
    for kind, amounts in want_amounts.items():
        for name, amount in amounts.items():
            assert abs(got_amounts[kind][name] - amount) <= relative * amount, (key, kind, name)


def assert_only_resources_changed(
    base: list[dict[str, Any]],
    built: list[dict[str, Any]],
    expected: dict[tuple[str, str], dict[str, Any]],
    relative: Decimal = Decimal(0),
) -> None:
    """Every built object is its base object with the expected containers' resources (each amount
    within ``relative`` of the expected one), and else equal."""
    by_name = {(m["kind"], m["metadata"]["name"]): m for m in built}
    assert set(by_name) == {(m["kind"], m["metadata"]["name"]) for m in base}
    for original in base:
        result = copy.deepcopy(by_name[(original["kind"], original["metadata"]["name"])])
        result["metadata"].pop("namespace", None)
        want = copy.deepcopy(original)
        want["metadata"].pop("namespace", None)
        for container, built_container in zip(
            template_of(want)["containers"], template_of(result)["containers"], strict=True
        ):
            key = (original["metadata"]["name"], container["name"])
            if key in expected:
                assert_amounts_close(built_container["resources"], expected[key], relative, key)
                container["resources"] = built_container["resources"]
        assert result == want  # nothing else changed: images, labels, other containers, the spec


def rec(
    kind: str, name: str, container: str, current: Resources, recommended: Resources | None
) -> Recommendation:
    key = ContainerKey("team-a", kind, name, container)
    return Recommendation(key, current, recommended, None, "because", {})


def manifest(kind: str, name: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
    group = "batch/v1" if kind == "CronJob" else "apps/v1"
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}, "template": template}
    if kind == "CronJob":
        template["spec"]["restartPolicy"] = "OnFailure"
        spec = {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}
    elif kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": group,
        "kind": kind,
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": spec,
    }


M = Decimal(1024 * 1024)


def test_every_kind_gets_its_resources_and_nothing_else(tmp_path):
    """A Deployment with two containers (one recommended, one without a recommendation, left as it is),
    a StatefulSet whose CPU limit is recommended away (deleted, not left behind), a DaemonSet, a
    CronJob (its job template): built by the real kubectl kustomize over a base without namespaces,
    under an overlay that sets one."""
    old = Resources({"cpu": Decimal(1), "memory": 1024 * M}, {"cpu": Decimal(2), "memory": 1024 * M})
    new = Resources({"cpu": Decimal("0.25"), "memory": 300 * M}, {"cpu": Decimal("0.75"), "memory": 450 * M})
    no_cpu_limit = Resources({"cpu": Decimal("0.5"), "memory": 600 * M}, {"memory": 900 * M})
    recommendations = [
        rec("Deployment", "web", "app", old, new),
        rec("Deployment", "web", "sidecar", old, None),
        rec("StatefulSet", "db", "db", old, no_cpu_limit),
        rec("DaemonSet", "agent", "agent", old, new),
        rec("CronJob", "report", "job", old, new),
    ]
    resources = old.to_quantities()
    container = lambda name: {"name": name, "image": f"example/{name}:1", "resources": resources}  # noqa: E731
    base = [
        manifest("Deployment", "web", [container("app"), container("sidecar")]),
        manifest("StatefulSet", "db", [container("db")]),
        manifest("DaemonSet", "agent", [container("agent")]),
        manifest("CronJob", "report", [container("job")]),
    ]
    out = tmp_path / "rightsizer"
    written = kustomize.write(recommendations, out)
    assert {p.name for p in written} == {
        "deployment-web.yaml",
        "statefulset-db.yaml",
        "daemonset-agent.yaml",
        "cronjob-report.yaml",
        "kustomization.yaml",
    }
    patch = yaml.safe_load((out / "statefulset-db.yaml").read_text())
    assert patch["spec"]["template"]["spec"]["containers"] == [
        {"name": "db", "resources": {"requests": {"cpu": "500m", "memory": "600Mi"},
                                     "limits": {"cpu": None, "memory": "900Mi"}}}
    ]  # fmt: skip
    cron = yaml.safe_load((out / "cronjob-report.yaml").read_text())
    assert cron["apiVersion"] == "batch/v1"
    assert "containers" in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]

    built = build(overlay_of(tmp_path, base, out, namespace="team-a"))
    assert {m["metadata"]["namespace"] for m in built} == {"team-a"}
    expected = {
        ("web", "app"): new.to_quantities(),
        ("db", "db"): no_cpu_limit.to_quantities(),
        ("agent", "agent"): new.to_quantities(),
        ("report", "job"): new.to_quantities(),
    }
    assert_only_resources_changed(base, built, expected)
    db = next(m for m in built if m["kind"] == "StatefulSet")
    assert "cpu" not in template_of(db)["containers"][0]["resources"]["limits"]


def test_workloads_of_several_namespaces_get_a_component_each(tmp_path):
    old = Resources({"cpu": Decimal(1)}, {})
    other = Recommendation(ContainerKey("team-b", "Deployment", "web", "app"), old, old, None, "", {})
    kustomize.write([rec("Deployment", "web", "app", old, old), other], tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["team-a", "team-b"]
    for namespace in ("team-a", "team-b"):
        component = yaml.safe_load((tmp_path / "out" / namespace / "kustomization.yaml").read_text())
        assert component["kind"] == "Component"
        assert component["patches"] == [
            {"path": "deployment-web.yaml",
             "target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": "web"}}
        ]  # fmt: skip


def test_an_output_dir_that_is_a_file_is_one_clear_error(tmp_path):
    occupied = tmp_path / "patches"
    occupied.write_text("not a directory")
    old = Resources({"cpu": Decimal(1)}, {})
    with pytest.raises(kustomize.KustomizeError, match="is not a directory"):
        kustomize.write([rec("Deployment", "web", "app", old, old)], occupied)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_rightsizer(*args)


@pytest.mark.prometheus
def test_recommend_writes_patches_that_kustomize_applies_to_the_demo_manifests(
    demo_prometheus, demo_workloads, tmp_path
):
    """The demo shop's Deployments as their manifests say today (namespaced, as `kubectl get -o yaml`
    gives them); the patches from `recommend -o kustomize` carry what `recommend -o json` recommends."""
    url = demo_prometheus.url
    out = tmp_path / "patches"
    result = run_cli(
        "recommend", "--prometheus-url", url, "-n", "shop", "-o", "kustomize", "--output-dir", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert f"files into {out}" in result.stderr
    report = run_cli("recommend", "--prometheus-url", url, "-n", "shop", "-o", "json", "-q")
    assert report.returncode == 0, report.stderr
    expected = {
        (r["name"], r["container"]): r["recommended"]
        for r in json.loads(report.stdout)["recommendations"]
        if r["recommended"] is not None
    }
    assert ("web", "log-shipper") in expected and ("cart", "app") in expected
    base = [deployment_manifest(w) for w in demo_workloads if w.namespace == "shop"]
    built = build(overlay_of(tmp_path, base, out, namespace=None))
    # Two reports seconds apart read windows that differ by those seconds at both ends (the demo's
    # history ends before them): a memory request moved by 1Mi of 413Mi between the runs in CI.
    assert_only_resources_changed(base, built, expected, relative=Decimal("0.01"))
    names = {p.name for p in out.iterdir()}
    assert "deployment-new-feature.yaml" not in names  # too young: no recommendation, no patch
    assert "deployment-web.yaml" in names


def test_kustomize_output_needs_an_output_dir():
    result = run_cli("recommend", "--prometheus-url", "http://x", "-o", "kustomize")
    assert result.returncode == 2
    assert "-o kustomize and --output-dir go together" in result.stderr

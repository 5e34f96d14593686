"""A policy's status stays far below what the API server and etcd take in one object (about 1.5 MiB),
however many containers it covers: thousands of recommendations made by the engine, the status
built from them measured, and written to a real API server (whose etcd refuses the unbounded one)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rightsizer.controller.evaluate import Evaluation, _status_entry
from rightsizer.controller.outcome import PolicyObject
from rightsizer.engine import recommend
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.settings import RecommendationSettings
from tests.support.k8s import kubectl, wait_for_established_crd
from tests.support.usage import usage

ROOT = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 1_572_864
"""etcd's default --max-request-bytes (1.5 MiB), which bounds one object."""
WELL_UNDER = LIMIT_BYTES // 2
"""What a status may take at most, whatever the containers."""
NOTE = (
    "blocked: the change would exceed ResourceQuota compute-resources (requests.memory) by 1Gi x 3 replicas"
)


def recommendations(count: int) -> list[Recommendation]:
    """``count`` recommendations as the engine makes them (evidence, confidence, bounds), one per
    container of workloads of 2 containers; every tenth without one."""
    current = Resources({"cpu": Decimal("0.5"), "memory": Decimal(512 * 1024 * 1024)})
    made = recommend(
        ContainerKey("big", "Deployment", "w", "app"), usage(), current, RecommendationSettings()
    )
    assert made.ready
    young = Recommendation(
        made.key, current, None, None, "insufficient history: 6.0h of samples, needs 24h", {}
    )
    return [
        replace(
            young if index % 10 == 9 else made,
            key=ContainerKey("big", "Deployment", f"service-{index // 2:04d}", f"container-{index % 2}"),
        )
        for index in range(count)
    ]


def status_of(recs: list[Recommendation]) -> dict[str, Any]:
    run = Evaluation(PolicyObject("all", "big", "uid", 1, {}, {}), datetime.now(UTC))
    run.notes = {r.key: NOTE for r in recs}
    not_ready = [r for r in recs if not r.ready]
    listing = "; ".join(f"{r.key.name}/{r.key.container}: {r.reason}" for r in not_ready)
    run.condition("InsufficientData", True, "InsufficientHistory", listing)
    return run.outcome(recs, targetCount=len(recs) // 2, readyContainers="n/a").status


def size(value: Any) -> int:
    return len(json.dumps(value).encode())


def test_a_full_entry_is_as_large_as_the_issue_measured_or_more():
    entry = _status_entry(recommendations(1)[0], NOTE)
    assert 600 <= size(entry) <= 1500


@pytest.mark.parametrize("containers", [10, 3000, 20000])
def test_the_status_stays_well_under_the_limit_whatever_the_containers(containers):
    recs = recommendations(containers)
    status = status_of(recs)
    assert size(status) < WELL_UNDER
    summary = status["recommendationsSummary"]
    assert summary["full"] + summary["compact"] + summary["omitted"] == containers
    assert summary["full"] == len(status["recommendations"])
    assert summary["compact"] == len(status["recommendationsCompact"])
    # The first containers are in full, in order; the next ones one line each.
    names = [(e["name"], e["container"]) for e in status["recommendations"]]
    assert names == [(r.key.name, r.key.container) for r in recs[: summary["full"]]]
    message = next(c for c in status["conditions"] if c["type"] == "InsufficientData")["message"]
    assert len(message) <= 2048
    if containers == 10:
        assert summary == {"full": 10, "compact": 0, "omitted": 0}
        assert status["recommendationsCompact"] == []
        return
    assert 200 <= summary["full"] <= 500
    assert "rightsizer recommend -n big" in summary["message"]
    assert message.endswith(f"; ... and {containers // 10 - message.count('insufficient history')} more")
    first = status["recommendationsCompact"][0]
    entry = _status_entry(recs[summary["full"]], None)
    requests, limits = entry["recommended"]["requests"], entry["recommended"]["limits"]
    assert first == (
        f"Deployment/{entry['name']}/{entry['container']} requests cpu={requests['cpu']} "
        f"memory={requests['memory']} limits cpu={limits['cpu']} memory={limits['memory']}"
    )
    young = next(line for line in status["recommendationsCompact"] if "insufficient" in line)
    assert young.endswith(": insufficient history: 6.0h of samples, needs 24h")
    if containers == 3000:
        assert summary["omitted"] == 0
    else:
        assert summary["omitted"] > 0 and "only counted" in summary["message"]


@pytest.mark.k8s
def test_a_policy_over_3000_containers_gets_its_status_written(cluster, tmp_path: Path):
    def k(*args: str, input: str | None = None, check: bool = True):
        return kubectl(*args, kubeconfig=cluster.kubeconfig, input=input, check=check)

    k("apply", "-f", str(ROOT / "crds" / "rightsizepolicy.yaml"))
    wait_for_established_crd("rightsizepolicies.rightsizer.io", kubeconfig=cluster.kubeconfig)
    k("create", "namespace", "big")
    policy = {
        "apiVersion": "rightsizer.io/v1alpha1",
        "kind": "RightSizePolicy",
        "metadata": {"name": "all", "namespace": "big"},
        "spec": {"selector": {}},
    }
    k("apply", "-f", "-", input=json.dumps(policy))
    recs = recommendations(3000)
    status = status_of(recs)

    def write(status: dict[str, Any]):
        patch = tmp_path / "patch.json"
        patch.write_text(json.dumps({"status": status}))
        args = ["patch", "rsp", "all", "-n", "big", "--subresource=status", "--type=merge"]
        return k(*args, "--patch-file", str(patch), check=False)

    # Every entry in full is about 2.4 MB: more than one object may hold, the write is refused.
    unbounded = {**status, "recommendations": [_status_entry(r, NOTE) for r in recs]}
    assert size(unbounded) > LIMIT_BYTES
    refused = write(unbounded)
    assert refused.returncode != 0 and "too large" in refused.stderr
    written = write(status)
    assert written.returncode == 0, written.stderr
    stored = json.loads(k("get", "rsp", "all", "-n", "big", "-o", "json").stdout)["status"]
    assert stored["recommendationsSummary"] == status["recommendationsSummary"]
    assert stored["recommendationsCompact"] == status["recommendationsCompact"]
    assert len(stored["recommendations"]) == status["recommendationsSummary"]["full"]

"""Auto mode's change of one workload, run evaluation after evaluation against ``FakeCluster``: the
workload (any kind) with an ``app`` container, one recommendation for it, and the operator's
``apply_to_workload`` as the controller calls it, with the time between evaluations played by
``FakeCluster.settle``."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rightsizer.admission import pod_resources
from rightsizer.change import CHANGE, Change
from rightsizer.change_steps import Deadlines
from rightsizer.controller.autoapply import AutoContext, ClusterLimits, WorkloadChange, apply_to_workload
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.pods import PodView
from rightsizer.quantity import parse
from rightsizer.rails import PODS_ONLY, AutoRails
from rightsizer.timestamps import format_time
from rightsizer.workload import WorkloadView, resources_of
from tests.support.fake_cluster import FakeCluster

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BEFORE = {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "400m", "memory": "256Mi"}}
SMALLER = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}
LARGER = {"requests": {"cpu": "300m", "memory": "384Mi"}, "limits": {"cpu": "600m", "memory": "384Mi"}}
KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")
MODES = ("Rollout", "InPlace", "InPlaceOrRollout", "PodsOnly")


def resources(raw: dict[str, Any]) -> Resources:
    return resources_of(raw)


def workload_body(
    kind: str, name: str = "web", replicas: int = 2, app: dict[str, Any] = BEFORE
) -> dict[str, Any]:
    """A workload of ``kind`` whose pods run one container ``app`` with ``app`` resources."""
    labels = {"app": name}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "load", "resources": copy.deepcopy(app)}]},
    }
    metadata = {"name": name, "namespace": "shop", "labels": labels}
    if kind == "CronJob":
        spec: dict[str, Any] = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    else:
        spec = {"selector": {"matchLabels": labels}, "template": template}
        if kind != "DaemonSet":
            spec["replicas"] = replicas
    api = "batch/v1" if kind == "CronJob" else "apps/v1"
    return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}


@dataclass
class ChangeRun:
    """One workload, one recommendation (``target``), evaluations every ``interval`` seconds."""

    cluster: FakeCluster
    kind: str
    target: dict[str, Any]
    rails: AutoRails
    name: str = "web"
    now: datetime = START
    interval: int = 10
    throttled: dict[str, float] | None = field(default_factory=dict)
    deadlines: Deadlines = field(default_factory=Deadlines)
    stop: str | None = None
    outcomes: list[WorkloadChange] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        kind: str,
        mode: str = "InPlace",
        target: dict[str, Any] = SMALLER,
        replicas: int = 2,
        cluster: FakeCluster | None = None,
        **rails: Any,
    ) -> ChangeRun:
        cluster = cluster or FakeCluster()
        cluster.add_workload(workload_body(kind, replicas=replicas))
        defaults = {"cooldown_seconds": 1, "canary_seconds": 30, "max_step_percent": 1000}
        return cls(cluster, kind, target, AutoRails(update_mode=mode, **{**defaults, **rails}))

    # ------------------------------------------------------------ evaluating

    def workload(self) -> WorkloadView:
        return self.cluster.view(self.kind, self.name)

    def pods(self) -> list[PodView]:
        return [p for p in self.cluster.pod_views() if (p.owner_kind, p.owner_name) == (self.kind, self.name)]

    def context(self) -> AutoContext:
        return AutoContext(
            rails=self.rails,
            limits=ClusterLimits(self.cluster, "shop"),
            cluster=self.cluster,
            policy_name="p",
            now=self.now,
            throttling_threshold=0.1,
            throttled=lambda pods, seconds: None if self.throttled is None else dict(self.throttled),
            autoscalers=self.cluster.autoscaler_views(),
            deadlines=self.deadlines,
            stop=self.stop,
        )

    def recommendation(self, workload: WorkloadView) -> Recommendation:
        current = workload.containers["app"]
        if self.rails.update_mode == PODS_ONLY:
            current = (pod_resources(workload.annotations) or {}).get("app", current)
        key = ContainerKey("shop", self.kind, self.name, "app")
        recommended = resources(self.target)
        return Recommendation(key, current, recommended, "Burstable", "because", {}, confident=recommended)

    def evaluate(self) -> WorkloadChange:
        """One evaluation (its writes made), then the time to the next (the cluster settles)."""
        workload = self.workload()
        try:
            outcome = apply_to_workload(
                workload, self.pods(), [self.recommendation(workload)], self.context()
            )
        finally:
            self.now += timedelta(seconds=self.interval)
            self.cluster.settle()
        self.outcomes.append(outcome)
        return outcome

    def until(self, done: Any, evaluations: int = 60) -> WorkloadChange:
        """Evaluate until ``done(outcome)``; fail after ``evaluations``."""
        for _ in range(evaluations):
            outcome = self.evaluate()
            if done(outcome):
                return outcome
        raise AssertionError(f"not done after {evaluations} evaluations: {self.outcomes[-3:]}")

    # ------------------------------------------------------------ what the cluster holds

    def record(self) -> Change | None:
        return Change.from_annotations(self.workload().annotations)

    def annotations(self) -> dict[str, str]:
        return self.workload().annotations

    def template(self) -> Resources:
        return self.workload().containers["app"]

    def asked(self) -> dict[str, Resources]:
        """Pod -> the app container's resources as its spec asks."""
        return {p.name: p.containers["app"].desired for p in self.pods()}

    def running(self) -> dict[str, Resources]:
        """Pod -> what the kubelet reports the app container runs."""
        return {p.name: p.containers["app"].actual or Resources() for p in self.pods()}

    def oom_kill(self, pod: str) -> None:
        self.cluster.oom_kill(pod, format_time(self.now - timedelta(seconds=1)))

    def in_flight(self) -> bool:
        return CHANGE in self.annotations()


def with_rails(run: ChangeRun, **changes: Any) -> ChangeRun:
    return replace(run, rails=replace(run.rails, **changes))


def quantity(text: str) -> Any:
    return parse(text)

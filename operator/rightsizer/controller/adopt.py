"""Making a workload's pod template hold what its pods were resized to, without a rollout.

After an in-place change every pod runs the new resources; the template must say so too, or the
next pod (a scale-up, a rescheduled pod) would start with the old ones. But a template change is
what makes a workload's controller replace its pods, so each kind needs its own way round:

- **CronJob**: a template change only affects the jobs to come; it is patched directly.
- **Deployment**: the Deployment controller finds its current ReplicaSet by comparing pod templates
  (not by hash), so the ReplicaSet's template is patched first, and once the ReplicaSet controller
  has seen that, the Deployment's: the controller finds the patched ReplicaSet as its own and
  replaces nothing.
- **StatefulSet, DaemonSet**: their controllers replace pods whose ``controller-revision-hash``
  label is not the template's revision. The update strategy is switched to ``OnDelete`` (under
  which the controller replaces nothing), the template patched, each pod labelled with the new
  revision, and the strategy put back as it was. The strategy in force is kept in the change
  record by the same patch that switches it, so a crash in between leaves nothing unrecorded.

Each step is idempotent, so a step that fails is simply retried at the next evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rightsizer.apply import ContainerChange, pod_spec_patch
from rightsizer.controller.kube import Cluster
from rightsizer.pods import REVISION_LABEL, PodView
from rightsizer.workload import CRONJOB, DEPLOYMENT, STATEFULSET, WorkloadView

OBSERVE_TIMEOUT_SECONDS = 15.0
"""How long to wait for a controller to observe a change before trying again at the next evaluation."""


class NotYet(RuntimeError):
    """A controller has not caught up; the step is retried at the next evaluation."""


@dataclass(frozen=True)
class StrategyRecord:
    """The update strategy to put back after a StatefulSet's or DaemonSet's template is adopted.

    ``recorded`` is the one kept in the change record by an earlier attempt (which may have been
    cut short while ``OnDelete`` was in force); ``record`` gives the annotations that keep a
    strategy in the change record, written by the same patch that switches to ``OnDelete``.
    """

    recorded: dict[str, Any] | None
    record: Callable[[dict[str, Any]], dict[str, str | None]]


def adopt_template(
    workload: WorkloadView,
    changes: tuple[ContainerChange, ...],
    pods: list[PodView],
    cluster: Cluster,
    annotations: dict[str, str | None],
    strategy: StrategyRecord,
) -> None:
    """Make the template hold ``changes`` (the pods already do), writing ``annotations`` with the
    last patch. Raises ``NotYet`` when a controller is behind, ``ApiException`` when refused."""
    template = _template_patch(workload, changes)
    if workload.kind is CRONJOB:
        cluster.patch_workload(
            workload.kind.name, workload.namespace, workload.name, _with(template, annotations)
        )
    elif workload.kind is DEPLOYMENT:
        _adopt_deployment(workload, changes, pods, cluster, _with(template, annotations))
    else:
        _adopt_by_revision(workload, pods, cluster, template, annotations, strategy)


def _template_patch(workload: WorkloadView, changes: tuple[ContainerChange, ...]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    node = patch
    for key in workload.kind.template_path:
        node = node.setdefault(key, {})
    node["spec"] = pod_spec_patch(workload, changes)
    return patch


def _with(patch: dict[str, Any], annotations: dict[str, str | None]) -> dict[str, Any]:
    return {**patch, "metadata": {"annotations": annotations}} if annotations else patch


def _adopt_deployment(
    workload: WorkloadView,
    changes: tuple[ContainerChange, ...],
    pods: list[PodView],
    cluster: Cluster,
    patch: dict[str, Any],
) -> None:
    replicasets = {p.controller_name for p in pods if p.controller_name and not p.deleting}
    if len(replicasets) != 1:
        raise NotYet(f"pods of {len(replicasets)} ReplicaSets: waiting for one")
    (replicaset,) = replicasets
    spec_patch = {"spec": {"template": {"spec": pod_spec_patch(workload, changes)}}}
    cluster.patch_replicaset(workload.namespace, replicaset, spec_patch)

    def observed() -> bool:
        current = cluster.read_replicaset(workload.namespace, replicaset)
        return int(current["status"].get("observedGeneration", 0)) >= int(current["metadata"]["generation"])

    _wait(observed, f"ReplicaSet {replicaset} to be observed")
    cluster.patch_workload(workload.kind.name, workload.namespace, workload.name, patch)


def _adopt_by_revision(
    workload: WorkloadView,
    pods: list[PodView],
    cluster: Cluster,
    template: dict[str, Any],
    annotations: dict[str, str | None],
    strategy: StrategyRecord,
) -> None:
    kind, namespace, name = workload.kind.name, workload.namespace, workload.name
    current = cluster.read_workload(kind, namespace, name)
    in_force = current["spec"].get("updateStrategy") or {"type": "RollingUpdate"}
    original = strategy.recorded or in_force
    if in_force.get("type") != "OnDelete":
        switch = {"updateStrategy": {"type": "OnDelete", "rollingUpdate": None}}
        cluster.patch_workload(
            kind, namespace, name, {"spec": switch, "metadata": {"annotations": strategy.record(original)}}
        )
    cluster.patch_workload(kind, namespace, name, template)
    revision = _wait_for_revision(workload, cluster)
    for pod in pods:
        if not pod.deleting and pod.revision != revision:
            cluster.label_pod(namespace, pod.name, {REVISION_LABEL: revision})
    restore: dict[str, Any] = {"metadata": {"annotations": annotations}} if annotations else {}
    if original.get("type") != "OnDelete":
        restore["spec"] = {"updateStrategy": original}
    if restore:
        cluster.patch_workload(kind, namespace, name, restore)


def _wait_for_revision(workload: WorkloadView, cluster: Cluster) -> str:
    """The revision (the ``controller-revision-hash`` label value) of the template as it is now."""
    found: list[str] = []

    def revised() -> bool:
        current = cluster.read_workload(workload.kind.name, workload.namespace, workload.name)
        if int(current["status"].get("observedGeneration", 0)) < int(current["metadata"]["generation"]):
            return False
        if workload.kind is STATEFULSET:
            found[:] = [current["status"].get("updateRevision", "")]
            return bool(found[0])
        owned = [
            r
            for r in cluster.controller_revisions(workload.namespace)
            if any(
                o.get("uid") == current["metadata"]["uid"] for o in r["metadata"].get("ownerReferences") or []
            )
        ]
        newest = max(owned, key=lambda r: int(r.get("revision", 0)), default=None)
        found[:] = [((newest or {}).get("metadata", {}).get("labels") or {}).get(REVISION_LABEL, "")]
        return bool(found[0])

    _wait(revised, f"{workload.reference_name}'s new revision")
    return found[0]


def _wait(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + OBSERVE_TIMEOUT_SECONDS
    while not done():
        if time.monotonic() > deadline:
            raise NotYet(f"waited {OBSERVE_TIMEOUT_SECONDS:.0f}s for {what}")
        time.sleep(0.5)

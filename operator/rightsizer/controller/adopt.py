"""Making a workload's pod template hold what its pods were resized to, without a rollout.

After an in-place change every pod runs the new resources; the template must say so too, or the
next pod (a scale-up, a rescheduled pod) would start with the old ones. But a template change is
what makes a workload's controller replace its pods, so each kind needs its own way round:

- **CronJob**: a template change only affects the jobs to come; it is patched directly.
- **Deployment**: the Deployment controller finds its current ReplicaSet by comparing pod templates
  (not by hash), so the ReplicaSet's template is patched first, and once the ReplicaSet controller
  has seen that, the Deployment's: the controller finds the patched ReplicaSet as its own and
  replaces nothing. In between no ReplicaSet holds the Deployment's template, and the controller
  would make one (a rollout of the old template): the Deployment is paused for those seconds
  (``spec.paused``, kept in the change record by the patch that pauses it, like a strategy below).
- **StatefulSet, DaemonSet**: their controllers replace pods whose ``controller-revision-hash``
  label is not the template's revision. The update strategy is switched to ``OnDelete`` (under
  which the controller replaces nothing), the template patched, each pod labelled with the new
  revision, and the strategy put back as it was. The strategy in force is kept in the change
  record by the same patch that switches it, so a crash in between leaves nothing unrecorded.

Each step is skipped when it is done already, so a step that fails is simply tried again at the
next evaluation, and no write is sent twice. Every write is fenced: the workload's through
``WorkloadWriter`` (its resourceVersion), the ReplicaSet's by the resourceVersion it was read at,
a pod's label by a JSON-patch test of its uid and of the label it had.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rightsizer.apply import pod_spec_patch
from rightsizer.controller.workload_writer import WorkloadWriter
from rightsizer.model import ContainerKey, Resources
from rightsizer.planning import ContainerChange
from rightsizer.pod_progress import holds
from rightsizer.pods import REVISION_LABEL, PodView
from rightsizer.workload import CRONJOB, DEPLOYMENT, STATEFULSET, WorkloadView, resources_of

OBSERVE_TIMEOUT_SECONDS = 15.0
"""How long to wait for a controller to observe a change before trying again at the next evaluation."""


class NotYet(RuntimeError):
    """A controller has not caught up; the step is retried at the next evaluation."""


@dataclass(frozen=True)
class StrategyRecord:
    """What to put back after the template is adopted: a StatefulSet's or DaemonSet's update strategy
    (``{"type": ...}``), a Deployment's ``{"paused": ...}``.

    ``recorded`` is the one kept in the change record by an earlier attempt (which may have been
    cut short while ``OnDelete`` was in force); ``record`` gives the annotations that keep a
    strategy in the change record, written by the same patch that switches to ``OnDelete``.
    """

    recorded: dict[str, Any] | None
    record: Callable[[dict[str, Any]], dict[str, str | None]]


def adopt_template(
    workload: WorkloadView,
    target: dict[str, Resources],
    pods: list[PodView],
    writer: WorkloadWriter,
    annotations: dict[str, str | None],
    strategy: StrategyRecord,
) -> None:
    """Make the template hold ``target`` (the pods already run it), writing ``annotations`` with the
    last patch. Raises ``NotYet`` when a controller is behind, ``PatchConflict`` when an object
    changed meanwhile, ``ApiException`` when refused."""
    changes = changes_to(workload, target, writer.template)
    template = template_patch(workload, changes)
    if workload.kind is CRONJOB:
        writer.patch({**template, "metadata": {"annotations": annotations}}, template=target)
    elif workload.kind is DEPLOYMENT:
        _adopt_deployment(workload, changes, pods, writer, template, target, annotations, strategy)
    else:
        _adopt_by_revision(workload, pods, writer, template, target, annotations, strategy)


def changes_to(
    workload: WorkloadView, target: dict[str, Resources], current: dict[str, Resources]
) -> tuple[ContainerChange, ...]:
    """The template's containers going from ``current`` to ``target``."""
    return tuple(
        ContainerChange(
            ContainerKey(workload.namespace, workload.kind.name, workload.name, name),
            current.get(name, Resources()),
            resources,
            "",
        )
        for name, resources in target.items()
    )


def template_patch(workload: WorkloadView, changes: tuple[ContainerChange, ...]) -> dict[str, Any]:
    """A strategic-merge patch of the workload that sets ``changes`` in its pod template."""
    patch: dict[str, Any] = {}
    node = patch
    for key in workload.kind.template_path:
        node = node.setdefault(key, {})
    node["spec"] = pod_spec_patch(workload, changes)
    return patch


def _adopt_deployment(
    workload: WorkloadView,
    changes: tuple[ContainerChange, ...],
    pods: list[PodView],
    writer: WorkloadWriter,
    template: dict[str, Any],
    target: dict[str, Resources],
    annotations: dict[str, str | None],
    strategy: StrategyRecord,
) -> None:
    """The Deployment paused (so that its controller, which would find no ReplicaSet holding its
    template once the current one is patched, creates none), the current ReplicaSet's template
    patched, and once the ReplicaSet controller has observed that, the Deployment's template with
    ``paused`` as it was: the controller then finds the patched ReplicaSet as its own."""
    replicasets = {p.controller_name for p in pods if p.controller_name and not p.deleting}
    if len(replicasets) != 1:
        raise NotYet(f"pods of {len(replicasets)} ReplicaSets: waiting for one")
    (replicaset,) = replicasets
    in_force = {"paused": bool(writer.read()["spec"].get("paused", False))}
    original = strategy.recorded or in_force
    if not in_force["paused"]:
        writer.patch({"spec": {"paused": True}, "metadata": {"annotations": strategy.record(original)}})
    cluster, namespace = writer.cluster, workload.namespace
    current = cluster.read_replicaset(namespace, replicaset)
    if not _template_holds(current["spec"]["template"], changes):
        spec_patch = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "spec": {"template": {"spec": pod_spec_patch(workload, changes)}},
        }
        cluster.patch_replicaset(namespace, replicaset, spec_patch)

    def observed() -> bool:
        current = cluster.read_replicaset(namespace, replicaset)
        return int(current["status"].get("observedGeneration", 0)) >= int(current["metadata"]["generation"])

    _wait(observed, f"ReplicaSet {replicaset} to be observed")
    resumed = {**template, "metadata": {"annotations": annotations}}
    resumed["spec"] = {**resumed["spec"], "paused": bool(original.get("paused", False))}
    writer.patch(resumed, template=target)


def _template_holds(template: dict[str, Any], changes: tuple[ContainerChange, ...]) -> bool:
    spec = template.get("spec") or {}
    containers = {
        c["name"]: c for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    }
    return all(
        c.container in containers and holds(resources_of(containers[c.container].get("resources")), c.after)
        for c in changes
    )


def _adopt_by_revision(
    workload: WorkloadView,
    pods: list[PodView],
    writer: WorkloadWriter,
    template: dict[str, Any],
    target: dict[str, Resources],
    annotations: dict[str, str | None],
    strategy: StrategyRecord,
) -> None:
    current = writer.read()
    in_force = current["spec"].get("updateStrategy") or {"type": "RollingUpdate"}
    original = strategy.recorded or in_force
    if in_force.get("type") != "OnDelete":
        switch = {"updateStrategy": {"type": "OnDelete", "rollingUpdate": None}}
        writer.patch({"spec": switch, "metadata": {"annotations": strategy.record(original)}})
    if not writer.template_holds(target):
        writer.patch(template, template=target)
    revision = _wait_for_revision(workload, writer)
    for pod in pods:
        if not pod.deleting and pod.revision != revision:
            writer.cluster.label_pod(workload.namespace, pod.name, _relabel(pod, revision))
    restore: dict[str, Any] = {"metadata": {"annotations": annotations}} if annotations else {}
    if original.get("type") != "OnDelete":
        restore["spec"] = {"updateStrategy": original}
    if restore:
        writer.patch(restore)


def _relabel(pod: PodView, revision: str) -> list[dict[str, Any]]:
    """A JSON patch setting the pod's revision label, only if it is still the pod (uid) and still
    carries the label it was seen with."""
    path = "/metadata/labels/" + REVISION_LABEL.replace("~", "~0").replace("/", "~1")
    guard = [{"op": "test", "path": "/metadata/uid", "value": pod.uid}]
    if pod.revision is None:
        return [*guard, {"op": "add", "path": path, "value": revision}]
    return [
        *guard,
        {"op": "test", "path": path, "value": pod.revision},
        {"op": "replace", "path": path, "value": revision},
    ]


def _wait_for_revision(workload: WorkloadView, writer: WorkloadWriter) -> str:
    """The revision (the ``controller-revision-hash`` label value) of the template as it is now."""
    found: list[str] = []

    def revised() -> bool:
        current = writer.cluster.read_workload(workload.kind.name, workload.namespace, workload.name)
        if int(current["status"].get("observedGeneration", 0)) < int(current["metadata"]["generation"]):
            return False
        if workload.kind is STATEFULSET:
            found[:] = [current["status"].get("updateRevision", "")]
            return bool(found[0])
        owned = [
            r
            for r in writer.cluster.controller_revisions(workload.namespace)
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

"""Fenced writes to one workload, over the steps of one evaluation.

Every patch carries the resourceVersion the writer holds (the index's at first, then each patch's
answer), so a concurrent edit makes it fail instead of being overwritten. A patch refused for a
stale resourceVersion is tried once more, after a fresh read shows that what it was decided from
still holds: the change record is the one the writer last saw or wrote, and the changed containers
of the template hold what it last saw or wrote. Anything else (somebody else changed the record or
the resources) stays a ``PatchConflict``, and the step is decided again at the next evaluation.
"""

from __future__ import annotations

from typing import Any

from rightsizer.change import CHANGE
from rightsizer.controller.kube import Cluster, PatchConflict
from rightsizer.model import Resources
from rightsizer.pod_progress import holds
from rightsizer.workload import WorkloadView


class WorkloadWriter:
    def __init__(self, cluster: Cluster, workload: WorkloadView) -> None:
        self.cluster = cluster
        self.workload = workload
        self.version = workload.resource_version
        self.record_text: str | None = workload.annotations.get(CHANGE)
        self.template: dict[str, Resources] = dict(workload.containers)
        self.writes = 0

    def patch(self, patch: dict[str, Any], *, template: dict[str, Resources] | None = None) -> None:
        """A strategic-merge patch of the workload (``template``: the containers' resources it sets)."""
        annotations = (patch.get("metadata") or {}).get("annotations") or {}
        try:
            self._send(patch)
        except PatchConflict:
            self.read()  # raises PatchConflict unless what the patch was decided from still holds
            self._send(patch)
        self.writes += 1
        if CHANGE in annotations:
            self.record_text = annotations[CHANGE]
        if template is not None:
            self.template.update(template)

    def read(self) -> dict[str, Any]:
        """The workload as it is now, checked against what the writer knows (else ``PatchConflict``);
        its resourceVersion is the one the next patch carries."""
        w = self.workload
        body = self.cluster.read_workload(w.kind.name, w.namespace, w.name)
        fresh = WorkloadView.from_body({**body, "kind": w.kind.name})
        if fresh.annotations.get(CHANGE) != self.record_text:
            raise PatchConflict(f"{w.reference_name}: its change record was changed by somebody else")
        if not self._holds(fresh.containers, self.template):
            raise PatchConflict(
                f"{w.reference_name}: its containers' resources were changed by somebody else"
            )
        self.version = str(body["metadata"]["resourceVersion"])
        return body

    def template_holds(self, target: dict[str, Resources]) -> bool:
        """The template holds ``target`` as far as the writer knows."""
        return self._holds(self.template, target)

    def _send(self, patch: dict[str, Any]) -> None:
        w = self.workload
        metadata = {**(patch.get("metadata") or {}), "resourceVersion": self.version}
        self.version = self.cluster.patch_workload(
            w.kind.name, w.namespace, w.name, {**patch, "metadata": metadata}
        )

    @staticmethod
    def _holds(containers: dict[str, Resources], target: dict[str, Resources]) -> bool:
        return all(name in containers and holds(containers[name], r) for name, r in target.items())

"""A ``Cluster`` without an API server that keeps its objects and answers writes as the API server,
the workload controllers and the kubelet would, closely enough for Auto mode's change machine.

The API server part: every write bumps the object's resourceVersion; a strategic-merge patch that
carries a stale ``metadata.resourceVersion`` is refused (409), a JSON patch whose ``test`` fails
too; a pod's ``pods/resize`` changes its spec only. ``settle()`` then plays the controllers and
the kubelet for the time between two evaluations: a Deployment whose template no ReplicaSet holds
gets a new ReplicaSet and its pods are replaced (one that a ReplicaSet's template already holds is
adopted with no replacement), a StatefulSet or DaemonSet under RollingUpdate replaces the pods not
on its update revision (under OnDelete, none), an evicted pod is recreated from the template, and
the kubelet applies each pod's resized spec to what it runs, unless its node is ``full`` (the resize
is then ``Deferred``).

``writes`` is every successful write in order; ``fail_write`` makes one write attempt fail and
``crash_after`` raises ``Crash`` (the operator stopped) right after one succeeded.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from rightsizer.controller.kube import EvictionRefused, PatchConflict, ResizeRefused
from rightsizer.hpa import Autoscaler
from rightsizer.pods import PodView
from rightsizer.qos import pod_qos_class
from rightsizer.quantity import parse
from rightsizer.workload import WorkloadView, resources_of


class Crash(BaseException):
    """The operator stopped right after a write (nothing in it catches a BaseException)."""


@dataclass(frozen=True)
class Write:
    verb: str
    target: str
    body: str
    """The write's body as JSON (without the resourceVersion it carried)."""


@dataclass
class FakeCluster:
    limit_range_items: list[dict[str, Any]] = field(default_factory=list)
    quota_items: list[dict[str, Any]] = field(default_factory=list)
    node_items: list[dict[str, Any]] = field(default_factory=list)
    budget_items: list[dict[str, Any]] = field(default_factory=list)
    autoscaler_items: dict[str, dict[str, Any]] = field(default_factory=dict)
    workloads: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(kind, name) -> the object (one namespace)."""
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    replicasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    revisions: list[dict[str, Any]] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    attempts: int = 0
    fail_write: int | None = None
    """The write attempt (1-based) that fails, with ``fail_with``."""
    fail_with: Exception = field(
        default_factory=lambda: ApiException(status=500, reason="Internal Server Error")
    )
    crash_after: int | None = None
    """The successful write (1-based) right after which the operator stops (``Crash``)."""
    full: bool = False
    """The node has no room: a resize that raises a request stays Deferred, and so does any resize
    back of a pod while ``full_for_all`` (the room a change freed was taken by another pod)."""
    full_for_all: bool = False
    evictions_refused: bool = False
    unschedulable: bool = False
    """New pods stay Pending (no node can take them)."""
    refuse_resizes: str | None = None
    """Every resize is refused by the API server with this reason (RBAC, an admission webhook...)."""
    replicasets_lag: bool = False
    """The ReplicaSet controller never observes a template change (``observedGeneration`` stays behind)."""
    reads: list[str] = field(default_factory=list)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------ what the operator reads

    def limit_ranges(self, namespace: str) -> list[dict[str, Any]]:
        self.reads.append("limit_ranges")
        return self.limit_range_items

    def resource_quotas(self, namespace: str) -> list[dict[str, Any]]:
        self.reads.append("quotas")
        return self.quota_items

    def nodes(self) -> list[dict[str, Any]]:
        self.reads.append("nodes")
        return self.node_items

    def pod_disruption_budgets(self, namespace: str) -> list[dict[str, Any]]:
        self.reads.append("budgets")
        return self.budget_items

    def read_workload(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        if (kind, name) not in self.workloads:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.workloads[(kind, name)])

    def read_replicaset(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.replicasets[name])

    def controller_revisions(self, namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.revisions)

    def read_autoscaler(self, namespace: str, name: str) -> dict[str, Any]:
        if name not in self.autoscaler_items:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.autoscaler_items[name])

    def views(self) -> list[WorkloadView]:
        return [WorkloadView.from_body(copy.deepcopy(body)) for body in self.workloads.values()]

    def view(self, kind: str, name: str) -> WorkloadView:
        return WorkloadView.from_body(copy.deepcopy(self.workloads[(kind, name)]))

    def pod_views(self) -> list[PodView]:
        return [PodView.from_body(copy.deepcopy(p)) for p in self.pods.values()]

    def autoscaler_views(self) -> tuple[Autoscaler, ...]:
        return tuple(Autoscaler.from_body(body) for body in self.autoscaler_items.values())

    # ------------------------------------------------------------ writes

    def patch_workload(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> str:
        self._attempt()
        body = self.workloads[(kind, name)]
        patch = copy.deepcopy(patch)
        version = (patch.get("metadata") or {}).pop("resourceVersion", None)
        if version is not None and version != body["metadata"]["resourceVersion"]:
            raise PatchConflict(f"{kind} {namespace}/{name} changed while being evaluated")
        template_before = json.dumps(self._template(body), sort_keys=True)
        spec_before = json.dumps(body.get("spec"), sort_keys=True)
        merge(body, patch)
        if json.dumps(body.get("spec"), sort_keys=True) != spec_before:
            body["metadata"]["generation"] += 1
            body["status"]["observedGeneration"] = body["metadata"]["generation"]  # observed at once
        if json.dumps(self._template(body), sort_keys=True) != template_before and kind in (
            "StatefulSet",
            "DaemonSet",
        ):
            self._new_revision(body)
        return self._written("patch", f"{kind.lower()}s/{name}", patch, body)

    def resize_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        self._attempt()
        if self.refuse_resizes:
            raise ResizeRefused(self.refuse_resizes)
        pod = self._pod(name)
        updated = json_patch(pod, operations, name)
        for container in updated["spec"]["containers"]:
            before = next(c for c in pod["spec"]["containers"] if c["name"] == container["name"])
            if _qos(updated) != _qos(pod):
                raise ResizeRefused(f"Pod {name}: Pod QOS Class may not change as a result of resizing")
            if {k: v for k, v in container.items() if k != "resources"} != {
                k: v for k, v in before.items() if k != "resources"
            }:
                raise ResizeRefused("only resources may change")
        self.pods[name] = updated
        self._written("patch", f"pods/resize/{name}", operations, updated)

    def label_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        self._attempt()
        pod = self._pod(name)
        self.pods[name] = json_patch(pod, operations, name)
        self._written("patch", f"pods/{name}", operations, self.pods[name])

    def evict_pod(self, namespace: str, name: str, uid: str) -> None:
        self._attempt()
        if name not in self.pods:
            return
        if self.pods[name]["metadata"]["uid"] != uid:
            raise PatchConflict(f"pod {name} is another pod now")
        if self.evictions_refused:
            raise EvictionRefused("Cannot evict pod as it would violate the pod's disruption budget.")
        del self.pods[name]
        self._written("create", f"pods/eviction/{name}", {"uid": uid}, None)

    def patch_replicaset(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._attempt()
        body = self.replicasets[name]
        patch = copy.deepcopy(patch)
        version = (patch.get("metadata") or {}).pop("resourceVersion", None)
        if version is not None and version != body["metadata"]["resourceVersion"]:
            raise PatchConflict(f"ReplicaSet {name} changed while being patched")
        merge(body, patch)
        body["metadata"]["generation"] += 1
        if not self.replicasets_lag:
            body["status"]["observedGeneration"] = body["metadata"]["generation"]  # observed at once
        self._written("patch", f"replicasets/{name}", patch, body)

    def patch_autoscaler(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        self._attempt()
        self.autoscaler_items[name] = json_patch(self.autoscaler_items[name], operations, name)
        self._written("patch", f"horizontalpodautoscalers/{name}", operations, self.autoscaler_items[name])

    def update_webhook_configuration(self, name: str, ca_pem: bytes, url: str | None) -> None:
        raise AssertionError("not used by Auto mode")

    def _attempt(self) -> None:
        self.attempts += 1
        if self.attempts == self.fail_write:
            raise self.fail_with

    def _written(self, verb: str, target: str, body: Any, obj: dict[str, Any] | None) -> str:
        version = str(next(self._versions))
        if obj is not None:
            obj["metadata"]["resourceVersion"] = version
        self.writes.append(Write(verb, target, json.dumps(body, sort_keys=True)))
        if self.crash_after is not None and len(self.writes) == self.crash_after:
            raise Crash(f"stopped after write {len(self.writes)}: {verb} {target}")
        return version

    def _pod(self, name: str) -> dict[str, Any]:
        if name not in self.pods:
            raise ApiException(status=404, reason="Not Found")
        return self.pods[name]

    # ------------------------------------------------------------ objects

    def add_workload(self, body: dict[str, Any]) -> None:
        body = copy.deepcopy(body)
        metadata = body["metadata"]
        metadata.setdefault("uid", f"uid-{metadata['name']}")
        metadata.setdefault("annotations", {})
        metadata["resourceVersion"] = str(next(self._versions))
        metadata["generation"] = 1
        body["status"] = {}
        self.workloads[(body["kind"], metadata["name"])] = body
        if body["kind"] in ("StatefulSet", "DaemonSet"):
            self._new_revision(body)
        self.settle()

    def oom_kill(self, pod: str, finished_at: str) -> None:
        """The pod's app container was OOM-killed and restarted."""
        (status,) = [s for s in self.pods[pod]["status"]["containerStatuses"] if s["name"] == "app"]
        status["lastState"] = {"terminated": {"reason": "OOMKilled", "finishedAt": finished_at}}
        status["restartCount"] += 1

    def settle(self) -> None:
        """The controllers and the kubelet catch up."""
        for body in list(self.workloads.values()):
            kind = body["kind"]
            if kind == "Deployment":
                self._deployment(body)
            elif kind in ("StatefulSet", "DaemonSet"):
                self._revisioned(body)
            body["status"]["observedGeneration"] = body["metadata"]["generation"]
        for pod in self.pods.values():
            self._kubelet(pod)

    def _deployment(self, body: dict[str, Any]) -> None:
        if body["spec"].get("paused"):
            return  # a paused Deployment rolls nothing out
        template = body["spec"]["template"]
        current = next(
            (rs for rs in self.replicasets.values() if _same(rs["spec"]["template"], template)), None
        )
        if current is None:
            digest = _hash(template)
            while f"{body['metadata']['name']}-{digest}" in self.replicasets:  # a hash collision
                digest = _hash({"spec": digest})
            current = {
                "metadata": {
                    "name": f"{body['metadata']['name']}-{digest}",
                    "resourceVersion": str(next(self._versions)),
                    "generation": 1,
                    "labels": {"pod-template-hash": digest},
                },
                "spec": {"template": copy.deepcopy(template)},
                "status": {"observedGeneration": 1},
            }
            self.replicasets[current["metadata"]["name"]] = current
        owner = current["metadata"]["name"]
        mine = [p for p in self.pods.values() if _owner(p) == owner]
        old = [p for p in self.pods.values() if _of(p, body) and _owner(p) != owner]
        if self.unschedulable and old:  # a rolling update keeps the old pods while the new stay Pending
            new = [p for p in mine if p["status"]["phase"] == "Running"]
            self._surge(body, current, mine)
            body["status"].update(replicas=len(old) + len(mine), updatedReplicas=len(new))
            return
        for pod in old:
            del self.pods[pod["metadata"]["name"]]
        hash_ = current["metadata"]["labels"]["pod-template-hash"]
        for _ in range(body["spec"]["replicas"] - len(mine)):
            name = f"{owner}-{next(self._names)}"
            self._create_pod(
                name, body, current["spec"]["template"], "ReplicaSet", owner, {"pod-template-hash": hash_}
            )
        replicas = body["spec"]["replicas"]
        body["status"].update(replicas=replicas, updatedReplicas=replicas)

    def _surge(self, body: dict[str, Any], current: dict[str, Any], mine: list[dict[str, Any]]) -> None:
        """One new pod beside the old ones (maxSurge 1, maxUnavailable 0): it stays Pending."""
        if not mine:
            hash_ = current["metadata"]["labels"]["pod-template-hash"]
            name = f"{current['metadata']['name']}-{next(self._names)}"
            labels = {"pod-template-hash": hash_}
            self._create_pod(
                name, body, current["spec"]["template"], "ReplicaSet", current["metadata"]["name"], labels
            )

    def _revisioned(self, body: dict[str, Any]) -> None:
        kind, name = body["kind"], body["metadata"]["name"]
        revision = body["status"]["updateRevision"]
        on_delete = (body["spec"].get("updateStrategy") or {}).get("type") == "OnDelete"
        count = body["spec"].get("replicas", 1) if kind == "StatefulSet" else 1
        names = [f"{name}-{i}" for i in range(count)] if kind == "StatefulSet" else None
        pods = [p for p in self.pods.values() if _of(p, body)]
        for pod in pods:
            if pod["metadata"]["labels"].get("controller-revision-hash") != revision and not on_delete:
                del self.pods[pod["metadata"]["name"]]
        for index in range(count):
            pod_name = names[index] if names else None
            present = [p for p in self.pods.values() if _of(p, body)]
            if (pod_name and pod_name in self.pods) or (not names and present):
                continue
            pod_name = pod_name or f"{name}-{next(self._names)}"
            labels = {"controller-revision-hash": revision}
            self._create_pod(pod_name, body, self._template(body), kind, name, labels)
        at_revision = [
            p
            for p in self.pods.values()
            if _of(p, body) and p["metadata"]["labels"]["controller-revision-hash"] == revision
        ]
        if kind == "StatefulSet":
            if len(at_revision) == count:
                body["status"]["currentRevision"] = revision
        else:
            body["status"].update(desiredNumberScheduled=1, updatedNumberScheduled=len(at_revision))

    def _new_revision(self, body: dict[str, Any]) -> None:
        digest = _hash(self._template(body))
        revision = f"{body['metadata']['name']}-{digest}"
        body["status"]["updateRevision"] = revision
        body["status"].setdefault("currentRevision", revision)
        number = 1 + max((r["revision"] for r in self.revisions), default=0)
        self.revisions.append(
            {
                "metadata": {
                    "name": revision,
                    "labels": {"controller-revision-hash": revision},
                    "ownerReferences": [{"uid": body["metadata"]["uid"]}],
                },
                "revision": number,
            }
        )

    def _create_pod(
        self,
        name: str,
        owner: dict[str, Any],
        template: dict[str, Any],
        kind: str,
        owner_name: str,
        labels: dict[str, str],
    ) -> None:
        spec = copy.deepcopy(template["spec"])
        given = json.loads(
            owner["metadata"].get("annotations", {}).get("rightsizer.io/pod-resources") or "{}"
        )
        for container in spec["containers"]:
            if container["name"] in given:  # the admission webhook (PodsOnly)
                container["resources"] = {k: v for k, v in given[container["name"]].items() if v}
        self.pods[name] = {
            "metadata": {
                "namespace": owner["metadata"]["namespace"],
                "name": name,
                "uid": f"uid-{name}-{next(self._names)}",
                "resourceVersion": str(next(self._versions)),
                "labels": {**(template.get("metadata") or {}).get("labels", {}), **labels},
                "ownerReferences": [{"kind": kind, "name": owner_name, "controller": True}],
            },
            "spec": spec,
            "status": {
                "phase": "Pending" if self.unschedulable else "Running",
                "conditions": [{"type": "Ready", "status": "False" if self.unschedulable else "True"}],
                "containerStatuses": [
                    {"name": c["name"], "resources": copy.deepcopy(c.get("resources", {})), "restartCount": 0}
                    for c in spec["containers"]
                ],
            },
        }

    def _kubelet(self, pod: dict[str, Any]) -> None:
        conditions = [c for c in pod["status"]["conditions"] if c["type"] != "PodResizePending"]
        for container in pod["spec"]["containers"]:
            (status,) = [s for s in pod["status"]["containerStatuses"] if s["name"] == container["name"]]
            wanted = container.get("resources", {})
            if status["resources"] == wanted:
                continue
            if self.full_for_all or (self.full and _raises(status["resources"], wanted)):
                conditions.append(
                    {
                        "type": "PodResizePending",
                        "status": "True",
                        "reason": "Deferred",
                        "message": "Node didn't have enough resource: memory",
                    }
                )
                continue
            status["resources"] = copy.deepcopy(wanted)
        pod["status"]["conditions"] = conditions

    @staticmethod
    def _template(body: dict[str, Any]) -> dict[str, Any]:
        if body["kind"] == "CronJob":
            return body["spec"]["jobTemplate"]["spec"]["template"]
        return body["spec"]["template"]


# ---------------------------------------------------------------- patches as the API server applies them


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A strategic merge of the shapes rightsizer sends: maps merged, None deletes, container lists
    merged by name."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        elif isinstance(value, list) and key in ("containers", "initContainers"):
            by_name = {c["name"]: c for c in target.setdefault(key, [])}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    target[key].append(copy.deepcopy(item))
        else:
            target[key] = _without_nones(copy.deepcopy(value))


def _without_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    return value


def json_patch(obj: dict[str, Any], operations: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """``test``, ``replace`` and ``add`` operations; a failed test: PatchConflict (the API server's 422)."""
    result = copy.deepcopy(obj)
    for op in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/")]
        node: Any = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "test":
            if (isinstance(node, dict) and last not in node) or node[key] != op["value"]:
                raise PatchConflict(f"{name}: testing value {op['path']} failed")
        elif op["op"] in ("replace", "add"):
            node[key] = copy.deepcopy(op["value"])
    return result


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps(a.get("spec"), sort_keys=True) == json.dumps(b.get("spec"), sort_keys=True)


def _hash(template: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(template.get("spec"), sort_keys=True).encode()).hexdigest()[:8]


def _owner(pod: dict[str, Any]) -> str:
    return pod["metadata"]["ownerReferences"][0]["name"]


def _of(pod: dict[str, Any], workload: dict[str, Any]) -> bool:
    name = workload["metadata"]["name"]
    owner = pod["metadata"]["ownerReferences"][0]
    if workload["kind"] == "Deployment":
        return owner["kind"] == "ReplicaSet" and owner["name"].startswith(f"{name}-")
    return owner["kind"] == workload["kind"] and owner["name"] == name


def _raises(running: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a resize asks the node for more than the pod has (any request goes up)."""
    for resource, value in (wanted.get("requests") or {}).items():
        old = (running.get("requests") or {}).get(resource)
        if old is None or parse(value) > parse(old):
            return True
    return False


def _qos(pod: dict[str, Any]) -> str:
    return pod_qos_class([resources_of(c.get("resources")) for c in pod["spec"]["containers"]])

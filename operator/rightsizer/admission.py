"""New pods of workloads whose templates rightsizer never edits (``auto.updateMode: PodsOnly``, for
templates owned by Argo CD or Flux): the resources their running pods were resized to are kept in
the workload's ``rightsizer.io/pod-resources`` annotation, and rightsizer's mutating admission
webhook gives every new pod of the workload those resources. Pure: ``controller/handlers.py``
serves the webhook.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from rightsizer.model import Resources
from rightsizer.quantity import QuantityError, parse
from rightsizer.workload import ANNOTATION_PREFIX

POD_RESOURCES = ANNOTATION_PREFIX + "pod-resources"


def pod_resources(annotations: dict[str, str]) -> dict[str, Resources] | None:
    """The resources new pods get (container -> resources), or None (no annotation, or one that
    cannot be read: then pods are created as their template says)."""
    text = annotations.get(POD_RESOURCES)
    if not text:
        return None
    try:
        raw = json.loads(text)
        return {
            container: Resources(
                requests={r: parse(v) for r, v in (values.get("requests") or {}).items()},
                limits={r: parse(v) for r, v in (values.get("limits") or {}).items()},
            )
            for container, values in raw.items()
        }
    except (ValueError, AttributeError, QuantityError):
        return None


def pod_resources_annotation(resources: dict[str, Resources]) -> str:
    return json.dumps({c: r.to_quantities() for c, r in resources.items()}, sort_keys=True)


def mutated_containers(
    pod_spec: dict[str, Any], target: dict[str, Resources]
) -> dict[str, list[dict[str, Any]]]:
    """The pod spec's container lists (``containers``, ``initContainers``) with each targeted
    container's resources replaced; only the lists that change, empty when none does."""
    changed: dict[str, list[dict[str, Any]]] = {}
    for field in ("initContainers", "containers"):
        containers = copy.deepcopy(pod_spec.get(field) or [])
        touched = False
        for container in containers:
            resources = target.get(container["name"])
            if resources is None:
                continue
            quantities = resources.to_quantities()
            wanted = {kind: values for kind, values in quantities.items() if values}
            if (container.get("resources") or {}) != wanted:
                container["resources"] = wanted
                touched = True
        if touched:
            changed[field] = containers
    return changed

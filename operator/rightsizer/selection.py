"""Which workloads a policy targets, from the operator's indexes of workloads."""

from __future__ import annotations

from collections.abc import Iterable

from rightsizer.policy import PolicySpec
from rightsizer.workload import WorkloadView


def select_targets(
    spec: PolicySpec, workloads: Iterable[WorkloadView]
) -> tuple[list[WorkloadView], list[str]]:
    """The policy's workloads (sorted by kind and name), and the ``Kind/name`` asked for if it is missing."""
    workloads = list(workloads)
    if spec.target_name is not None:
        found = [w for w in workloads if w.kind.name == spec.target_kind and w.name == spec.target_name]
        return found, ([] if found else [f"{spec.target_kind}/{spec.target_name}"])
    assert spec.selector is not None
    selected = [
        w for w in workloads if w.kind.name in spec.selector_kinds and spec.selector.matches(w.labels)
    ]
    return sorted(selected, key=lambda w: (w.kind.name, w.name)), []

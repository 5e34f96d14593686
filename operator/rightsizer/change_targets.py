"""Where a change's targets stand as the operator sees them: the workload's pod template, and the
HPA targets it moves. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from rightsizer.change import Change
from rightsizer.hpa import Autoscaler, TargetRetune
from rightsizer.model import Resources
from rightsizer.pod_progress import holds
from rightsizer.workload import WorkloadView

TemplateState = Literal["before", "after", "other"]


def template_state(change: Change, workload: WorkloadView) -> TemplateState:
    """Whether the template's changed containers hold the resources from before the change, those it
    changes them to, or something else (somebody else changed them)."""
    for name, wanted in (("before", change.before), ("after", change.after)):
        if all(holds(workload.containers.get(c, Resources()), r) for c, r in wanted.items()):
            return "before" if name == "before" else "after"
    return "other"


def at_value(autoscalers: Iterable[Autoscaler], retune: TargetRetune) -> int | None:
    """The utilization target an HPA of the operator's index has for ``retune``'s metric (None: no
    such HPA or metric)."""
    for hpa in autoscalers:
        if hpa.name != retune.hpa:
            continue
        for metric in hpa.metrics:
            if metric.resource == retune.resource and metric.container == retune.container:
                return metric.utilization
    return None

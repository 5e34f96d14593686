"""Carrying out one step of the change machine (``change_steps.Step``) against the cluster.

The record first (fenced, ``WorkloadWriter``); if it cannot be written nothing else is. Then the
effects in order (a forward step stops at the first that fails); then, if every effect succeeded,
the record's removal. What happened comes back as a ``Carried`` for the report: failures (retried
at the next evaluation, since the next step is decided from what is observed then), resizes the API
server refused (the machine decides what that means), and the Events the HPA writes add.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from rightsizer.change import CHANGE
from rightsizer.change_steps import (
    AdoptTemplate,
    Effect,
    Evict,
    MoveTargets,
    Notice,
    PatchTemplate,
    RecordWrite,
    Resize,
    Step,
)
from rightsizer.controller.adopt import NotYet, StrategyRecord, adopt_template, changes_to, template_patch
from rightsizer.controller.hpa_targets import move_targets
from rightsizer.controller.kube import EvictionRefused, PatchConflict, ResizeRefused
from rightsizer.controller.workload_writer import WorkloadWriter
from rightsizer.model import Resources
from rightsizer.pods import PodView
from rightsizer.units import RESOURCES


@dataclass
class Carried:
    """What carrying out a step did."""

    written: bool = True
    """Its record write went through (or it had none)."""
    rejected: bool = False
    """A write was refused by the API server (not a conflict): worth a Warning."""
    failures: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    """Pods whose resize the API server refused, with its reason."""
    notices: list[Notice] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    """The HPA targets moved, as a change's message adds them (``HorizontalPodAutoscaler web: ...``)."""

    @property
    def ok(self) -> bool:
        return self.written and not self.failures and not self.refused


def carry_out(step: Step, writer: WorkloadWriter, pods: list[PodView]) -> Carried:
    """Write the record, run the effects, then write the record's removal if all went well."""
    carried = Carried()
    if step.write is not None and not _write(step.write, writer, carried):
        carried.written = False
        return carried
    for effect in step.effects:
        _run(effect, writer, pods, carried)
        if step.stop_on_failure and not carried.ok:
            break
    if step.finish is not None and carried.ok:
        _write(step.finish, writer, carried)
    return carried


def _write(write: RecordWrite, writer: WorkloadWriter, carried: Carried) -> bool:
    annotations: dict[str, str | None] = {
        **write.annotations,
        CHANGE: write.record.to_annotation() if write.record else None,
    }
    patch: dict[str, Any] = {"metadata": {"annotations": annotations}}
    if write.template is not None:
        patch.update(_template_patch(writer, write.template))
    try:
        writer.patch(patch, template=write.template)
    except PatchConflict as error:
        carried.failures.append(f"{error}; retried at the next evaluation")
        return False
    except ApiException as error:
        carried.rejected = True
        carried.failures.append(f"patch rejected by the API server: {error.status} {error.reason}")
        return False
    return True


def _run(effect: Effect, writer: WorkloadWriter, pods: list[PodView], carried: Carried) -> None:
    try:
        if isinstance(effect, Resize):
            writer.cluster.resize_pod(effect.pod.namespace, effect.pod.name, resize_operations(effect))
        elif isinstance(effect, Evict):
            writer.cluster.evict_pod(effect.pod.namespace, effect.pod.name, effect.pod.uid)
        elif isinstance(effect, MoveTargets):
            _move(effect, writer, carried)
        elif isinstance(effect, PatchTemplate):
            writer.patch(_template_patch(writer, effect.target), template=effect.target)
        else:
            _adopt(effect, writer, pods)
    except ResizeRefused as error:
        assert isinstance(effect, Resize)
        carried.refused.append((effect.pod.name, str(error)))
    except NotYet as error:
        carried.failures.append(f"waiting: {error}")
    except EvictionRefused as error:
        assert isinstance(effect, Evict)
        carried.failures.append(
            f"eviction of pod {effect.pod.name} refused: {error}; tried again at the next evaluation"
        )
    except (PatchConflict, ApiException) as error:
        carried.rejected = carried.rejected or isinstance(error, ApiException)
        carried.failures.append(f"{_what(effect)}: {_said(error)}; tried again at the next evaluation")


def _move(effect: MoveTargets, writer: WorkloadWriter, carried: Carried) -> None:
    moves = move_targets(writer.cluster, writer.workload.namespace, effect.retunes, back=effect.back)
    name = writer.workload.reference_name
    carried.notices += [
        Notice(False, "AutoscalerRetuned", text) for text in moves.retuned(name, back=effect.back)
    ]
    carried.notices += [Notice(True, "AutoscalerLeftAlone", why) for _, why in moves.left_alone]
    carried.moved += [retune.describe(back=effect.back) for retune in moves.moved]
    if moves.failure:
        carried.failures.append(moves.failure)


def _adopt(effect: AdoptTemplate, writer: WorkloadWriter, pods: list[PodView]) -> None:
    record = effect.record

    def kept(original: dict[str, Any]) -> dict[str, str | None]:
        return {CHANGE: replace(record, strategy=original).to_annotation()}

    then: dict[str, str | None] = {}
    if effect.then is not None:
        then[CHANGE] = replace(effect.then, strategy=None).to_annotation()
    elif record.strategy is not None:
        then[CHANGE] = replace(record, strategy=None).to_annotation()
    strategy = StrategyRecord(recorded=record.strategy, record=kept)
    running = [p for p in pods if not p.deleting]
    adopt_template(writer.workload, effect.target, running, writer, then, strategy)


def resize_operations(effect: Resize) -> list[dict[str, Any]]:
    """A JSON patch of ``pods/resize``: test that it is the pod seen (uid) and that each container
    asks for what it was seen asking for, then set the target resources."""
    operations: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": effect.pod.uid}]
    for name, target in effect.target.items():
        container = effect.pod.containers.get(name)
        if container is None:
            continue
        path = f"{container.spec_path}/resources"
        operations += [
            {"op": "test", "path": path, "value": container.raw_resources},
            {"op": "replace", "path": path, "value": with_resources(container.raw_resources, target)},
        ]
    return operations


def with_resources(raw: dict[str, Any], target: Resources) -> dict[str, Any]:
    """A container's ``resources`` with its CPU and memory requests and limits those of ``target``,
    everything else (other resources, claims) as it was."""
    wanted = target.to_quantities()
    merged: dict[str, Any] = {key: value for key, value in raw.items() if key not in ("requests", "limits")}
    for kind in ("requests", "limits"):
        values = {r: v for r, v in (raw.get(kind) or {}).items() if r not in RESOURCES}
        values.update(wanted[kind])
        if values:
            merged[kind] = values
    return merged


def _template_patch(writer: WorkloadWriter, target: dict[str, Resources]) -> dict[str, Any]:
    return template_patch(writer.workload, changes_to(writer.workload, target, writer.template))


def _what(effect: Effect) -> str:
    if isinstance(effect, Resize):
        return f"resize of pod {effect.pod.name}"
    if isinstance(effect, Evict):
        return f"eviction of pod {effect.pod.name}"
    if isinstance(effect, MoveTargets):
        return "HorizontalPodAutoscaler targets"
    return "the template"


def _said(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"refused by the API server: {error.status} {error.reason}"
    return str(error)

"""HorizontalPodAutoscalers that scale a target on the utilization of a resource's request.

An HPA whose metric is ``Resource`` or ``ContainerResource`` with ``target.type: Utilization``
compares usage with the *request*: 60% of a 1-core request scales out at 600m a pod. A new request
moves that point (at 750m it would scale out at 450m). So, per ``spec.hpa``:

- ``KeepRequest`` (default): the request of each resource an HPA scales on is left as it is, and
  the recommendation says why; its limit is still the one the usage calls for (never below the kept
  request), and the other resource is sized as usual;
- ``Retune``: the request is recommended as usual, and the HPA's ``averageUtilization`` re-tuned
  to ``round(old x old request / new request)`` (at least 1): the scale-out point in cores or bytes
  a pod stays where it was, within the rounding to a whole percent. Auto mode patches the HPA with
  the change it applies (``TargetRetune``, ``target_patch``; the order is ``controller/autoapply.py``'s).

A ``Resource`` metric is the pod's utilization: the sum of its containers' usage over the sum of
their requests, so every container's request of that resource counts (containers without a
recommendation count at their current request). A ``ContainerResource`` metric is one container's.

Pure functions: HPA objects come in as plain dicts (the operator's index) or from
kube-state-metrics' series (``rightsizer recommend``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.qos import qos_class
from rightsizer.settings import HPA_MODES
from rightsizer.units import CPU, MEMORY, RESOURCES, format_quantity

KEEP_REQUEST, RETUNE = HPA_MODES
MIN_UTILIZATION = 1
"""autoscaling/v2 accepts any averageUtilization above 0 (above 100 is usage above the request)."""
EVIDENCE_KEY = "horizontalPodAutoscalers"
RESOURCE_NAMES = {CPU: "CPU", MEMORY: "memory"}


@dataclass(frozen=True)
class ScalingMetric:
    """One utilization target of an HPA: ``resource`` at ``utilization`` percent of the request."""

    resource: str
    utilization: int
    container: str | None = None
    """A ``ContainerResource`` metric's container; None: the pod's utilization, all containers."""

    def covers(self, container: str) -> bool:
        return self.container is None or self.container == container


@dataclass(frozen=True)
class Autoscaler:
    """An HPA as rightsizer needs it: its target and the utilization targets it scales on."""

    namespace: str
    name: str
    target_kind: str
    target_name: str
    metrics: tuple[ScalingMetric, ...]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Autoscaler:
        """From an autoscaling/v2 HorizontalPodAutoscaler object; metrics other than CPU or memory
        utilization (``AverageValue``, ``Pods``, ``External``...) do not depend on a request."""
        metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        metrics = []
        for metric in spec.get("metrics") or []:
            if metric.get("type") == "Resource":
                source, container = metric.get("resource") or {}, None
            elif metric.get("type") == "ContainerResource":
                source = metric.get("containerResource") or {}
                container = source.get("container")
            else:
                continue
            wanted = source.get("target") or {}
            utilization = wanted.get("averageUtilization")
            if source.get("name") in RESOURCES and wanted.get("type") == "Utilization" and utilization:
                metrics.append(ScalingMetric(source["name"], int(utilization), container))
        return cls(
            metadata.get("namespace", ""),
            metadata.get("name", ""),
            target.get("kind", ""),
            target.get("name", ""),
            tuple(metrics),
        )

    def scales(self, key: ContainerKey) -> bool:
        return (self.namespace, self.target_kind, self.target_name) == (key.namespace, key.kind, key.name)


def from_state_metrics(rows: Iterable[Mapping[str, Any]]) -> list[Autoscaler]:
    """HPAs from kube-state-metrics' series (``promql.autoscaler_query``: one row per HPA and
    resource, its target joined in, ``value`` the utilization). kube-state-metrics does not say
    which container a ``ContainerResource`` metric is about: it counts as the pod's (every
    container's request is kept, the safe side)."""
    found: dict[tuple[str, str, str, str], list[ScalingMetric]] = {}
    for row in rows:
        key = (
            row["namespace"],
            row["horizontalpodautoscaler"],
            row["scaletargetref_kind"],
            row["scaletargetref_name"],
        )
        if row["metric_name"] in RESOURCES and row["value"] > 0:
            found.setdefault(key, []).append(ScalingMetric(row["metric_name"], round(row["value"])))
    return [Autoscaler(*key, tuple(sorted(metrics, key=str))) for key, metrics in sorted(found.items())]


def retuned_utilization(utilization: int, old_request: Decimal, new_request: Decimal) -> int:
    """The target that scales out at the same usage a pod: ``old x old_request / new_request``,
    rounded to a whole percent, at least ``MIN_UTILIZATION``."""
    exact = Decimal(utilization) * old_request / new_request
    return max(MIN_UTILIZATION, int(exact.to_integral_value(rounding=ROUND_HALF_UP)))


def with_autoscalers(
    recommendations: Sequence[Recommendation],
    autoscalers: Iterable[Autoscaler],
    mode: str,
    *,
    skip: Collection[ContainerKey] = (),
) -> list[Recommendation]:
    """The recommendations with what the HPAs of their workloads call for (``mode``: KeepRequest or
    Retune); ``skip``: containers that are not part of the running pod (init containers)."""
    result = list(recommendations)
    for hpa in autoscalers:
        for metric in hpa.metrics:
            covered = [
                i
                for i, r in enumerate(result)
                if hpa.scales(r.key) and metric.covers(r.key.container) and r.key not in skip
            ]
            if mode == RETUNE and any(result[i].ready for i in covered):
                note, target = retune(hpa, metric, [result[i] for i in covered])
                for i in covered:
                    result[i] = _noted(result[i], note, _entry(hpa, metric, retuned=target))
            elif mode != RETUNE:
                for i in covered:
                    result[i] = keep_request(result[i], hpa, metric)
    return result


def keep_request(rec: Recommendation, hpa: Autoscaler, metric: ScalingMetric) -> Recommendation:
    """``rec`` with the current request of ``metric``'s resource kept (recommended and confident),
    and a warning saying why. Limits stay as the usage calls for them, never below the kept request."""
    resource, current = metric.resource, rec.current.requests.get(metric.resource)
    if rec.recommended is None:
        return rec
    if current is None:
        warning = (
            f"HorizontalPodAutoscaler {hpa.name} scales on {_utilization(metric)}, but the container has "
            f"no {RESOURCE_NAMES[resource]} request: the HPA cannot compute it"
        )
        return _noted(rec, warning, _entry(hpa, metric))
    recommended = _with_request(rec.recommended, resource, current)
    confident = _with_request(rec.confident, resource, current) if rec.confident is not None else None
    warning = (
        f"{resource} request left at {format_quantity(resource, current)}: HorizontalPodAutoscaler "
        f"{hpa.name} scales on {_utilization(metric)} of it"
    )
    noted = _noted(rec, warning, _entry(hpa, metric))
    return replace(noted, recommended=recommended, confident=confident, qos_class=qos_class(recommended))


def retune(
    hpa: Autoscaler, metric: ScalingMetric, covered: Sequence[Recommendation]
) -> tuple[str, int | None]:
    """What the HPA's target would become with the recommended requests of the ``covered``
    containers (those without a recommendation at their current request), and the note saying so;
    None when a container has no request (the HPA cannot compute the utilization at all)."""
    resource = metric.resource
    old_sum = _request_sum(r.current.requests.get(resource) for r in covered)
    if old_sum is None:
        return (
            f"HorizontalPodAutoscaler {hpa.name} scales on {_utilization(metric)}, but not every "
            f"container has a {RESOURCE_NAMES[resource]} request: the HPA cannot compute it",
            None,
        )
    new_sum = sum((_new_request(r, resource) for r in covered), Decimal(0))
    target = retuned_utilization(metric.utilization, old_sum, new_sum)
    point = format_quantity(resource, old_sum * metric.utilization / 100)
    change = f"{format_quantity(resource, old_sum)} -> {format_quantity(resource, new_sum)}"
    return (
        f"HorizontalPodAutoscaler {hpa.name} scales on {_utilization(metric)}: with the {resource} "
        f"request of a pod {change}, its target would become {target}% to scale out at the same "
        f"{point} a pod",
        target,
    )


def _request_sum(amounts: Iterable[Decimal | None]) -> Decimal | None:
    """The requests an HPA metric divides usage by, summed; None if a container has none (the
    HPA cannot compute the utilization at all)."""
    total = Decimal(0)
    for amount in amounts:
        if amount is None:
            return None
        total += amount
    return total


def _new_request(rec: Recommendation, resource: str) -> Decimal:
    recommended = rec.recommended.requests.get(resource) if rec.recommended is not None else None
    return recommended if recommended is not None else rec.current.requests[resource]


def _with_request(resources: Resources, resource: str, request: Decimal) -> Resources:
    limits = dict(resources.limits)
    if resource in limits:
        limits[resource] = max(limits[resource], request)
    return Resources(requests={**resources.requests, resource: request}, limits=limits)


def _entry(hpa: Autoscaler, metric: ScalingMetric, retuned: int | None = None) -> dict[str, Any]:
    """The evidence of one HPA metric: name, resource, its target and, with Retune, the new one."""
    entry: dict[str, Any] = {
        "name": hpa.name,
        "resource": metric.resource,
        "averageUtilization": metric.utilization,
    }
    if metric.container is not None:
        entry["container"] = metric.container
    if retuned is not None:
        entry["retunedUtilization"] = retuned
    return entry


def _noted(rec: Recommendation, warning: str, entry: dict[str, Any]) -> Recommendation:
    evidence = {**rec.evidence, EVIDENCE_KEY: [*(rec.evidence.get(EVIDENCE_KEY) or []), entry]}
    return replace(rec, warnings=(*rec.warnings, warning), evidence=evidence)


def _utilization(metric: ScalingMetric) -> str:
    of = f" of container {metric.container}" if metric.container else ""
    return f"{metric.utilization}% {RESOURCE_NAMES[metric.resource]} utilization{of}"


# ---------------------------------------------------------------- Auto mode: retuning the HPA


@dataclass(frozen=True)
class TargetRetune:
    """One HPA utilization target that Auto mode moves with the requests it changes (``spec.hpa:
    Retune``): ``before`` is the rollback point, ``after`` scales out at the same usage a pod."""

    hpa: str
    resource: str
    container: str | None
    before: int
    after: int

    @property
    def lowers(self) -> bool:
        """A lower target (the request went up): scales out sooner, so it is set before the pods change."""
        return self.after < self.before

    def describe(self, *, back: bool = False) -> str:
        of = f" of container {self.container}" if self.container else ""
        start, goal = (self.after, self.before) if back else (self.before, self.after)
        return (
            f"HorizontalPodAutoscaler {self.hpa}: {RESOURCE_NAMES[self.resource]} utilization target{of} "
            f"{start}% -> {goal}%"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "hpa": self.hpa,
            "resource": self.resource,
            "container": self.container,
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TargetRetune:
        return cls(raw["hpa"], raw["resource"], raw.get("container"), int(raw["before"]), int(raw["after"]))


def retunes_for_change(
    autoscalers: Iterable[Autoscaler],
    key: ContainerKey,
    before: Mapping[str, Resources],
    changed: Mapping[str, Resources],
) -> tuple[TargetRetune, ...]:
    """The HPA targets to move when the pod template's containers (``before``, the workload of
    ``key``; its container is ignored) get the ``changed`` resources. A metric whose containers do
    not all have a request (the HPA cannot compute it), whose request sum does not move, or whose
    target rounds to the same percent, is left alone."""
    after = {**before, **changed}
    retunes = []
    for hpa in autoscalers:
        if not hpa.scales(key):
            continue
        for metric in hpa.metrics:
            covered = [name for name in before if metric.covers(name)]
            old_sum = _request_sum(before[name].requests.get(metric.resource) for name in covered)
            new_sum = _request_sum(after[name].requests.get(metric.resource) for name in covered)
            if not covered or old_sum is None or new_sum is None:
                continue
            target = retuned_utilization(metric.utilization, old_sum, new_sum)
            if target != metric.utilization:
                retunes.append(
                    TargetRetune(hpa.name, metric.resource, metric.container, metric.utilization, target)
                )
    return tuple(retunes)


def target_patch(
    body: Mapping[str, Any], retunes: Iterable[TargetRetune], *, back: bool = False
) -> tuple[list[dict[str, Any]], list[TargetRetune], list[tuple[TargetRetune, str]]]:
    """A JSON patch that moves each of ``retunes`` (one HPA's) from ``before`` to ``after`` (``back``:
    the other way); the retunes it moves; and those left alone, with why. Each move is guarded by a
    ``test`` of the value it starts from, so a target somebody changed in the meantime fails the
    patch instead of being overwritten; one already at its value needs nothing (a retry after a
    patch that got through)."""
    metrics = (body.get("spec") or {}).get("metrics") or []
    operations: list[dict[str, Any]] = []
    moved, left_alone = [], []
    for retune in retunes:
        start, goal = (retune.after, retune.before) if back else (retune.before, retune.after)
        path, current = _target_path(metrics, retune)
        if current == goal:
            continue
        if path is None or current != start:
            now = "is gone" if path is None else f"is {current}%"
            why = (
                f"{retune.describe(back=back)} not made: the target {now}, not {start}%; somebody else "
                "changed it, so rightsizer leaves it alone"
            )
            left_alone.append((retune, why))
            continue
        operations += [
            {"op": "test", "path": path, "value": start},
            {"op": "replace", "path": path, "value": goal},
        ]
        moved.append(retune)
    return operations, moved, left_alone


def _target_path(metrics: Sequence[Mapping[str, Any]], retune: TargetRetune) -> tuple[str | None, Any]:
    """The JSON pointer to the ``averageUtilization`` a retune moves, and its value (None, None if
    the HPA no longer has that metric)."""
    kind, field = (
        ("Resource", "resource") if retune.container is None else ("ContainerResource", "containerResource")
    )
    for index, metric in enumerate(metrics):
        source = metric.get(field) or {}
        target = source.get("target") or {}
        if (
            metric.get("type") == kind
            and source.get("name") == retune.resource
            and source.get("container") == retune.container
            and target.get("type") == "Utilization"
        ):
            return f"/spec/metrics/{index}/{field}/target/averageUtilization", target.get(
                "averageUtilization"
            )
    return None, None

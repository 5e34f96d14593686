"""What the cluster allows: LimitRanges, ResourceQuotas and the largest node, checked before a patch.

A change that pods could not be admitted or scheduled with is worse than no change: the new
ReplicaSet's pods would be rejected or stay Pending while the old ones are scaled down.
Each function returns human-readable violations; an empty list means the change fits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rightsizer.model import Resources
from rightsizer.quantity import QuantityError, parse
from rightsizer.units import CPU, MEMORY, RESOURCES, format_quantity


def limit_range_violations(containers: dict[str, Resources], limit_ranges: list[dict[str, Any]]) -> list[str]:
    """Check each container against ``type: Container`` limits of the namespace's LimitRanges.

    As the LimitRanger admission plugin does: a missing limit takes the range's default (which
    itself defaults to ``max``), requests must be >= min and <= max, limits <= max, and
    limit / request <= maxLimitRequestRatio.
    """
    violations: list[str] = []
    for limit_range in limit_ranges:
        name = limit_range["metadata"]["name"]
        for item in (limit_range.get("spec") or {}).get("limits") or []:
            if item.get("type") != "Container":
                continue
            for container, resources in containers.items():
                for resource in RESOURCES:
                    violations.extend(
                        f"LimitRange {name}: container {container}: {problem}"
                        for problem in _container_limit_problems(resources, resource, item)
                    )
    return violations


def _container_limit_problems(resources: Resources, resource: str, item: dict[str, Any]) -> list[str]:
    low = _amount(item.get("min"), resource)
    high = _amount(item.get("max"), resource)
    ratio = _amount(item.get("maxLimitRequestRatio"), resource)
    default = _amount(item.get("default"), resource) or high
    request = resources.requests.get(resource)
    limit = resources.limits.get(resource, default)
    if request is None:
        request = limit

    def show(amount: Decimal) -> str:
        return format_quantity(resource, amount)

    problems = []
    if low is not None and request is not None and request < low:
        problems.append(f"{resource} request {show(request)} is below the minimum {show(low)}")
    if high is not None and limit is not None and limit > high:
        problems.append(f"{resource} limit {show(limit)} is above the maximum {show(high)}")
    if high is not None and request is not None and request > high:
        problems.append(f"{resource} request {show(request)} is above the maximum {show(high)}")
    if ratio is not None and request and limit is not None and limit / request > ratio:
        problems.append(
            f"{resource} limit/request {limit / request:.2f} is above maxLimitRequestRatio {ratio}"
        )
    return problems


def quota_violations(
    before: dict[str, Resources], after: dict[str, Resources], replicas: int, quotas: list[dict[str, Any]]
) -> list[str]:
    """Check that ``replicas`` pods with the new resources fit the namespace's ResourceQuotas.

    Only the increase counts (used already includes today's pods). A quota on limits also
    requires every container to set that limit, or the pods are rejected.
    """
    violations = []
    for quota in quotas:
        name = quota["metadata"]["name"]
        hard = (quota.get("status") or {}).get("hard") or (quota.get("spec") or {}).get("hard") or {}
        used = (quota.get("status") or {}).get("used") or {}
        for key, limit_text in hard.items():
            scope_resource = _quota_key(key)
            if scope_resource is None:
                continue
            kind, resource = scope_resource
            if kind == "limits":
                unset = [c for c, r in after.items() if resource not in r.limits]
                if unset:
                    violations.append(
                        f"ResourceQuota {name} limits {resource}, but the change leaves no {resource} limit "
                        f"on container(s) {', '.join(unset)}: pods would be rejected"
                    )
                    continue
            increase = replicas * (_pod_total(after, kind, resource) - _pod_total(before, kind, resource))
            if increase <= 0:
                continue
            hard_amount = parse(limit_text)
            used_amount = parse(used.get(key, "0"))
            if used_amount + increase > hard_amount:
                total = format_quantity(resource, used_amount + increase)
                violations.append(
                    f"ResourceQuota {name}: {key} would reach {total}"
                    f" of {format_quantity(resource, hard_amount)} ({replicas} pods)"
                )
    return violations


def node_fit_violations(pod: dict[str, Resources], nodes: list[dict[str, Any]]) -> list[str]:
    """The pod's summed requests must fit one node's allocatable, or it stays Pending forever.

    With no Node objects visible (a fresh control plane, or no RBAC for nodes) nothing is said.
    """
    if not nodes:
        return []
    needed = {
        r: sum((res.requests.get(r, Decimal(0)) for res in pod.values()), Decimal(0)) for r in RESOURCES
    }
    for node in nodes:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        fits = all(needed[r] <= parse(allocatable.get(r, "0")) for r in RESOURCES)
        if fits:
            return []
    largest = max(
        nodes, key=lambda n: parse(((n.get("status") or {}).get("allocatable") or {}).get(CPU, "0"))
    )
    allocatable = largest["status"].get("allocatable") or {}
    cpu, memory = format_quantity(CPU, needed[CPU]), format_quantity(MEMORY, needed[MEMORY])
    return [
        f"pod requests cpu {cpu}, memory {memory} "
        f"fit no node (largest: {largest['metadata']['name']} with cpu {allocatable.get(CPU)}, "
        f"memory {allocatable.get(MEMORY)} allocatable): pods would stay Pending"
    ]


def _quota_key(key: str) -> tuple[str, str] | None:
    if key in RESOURCES:
        return "requests", key
    kind, _, resource = key.partition(".")
    if kind in ("requests", "limits") and resource in RESOURCES:
        return kind, resource
    return None


def _pod_total(pod: dict[str, Resources], kind: str, resource: str) -> Decimal:
    return sum((getattr(r, kind).get(resource, Decimal(0)) for r in pod.values()), Decimal(0))


def _amount(values: dict[str, str] | None, resource: str) -> Decimal | None:
    if not values or resource not in values:
        return None
    try:
        return parse(values[resource])
    except QuantityError:
        return None

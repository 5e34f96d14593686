"""Render recommendations for people (a table) and for programs (JSON, YAML)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import yaml

from rightsizer.cost import DEFAULT_PRICES, MonthlyCost, Prices, recommendation_cost
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.settings import HOURS_PER_MONTH
from rightsizer.shards import FailedScope
from rightsizer.timestamps import format_time
from rightsizer.units import CPU, MEMORY, format_quantity

FORMATS = ("table", "json", "yaml")
COLUMNS = (
    "NAMESPACE",
    "WORKLOAD",
    "CONTAINER",
    "CPU REQUEST",
    "CPU LIMIT",
    "MEMORY REQUEST",
    "MEMORY LIMIT",
    "QOS",
    "CONFIDENCE",
    "MONTHLY COST",
)


@dataclass(frozen=True)
class Costing:
    """What the report prices requests with: ``prices``, and each container's pods (``replicas``)."""

    replicas: Mapping[ContainerKey, float] = field(default_factory=dict)
    prices: Prices = DEFAULT_PRICES

    def of(self, rec: Recommendation) -> MonthlyCost:
        return recommendation_cost(rec, self.replicas.get(rec.key, 1.0), self.prices)

    def describe(self) -> str:
        return (
            f"{self.prices.cpu_per_core_hour:g} per core-hour, {self.prices.memory_per_gib_hour:g} per "
            f"GiB-hour of request, {HOURS_PER_MONTH} h a month, x the pods that ran on average over the "
            "last day"
        )


def render(
    recommendations: list[Recommendation],
    output: str,
    *,
    end: float | None = None,
    failed: Mapping[FailedScope, list[str]] | None = None,
    costing: Costing | None = None,
) -> str:
    """The report in one of ``FORMATS``; ``failed``: pods Prometheus could not answer for, and the
    workloads left out for them; ``costing``: how requests are priced (default prices, 1 pod each)."""
    failed = failed or {}
    costing = costing or Costing()
    if output == "table":
        return render_table(recommendations, failed, costing)
    document = to_document(recommendations, end, costing)
    if failed:
        document["failedScopes"] = [
            {**scope.to_dict(), "workloads": names} for scope, names in failed.items()
        ]
    if output == "json":
        return json.dumps(document, indent=2)
    return yaml.safe_dump(document, sort_keys=False)


def to_document(
    recommendations: list[Recommendation], end: float | None = None, costing: Costing | None = None
) -> dict[str, Any]:
    costing = costing or Costing()
    entries = []
    for rec in recommendations:
        entry = rec.to_dict()
        replicas = costing.replicas.get(rec.key, 1.0)
        entry["monthlyCost"] = {**costing.of(rec).to_dict(), "replicas": round(replicas, 2)}
        entries.append(entry)
    total = total_of(recommendations, costing)
    document: dict[str, Any] = {
        "recommendations": entries,
        "monthlyCost": {
            **total.to_dict(),
            "hoursPerMonth": HOURS_PER_MONTH,
            "prices": costing.prices.to_dict(),
        },
    }
    if end is not None:
        document["evaluatedAt"] = format_time(datetime.fromtimestamp(end, UTC))
    return document


def total_of(recommendations: list[Recommendation], costing: Costing) -> MonthlyCost:
    costs = [costing.of(rec) for rec in recommendations]
    return MonthlyCost(sum(c.current for c in costs), sum(c.recommended for c in costs))


def render_table(
    recommendations: list[Recommendation],
    failed: Mapping[FailedScope, list[str]] | None = None,
    costing: Costing | None = None,
) -> str:
    """Current -> recommended per resource, with the change, and what the requests cost a month;
    the total, reasons, warnings and the scopes Prometheus could not answer for below the table."""
    costing = costing or Costing()
    rows = [COLUMNS]
    notes = []
    for rec in recommendations:
        workload = f"{rec.key.kind}/{rec.key.name}"
        if rec.recommended is None:
            rows.append((rec.key.namespace, workload, rec.key.container, *("-",) * 7))
            notes.append(
                f"{rec.key.namespace}/{rec.key.name}/{rec.key.container}: no recommendation: {rec.reason}"
            )
        else:
            rows.append(
                (
                    rec.key.namespace,
                    workload,
                    rec.key.container,
                    change(rec.current, rec.recommended, "requests", CPU),
                    change(rec.current, rec.recommended, "limits", CPU),
                    change(rec.current, rec.recommended, "requests", MEMORY),
                    change(rec.current, rec.recommended, "limits", MEMORY),
                    rec.qos_class or "-",
                    confidence(rec),
                    money_change(costing.of(rec)),
                )
            )
        notes.extend(
            f"{rec.key.namespace}/{rec.key.name}/{rec.key.container}: WARNING: {w}" for w in rec.warnings
        )
    for scope, names in (failed or {}).items():
        left_out = f" (no recommendation for {', '.join(names)})" if names else ""
        notes.append(f"{scope.name}: ERROR: Prometheus could not answer{left_out}: {scope.error}")
    if recommendations:
        total = total_of(recommendations, costing)
        notes.insert(0, f"monthly cost of the requests: {money_change(total)} ({costing.describe()})")
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    if not recommendations:
        lines.append("(no containers of a Deployment, StatefulSet, DaemonSet or CronJob in the window)")
    return "\n".join(lines + (["", *notes] if notes else []))


def change(current: Resources, recommended: Resources, kind: str, resource: str) -> str:
    """``100m -> 150m (+50%)``; ``none`` where no value is set."""
    before = getattr(current, kind).get(resource)
    after = getattr(recommended, kind).get(resource)
    text = f"{_show(resource, before)} -> {_show(resource, after)}"
    if before and after is not None and before > 0:
        percent = (after - before) / before * 100
        text += f" ({percent:+.0f}%)"
    return text


def money_change(cost: MonthlyCost) -> str:
    """``98.38 -> 31.20 (-68%)``: a month at today's requests, at the recommended ones."""
    text = f"{cost.current:.2f} -> {cost.recommended:.2f}"
    if cost.current > 0:
        text += f" ({cost.difference / cost.current * 100:+.0f}%)"
    return text


def confidence(rec: Recommendation) -> str:
    """``high``, ``medium (2.5d)``: the level, and the days of history when it is not high."""
    if rec.confidence is None:
        return "-"
    level = rec.confidence.level
    return level if level == "high" else f"{level} ({rec.confidence.days:.1f}d)"


def _show(resource: str, amount: Decimal | None) -> str:
    return "none" if amount is None else format_quantity(resource, amount)

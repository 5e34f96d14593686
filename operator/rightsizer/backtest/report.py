"""A backtest's figures: per container, per namespace and in all, as a table or a JSON document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rightsizer.backtest.replay import ContainerReplay
from rightsizer.backtest.run import BacktestResult
from rightsizer.backtest.score import Tally
from rightsizer.duration import format_duration
from rightsizer.settings import HOURS_PER_MONTH
from rightsizer.timestamps import format_time

FORMATS = ("table", "json", "html")


@dataclass(frozen=True)
class Figures:
    """Today's resources and the replayed ones over the span, side by side."""

    today: Tally
    replayed: Tally
    cost_today: float
    cost_replayed: float
    changes: int
    rollbacks: int

    @property
    def saved(self) -> float:
        return self.cost_today - self.cost_replayed

    def per_month(self, span_hours: float, amount: float) -> float:
        return amount * HOURS_PER_MONTH / span_hours if span_hours else 0.0

    def to_dict(self, span_hours: float) -> dict[str, Any]:
        return {
            "today": {**self.today.to_dict(), "cost": round(self.cost_today, 2)},
            "replayed": {**self.replayed.to_dict(), "cost": round(self.cost_replayed, 2)},
            "saved": round(self.saved, 2),
            "savedPerMonth": round(self.per_month(span_hours, self.saved), 2),
            "changes": self.changes,
            "rollbacks": self.rollbacks,
        }


def figures(result: BacktestResult, containers: list[ContainerReplay]) -> Figures:
    today, replayed = Tally(), Tally()
    for container in containers:
        for total, part in ((today, container.today), (replayed, container.replayed)):
            total.core_hours += part.core_hours
            total.gib_hours += part.gib_hours
            total.cpu_windows += part.cpu_windows
            total.cpu_over_limit += part.cpu_over_limit
            total.cpu_over_request += part.cpu_over_request
            total.memory_over_limit_hours += part.memory_over_limit_hours
            total.oom_kills += part.oom_kills
    prices = (result.prices.cpu_per_core_hour, result.prices.memory_per_gib_hour)
    moves = [move for container in containers for move in container.moves]
    return Figures(
        today,
        replayed,
        today.cost(*prices),
        replayed.cost(*prices),
        sum(move.action == "change" for move in moves),
        sum(move.action == "rollback" for move in moves),
    )


def all_containers(result: BacktestResult) -> Iterator[tuple[str, ContainerReplay]]:
    for namespace in result.namespaces:
        for workload in namespace.workloads:
            for container in workload.containers:
                yield namespace.namespace, container


def to_document(result: BacktestResult) -> dict[str, Any]:
    hours = result.span_hours
    request = result.request
    namespaces = []
    for namespace in result.namespaces:
        workloads = []
        for workload in namespace.workloads:
            containers = []
            for container in workload.containers:
                tl = container.timeline
                containers.append(
                    {
                        "container": tl.key.container,
                        **figures(result, [container]).to_dict(hours),
                        "resourcesToday": tl.today.to_quantities(),
                        "resourcesAtEnd": container.final.to_quantities(),
                        "moves": [
                            {
                                "time": _time(move.time),
                                "action": move.action,
                                "from": move.before.to_quantities(),
                                "to": move.after.to_quantities(),
                                "reason": move.reason,
                            }
                            for move in container.moves
                        ],
                        "lastReason": container.last_reason,
                    }
                )
            key = workload.containers[0].timeline.key
            workloads.append(
                {
                    "kind": key.kind,
                    "name": key.name,
                    "evaluations": workload.evaluations,
                    "blocked": workload.blocked,
                    "containers": containers,
                }
            )
        every = [c for w in namespace.workloads for c in w.containers]
        namespaces.append(
            {
                "namespace": namespace.namespace,
                "summary": figures(result, every).to_dict(hours),
                "workloads": workloads,
                "failedScopes": [scope.to_dict() for scope in namespace.failed],
            }
        )
    return {
        "span": {"start": _time(result.start), "end": _time(result.end), "hours": round(hours, 1)},
        "policy": {"name": request.policy.name, "notes": list(request.policy.notes)},
        "replayStep": format_duration(request.step_seconds),
        "bucket": format_duration(result.bucket_seconds),
        "prices": {**result.prices.to_dict(), "hoursPerMonth": HOURS_PER_MONTH},
        "summary": figures(result, [c for _, c in all_containers(result)]).to_dict(hours),
        "namespaces": namespaces,
        "queries": result.queries_sent,
    }


def render_json(result: BacktestResult) -> str:
    return json.dumps(to_document(result), indent=2)


COLUMNS = (
    "NAMESPACE",
    "WORKLOAD",
    "CONTAINER",
    "CHANGES",
    "OOM KILLS",
    "CPU > LIMIT",
    "CPU > REQUEST",
    "CORE-HOURS",
    "GIB-HOURS",
    "COST",
    "SAVED/MONTH",
)


def render_table(result: BacktestResult) -> str:
    """One row per container and per namespace: today's resources -> the replayed ones."""
    hours = result.span_hours
    rows: list[tuple[str, ...]] = [COLUMNS]
    for namespace in result.namespaces:
        every = []
        for workload in namespace.workloads:
            for container in workload.containers:
                key = container.timeline.key
                every.append(container)
                rows.append(
                    (
                        namespace.namespace,
                        f"{key.kind}/{key.name}",
                        key.container,
                        *_cells(result, [container]),
                    )
                )
        rows.append((namespace.namespace, "(all)", "", *_cells(result, every)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    total = figures(result, [c for _, c in all_containers(result)])
    start = datetime.fromtimestamp(result.start, UTC).strftime("%Y-%m-%d %H:%M")
    end = datetime.fromtimestamp(result.end, UTC).strftime("%Y-%m-%d %H:%M")
    notes = [
        "",
        f"policy {result.request.policy.name} replayed over {start} to {end} UTC ({hours / 24:.1f} days), "
        f"evaluated every {format_duration(result.request.step_seconds)}, at would-be OOM kills and after "
        "the cooldown of each change that applied part of a recommendation; each cell is today's "
        "resources -> the replayed ones",
        f"saved {total.saved:.2f} over the span ({total.per_month(hours, total.saved):.2f} a month) at "
        f"{result.prices.cpu_per_core_hour:g} per core-hour and {result.prices.memory_per_gib_hour:g} per "
        f"GiB-hour; {total.changes} changes, {total.rollbacks} rolled back",
        *(f"note: {note}" for note in result.request.policy.notes),
    ]
    for namespace in result.namespaces:
        for scope in namespace.failed:
            notes.append(f"{scope.name}: ERROR: Prometheus could not answer: {scope.error}")
    if not any(namespace.workloads for namespace in result.namespaces):
        notes.insert(0, "(no target of the policy in Prometheus over the span)")
    return "\n".join(lines + notes)


def _cells(result: BacktestResult, containers: list[ContainerReplay]) -> tuple[str, ...]:
    found = figures(result, containers)
    today, replayed = found.today, found.replayed
    return (
        f"{found.changes}" + (f" ({found.rollbacks} rolled back)" if found.rollbacks else ""),
        f"{today.oom_kills} -> {replayed.oom_kills}",
        f"{today.share(today.cpu_over_limit):.1%} -> {replayed.share(replayed.cpu_over_limit):.1%}",
        f"{today.share(today.cpu_over_request):.1%} -> {replayed.share(replayed.cpu_over_request):.1%}",
        f"{today.core_hours:.0f} -> {replayed.core_hours:.0f}",
        f"{today.gib_hours:.0f} -> {replayed.gib_hours:.0f}",
        f"{found.cost_today:.2f} -> {found.cost_replayed:.2f}",
        f"{found.per_month(result.span_hours, found.saved):.2f}",
    )


def _time(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(seconds, UTC))

"""Whether ``rightsizer recommend`` (the CLI) says what the operator wrote into its policies' status.

The demo shows both and checks that they agree: the same engine on the same history, a minute apart.
A live pod's usage moves a little in that minute, so quantities agree within ``TOLERANCE``; a
recommendation on one side and none on the other never agrees."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rightsizer.quantity import parse

TOLERANCE = 0.05
"""Relative difference allowed between the operator's and the CLI's quantity."""

Key = tuple[str, str, str]
"""(kind, workload name, container)."""
Recommended = Mapping[str, Mapping[str, str]]
"""A recommendation as status and the CLI write it: ``{"requests": {"cpu": "735m"}, "limits": ...}``."""


@dataclass(frozen=True)
class Row:
    """One container's recommendation from the operator's status and from the CLI."""

    key: Key
    operator: Recommended | None
    cli: Recommended | None
    agrees: bool


def compare(
    operator_entries: Iterable[Mapping[str, Any]], cli_entries: Iterable[Mapping[str, Any]]
) -> list[Row]:
    """A row per container of the operator's status entries, with the CLI's entry for it."""
    cli = {_key(entry): entry.get("recommended") for entry in cli_entries}
    rows = []
    for entry in operator_entries:
        key, ours = _key(entry), entry.get("recommended")
        theirs = cli.get(key)
        rows.append(Row(key, ours, theirs, key in cli and _same(ours, theirs)))
    return sorted(rows, key=lambda row: row.key)


def render(rows: list[Row]) -> str:
    """The rows side by side, and a last line that says whether they agree."""
    names = ["/".join(row.key) for row in rows]
    operator = [_show(row.operator) for row in rows]
    name_width = max([len("CONTAINER"), *map(len, names)])
    operator_width = max([len("OPERATOR (status)"), *map(len, operator)])
    lines = [f"{'CONTAINER':<{name_width}}  {'OPERATOR (status)':<{operator_width}}  CLI"]
    for row, name, ours in zip(rows, names, operator, strict=True):
        mark = "" if row.agrees else "   <- differs"
        lines.append(f"{name:<{name_width}}  {ours:<{operator_width}}  {_show(row.cli)}{mark}")
    lines.append(verdict(rows))
    return "\n".join(lines)


def verdict(rows: list[Row]) -> str:
    """``agree: ...`` when every row agrees, else ``DISAGREE: ...`` naming the rows that do not."""
    differing = ["/".join(row.key) for row in rows if not row.agrees]
    if not rows:
        return "DISAGREE: the operator's status holds no recommendation to compare"
    if differing:
        return f"DISAGREE: the CLI and the operator differ for {', '.join(differing)}"
    return (
        f"agree: the CLI and the operator give the same recommendations for {len(rows)} containers "
        f"(every request and limit within {TOLERANCE:.0%})"
    )


def _key(entry: Mapping[str, Any]) -> Key:
    return (str(entry["kind"]), str(entry["name"]), str(entry["container"]))


def _same(ours: Recommended | None, theirs: Recommended | None) -> bool:
    if ours is None or theirs is None:
        return ours is None and theirs is None
    for kind in ("requests", "limits"):
        mine, other = ours.get(kind) or {}, theirs.get(kind) or {}
        if set(mine) != set(other):
            return False
        for resource, amount in mine.items():
            a, b = float(parse(amount)), float(parse(other[resource]))
            if abs(a - b) > TOLERANCE * max(abs(a), abs(b)):
                return False
    return True


def _show(recommended: Recommended | None) -> str:
    if recommended is None:
        return "no recommendation"  # or, from the CLI, no such container
    parts = []
    for kind in ("requests", "limits"):
        amounts = recommended.get(kind) or {}
        shown = ",".join(f"{resource}={amounts[resource]}" for resource in sorted(amounts))
        parts.append(f"{kind[:3]} {shown or '-'}")
    return "; ".join(parts)

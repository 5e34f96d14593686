"""A policy's status kept far below what the API server and etcd take in one object (about 1.5 MiB).

A full entry of ``status.recommendations`` is 600 to 950 bytes of JSON: one policy over 2,000
containers would pass the limit, its status would be refused, and it would never show anything.
So the full entries take at most ``STATUS_FULL_BYTES``; the containers after them get one line each in
``recommendationsCompact`` (workload, container, recommended requests and limits, or why there is
none), within ``STATUS_COMPACT_BYTES``; any beyond are only counted. ``recommendationsSummary`` says
how many of each, and where the full list is.
"""

from __future__ import annotations

import json
from typing import Any

from rightsizer.settings import STATUS_COMPACT_BYTES, STATUS_FULL_BYTES, STATUS_MESSAGE_CHARS

FULL_LIST = "`rightsizer recommend -n {namespace}` lists every container in full"
REASON_CHARS = 120
"""A compact line without a recommendation keeps this much of its reason."""


def bounded_recommendations(
    entries: list[dict[str, Any]],
    namespace: str,
    full_bytes: int = STATUS_FULL_BYTES,
    compact_bytes: int = STATUS_COMPACT_BYTES,
) -> dict[str, Any]:
    """The status fields ``recommendations``, ``recommendationsCompact`` and ``recommendationsSummary``
    for ``entries`` (in order: the first ones stay in full)."""
    full: list[dict[str, Any]] = []
    compact: list[str] = []
    used_full = used_compact = 0
    for index, entry in enumerate(entries):
        size = _size(entry)
        if not compact and used_full + size <= full_bytes:
            full.append(entry)
            used_full += size
            continue
        line = compact_line(entry)
        if used_compact + len(line.encode()) + 3 > compact_bytes:
            omitted = len(entries) - index
            break
        compact.append(line)
        used_compact += len(line.encode()) + 3  # quotes and comma
    else:
        omitted = 0
    summary: dict[str, Any] = {"full": len(full), "compact": len(compact), "omitted": omitted}
    if compact or omitted:
        summary["message"] = (
            f"{len(entries)} containers: {len(full)} in full, {len(compact)} in recommendationsCompact"
            + (f", {omitted} only counted" if omitted else "")
            + f" (status size); {FULL_LIST.format(namespace=namespace)}"
        )
    return {"recommendations": full, "recommendationsCompact": compact, "recommendationsSummary": summary}


def compact_line(entry: dict[str, Any]) -> str:
    """``Deployment/web/app requests cpu=275m memory=615Mi limits cpu=825m memory=923Mi``."""
    name = f"{entry['kind']}/{entry['name']}/{entry['container']}"
    recommended = entry.get("recommended")
    if not recommended:
        return f"{name}: {entry.get('reason', '')[:REASON_CHARS]}"
    parts = [name]
    for kind in ("requests", "limits"):
        values = recommended.get(kind) or {}
        if values:
            parts.append(kind + " " + " ".join(f"{r}={v}" for r, v in sorted(values.items())))
    return " ".join(parts)


def bounded_message(message: str, limit: int = STATUS_MESSAGE_CHARS) -> str:
    """A condition message cut at ``limit`` characters; a list (``; ``-separated) says how many
    items were left out."""
    if len(message) <= limit:
        return message
    items = message.split("; ")
    kept, length = [], 0
    for item in items:
        if length + len(item) + 2 > limit - 40:
            break
        kept.append(item)
        length += len(item) + 2
    if not kept:
        return message[: limit - 3] + "..."
    return "; ".join(kept) + f"; ... and {len(items) - len(kept)} more"


def _size(entry: dict[str, Any]) -> int:
    return len(json.dumps(entry, separators=(",", ":")).encode()) + 1

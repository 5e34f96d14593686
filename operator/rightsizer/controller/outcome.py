"""What an evaluation takes in and gives back: the policy as read, Events to post, the new status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rightsizer.timestamps import format_time

EVENT_SOURCE = "rightsizer"
"""The component Events are reported by (``kubectl describe``'s From column)."""
EVENT_MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class PolicyObject:
    """A RightSizePolicy as the evaluation needs it (plain values, no Kopf)."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """An Event to post: on the policy when ``target`` is None, else on that object."""

    type: str
    reason: str
    message: str
    target: dict[str, Any] | None = None


def event_body(event: Event, policy: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The core/v1 Event object for ``event``, about its target or else ``policy`` (a body: its
    apiVersion, kind and metadata)."""
    target = event.target or policy
    metadata = target["metadata"]
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": target["apiVersion"],
            "kind": target["kind"],
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid", ""),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:EVENT_MESSAGE_LIMIT],
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


@dataclass
class Outcome:
    """The status to write (the whole of it) and the Events to post."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)

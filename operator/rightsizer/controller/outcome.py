"""What an evaluation takes in and gives back: the policy as read, Events to post, the new status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class Outcome:
    """The status to write (the whole of it) and the Events to post."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)

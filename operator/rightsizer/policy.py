"""A RightSizePolicy's spec as typed values: targets, per-container settings and Auto-mode rails.

The CRD schema rejects most bad input at ``kubectl apply``; what it cannot express (a quantity
that parses in CEL but not in the Python client, say) raises ``PolicyError``, reported in status.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rightsizer.duration import parse_duration
from rightsizer.quantity import QuantityError, parse
from rightsizer.settings import RecommendationSettings, ResourceBounds, SettingsError

DEFAULT_KIND = "Deployment"
RECOMMEND = "Recommend"
AUTO = "Auto"
CONTAINER_OFF = "Off"


class PolicyError(ValueError):
    """The spec cannot be used; the message names the field."""


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector (matchLabels and matchExpressions)."""

    match_labels: dict[str, str] = field(default_factory=dict)
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, operator, values in self.match_expressions:
            present = key in labels
            if operator == "In" and not (present and labels[key] in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True)
class ContainerPolicy:
    container_name: str
    mode: str = AUTO
    min_allowed: ResourceBounds = field(default_factory=ResourceBounds)
    max_allowed: ResourceBounds = field(default_factory=ResourceBounds)


ROLLOUT = "Rollout"
IN_PLACE = "InPlace"
IN_PLACE_OR_ROLLOUT = "InPlaceOrRollout"
PODS_ONLY = "PodsOnly"
UPDATE_MODES = (ROLLOUT, IN_PLACE, IN_PLACE_OR_ROLLOUT, PODS_ONLY)


@dataclass(frozen=True)
class AutoRails:
    """Auto mode's safety rails (see the CRD's spec.auto)."""

    min_change_percent: int = 10
    max_step_percent: int = 100
    cooldown_seconds: int = 3600
    update_mode: str = ROLLOUT
    """How a change reaches the pods: a rollout of the template, ``pods/resize`` in place, in place
    where the kubelet can and a rollout where it cannot, or in place without ever editing the
    template (new pods get the resources from the admission webhook)."""
    canary_seconds: int = 600
    """How long a change is watched (its canary pod, then every pod) before it counts as done."""
    rollback_backoff_seconds: int = 86400
    """After a rollback, the direction rolled back (``memory-down``...) is not tried for this long."""


@dataclass(frozen=True)
class PolicySpec:
    target_name: str | None
    target_kind: str
    """``targetRef.kind`` (default Deployment); unused with a selector."""
    selector: LabelSelector | None
    selector_kinds: tuple[str, ...]
    """The kinds a selector looks at (``spec.kinds``, default Deployment only: a selector written for
    Deployments must not start patching StatefulSets that happen to carry the same labels)."""
    mode: str
    interval_seconds: int
    history_seconds: int
    cpu_window_seconds: int
    """``spec.history.resolution``: CPU usage is averaged over windows this long."""
    settings: RecommendationSettings
    container_policies: tuple[ContainerPolicy, ...]
    auto: AutoRails

    def container_policy(self, container: str) -> ContainerPolicy | None:
        """The entry naming the container, else the ``*`` entry, else None."""
        for policy in self.container_policies:
            if policy.container_name == container:
                return policy
        return next((p for p in self.container_policies if p.container_name == "*"), None)

    def container_settings(self, container: str) -> RecommendationSettings | None:
        """Engine settings for one container, or None when its policy says ``mode: Off``."""
        policy = self.container_policy(container)
        if policy is None:
            return self.settings
        if policy.mode == CONTAINER_OFF:
            return None
        return replace(self.settings, min_allowed=policy.min_allowed, max_allowed=policy.max_allowed)


def parse_policy(spec: dict[str, Any]) -> PolicySpec:
    """Read a RightSizePolicy spec (with the CRD's defaults applied)."""
    target = spec.get("targetRef")
    selector = spec.get("selector")
    if (target is None) == (selector is None):
        raise PolicyError("set exactly one of spec.targetRef and spec.selector")
    cpu = spec.get("cpu") or {}
    memory = spec.get("memory") or {}
    history = spec.get("history") or {}
    overrides: dict[str, object] = {
        "cpu_target_utilization": float(cpu.get("targetUtilization", 0.75)),
        "cpu_percentile": float(cpu.get("percentile", 0.95)),
        "throttling_threshold": float(cpu.get("throttlingThreshold", 0.05)),
        "memory_headroom": float(memory.get("headroom", 0.10)),
        "min_history_seconds": _duration(history.get("minimum", "24h"), "spec.history.minimum"),
    }
    if cpu.get("noLimit"):
        overrides["cpu_limit_ratio"] = None
    elif "limitRatio" in cpu:
        overrides["cpu_limit_ratio"] = float(cpu["limitRatio"])
    if "limitRatio" in memory:
        overrides["memory_limit_ratio"] = float(memory["limitRatio"])
    try:
        settings = RecommendationSettings.for_profile(spec.get("profile", "latency-sensitive"), **overrides)
    except (SettingsError, ValueError) as error:
        raise PolicyError(f"spec: {error}") from None
    auto = spec.get("auto") or {}
    window = _duration(history.get("window", "14d"), "spec.history.window")
    resolution = _duration(history.get("resolution", "5m"), "spec.history.resolution")
    if resolution * 2 > window:
        raise PolicyError(
            f"spec.history.resolution ({history.get('resolution')}) must be at most half of "
            f"spec.history.window ({history.get('window')})"
        )
    return PolicySpec(
        target_name=target["name"] if target else None,
        target_kind=(target or {}).get("kind", DEFAULT_KIND),
        selector=selector_from(selector) if selector is not None else None,
        selector_kinds=tuple(spec.get("kinds") or (DEFAULT_KIND,)),
        mode=spec.get("mode", RECOMMEND),
        interval_seconds=_duration(spec.get("interval", "5m"), "spec.interval"),
        history_seconds=window,
        cpu_window_seconds=resolution,
        settings=settings,
        container_policies=tuple(
            _container_policy(item, index) for index, item in enumerate(spec.get("containerPolicies") or [])
        ),
        auto=AutoRails(
            min_change_percent=int(auto.get("minChangePercent", 10)),
            max_step_percent=int(auto.get("maxStepPercent", 100)),
            cooldown_seconds=_duration(auto.get("cooldown", "1h"), "spec.auto.cooldown"),
            update_mode=auto.get("updateMode", ROLLOUT),
            canary_seconds=_duration(
                (auto.get("canary") or {}).get("duration", "10m"), "spec.auto.canary.duration"
            ),
            rollback_backoff_seconds=_duration(
                auto.get("rollbackBackoff", "24h"), "spec.auto.rollbackBackoff"
            ),
        ),
    )


def selector_from(raw: dict[str, Any]) -> LabelSelector:
    """A label selector as Kubernetes objects write it (``matchLabels``, ``matchExpressions``)."""
    expressions = tuple(
        (e["key"], e["operator"], tuple(e.get("values") or ())) for e in raw.get("matchExpressions") or []
    )
    return LabelSelector(dict(raw.get("matchLabels") or {}), expressions)


def _container_policy(raw: dict[str, Any], index: int) -> ContainerPolicy:
    path = f"spec.containerPolicies[{index}]"
    policy = ContainerPolicy(
        container_name=raw["containerName"],
        mode=raw.get("mode", AUTO),
        min_allowed=_bounds(raw.get("minAllowed") or {}, f"{path}.minAllowed"),
        max_allowed=_bounds(raw.get("maxAllowed") or {}, f"{path}.maxAllowed"),
    )
    for resource in ("cpu", "memory"):
        low, high = getattr(policy.min_allowed, resource), getattr(policy.max_allowed, resource)
        if low is not None and high is not None and low > high:
            raise PolicyError(f"{path}: minAllowed.{resource} is above maxAllowed.{resource}")
    return policy


def _bounds(raw: dict[str, Any], path: str) -> ResourceBounds:
    try:
        return ResourceBounds(
            cpu=parse(raw["cpu"], field=f"{path}.cpu") if "cpu" in raw else None,
            memory=parse(raw["memory"], field=f"{path}.memory") if "memory" in raw else None,
        )
    except QuantityError as error:
        raise PolicyError(str(error)) from None


def _duration(text: str, path: str) -> int:
    try:
        return parse_duration(str(text))
    except ValueError as error:
        raise PolicyError(f"{path}: {error}") from None

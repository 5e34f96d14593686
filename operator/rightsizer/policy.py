"""A RightSizePolicy's spec as typed values: targets, per-container settings and Auto-mode rails.

The CRD schema rejects bad input at ``kubectl apply``. What it did not check raises
``PolicyError`` naming the field, reported in status: a quantity that parses in CEL but not in the
Python client, and any field out of the bounds of ``spec_bounds`` in a policy stored before the CRD
had them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from rightsizer.duration import format_duration, parse_duration
from rightsizer.quantity import QuantityError, parse
from rightsizer.rails import AutoRails
from rightsizer.settings import (
    CPU_WINDOW_SECONDS,
    DEFAULTS,
    EVALUATION_INTERVAL_SECONDS,
    HISTORY_WINDOW_SECONDS,
    HPA_MODE,
    HPA_MODES,
    RecommendationSettings,
    ResourceBounds,
    SettingsError,
    inverted_bound,
)
from rightsizer.spec_bounds import duration_breach, history_breach, number_breach, quantity_breach

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
    hpa: str = HPA_MODE
    """``spec.hpa``: KeepRequest or Retune, for targets a HorizontalPodAutoscaler scales on the
    utilization of a request (``rightsizer.hpa``)."""

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
    written = {
        "window": _written(history, "window", HISTORY_WINDOW_SECONDS),
        "minimum": _written(history, "minimum", DEFAULTS.min_history_seconds),
        "resolution": _written(history, "resolution", CPU_WINDOW_SECONDS),
    }
    window, minimum, resolution = (_duration(written[key], f"spec.history.{key}") for key in written)
    breach = history_breach(window, minimum, resolution, written)
    if breach:
        raise PolicyError(breach)
    overrides: dict[str, object] = {
        "cpu_target_utilization": _number(
            cpu.get("targetUtilization", DEFAULTS.cpu_target_utilization), "spec.cpu.targetUtilization"
        ),
        "cpu_percentile": _number(cpu.get("percentile", DEFAULTS.cpu_percentile), "spec.cpu.percentile"),
        "throttling_threshold": _number(
            cpu.get("throttlingThreshold", DEFAULTS.throttling_threshold), "spec.cpu.throttlingThreshold"
        ),
        "memory_headroom": _number(memory.get("headroom", DEFAULTS.memory_headroom), "spec.memory.headroom"),
        "min_history_seconds": minimum,
    }
    if cpu.get("noLimit"):
        overrides["cpu_limit_ratio"] = None
    elif "limitRatio" in cpu:
        overrides["cpu_limit_ratio"] = _number(cpu["limitRatio"], "spec.cpu.limitRatio")
    if "limitRatio" in memory:
        overrides["memory_limit_ratio"] = _number(memory["limitRatio"], "spec.memory.limitRatio")
    try:
        settings = RecommendationSettings.for_profile(spec.get("profile", DEFAULTS.profile), **overrides)
    except (SettingsError, ValueError) as error:
        raise PolicyError(f"spec: {error}") from None
    auto = spec.get("auto") or {}
    rails = AutoRails()
    if spec.get("hpa", HPA_MODE) not in HPA_MODES:
        raise PolicyError(f"spec.hpa: {spec['hpa']!r} is not one of {', '.join(HPA_MODES)}")
    return PolicySpec(
        target_name=target["name"] if target else None,
        target_kind=(target or {}).get("kind", DEFAULT_KIND),
        selector=selector_from(selector) if selector is not None else None,
        selector_kinds=tuple(spec.get("kinds") or (DEFAULT_KIND,)),
        mode=spec.get("mode", RECOMMEND),
        interval_seconds=_duration(_written(spec, "interval", EVALUATION_INTERVAL_SECONDS), "spec.interval"),
        history_seconds=window,
        cpu_window_seconds=resolution,
        settings=settings,
        container_policies=tuple(
            _container_policy(item, index) for index, item in enumerate(spec.get("containerPolicies") or [])
        ),
        auto=AutoRails(
            min_change_percent=int(
                _number(auto.get("minChangePercent", rails.min_change_percent), "spec.auto.minChangePercent")
            ),
            max_step_percent=int(
                _number(auto.get("maxStepPercent", rails.max_step_percent), "spec.auto.maxStepPercent")
            ),
            cooldown_seconds=_duration(
                _written(auto, "cooldown", rails.cooldown_seconds), "spec.auto.cooldown"
            ),
            update_mode=auto.get("updateMode", rails.update_mode),
            canary_seconds=_duration(
                _written(auto.get("canary") or {}, "duration", rails.canary_seconds),
                "spec.auto.canary.duration",
            ),
            rollback_backoff_seconds=_duration(
                _written(auto, "rollbackBackoff", rails.rollback_backoff_seconds), "spec.auto.rollbackBackoff"
            ),
        ),
        hpa=spec.get("hpa", HPA_MODE),
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
    resource = inverted_bound(policy.min_allowed, policy.max_allowed)
    if resource is not None:
        raise PolicyError(f"{path}: minAllowed.{resource} is above maxAllowed.{resource}")
    return policy


def _bounds(raw: dict[str, Any], path: str) -> ResourceBounds:
    amounts: dict[str, Decimal] = {}
    for resource in ("cpu", "memory"):
        if resource not in raw:
            continue
        try:
            amounts[resource] = parse(raw[resource], field=f"{path}.{resource}")
        except QuantityError as error:
            raise PolicyError(str(error)) from None
        breach = quantity_breach(f"{path}.{resource}", resource, amounts[resource])
        if breach:
            raise PolicyError(breach)
    return ResourceBounds(**amounts)


def _written(raw: dict[str, Any], key: str, default_seconds: int) -> str:
    """A duration field as the spec writes it, else its default written the same way (``14d``)."""
    return str(raw.get(key, format_duration(default_seconds)))


def _duration(text: str, path: str) -> int:
    """Seconds of a duration field, within its bounds."""
    try:
        seconds = parse_duration(str(text))
    except ValueError as error:
        raise PolicyError(f"{path}: {error}") from None
    breach = duration_breach(path, seconds, str(text))
    if breach:
        raise PolicyError(breach)
    return seconds


def _number(value: Any, path: str) -> float:
    """A number field, within its bounds."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PolicyError(f"{path}: {value!r} is not a number") from None
    breach = number_breach(path, number)
    if breach:
        raise PolicyError(breach)
    return number

"""What the recommendation engine is asked to do: profiles, ratios, bounds and history minimums.

Every field is documented here because these are the knobs a policy or a CLI flag sets;
``RecommendationSettings.for_profile`` gives the documented defaults, ``validate`` says which
field is wrong and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from enum import StrEnum

from rightsizer.quantity import MIB


class Profile(StrEnum):
    """How a workload reacts to CPU throttling, which decides its limit ratios."""

    LATENCY_SENSITIVE = "latency-sensitive"
    """Serves requests synchronously: throttling shows as tail latency, so CPU limits sit 2-4x above."""
    BACKGROUND = "background"
    """Batch and async work: throttling only slows it down, so CPU limits sit 1.5-2x above."""


class SettingsError(ValueError):
    """A setting out of its documented range; the message names the field."""


@dataclass(frozen=True)
class ResourceBounds:
    """``minAllowed`` / ``maxAllowed`` for one container, in base units (cores, bytes); None = unbounded."""

    cpu: Decimal | None = None
    memory: Decimal | None = None


# Profile defaults: (CPU limit / request, memory limit / request).
PROFILE_RATIOS: dict[Profile, tuple[float, float]] = {
    Profile.LATENCY_SENSITIVE: (3.0, 1.5),
    Profile.BACKGROUND: (1.5, 1.25),
}


@dataclass(frozen=True)
class RecommendationSettings:
    """Settings of the engine for one container. Defaults are those of the latency-sensitive profile."""

    profile: Profile = Profile.LATENCY_SENSITIVE
    cpu_percentile: float = 0.95
    """Which percentile of short-window (5 min) CPU usage counts as "peak time". p95 of 5-minute
    averages over 14 days lands inside the daily peak of a service busy a few hours a day, without
    chasing one-off spikes (those are what the CPU limit is for)."""
    cpu_target_utilization: float = 0.75
    """Peak-time usage as a share of the CPU request: 0.75 puts the peak at 75% of the request,
    in the 70-80% band that leaves room for queueing. Accepted range (0, 1]."""
    cpu_limit_ratio: float | None = PROFILE_RATIOS[Profile.LATENCY_SENSITIVE][0]
    """CPU limit = ratio x request (>= 1); None sets no CPU limit at all."""
    throttling_threshold: float = 0.05
    """Share of CFS periods throttled (while a limit was set) above which the limit was too low."""
    throttling_limit_bump: float = 1.5
    """When throttled, the new CPU limit is at least this multiple of the limit that throttled."""
    memory_headroom: float = 0.10
    """Memory request = observed peak working set x (1 + headroom). 10%, not the 15% that KRR and VPA
    use, because here the request is not what kills: the limit sits ``memory_limit_ratio`` above it
    and absorbs growth, so the request (what nodes reserve) needs less margin. docs/benchmarks.md
    measures the trade: fewer OOM kills than KRR with less memory reserved."""
    memory_limit_ratio: float = PROFILE_RATIOS[Profile.LATENCY_SENSITIVE][1]
    """Memory limit = ratio x memory request (>= 1)."""
    oom_bump_ratio: float = 0.2
    """After an OOM kill memory goes at least this share above the memory that was killed ..."""
    oom_bump_min_bytes: Decimal = 100 * MIB
    """... and at least this many bytes above it (VPA's max(+20%, +100Mi))."""
    min_history_seconds: int = 24 * 3600
    """Less history than this (first to last sample) gives no recommendation."""
    min_samples: int = 100
    """Fewer memory samples than this (all pods together) gives no recommendation."""
    cpu_step_millicores: int = 5
    """CPU amounts are rounded up to multiples of this many millicores."""
    min_allowed: ResourceBounds = field(default_factory=ResourceBounds)
    max_allowed: ResourceBounds = field(default_factory=ResourceBounds)

    @classmethod
    def for_profile(cls, profile: Profile | str, **overrides: object) -> RecommendationSettings:
        """Settings with the profile's ratios, then the given overrides, validated."""
        profile = Profile(profile)
        cpu_ratio, memory_ratio = PROFILE_RATIOS[profile]
        base = cls(profile=profile, cpu_limit_ratio=cpu_ratio, memory_limit_ratio=memory_ratio)
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        settings = replace(base, **overrides)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``SettingsError`` naming the first field out of range."""
        checks: list[tuple[str, bool, str]] = [
            ("cpu_percentile", 0 < self.cpu_percentile <= 1, "must be in (0, 1]"),
            ("cpu_target_utilization", 0 < self.cpu_target_utilization <= 1, "must be in (0, 1]"),
            ("cpu_limit_ratio", self.cpu_limit_ratio is None or self.cpu_limit_ratio >= 1, "must be >= 1"),
            ("throttling_threshold", 0 <= self.throttling_threshold <= 1, "must be in [0, 1]"),
            ("throttling_limit_bump", self.throttling_limit_bump >= 1, "must be >= 1"),
            ("memory_headroom", self.memory_headroom >= 0, "must be >= 0"),
            ("memory_limit_ratio", self.memory_limit_ratio >= 1, "must be >= 1"),
            ("oom_bump_ratio", self.oom_bump_ratio >= 0, "must be >= 0"),
            ("min_history_seconds", self.min_history_seconds >= 0, "must be >= 0"),
            ("min_samples", self.min_samples >= 1, "must be >= 1"),
            ("cpu_step_millicores", self.cpu_step_millicores >= 1, "must be >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise SettingsError(f"{name}={getattr(self, name)!r}: {rule}")
        for resource in ("cpu", "memory"):
            low = getattr(self.min_allowed, resource)
            high = getattr(self.max_allowed, resource)
            if low is not None and high is not None and low > high:
                raise SettingsError(
                    f"min_allowed.{resource} ({low}) is above max_allowed.{resource} ({high})"
                )

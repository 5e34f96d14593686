"""The recommendation engine: usage history in, requests and limits out. Pure functions only.

Nothing here talks to Prometheus or Kubernetes; the callers (``rightsizer recommend`` and the
operator) gather ``ContainerUsage`` and ``Resources`` and hand them over.
"""

from __future__ import annotations

from decimal import Decimal

from rightsizer.duration import format_duration
from rightsizer.model import ContainerKey, ContainerUsage, LimitThrottling, Recommendation, Resources
from rightsizer.qos import qos_class
from rightsizer.quantity import (
    CPU,
    MEMORY,
    MIB,
    ceil_cpu,
    ceil_memory,
    format_cpu,
    format_memory,
    suspicious_memory,
)
from rightsizer.settings import RecommendationSettings

CPU_FLOOR = Decimal("0.010")
MEMORY_FLOOR = 16 * MIB


def recommend(
    key: ContainerKey, usage: ContainerUsage, current: Resources, settings: RecommendationSettings
) -> Recommendation:
    """Recommend requests and limits for one container, or say why there is too little to go on."""
    evidence = usage_evidence(usage, current, settings)
    warnings = current_resource_warnings(current)
    missing = insufficient_history(usage, settings)
    if missing and usage.oom_kills:
        return _memory_after_oom_kills(key, usage, current, settings, missing, evidence, warnings)
    if missing:
        return Recommendation(key, current, None, None, missing, evidence, warnings)

    assert usage.cpu_percentile_cores is not None and usage.memory_peak_bytes is not None
    notes: list[str] = []
    cpu_request = _bounded(_cpu_request(usage, settings, notes), CPU, settings, notes)
    memory_request = _bounded(_memory_request(usage, settings, notes), MEMORY, settings, notes)
    warnings += _max_allowed_warnings(usage, settings)
    limits = {MEMORY: _memory_limit(memory_request, settings)}
    cpu_limit = _cpu_limit(cpu_request, usage, current, settings, notes)
    if cpu_limit is not None:
        limits[CPU] = cpu_limit
    recommended = Resources(requests={CPU: cpu_request, MEMORY: memory_request}, limits=limits)
    return Recommendation(
        key, current, recommended, qos_class(recommended), "; ".join(notes), evidence, warnings
    )


def _memory_after_oom_kills(
    key: ContainerKey,
    usage: ContainerUsage,
    current: Resources,
    settings: RecommendationSettings,
    missing: str,
    evidence: dict[str, object],
    warnings: tuple[str, ...],
) -> Recommendation:
    """Too little history for the rest, but OOM kills: memory is raised now and CPU left as it is.

    An OOM kill is unambiguous evidence, and a container that is killed again and again never
    gathers the history the other numbers need (it lives seconds at a time), so waiting for it
    would leave it crash-looping. Raising memory is the safe direction.
    """
    notes = [f"{missing}: CPU left as it is"]
    memory_request = _bounded(_memory_request(usage, settings, notes), MEMORY, settings, notes)
    memory_request = max(memory_request, current.requests.get(MEMORY, Decimal(0)))
    requests = {**current.requests, MEMORY: memory_request}
    limits = {**current.limits, MEMORY: max(_memory_limit(memory_request, settings), memory_request)}
    recommended = Resources(requests=requests, limits=limits)
    warnings += ("only memory is recommended until there is enough history for CPU",)
    return Recommendation(
        key, current, recommended, qos_class(recommended), "; ".join(notes), evidence, warnings
    )


def _memory_limit(memory_request: Decimal, settings: RecommendationSettings) -> Decimal:
    return ceil_memory(memory_request * Decimal(str(settings.memory_limit_ratio)))


def _max_allowed_warnings(usage: ContainerUsage, settings: RecommendationSettings) -> tuple[str, ...]:
    high = settings.max_allowed.memory
    if high is None or usage.memory_peak_bytes is None or high >= usage.memory_peak_bytes:
        return ()
    return (
        f"maxAllowed memory {format_memory(high)} is below the observed peak "
        f"{format_memory(ceil_memory(usage.memory_peak_bytes))}: expect OOM kills",
    )


def insufficient_history(usage: ContainerUsage, settings: RecommendationSettings) -> str | None:
    """The reason there is too little history to recommend from, or None when there is enough."""
    if usage.memory_peak_bytes is None or usage.samples == 0:
        return "no memory usage series in Prometheus for this container"
    if usage.cpu_percentile_cores is None:
        return "no CPU usage series in Prometheus for this container"
    if usage.history_seconds < settings.min_history_seconds:
        return (
            f"insufficient history: {_span(usage.history_seconds)} of samples, "
            f"needs {_needed(settings.min_history_seconds)}"
        )
    if usage.samples < settings.min_samples:
        return f"insufficient history: {usage.samples} samples, needs {settings.min_samples}"
    return None


def usage_evidence(
    usage: ContainerUsage, current: Resources, settings: RecommendationSettings
) -> dict[str, object]:
    """What the recommendation rests on, in units a person reads (quantities, ratios, counts)."""
    evidence: dict[str, object] = {
        "cpuPercentile": settings.cpu_percentile,
        "samples": usage.samples,
        "historyHours": round(usage.history_seconds / 3600, 2 if usage.history_seconds < 3600 else 1),
        "pods": usage.pods,
        "oomKills": usage.oom_kills,
        "ownerSource": usage.owner_source,
    }
    if usage.cpu_percentile_cores is not None:
        evidence["cpuPeakTime"] = format_cpu(ceil_cpu(usage.cpu_percentile_cores, 1))
    if usage.cpu_max_cores is not None:
        evidence["cpuMax"] = format_cpu(ceil_cpu(usage.cpu_max_cores, 1))
    if usage.throttled_ratio is not None:
        evidence["throttledRatio"] = round(usage.throttled_ratio, 4)
    now = usage.throttling_under(current.limits.get(CPU))
    if now is not None and now.ratio is not None and now.ratio != usage.throttled_ratio:
        evidence["throttledRatioCurrentLimit"] = round(now.ratio, 4)
    if usage.memory_peak_bytes is not None:
        evidence["memoryPeak"] = format_memory(ceil_memory(usage.memory_peak_bytes))
    if usage.oom_killed_memory_bytes is not None and usage.oom_kills:
        evidence["oomKilledAt"] = format_memory(ceil_memory(usage.oom_killed_memory_bytes))
    return evidence


def current_resource_warnings(current: Resources) -> tuple[str, ...]:
    """Flag the classic ``400m`` memory typo (0.4 bytes) in what is set today."""
    warnings = []
    for kind, values in (("request", current.requests), ("limit", current.limits)):
        memory = values.get(MEMORY)
        if memory is not None and suspicious_memory(memory):
            warnings.append(
                f"current memory {kind} is {memory} bytes: a quantity like '400m' means 0.4 bytes, "
                "did you mean '400Mi'?"
            )
    return tuple(warnings)


def _cpu_request(usage: ContainerUsage, settings: RecommendationSettings, notes: list[str]) -> Decimal:
    """Peak-time usage at the target utilization.

    Usage measured while CFS throttled the container was capped by its limit and understates
    demand: the peak time of pods that were throttled under their limit counts
    ``throttling_limit_bump`` times higher (as the limit does), whichever limit that was. It is an
    estimate from what those pods used, not from the limit in force, so it does not compound; pods
    running unthrottled under a raised limit show the real demand, and once the throttled pods
    leave the history window, their estimate goes with them.
    """
    peak = Decimal(str(usage.cpu_percentile_cores))
    measured = f"CPU p{settings.cpu_percentile * 100:g} {format_cpu(ceil_cpu(peak, 1))}"
    bump = Decimal(str(settings.throttling_limit_bump))
    for throttled in _throttled_groups(usage, settings):
        estimate = Decimal(str(throttled.cpu_percentile_cores)) * bump
        if estimate > peak:
            peak = estimate
            under = (
                ""
                if throttled.limit_cores is None
                else f" under {format_cpu(ceil_cpu(throttled.limit_cores, 1))}"
            )
            measured += f" (throttled{under}, counted as {format_cpu(ceil_cpu(peak, 1))})"
    request = max(
        ceil_cpu(peak / Decimal(str(settings.cpu_target_utilization)), settings.cpu_step_millicores),
        CPU_FLOOR,
    )
    notes.append(f"{measured} at {settings.cpu_target_utilization:.0%} of request -> {format_cpu(request)}")
    return request


def _throttled_groups(usage: ContainerUsage, settings: RecommendationSettings) -> list[LimitThrottling]:
    """The pods, grouped by CPU limit, that were throttled above the threshold (with usage known)."""
    return [
        t
        for t in usage.throttling
        if t.ratio is not None
        and t.ratio > settings.throttling_threshold
        and t.cpu_percentile_cores is not None
    ]


def _throttled_now(
    usage: ContainerUsage, current: Resources, settings: RecommendationSettings
) -> LimitThrottling | None:
    """The throttling measured under the CPU limit in force, when it is above the threshold."""
    if CPU not in current.limits:
        return None
    under = usage.throttling_under(current.limits[CPU])
    if under is None or under.ratio is None or under.ratio <= settings.throttling_threshold:
        return None
    return under


def _throttled_earlier(usage: ContainerUsage, settings: RecommendationSettings) -> LimitThrottling | None:
    """The largest known CPU limit that throttled above the threshold, in force or not."""
    throttled = [
        t
        for t in usage.throttling
        if t.limit_cores is not None and t.ratio is not None and t.ratio > settings.throttling_threshold
    ]
    return max(throttled, key=lambda t: t.limit_cores or 0.0, default=None)


def _cpu_limit(
    request: Decimal,
    usage: ContainerUsage,
    current: Resources,
    settings: RecommendationSettings,
    notes: list[str],
) -> Decimal | None:
    """CPU limit from the profile ratio, pushed up (never down) by throttling and observed maxima.

    Throttling under the limit in force raises it by ``throttling_limit_bump``. Throttling under
    an earlier limit only keeps the new one above that earlier limit x the bump: it says nothing
    about the limit in force, and bumping that again would ratchet it up at every evaluation.
    """
    if settings.cpu_limit_ratio is None:
        notes.append("no CPU limit (policy)")
        return None
    limit = request * Decimal(str(settings.cpu_limit_ratio))
    bump = Decimal(str(settings.throttling_limit_bump))
    now = _throttled_now(usage, current, settings)
    earlier = _throttled_earlier(usage, settings)
    if now is not None:
        current_limit = current.limits[CPU]
        bumped = current_limit * bump
        limit = max(limit, bumped)
        notes.append(
            f"throttled {now.ratio:.0%} of CFS periods under limit {format_cpu(current_limit)} -> "
            f"limit at least {format_cpu(ceil_cpu(bumped, settings.cpu_step_millicores))}"
        )
    elif earlier is not None and earlier.limit_cores is not None:
        floor = Decimal(str(earlier.limit_cores)) * bump
        if floor > limit:
            limit = floor
            notes.append(
                f"throttled {earlier.ratio:.0%} of CFS periods under an earlier limit "
                f"{format_cpu(ceil_cpu(earlier.limit_cores, 1))} -> limit at least "
                f"{format_cpu(ceil_cpu(floor, settings.cpu_step_millicores))}"
            )
    if usage.cpu_max_cores is not None and Decimal(str(usage.cpu_max_cores)) > limit:
        limit = Decimal(str(usage.cpu_max_cores))
        notes.append(f"CPU limit raised to the observed maximum {format_cpu(ceil_cpu(limit, 1))}")
    return ceil_cpu(limit, settings.cpu_step_millicores)


def _memory_request(usage: ContainerUsage, settings: RecommendationSettings, notes: list[str]) -> Decimal:
    """Peak working set plus headroom; after OOM kills, at least the bump above the killed memory."""
    peak = Decimal(str(usage.memory_peak_bytes or 0))
    request = peak * (1 + Decimal(str(settings.memory_headroom)))
    if usage.memory_peak_bytes is not None:
        notes.append(
            f"memory peak {format_memory(ceil_memory(peak))} + {settings.memory_headroom:.0%} -> "
            f"{format_memory(ceil_memory(request))}"
        )
    if usage.oom_kills:
        # The memory it was killed at: the limit then, or failing that the peak. Not the peak when
        # the limit is known: a peak reached later under a raised limit was not a kill.
        killed_at = Decimal(str(usage.oom_killed_memory_bytes)) if usage.oom_killed_memory_bytes else peak
        bumped = max(
            killed_at * (1 + Decimal(str(settings.oom_bump_ratio))), killed_at + settings.oom_bump_min_bytes
        )
        if bumped > request:
            request = bumped
        notes.append(
            f"{usage.oom_kills} OOM kill(s) at {format_memory(ceil_memory(killed_at))} -> memory at least "
            f"{format_memory(ceil_memory(bumped))}"
        )
    return max(ceil_memory(request), MEMORY_FLOOR)


def _span(seconds: float) -> str:
    """A history span as people read it: ``5.0h`` from an hour on, ``40m`` or ``35s`` below."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{int(seconds // 60)}m" if seconds >= 60 else f"{int(seconds)}s"


def _needed(seconds: int) -> str:
    """A minimum history as a policy writes it: ``24h`` (not 1d), ``2m``, ``90s``."""
    return f"{seconds / 3600:g}h" if seconds >= 3600 else format_duration(seconds)


def _bounded(amount: Decimal, resource: str, settings: RecommendationSettings, notes: list[str]) -> Decimal:
    low = getattr(settings.min_allowed, resource)
    high = getattr(settings.max_allowed, resource)
    fmt = format_cpu if resource == CPU else format_memory
    if low is not None and amount < low:
        notes.append(f"{resource} raised to minAllowed {fmt(low)}")
        return low
    if high is not None and amount > high:
        notes.append(f"{resource} capped at maxAllowed {fmt(high)}")
        return high
    return amount

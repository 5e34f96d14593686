"""The recommendation engine: usage history in, requests and limits out. Pure functions only.

Nothing here talks to Prometheus or Kubernetes; the callers (``rightsizer recommend`` and the
operator) gather ``ContainerUsage`` and ``Resources`` and hand them over. The statistics of the
bucketed history are in ``rightsizer.peaks``; the rules, with their reasons, are here and in
docs/recommendations.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rightsizer.confidence import Trust, assess
from rightsizer.duration import format_duration
from rightsizer.model import ContainerKey, ContainerUsage, PodThrottling, Recommendation, Resources
from rightsizer.peaks import CpuPeakTime, MemoryLevels, cpu_peak_time, memory_levels, throttled_multiple
from rightsizer.qos import qos_class
from rightsizer.settings import DAY_SECONDS, RecommendationSettings
from rightsizer.units import (
    CPU,
    MEMORY,
    MIB,
    ceil_cpu,
    ceil_memory,
    format_cpu,
    format_memory,
    suspicious_memory,
)

CPU_FLOOR = Decimal("0.010")
MEMORY_FLOOR = 16 * MIB


@dataclass(frozen=True)
class Evidence:
    """The statistics of one container's history that the rules read."""

    cpu: CpuPeakTime | None
    memory: MemoryLevels | None
    throttled: tuple[PodThrottling, ...]
    """Pods throttled above the threshold, under whichever limit (``throttled_pods``)."""


@dataclass(frozen=True)
class CpuLimit:
    limit: Decimal | None
    request: Decimal
    """The request, raised when the limit throttling needs would leave the profile's band."""
    floor: Decimal | None
    """What throttling under the limit in force demands of the limit: Auto mode applies it whole."""


def recommend(
    key: ContainerKey, usage: ContainerUsage, current: Resources, settings: RecommendationSettings
) -> Recommendation:
    """Recommend requests and limits for one container, or say why there is too little to go on."""
    found = gather(usage, settings)
    evidence = usage_evidence(usage, current, settings, found)
    warnings = current_resource_warnings(current)
    missing = insufficient_history(usage, settings, found)
    if missing and usage.oom_kills:
        return _memory_after_oom_kills(key, usage, current, settings, found, missing, evidence, warnings)
    if missing:
        return Recommendation(key, current, None, None, missing, evidence, warnings)

    assert found.cpu is not None and found.memory is not None
    notes: list[str] = []
    cpu_request = _bounded(_cpu_request(found, settings, notes), CPU, settings, notes)
    memory_request = _bounded(_memory_request(found.memory, usage, settings, notes), MEMORY, settings, notes)
    warnings += _max_allowed_warnings(found.memory, settings)
    cpu = _cpu_limit(cpu_request, found, usage, current, settings, notes)
    limits = {MEMORY: _memory_limit(memory_request, found.memory, settings, notes)}
    if cpu.limit is not None:
        limits[CPU] = cpu.limit
    recommended = Resources(requests={CPU: cpu.request, MEMORY: memory_request}, limits=limits)
    trust = assess(usage, current, recommended, found.cpu, found.memory, settings, cpu.floor)
    return _recommendation(key, current, recommended, notes, evidence, warnings, trust, trust.confident)


def gather(usage: ContainerUsage, settings: RecommendationSettings) -> Evidence:
    """The statistics of the history (none without a history grid: nothing came from Prometheus)."""
    throttled = throttled_pods(usage, settings)
    if usage.grid is None or usage.history.empty:
        return Evidence(None, None, throttled)
    pods = {t.pod for t in throttled}
    return Evidence(
        cpu_peak_time(usage.history, usage.grid, settings, pods),
        memory_levels(usage.history, usage.grid, settings, usage.memory_peak_bytes),
        throttled,
    )


def throttled_pods(usage: ContainerUsage, settings: RecommendationSettings) -> tuple[PodThrottling, ...]:
    """Pods throttled in more than ``throttling_threshold`` of their own CFS periods.

    Judged pod by pod, not pooled: one replica throttled 30% among ten equal ones is 3% pooled,
    yet every replica gets the same limit. A pod needs ``throttling_min_periods`` to be judged.
    """
    return tuple(
        t
        for t in usage.throttling
        if t.periods >= settings.throttling_min_periods
        and t.ratio is not None
        and t.ratio > settings.throttling_threshold
    )


def _memory_after_oom_kills(
    key: ContainerKey,
    usage: ContainerUsage,
    current: Resources,
    settings: RecommendationSettings,
    found: Evidence,
    missing: str,
    evidence: dict[str, object],
    warnings: tuple[str, ...],
) -> Recommendation:
    """Too little history for the rest, but OOM kills: memory is raised now and CPU left as it is.

    An OOM kill is unambiguous evidence, and a container that is killed again and again never
    gathers the history the other numbers need (it lives seconds at a time), so waiting for it
    would leave it crash-looping. Raising memory is the safe direction, and all of it is confident.
    """
    notes = [f"{missing}: CPU left as it is"]
    memory_request = _bounded(_memory_request(found.memory, usage, settings, notes), MEMORY, settings, notes)
    memory_request = max(memory_request, current.requests.get(MEMORY, Decimal(0)))
    requests = {**current.requests, MEMORY: memory_request}
    memory_limit = max(_memory_limit(memory_request, found.memory, settings, notes), memory_request)
    recommended = Resources(requests=requests, limits={**current.limits, MEMORY: memory_limit})
    warnings += ("only memory is recommended until there is enough history for CPU",)
    trust = assess(usage, current, recommended, None, found.memory, settings, None)
    return _recommendation(key, current, recommended, notes, evidence, warnings, trust, recommended)


def _recommendation(
    key: ContainerKey,
    current: Resources,
    recommended: Resources,
    notes: list[str],
    evidence: dict[str, object],
    warnings: tuple[str, ...],
    trust: Trust,
    confident: Resources | None,
) -> Recommendation:
    return Recommendation(
        key,
        current,
        recommended,
        qos_class(recommended),
        "; ".join(notes),
        evidence,
        warnings,
        trust.confidence,
        trust.lower,
        trust.upper,
        confident,
    )


def _memory_limit(
    request: Decimal, memory: MemoryLevels | None, settings: RecommendationSettings, notes: list[str]
) -> Decimal:
    """Request x the profile's ratio, and at least the window's peak plus room for a higher spike.

    The room is ``memory_spike_room`` times the peak's height above the typical (median half-hourly)
    working set, so a steady container keeps the profile's ratio and one that swings gets more: its
    next swing may go higher than the last, and a limit only as high as the last would kill it.
    """
    limit = request * Decimal(str(settings.memory_limit_ratio))
    if memory is not None:
        peak, typical = Decimal(str(memory.peak)), Decimal(str(memory.typical))
        spike_floor = peak + Decimal(str(settings.memory_spike_room)) * max(Decimal(0), peak - typical)
        if spike_floor > limit:
            limit = spike_floor
            notes.append(
                f"memory limit at least the peak {format_memory(ceil_memory(peak))} + "
                f"{settings.memory_spike_room:g}x its height above the typical "
                f"{format_memory(ceil_memory(typical))} -> {format_memory(ceil_memory(limit))}"
            )
    return _limit_bounded(ceil_memory(limit), request, MEMORY, settings, notes)


def _max_allowed_warnings(memory: MemoryLevels, settings: RecommendationSettings) -> tuple[str, ...]:
    high = settings.max_allowed.memory
    if high is None or high >= memory.peak:
        return ()
    return (
        f"maxAllowed memory {format_memory(high)} is below the observed peak "
        f"{format_memory(ceil_memory(memory.peak))}: expect OOM kills",
    )


def insufficient_history(
    usage: ContainerUsage, settings: RecommendationSettings, found: Evidence
) -> str | None:
    """The reason there is too little history to recommend from, or None when there is enough."""
    if usage.samples == 0:
        return "no memory usage series in Prometheus for this container"
    if found.memory is None:
        return (
            "the working-set series are all zero: a broken metric, not a container without memory "
            "(container_memory_working_set_bytes, docs/metrics.md)"
        )
    if found.cpu is None:
        return "no CPU usage series in Prometheus for this container"
    covered, span = usage.covered_seconds, usage.span_seconds
    if covered < settings.min_history_seconds:
        spread = f" over {_span(span)}" if span > 2 * covered and span - covered >= 3600 else ""
        return (
            f"insufficient history: {_span(covered)} of samples{spread}, "
            f"needs {_needed(settings.min_history_seconds)}"
        )
    if usage.samples < settings.min_samples:
        return f"insufficient history: {usage.samples} samples, needs {settings.min_samples}"
    return None


def usage_evidence(
    usage: ContainerUsage, current: Resources, settings: RecommendationSettings, found: Evidence
) -> dict[str, object]:
    """What the recommendation rests on, in units a person reads (quantities, ratios, counts)."""
    covered = usage.covered_seconds
    evidence: dict[str, object] = {
        "cpuPercentile": settings.cpu_percentile,
        "samples": usage.samples,
        "historyHours": round(covered / 3600, 2 if covered < 3600 else 1),
        "spanHours": round(usage.span_seconds / 3600, 2 if usage.span_seconds < 3600 else 1),
        "pods": usage.pods,
        "oomKills": usage.oom_kills,
        "ownerSource": usage.owner_source,
    }
    if found.cpu is not None:
        evidence["cpuPeakTime"] = format_cpu(ceil_cpu(found.cpu.cores, 1))
        evidence["cpuPeakTimeFrom"] = found.cpu.source
        evidence["cpuPeakTimeDays"] = round(found.cpu.days, 1)
        evidence["cpuMax"] = format_cpu(ceil_cpu(found.cpu.maximum, 1))
    if usage.throttled_ratio is not None:
        evidence["throttledRatio"] = round(usage.throttled_ratio, 4)
        now = usage.throttled_ratio_under(current.limits.get(CPU))
        if now is not None and now != usage.throttled_ratio:
            evidence["throttledRatioCurrentLimit"] = round(now, 4)
        judged = [t.ratio or 0.0 for t in usage.throttling if t.periods >= settings.throttling_min_periods]
        worst = max(judged, default=None)
        if usage.pods > 1 and worst is not None and worst != usage.throttled_ratio:
            evidence["throttledRatioWorstPod"] = round(worst, 4)
    if found.memory is not None:
        evidence["memoryPeak"] = format_memory(ceil_memory(found.memory.peak))
        evidence["memoryLevel"] = format_memory(ceil_memory(found.memory.level))
        evidence["memoryTypical"] = format_memory(ceil_memory(found.memory.typical))
        if found.memory.swing > 0:
            evidence["memorySwing"] = format_memory(ceil_memory(found.memory.swing))
        if found.memory.growth_per_second > 0:
            evidence["memoryGrowthPerDay"] = format_memory(
                ceil_memory(found.memory.growth_per_second * DAY_SECONDS)
            )
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


def _cpu_request(found: Evidence, settings: RecommendationSettings, notes: list[str]) -> Decimal:
    """Peak-time usage at the target utilization.

    Usage measured while CFS throttled a pod was capped by its limit and understates demand: the
    CPU windows of pods throttled above the threshold count ``throttling_limit_bump`` times higher
    in the peak time, whichever limit throttled them. It is an estimate from what those pods used,
    not from the limit in force, so it does not compound; pods running unthrottled under a raised
    limit show the real demand, and once the throttled pods leave the window, the estimate goes too.
    """
    assert found.cpu is not None
    cpu = found.cpu
    peak = Decimal(str(cpu.cores))
    days = f"the {cpu.days:.1f} days since the load changed" if cpu.changed else f"{cpu.days:.1f} days"
    if cpu.source.startswith("busiest"):
        measured = (
            f"CPU peak time {format_cpu(ceil_cpu(peak, 1))} ({cpu.source} of the typical day, "
            f"p{settings.peak_day_percentile * 100:g} of {days}: more than "
            f"{throttled_multiple(settings):.3g}x the p{settings.cpu_percentile * 100:g} "
            f"{format_cpu(ceil_cpu(cpu.percentile, 1))}, whose limit would throttle it)"
        )
    else:
        measured = f"CPU peak time {format_cpu(ceil_cpu(peak, 1))} ({cpu.source} of {days})"
    if found.throttled:
        measured += (
            f" with the usage of {len(found.throttled)} throttled pod(s) counted "
            f"x{settings.throttling_limit_bump:g}"
        )
    request = max(
        ceil_cpu(peak / Decimal(str(settings.cpu_target_utilization)), settings.cpu_step_millicores),
        CPU_FLOOR,
    )
    notes.append(f"{measured} at {settings.cpu_target_utilization:.0%} of request -> {format_cpu(request)}")
    return request


def _throttled_now(
    found: Evidence, current: Resources, settings: RecommendationSettings
) -> tuple[PodThrottling, ...]:
    """The pods throttled under the CPU limit in force."""
    if CPU not in current.limits:
        return ()
    return tuple(t for t in found.throttled if t.under(current.limits[CPU]))


def _throttled_earlier(found: Evidence) -> PodThrottling | None:
    """The pod throttled under the largest known CPU limit, in force or not."""
    known = [t for t in found.throttled if t.limit_cores is not None]
    return max(known, key=lambda t: t.limit_cores or 0.0, default=None)


def _cpu_limit(
    request: Decimal,
    found: Evidence,
    usage: ContainerUsage,
    current: Resources,
    settings: RecommendationSettings,
    notes: list[str],
) -> CpuLimit:
    """CPU limit from the profile ratio, pushed up (never down) by throttling and observed maxima,
    within the profile's band: at most ``cpu_limit_ratio_max`` x the request.

    Throttling under the limit in force raises it by ``throttling_limit_bump``. Throttling under an
    earlier limit only keeps the new one above that earlier limit x the bump: it says nothing about
    the limit in force, and bumping that again would ratchet it up at every evaluation. Both are
    evidence that a lower limit throttles: when they leave the band, the request rises with them (a
    limit far above its request is the overcommit the band prevents). The observed maximum (a limit
    below it throttles that window) only raises the limit within the band.
    """
    if settings.cpu_limit_ratio is None:
        notes.append("no CPU limit (policy)")
        return CpuLimit(None, request, None)
    ratio = Decimal(str(settings.cpu_limit_ratio))
    band = max(Decimal(str(settings.cpu_limit_ratio_max)), ratio)
    bump = Decimal(str(settings.throttling_limit_bump))
    step = settings.cpu_step_millicores
    floor = None
    now = _throttled_now(found, current, settings)
    earlier = _throttled_earlier(found)
    if now:
        floor = ceil_cpu(current.limits[CPU] * bump, step)
        worst = max(t.ratio or 0.0 for t in now)
        notes.append(
            f"{len(now)} pod(s) throttled (worst {worst:.0%} of CFS periods) under limit "
            f"{format_cpu(current.limits[CPU])} -> limit at least {format_cpu(floor)}"
        )
    elif earlier is not None and earlier.limit_cores is not None:
        earlier_floor = ceil_cpu(Decimal(str(earlier.limit_cores)) * bump, step)
        if earlier_floor > request * ratio:
            floor = earlier_floor
            notes.append(
                f"throttled {earlier.ratio:.0%} of CFS periods under an earlier limit "
                f"{format_cpu(ceil_cpu(earlier.limit_cores, 1))} -> limit at least {format_cpu(floor)}"
            )
    if floor is not None and floor > request * band:
        raised = ceil_cpu(floor / band, step)
        high = settings.max_allowed.cpu
        request = raised if high is None else max(request, min(raised, high))
        notes.append(f"CPU request raised to {format_cpu(request)} to keep the limit within {float(band):g}x")
    limit = max(request * ratio, floor or Decimal(0))
    maximum = Decimal(str(found.cpu.maximum)) if found.cpu is not None else Decimal(0)
    if maximum > limit:
        top = request * band
        limit = min(maximum, max(top, limit))
        capped = f" (capped at {float(band):g}x the request)" if maximum > limit else ""
        notes.append(f"CPU limit raised to the observed maximum {format_cpu(ceil_cpu(maximum, 1))}{capped}")
    limit = _limit_bounded(ceil_cpu(limit, step), request, CPU, settings, notes)
    return CpuLimit(limit, request, floor if now else None)


def _memory_request(
    memory: MemoryLevels | None, usage: ContainerUsage, settings: RecommendationSettings, notes: list[str]
) -> Decimal:
    """The working-set level, projected when it grows, plus the swing of the samples above their
    half-hour's mean and headroom; after OOM kills, at least the bump above the memory that was killed.

    The level is of half-hourly means, which are below the samples they average: a working set that
    swings (a garbage collector's sawtooth, bursts of work) is above its half-hour's mean half the
    time. The peak's height above the highest mean is how far it swung at the top."""
    level = Decimal(str(memory.level)) if memory is not None else Decimal(0)
    if memory is not None:
        described = (
            f"memory level {format_memory(ceil_memory(level))} (p{settings.memory_percentile * 100:g})"
        )
        if memory.growth_per_second > 0 and not usage.oom_kills:
            growth = Decimal(str(memory.growth_per_second)) * settings.memory_trend_horizon_seconds
            level += growth
            horizon = format_duration(settings.memory_trend_horizon_seconds)
            per_day = format_memory(ceil_memory(memory.growth_per_second * DAY_SECONDS))
            described += f" growing {per_day} a day: {format_memory(ceil_memory(level))} in {horizon}"
        if memory.swing > 0:
            level += Decimal(str(memory.swing))
            described += (
                f" + the peak's swing {format_memory(ceil_memory(memory.swing))} above the highest "
                "half-hour mean"
            )
        request = level * (1 + Decimal(str(settings.memory_headroom)))
        notes.append(f"{described} + {settings.memory_headroom:.0%} -> {format_memory(ceil_memory(request))}")
    else:
        request = level
    if usage.oom_kills:
        # The memory it was killed at: the limit then, or failing that the peak. Not the peak when
        # the limit is known: a peak reached later under a raised limit was not a kill.
        peak = Decimal(str(memory.peak)) if memory is not None else Decimal(0)
        killed_at = Decimal(str(usage.oom_killed_memory_bytes)) if usage.oom_killed_memory_bytes else peak
        bumped = max(
            killed_at * (1 + Decimal(str(settings.oom_bump_ratio))), killed_at + settings.oom_bump_min_bytes
        )
        request = max(request, bumped)
        notes.append(
            f"{usage.oom_kills} OOM kill(s) at {format_memory(ceil_memory(killed_at))} -> memory at least "
            f"{format_memory(ceil_memory(bumped))}"
        )
    return max(ceil_memory(request), MEMORY_FLOOR)


def _span(seconds: float) -> str:
    """A history span as people read it: ``13.0d`` from two days on, ``5.0h`` from an hour, ``40m``,
    ``35s``."""
    if seconds >= 2 * DAY_SECONDS:
        return f"{seconds / DAY_SECONDS:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{int(seconds // 60)}m" if seconds >= 60 else f"{int(seconds)}s"


def _needed(seconds: int) -> str:
    """A minimum history as a policy writes it: ``24h`` (not 1d), ``2m``, ``90s``."""
    return f"{seconds / 3600:g}h" if seconds >= 3600 else format_duration(seconds)


def _bounded(amount: Decimal, resource: str, settings: RecommendationSettings, notes: list[str]) -> Decimal:
    low: Decimal | None = getattr(settings.min_allowed, resource)
    high: Decimal | None = getattr(settings.max_allowed, resource)
    fmt = format_cpu if resource == CPU else format_memory
    if low is not None and amount < low:
        notes.append(f"{resource} raised to minAllowed {fmt(low)}")
        return low
    if high is not None and amount > high:
        notes.append(f"{resource} capped at maxAllowed {fmt(high)}")
        return high
    return amount


def _limit_bounded(
    limit: Decimal, request: Decimal, resource: str, settings: RecommendationSettings, notes: list[str]
) -> Decimal:
    """``maxAllowed`` bounds the limit too (never below the request): it is the most the policy allows."""
    high: Decimal | None = getattr(settings.max_allowed, resource)
    if high is None or limit <= high:
        return limit
    bounded = max(high, request)
    fmt = format_cpu if resource == CPU else format_memory
    notes.append(f"{resource} limit capped at maxAllowed {fmt(bounded)}")
    return bounded

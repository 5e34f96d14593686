"""How far a recommendation can be trusted: confidence, bounds, and the confident part for Auto mode.

Confidence per resource is the smaller of two scores in [0, 1]: how deep the history is (covered
time over ``confident_history`` or the window, when shorter) and how stable the days are (the days'
``bound_percentiles`` of peak time, or of memory level, close together). The bounds are the requests
those percentiles of the days would give, widened by ``1 + (1 - depth)`` when the history is thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rightsizer.model import Confidence, ContainerUsage, Resources
from rightsizer.peaks import CpuPeakTime, MemoryLevels
from rightsizer.settings import DAY_SECONDS, RecommendationSettings
from rightsizer.units import CPU, MEMORY, ceil_cpu, ceil_memory


@dataclass(frozen=True)
class Trust:
    confidence: Confidence
    lower: Resources
    upper: Resources
    confident: Resources


def assess(
    usage: ContainerUsage,
    current: Resources,
    recommended: Resources,
    cpu: CpuPeakTime | None,
    memory: MemoryLevels | None,
    settings: RecommendationSettings,
    cpu_limit_floor: Decimal | None,
) -> Trust:
    """Confidence, bounds and confident part of ``recommended``.

    Without CPU evidence (memory recommended alone after OOM kills) the CPU bounds are the request
    as it is. After OOM kills the memory recommendation is its own lower bound: a kill is certain.
    """
    window = usage.grid.window_seconds if usage.grid is not None else settings.confident_history_seconds
    covered = usage.covered_seconds
    depth = min(1.0, covered / min(window, settings.confident_history_seconds))
    widen = Decimal(str(2 - depth))
    low, high = settings.bound_percentiles
    target = Decimal(str(settings.cpu_target_utilization))
    headroom = 1 + Decimal(str(settings.memory_headroom))
    cpu_request = recommended.requests.get(CPU)
    memory_request = recommended.requests[MEMORY]

    bounds: dict[str, tuple[Decimal, Decimal]] = {}
    if cpu is not None and cpu_request is not None:
        step = settings.cpu_step_millicores
        lower = ceil_cpu(Decimal(str(cpu.daily.quantile(low))) / target / widen, step)
        upper = ceil_cpu(Decimal(str(cpu.daily.quantile(high))) / target * widen, step)
        bounds[CPU] = (min(lower, cpu_request), max(upper, cpu_request))
    elif cpu_request is not None:
        bounds[CPU] = (cpu_request, cpu_request)
    if memory is not None and not usage.oom_kills:
        swing = Decimal(str(memory.swing))  # the request covers the samples' swing above the means
        lower = ceil_memory((Decimal(str(memory.daily.quantile(low))) + swing) * headroom / widen)
        upper = ceil_memory((Decimal(str(memory.daily.quantile(high))) + swing) * headroom * widen)
        bounds[MEMORY] = (min(lower, memory_request), max(upper, memory_request))
    else:
        bounds[MEMORY] = (memory_request, max(memory_request, _widened(memory_request, widen)))

    confidence = Confidence(
        cpu=min(depth, cpu.daily.stability(low, high)) if cpu is not None else 0.0,
        memory=min(depth, memory.daily.stability(low, high)) if memory is not None else 0.0,
        days=covered / DAY_SECONDS,
        coverage=covered / window if window else 0.0,
    )
    lower_bound = _scaled(recommended, {r: b[0] for r, b in bounds.items()})
    upper_bound = _scaled(recommended, {r: b[1] for r, b in bounds.items()})
    floors = {CPU: cpu_limit_floor, MEMORY: _memory_peak(usage)}
    confident = _confident(current, recommended, bounds, floors)
    return Trust(confidence, lower_bound, upper_bound, confident)


def _confident(
    current: Resources,
    recommended: Resources,
    bounds: dict[str, tuple[Decimal, Decimal]],
    floors: dict[str, Decimal | None],
) -> Resources:
    """Each current request moved toward the recommendation, no further than the far bound; each
    limit with it, in proportion, but never past the limit in force against the recommendation's
    direction, and never below its floor (CPU: the band's; memory: the window's peak).

    Kept in proportion alone, a memory limit could go *down* in a change that raises memory: a
    request moved up only to its lower bound (256Mi -> 266Mi of a 2418Mi recommendation with a 1.5x
    limit) took the 512Mi limit to 399Mi, below what the container had already used.
    """
    requests = {}
    for resource, (lower, upper) in bounds.items():
        now = current.requests.get(resource)
        requests[resource] = recommended.requests[resource] if not now else min(max(now, lower), upper)
    confident = _scaled(recommended, requests)
    for resource, limit in confident.limits.items():
        in_force, wanted = current.limits.get(resource), recommended.limits[resource]
        if in_force is not None:
            limit = max(limit, min(in_force, wanted))  # not below the limit in force when going up
            limit = min(limit, max(in_force, wanted))  # nor above it when going down
        floor = floors.get(resource)
        if floor is not None:
            limit = max(limit, min(floor, wanted))
        confident.limits[resource] = max(limit, confident.requests.get(resource, limit))
    return confident


def _memory_peak(usage: ContainerUsage) -> Decimal | None:
    """The window's highest working set, which no memory limit goes below."""
    peak = usage.memory_peak_bytes
    return ceil_memory(Decimal(str(peak))) if peak else None


def _scaled(recommended: Resources, requests: dict[str, Decimal]) -> Resources:
    """``requests`` with the recommended limits kept in proportion (never below the request)."""
    limits = {}
    for resource, limit in recommended.limits.items():
        request, base = requests.get(resource), recommended.requests.get(resource)
        if request is None or not base:
            limits[resource] = limit
            continue
        scaled = limit * request / base
        rounded = ceil_cpu(scaled) if resource == CPU else ceil_memory(scaled)
        limits[resource] = max(rounded, request)
    return Resources({**recommended.requests, **requests}, limits)


def _widened(amount: Decimal, widen: Decimal) -> Decimal:
    return ceil_memory(amount * widen)

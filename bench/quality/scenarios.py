"""The benchmark's workloads: the demo cluster plus five workloads for the cases a right-sizer must get right.

Everything is built with the generator's public API (``rightsizer_demo.history``). Times are absolute: the
learning period starts at ``EPOCH`` (a Monday, 00:00 UTC, so daily cycles line up with UTC hours) and the
scoring period follows it without a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rightsizer_demo.history import (
    DAY,
    MIB,
    ContainerSpec,
    UsageModel,
    WorkloadSpec,
    demo_scenario,
)

EPOCH = 1_736_121_600
"""2025-01-06T00:00:00Z: the start of the learning period."""
EXTRA_NAMESPACE = "extra"
ModelKey = tuple[str, str, str]
"""(namespace, workload, container): which usage model drives a container."""


@dataclass(frozen=True)
class ExtraWorkload:
    """One of the benchmark's own workloads and the case it covers."""

    spec: WorkloadSpec
    case: str


def extra_workloads(start: float) -> list[ExtraWorkload]:
    """Five workloads created at ``start`` (the start of learning), each with a typical hand-set
    allocation."""
    return [
        ExtraWorkload(_steady(start), "steady CPU and memory, generously provisioned"),
        ExtraWorkload(_spiky(start), "2-minute CPU spikes of +1.2 cores, 24 a day, above a 1-core limit"),
        ExtraWorkload(_daily_cycle(start), "CPU from 0.05 to 1.55 cores every day (peak 19:00 UTC)"),
        ExtraWorkload(_slow_growth(start), "memory grows 20Mi a day and never restarts: +140Mi while scored"),
        ExtraWorkload(_leak(start), "leaks 300Mi a day under a 768Mi limit: OOM-killed every ~2 days"),
    ]


def scenario(learn_start: float, learn_end: float) -> list[WorkloadSpec]:
    """The demo cluster as seen at the end of learning, plus the extra workloads.

    ``demo_scenario`` is built for the learning window: ``shop/checkout`` rolls out halfway through it and
    ``shop/new-feature`` appears 6 h before its end (too young for rightsizer's 24 h minimum).
    """
    return [*demo_scenario(learn_start, learn_end), *(extra.spec for extra in extra_workloads(learn_start))]


def usage_models(workloads: Sequence[WorkloadSpec]) -> dict[ModelKey, UsageModel]:
    """The usage model behind every container, by (namespace, workload, container).

    A rollout's template wins over the first one: its pods are those alive in the scoring period.
    """
    models: dict[ModelKey, UsageModel] = {}
    for workload in workloads:
        templates = [workload.containers]
        if workload.rollout is not None and workload.rollout.containers is not None:
            templates.append(workload.rollout.containers)
        for containers in templates:
            for container in containers:
                models[(workload.namespace, workload.name, container.name)] = container.usage
    return models


def _spec(
    name: str,
    usage: UsageModel,
    requests: tuple[str, str],
    limits: tuple[str | None, str | None],
) -> ContainerSpec:
    """One container with (cpu, memory) requests and limits; None leaves a limit unset."""
    limit_map = {resource: value for resource, value in zip(("cpu", "memory"), limits, strict=True) if value}
    return ContainerSpec(name, usage, {"cpu": requests[0], "memory": requests[1]}, limit_map)


def _steady(start: float) -> WorkloadSpec:
    usage = UsageModel(0.25, 300 * MIB, cpu_noise=0.05, memory_noise=0.01)
    app = _spec("app", usage, ("500m", "1Gi"), ("1", "1Gi"))
    return WorkloadSpec(EXTRA_NAMESPACE, "steady", (app,), replicas=2, created_at=start)


def _spiky(start: float) -> WorkloadSpec:
    usage = UsageModel(
        0.1,
        250 * MIB,
        cpu_daily_amplitude_cores=0.05,
        bursts_per_day=24,
        burst_cores=1.2,
        burst_minutes=2,
    )
    app = _spec("app", usage, ("200m", "256Mi"), ("1", "512Mi"))
    return WorkloadSpec(EXTRA_NAMESPACE, "spiky", (app,), replicas=2, created_at=start)


def _daily_cycle(start: float) -> WorkloadSpec:
    usage = UsageModel(
        0.05, 700 * MIB, cpu_daily_amplitude_cores=1.5, cpu_peak_hour_utc=19, memory_noise=0.03
    )
    app = _spec("app", usage, ("1", "1Gi"), ("2", "1536Mi"))
    return WorkloadSpec(EXTRA_NAMESPACE, "daily-cycle", (app,), replicas=3, created_at=start)


def _slow_growth(start: float) -> WorkloadSpec:
    usage = UsageModel(
        0.1,
        400 * MIB,
        cpu_daily_amplitude_cores=0.05,
        memory_growth_bytes_per_day=20 * MIB,
        memory_noise=0.01,
    )
    index = _spec("index", usage, ("250m", "1Gi"), (None, "1Gi"))
    return WorkloadSpec(
        EXTRA_NAMESPACE, "slow-growth", (index,), kind="StatefulSet", replicas=2, created_at=start
    )


def _leak(start: float) -> WorkloadSpec:
    usage = UsageModel(0.05, 150 * MIB, cpu_daily_amplitude_cores=0.05, memory_growth_bytes_per_day=300 * MIB)
    app = _spec("app", usage, ("100m", "384Mi"), ("500m", "768Mi"))
    return WorkloadSpec(EXTRA_NAMESPACE, "leak", (app,), replicas=2, created_at=start)


def learning_end(days: int) -> float:
    """The end of day ``days`` counted from ``EPOCH``: where learning stops and scoring starts."""
    return EPOCH + days * DAY

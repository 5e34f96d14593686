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
    Autoscaling,
    ContainerSpec,
    ShortPod,
    UsageModel,
    WorkloadSpec,
    demo_scenario,
)

EPOCH = 1_736_121_600
"""2025-01-06T00:00:00Z: the start of the learning period."""
EXTRA_NAMESPACE = "extra"
ModelKey = tuple[str, str, str]
"""(namespace, workload, container): which usage model drives a container."""


PEAK_BAND = (0.70, 0.80)


@dataclass(frozen=True)
class Aim:
    """What a pattern's workload container should score under rightsizer: ``metric`` (a column of the
    per-container table, see ``report.container_table``) inside [low, high] (None: unbounded)."""

    text: str
    metric: str
    low: float | None = None
    high: float | None = None

    def met(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


IN_BAND = Aim("peak-time CPU at 70-80% of the request", "peak_to_request", *PEAK_BAND)


@dataclass(frozen=True)
class ExtraWorkload:
    """One of the benchmark's own workloads, the case it covers and, for the patterns of issue 7, what
    rightsizer should achieve on it."""

    spec: WorkloadSpec
    case: str
    aims: tuple[Aim, ...] = ()


def extra_workloads(start: float, end: float) -> list[ExtraWorkload]:
    """The benchmark's own workloads for a learning period [start, end), each with a typical hand-set
    allocation: five general cases, then the patterns of issue 7 with their aims."""
    return [
        ExtraWorkload(_steady(start), "steady CPU and memory, generously provisioned"),
        ExtraWorkload(_spiky(start), "2-minute CPU spikes of +1.2 cores, 24 a day, above a 1-core limit"),
        ExtraWorkload(_daily_cycle(start), "CPU from 0.05 to 1.55 cores every day (peak 19:00 UTC)"),
        ExtraWorkload(_slow_growth(start), "memory grows 20Mi a day and never restarts: +140Mi while scored"),
        ExtraWorkload(_leak(start), "leaks 300Mi a day under a 768Mi limit: OOM-killed every ~2 days"),
        *pattern_workloads(start, end),
    ]


def pattern_workloads(start: float, end: float) -> list[ExtraWorkload]:
    """The patterns of issue 7 ("Recommendations that hold under real Kubernetes patterns")."""
    return [
        ExtraWorkload(
            _canary(start, end),
            "steady 100m service (2 pods); a canary pod ran 15 min at 0.8 cores 1 day before the end",
            (IN_BAND, Aim("CPU limit within the profile's 2-4x of the request", "cpu_limit_ratio", 2, 4)),
        ),
        ExtraWorkload(
            _autoscaled(start),
            "2 to 8 replicas with the time of day, as under an HPA: pods added at 14:00 live a few hours",
            (IN_BAND,),
        ),
        ExtraWorkload(
            _hot_replica(start),
            "10 replicas, one with 3x the CPU demand: throttled 30% under its 300m limit (3% pooled)",
            (
                Aim(
                    "no replica throttled: demand above the limit in < 1% of the worst pod's samples",
                    "worst_pod_above_limit",
                    high=0.01,
                ),
            ),
        ),
        ExtraWorkload(
            _nightly_batch(start),
            "idle at 50m, 2 cores from 02:00 to 03:00 UTC every night",
            (
                Aim(
                    "busy-hour CPU (each day's busiest hour) at 70-80% of the request",
                    "busy_to_request",
                    *PEAK_BAND,
                ),
            ),
        ),
        ExtraWorkload(
            _step_down(start, end),
            "CPU 0.6 cores at peak, down to 40% 3 days before the end of learning (traffic moved away)",
            (IN_BAND,),
        ),
        ExtraWorkload(
            _slow_leak(start),
            "leaks 80Mi a day from 200Mi, never restarts: 760Mi at the end of learning, 1.3Gi at the end",
            (
                Aim("no OOM kill while scored", "oom_kills", high=0),
                Aim(
                    "working set above the memory request in < 10% of samples",
                    "above_memory_request",
                    high=0.10,
                ),
            ),
        ),
        ExtraWorkload(
            _spiky_memory(start),
            "300Mi, doubling for 2 minutes about every other day",
            (
                Aim("no OOM kill while scored", "oom_kills", high=0),
                Aim(
                    "working set above the memory request in < 0.5% of samples (issue 16)",
                    "above_memory_request",
                    high=0.005,
                ),
            ),
        ),
    ]


def scenario(learn_start: float, learn_end: float) -> list[WorkloadSpec]:
    """The demo cluster as seen at the end of learning, plus the extra workloads.

    ``demo_scenario`` is built for the learning window: ``shop/checkout`` rolls out halfway through it and
    ``shop/new-feature`` appears 6 h before its end (too young for rightsizer's 24 h minimum).
    """
    extra = extra_workloads(learn_start, learn_end)
    return [*demo_scenario(learn_start, learn_end), *(workload.spec for workload in extra)]


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


def _canary(start: float, end: float) -> WorkloadSpec:
    usage = UsageModel(0.1, 200 * MIB, cpu_noise=0.1, memory_noise=0.01)
    app = _spec("app", usage, ("250m", "256Mi"), ("1", "512Mi"))
    canary = ShortPod(end - DAY, 15 * 60, cpu_factor=8.0)
    return WorkloadSpec(EXTRA_NAMESPACE, "canary", (app,), replicas=2, created_at=start, short_pods=(canary,))


def _autoscaled(start: float) -> WorkloadSpec:
    usage = UsageModel(0.15, 300 * MIB, cpu_daily_amplitude_cores=0.15, cpu_peak_hour_utc=14)
    app = _spec("app", usage, ("500m", "512Mi"), ("1", "1Gi"))
    scaling = Autoscaling(max_replicas=8, peak_hour_utc=14)
    return WorkloadSpec(
        EXTRA_NAMESPACE, "autoscaled", (app,), replicas=2, created_at=start, autoscaling=scaling
    )


def _hot_replica(start: float) -> WorkloadSpec:
    usage = UsageModel(0.1, 200 * MIB, cpu_daily_amplitude_cores=0.02)
    app = _spec("app", usage, ("200m", "256Mi"), ("300m", "512Mi"))
    return WorkloadSpec(
        EXTRA_NAMESPACE, "hot-replica", (app,), replicas=10, created_at=start, replica_cpu_factors=(3.0,)
    )


def _nightly_batch(start: float) -> WorkloadSpec:
    usage = UsageModel(
        0.05, 400 * MIB, cpu_noise=0.05, batch_start_hour_utc=2, batch_hours=1, batch_cores=2.0
    )
    app = _spec("app", usage, ("500m", "512Mi"), ("4", "1Gi"))
    return WorkloadSpec(EXTRA_NAMESPACE, "nightly-batch", (app,), replicas=2, created_at=start)


def _step_down(start: float, end: float) -> WorkloadSpec:
    usage = UsageModel(
        0.3, 300 * MIB, cpu_daily_amplitude_cores=0.3, step_at=end - 3 * DAY, step_cpu_factor=0.4
    )
    app = _spec("app", usage, ("1", "512Mi"), ("2", "1Gi"))
    return WorkloadSpec(EXTRA_NAMESPACE, "step-down", (app,), replicas=2, created_at=start)


def _slow_leak(start: float) -> WorkloadSpec:
    usage = UsageModel(0.05, 200 * MIB, memory_growth_bytes_per_day=80 * MIB, memory_noise=0.01)
    app = _spec("app", usage, ("100m", "1Gi"), (None, "2Gi"))
    return WorkloadSpec(EXTRA_NAMESPACE, "slow-leak", (app,), replicas=2, created_at=start)


def _spiky_memory(start: float) -> WorkloadSpec:
    usage = UsageModel(0.05, 300 * MIB, memory_noise=0.01, memory_spikes_per_day=0.5, memory_spike_ratio=1.0)
    app = _spec("app", usage, ("100m", "1Gi"), (None, "1Gi"))
    return WorkloadSpec(EXTRA_NAMESPACE, "spiky-memory", (app,), replicas=2, created_at=start)


def learning_end(days: int) -> float:
    """The end of day ``days`` counted from ``EPOCH``: where learning stops and scoring starts."""
    return EPOCH + days * DAY

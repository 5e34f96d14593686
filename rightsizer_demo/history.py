"""Workload history: the cAdvisor and kube-state-metrics series of docs/metrics.md, as a cluster exports them.

The model is simple but keeps every behaviour a right-sizer has to get right: daily cycles and bursts, CPU
capped at its limit with CFS throttling, memory leaks ending in OOM kills and restarts, rollouts that replace
pods, workloads too young to judge, and workloads kube-state-metrics does not see.

Determinism: every random number comes from a generator keyed by (seed, pod, container, stream, UTC day),
and every pod is simulated from its own start whatever window is asked for. The value at a timestamp thus
depends only on the seed, the workloads and the step, so history exported for days 0-N and the ground
truth read for days N-M are one and the same trajectory ("learn on the past, score on the future").
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np
import pandas as pd

from rightsizer.quantity import parse
from rightsizer.units import CPU, MEMORY

DAY = 86400
MIB = 1024 * 1024
KINDS = ("Deployment", "StatefulSet")
POD_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""Kubernetes' ``SafeEncodeString`` alphabet (no vowels, no look-alike characters) for hashes and suffixes."""
CFS_PERIODS_PER_SECOND = 10
"""The kernel's CFS period is 100 ms: a container running with a CPU limit counts ~600 periods a minute."""
THROTTLE_ONSET = 0.9
THROTTLE_SPAN = 0.6
"""Throttled share of periods: 0 below 90 % of the limit, rising linearly to 1 at 150 % (demand / limit)."""
PAUSE_CPU_CORES = 0.0002
PAUSE_MEMORY_BYTES = 600 * 1024
TRUTH_COLUMNS = (
    "namespace",
    "kind",
    "workload",
    "pod",
    "container",
    "timestamp",
    "cpu_cores",
    "cpu_demand_cores",
    "throttled_fraction",
    "memory_bytes",
    "oom_kill",
    "restarts",
    "cpu_request",
    "cpu_limit",
    "memory_request",
    "memory_limit",
)


@dataclass(frozen=True)
class UsageModel:
    """What a container would use if nothing stopped it (its demand), before its limits apply.

    CPU demand is ``(base + amplitude * daily) * (1 + cpu_noise * N(0, 1))`` plus bursts, where ``daily``
    is a cosine that is 1 at ``cpu_peak_hour_utc`` and 0 twelve hours later; bursts of ``burst_cores``
    start ``bursts_per_day`` times a day on average and last ``burst_minutes``; a nightly batch adds
    ``batch_cores`` every day for ``batch_hours`` from ``batch_start_hour_utc``. From ``step_at`` (epoch
    seconds) on, all of it is multiplied by ``step_cpu_factor`` (a load step). The memory working set is
    ``(base + growth * age) * (1 + memory_noise * N(0, 1)) * spike`` with ``age`` counted from the
    container's last start, so a leak starts over after an OOM kill; ``spike`` is ``1 + memory_spike_ratio``
    during spikes (``memory_spikes_per_day`` on average, ``memory_spike_minutes`` long), else 1.
    """

    cpu_base_cores: float
    memory_base_bytes: float
    cpu_daily_amplitude_cores: float = 0.0
    cpu_peak_hour_utc: float = 14.0
    cpu_noise: float = 0.1
    bursts_per_day: float = 0.0
    burst_cores: float = 0.0
    burst_minutes: float = 5.0
    memory_growth_bytes_per_day: float = 0.0
    memory_noise: float = 0.02
    batch_start_hour_utc: float = 0.0
    batch_hours: float = 0.0
    batch_cores: float = 0.0
    step_at: float | None = None
    step_cpu_factor: float = 1.0
    memory_spikes_per_day: float = 0.0
    memory_spike_ratio: float = 0.0
    memory_spike_minutes: float = 2.0


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a pod template: resources as written in a manifest (``{"cpu": "250m"}``; a
    resource left out is not set) and the usage model that drives its metrics."""

    name: str
    usage: UsageModel
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)

    def request(self, resource: str) -> float | None:
        """The request in base units (cores, bytes) as kube-state-metrics exports it, or None when unset."""
        return _amount(self.requests, resource)

    def limit(self, resource: str) -> float | None:
        """The limit in base units (cores, bytes), or None when unset."""
        return _amount(self.limits, resource)


@dataclass(frozen=True)
class Rollout:
    """A new pod template at ``at`` (epoch seconds): every pod is replaced by one of a new ReplicaSet.

    ``containers`` is the new template's containers (changed resources, usually); None keeps them.
    """

    at: float
    containers: tuple[ContainerSpec, ...] | None = None


@dataclass(frozen=True)
class ShortPod:
    """A pod of a ReplicaSet of its own that lives ``seconds`` from ``at``: a canary, or a crash-looping pod.

    Its containers are the template's with CPU demand multiplied by ``cpu_factor`` (a canary of a new
    version that burns CPU, a pod busy starting up).
    """

    at: float
    seconds: float
    cpu_factor: float = 1.0


@dataclass(frozen=True)
class Autoscaling:
    """Replicas that come and go as under a HorizontalPodAutoscaler: from ``WorkloadSpec.replicas`` at the
    quiet time of day up to ``max_replicas`` around ``peak_hour_utc``, following a daily cosine re-evaluated
    every ``period_seconds``. Each replica added is a new pod, deleted when the workload scales down."""

    max_replicas: int
    peak_hour_utc: float = 14.0
    period_seconds: int = 1800


@dataclass(frozen=True)
class HpaTarget:
    """A HorizontalPodAutoscaler on the workload, named after it, scaling on ``resource`` at
    ``utilization`` percent of the request: exported as kube-state-metrics does
    (``kube_horizontalpodautoscaler_info`` and ``kube_horizontalpodautoscaler_spec_target_metric``)."""

    resource: str = CPU
    utilization: int = 70


@dataclass(frozen=True)
class WorkloadSpec:
    """A Deployment or StatefulSet and how its pods behave.

    Times are absolute epoch seconds, not fractions of a window, so that any window of the history is a
    slice of one trajectory. Pods are simulated from ``created_at`` on (counters start there), whatever the
    window asked for; ``created_at`` after the start of a window makes a workload too young to judge;
    ``kube_state_metrics=False`` exports no kube-state-metrics series at all for it, as when KSM is not
    scraped, so that owners have to come from pod names. ``short_pods`` adds short-lived pods (canaries),
    ``replica_cpu_factors`` multiplies the CPU demand of replica ``i`` by its ``i``-th factor (a hot replica
    behind uneven load balancing), ``autoscaling`` makes replicas come and go, ``hpa`` exports the
    kube-state-metrics series of an HPA on it.
    """

    namespace: str
    name: str
    containers: tuple[ContainerSpec, ...]
    created_at: float
    kind: str = "Deployment"
    replicas: int = 1
    rollout: Rollout | None = None
    kube_state_metrics: bool = True
    short_pods: tuple[ShortPod, ...] = ()
    replica_cpu_factors: tuple[float, ...] = ()
    autoscaling: Autoscaling | None = None
    hpa: HpaTarget | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.namespace}/{self.name}: kind {self.kind!r} is not one of {KINDS}")
        if self.replicas < 1 or not self.containers:
            raise ValueError(f"{self.namespace}/{self.name}: needs at least one replica and one container")
        if self.rollout is not None and (self.kind != "Deployment" or self.rollout.at <= self.created_at):
            raise ValueError(f"{self.namespace}/{self.name}: a rollout needs a Deployment and a later time")
        scales = self.short_pods or self.autoscaling is not None
        if scales and (self.kind != "Deployment" or self.rollout is not None):
            raise ValueError(f"{self.namespace}/{self.name}: short pods and autoscaling need a Deployment")
        if self.autoscaling is not None and self.autoscaling.max_replicas < self.replicas:
            raise ValueError(f"{self.namespace}/{self.name}: max_replicas is below replicas")


@dataclass(frozen=True)
class PodPlan:
    """One pod of a workload: its name, direct owner, template containers and lifetime [start, end)."""

    workload: WorkloadSpec
    name: str
    owner_kind: str
    owner_name: str
    containers: tuple[ContainerSpec, ...]
    start: float
    end: float = math.inf
    cpu_factor: float = 1.0
    """The pod's CPU demand is its containers' usage model's times this (a hot replica, a canary)."""

    @property
    def namespace(self) -> str:
        return self.workload.namespace


def pod_plans(workload: WorkloadSpec, *, seed: int = 0) -> list[PodPlan]:
    """The pods a workload has over its life, named as Kubernetes names them.

    StatefulSet pods are ``<name>-0..N-1``. Deployment pods are ``<deployment>-<hash>-<suffix>`` owned by
    the ReplicaSet ``<deployment>-<hash>`` (hash: 10 characters, suffix: 5, from ``POD_NAME_ALPHABET``);
    a rollout ends every pod and starts as many of a new ReplicaSet with a new hash. Short pods have a
    ReplicaSet each; replicas added by autoscaling are pods of the workload's ReplicaSet that live from
    the scale-up to the scale-down.
    """
    if workload.kind == "StatefulSet":
        return [
            PodPlan(
                workload,
                f"{workload.name}-{i}",
                "StatefulSet",
                workload.name,
                workload.containers,
                workload.created_at,
                cpu_factor=_replica_factor(workload, i),
            )
            for i in range(workload.replicas)
        ]
    templates = [(workload.created_at, workload.containers)]
    if workload.rollout is not None:
        templates.append((workload.rollout.at, workload.rollout.containers or workload.containers))
    ends = [start for start, _ in templates[1:]] + [math.inf]
    plans = []
    for revision, ((start, containers), end) in enumerate(zip(templates, ends, strict=True)):
        template_hash = _k8s_string(10, seed, workload.namespace, workload.name, revision)
        replicaset = f"{workload.name}-{template_hash}"
        plans += [
            PodPlan(
                workload,
                f"{replicaset}-{_k8s_string(5, seed, workload.namespace, replicaset, i)}",
                "ReplicaSet",
                replicaset,
                containers,
                start,
                end,
                cpu_factor=_replica_factor(workload, i),
            )
            for i in range(workload.replicas)
        ]
    return plans + _short_pod_plans(workload, seed) + _autoscaled_pod_plans(workload, seed)


def _replica_factor(workload: WorkloadSpec, replica: int) -> float:
    factors = workload.replica_cpu_factors
    return factors[replica] if replica < len(factors) else 1.0


def _short_pod_plans(workload: WorkloadSpec, seed: int) -> list[PodPlan]:
    plans = []
    for index, short in enumerate(workload.short_pods):
        replicaset = (
            f"{workload.name}-{_k8s_string(10, seed, workload.namespace, workload.name, 'short', index)}"
        )
        name = f"{replicaset}-{_k8s_string(5, seed, workload.namespace, replicaset, 0)}"
        plans.append(
            PodPlan(
                workload,
                name,
                "ReplicaSet",
                replicaset,
                workload.containers,
                short.at,
                short.at + short.seconds,
                cpu_factor=short.cpu_factor,
            )
        )
    return plans


def _autoscaled_pod_plans(workload: WorkloadSpec, seed: int, horizon_days: int = 60) -> list[PodPlan]:
    """The pods autoscaling adds above ``replicas``, for ``horizon_days`` from the workload's creation."""
    scaling = workload.autoscaling
    if scaling is None:
        return []
    times = np.arange(workload.created_at, workload.created_at + horizon_days * DAY, scaling.period_seconds)
    hours = (times % DAY) / 3600.0
    daily = 0.5 * (1.0 + np.cos(2.0 * np.pi * (hours - scaling.peak_hour_utc) / 24.0))
    replicas = workload.replicas + np.round((scaling.max_replicas - workload.replicas) * daily).astype(int)
    replicaset = f"{workload.name}-{_k8s_string(10, seed, workload.namespace, workload.name, 0)}"
    plans = []
    for slot in range(workload.replicas, scaling.max_replicas):
        alive = np.concatenate(([False], replicas > slot, [False])).astype(int)
        starts = np.flatnonzero(np.diff(alive) == 1)
        ends = np.flatnonzero(np.diff(alive) == -1)
        for first, last in zip(starts, ends, strict=True):
            start = float(times[first])
            end = float(times[last]) if last < len(times) else math.inf
            suffix = _k8s_string(5, seed, workload.namespace, replicaset, slot, start)
            plans.append(
                PodPlan(
                    workload,
                    f"{replicaset}-{suffix}",
                    "ReplicaSet",
                    replicaset,
                    workload.containers,
                    start,
                    end,
                    cpu_factor=_replica_factor(workload, slot),
                )
            )
    return plans


def window_ending_now(
    duration_seconds: float, step_seconds: int, now: float | None = None
) -> tuple[int, int]:
    """``(start, end)`` of a history ending at the last step boundary before ``now``.

    Instant queries evaluate at "now" and look back 5 minutes: history must reach up to now to be seen.
    """
    now = time.time() if now is None else now
    end = math.floor(now / step_seconds) * step_seconds
    return int(end - duration_seconds), end


def ground_truth(
    workloads: Sequence[WorkloadSpec], start: float, end: float, step_seconds: int, *, seed: int = 0
) -> pd.DataFrame:
    """What really happened, one row per container and step in [start, end], for scoring recommendations.

    Columns are ``TRUTH_COLUMNS``: ``cpu_cores`` is the usage over the step ending at ``timestamp`` (what
    ``rate()`` sees), ``cpu_demand_cores`` what the container wanted before its CPU limit, ``oom_kill`` True
    at the step in which the container was OOM-killed, requests and limits those of the pod (NaN: unset).
    """
    history = _History.build(workloads, start, end, step_seconds, seed)
    frames = [_truth_frame(pod, container) for pod in history.pods for container in pod.containers]
    if not frames:
        return pd.DataFrame(columns=list(TRUTH_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def write_openmetrics(
    workloads: Sequence[WorkloadSpec],
    path: str | Path,
    start: float,
    end: float,
    step_seconds: int,
    *,
    seed: int = 0,
) -> int:
    """Write the history of [start, end] as OpenMetrics text for ``promtool tsdb create-blocks-from``.

    Samples are on the step grid (multiples of ``step_seconds``, timestamps in seconds), one family after
    the other, streamed series by series. Returns the number of samples written.
    """
    return _write_history(_History.build(workloads, start, end, step_seconds, seed), path)


@dataclass(frozen=True)
class Recording:
    """One pod of one container whose usage was recorded elsewhere (a real trace), not simulated.

    ``workload`` names it (its pod is the workload's first, as ``pod_plans`` names it) and gives its
    requests and limits; ``times`` are its scrapes (epoch seconds, ascending; gaps where nothing was
    scraped), ``cpu_seconds`` the CPU counter and ``memory_bytes`` the working set at each scrape. How
    the trace's samples became scrapes is the caller's to say (bench/real_trace.py).
    """

    workload: WorkloadSpec
    times: np.ndarray
    cpu_seconds: np.ndarray
    memory_bytes: np.ndarray

    def __post_init__(self) -> None:
        if len(self.workload.containers) != 1 or self.workload.replicas != 1:
            raise ValueError(f"{self.workload.name}: a recording is one pod of one container")
        if not len(self.times) == len(self.cpu_seconds) == len(self.memory_bytes):
            raise ValueError(f"{self.workload.name}: times, CPU and memory differ in length")


def write_recorded_openmetrics(
    recordings: Sequence[Recording],
    path: str | Path,
    start: float,
    end: float,
    step_seconds: int,
    *,
    pod_series: bool = True,
) -> int:
    """``write_openmetrics`` for recorded usage: the same series, scrapes in [start, end] as recorded.

    ``step_seconds`` is the scrape interval of the series that have no recording of their own (the
    ReplicaSets' owners). ``pod_series=False`` leaves out the pod cgroup's and the pause container's
    CPU and working set, which rightsizer's selectors leave out too (a third of the samples of a pod of
    one container). Returns the number of samples written.
    """
    history = _History.recorded(recordings, start, end, step_seconds, pod_series)
    return _write_history(history, path)


def _write_history(history: _History, path: str | Path) -> int:
    samples = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for family in _FAMILIES:
            out.write(f"# TYPE {family.name} {family.type}\n")
            for series in family.series(history):
                samples += _write_series(out, family.sample_name, series)
        out.write("# EOF\n")
    return samples


def demo_scenario(start: float, end: float) -> list[WorkloadSpec]:
    """The demo cluster, for a history window [start, end] (epoch seconds).

    Over-provisioned: ``shop/web``, ``batch/worker``, ``shop/checkout`` (until its rollout, halfway).
    Under-provisioned: ``shop/cart`` (memory leak, OOM-killed about every 30 h), ``shop/search`` (CPU limit
    far below demand). Special cases: ``data/redis`` (StatefulSet), ``shop/new-feature`` (only the last 6 h),
    ``legacy/api`` (no kube-state-metrics).
    """
    web = _container(
        "app",
        ("1", "1Gi"),
        ("2", "1Gi"),
        UsageModel(0.15, 350 * MIB, cpu_daily_amplitude_cores=0.35, bursts_per_day=12, burst_cores=0.6),
    )
    log_shipper = _container(
        "log-shipper",
        ("100m", "128Mi"),
        (None, "128Mi"),
        UsageModel(0.02, 60 * MIB, cpu_daily_amplitude_cores=0.03),
    )
    cart = _container(
        "app",
        ("250m", "256Mi"),
        (None, "512Mi"),
        UsageModel(0.1, 200 * MIB, cpu_daily_amplitude_cores=0.1, memory_growth_bytes_per_day=250 * MIB),
    )
    search = _container(
        "app",
        ("250m", "512Mi"),
        ("500m", "1Gi"),
        UsageModel(
            0.6,
            400 * MIB,
            cpu_daily_amplitude_cores=0.6,
            cpu_peak_hour_utc=13,
            bursts_per_day=8,
            burst_cores=0.5,
        ),
    )
    worker = _container(
        "worker",
        ("2", "4Gi"),
        ("2", "4Gi"),
        UsageModel(
            0.3,
            800 * MIB,
            cpu_daily_amplitude_cores=0.2,
            cpu_peak_hour_utc=3,
            bursts_per_day=24,
            burst_cores=1.0,
            burst_minutes=15,
        ),
    )
    checkout = _container(
        "app",
        ("500m", "512Mi"),
        ("1", "512Mi"),
        UsageModel(0.15, 300 * MIB, cpu_daily_amplitude_cores=0.2, bursts_per_day=6, burst_cores=0.3),
    )
    checkout_v2 = replace(
        checkout, requests={CPU: "300m", MEMORY: "384Mi"}, limits={CPU: "1", MEMORY: "768Mi"}
    )
    redis = _container(
        "redis",
        ("500m", "2Gi"),
        (None, "2Gi"),
        UsageModel(
            0.08,
            1200 * MIB,
            cpu_daily_amplitude_cores=0.05,
            memory_growth_bytes_per_day=20 * MIB,
            memory_noise=0.01,
        ),
    )
    new_feature = _container("app", ("100m", "128Mi"), (None, None), UsageModel(0.05, 90 * MIB))
    legacy = _container(
        "app", ("500m", "512Mi"), ("1", "1Gi"), UsageModel(0.1, 250 * MIB, cpu_daily_amplitude_cores=0.1)
    )
    halfway = Rollout(start + (end - start) / 2, (checkout_v2,))
    return [
        WorkloadSpec("shop", "web", (web, log_shipper), replicas=3, created_at=start),
        WorkloadSpec("shop", "cart", (cart,), replicas=2, created_at=start),
        WorkloadSpec("shop", "search", (search,), replicas=2, created_at=start),
        WorkloadSpec("batch", "worker", (worker,), replicas=2, created_at=start),
        WorkloadSpec("shop", "checkout", (checkout,), replicas=2, created_at=start, rollout=halfway),
        WorkloadSpec("data", "redis", (redis,), kind="StatefulSet", replicas=3, created_at=start),
        WorkloadSpec("shop", "new-feature", (new_feature,), created_at=end - 6 * 3600),
        WorkloadSpec("legacy", "api", (legacy,), replicas=2, created_at=start, kube_state_metrics=False),
    ]


def _container(
    name: str,
    requests: tuple[str | None, str | None],
    limits: tuple[str | None, str | None],
    usage: UsageModel,
) -> ContainerSpec:
    """A container from ``(cpu, memory)`` requests and limits, None for a resource left unset."""
    return ContainerSpec(name, usage, _resources_dict(requests), _resources_dict(limits))


def _resources_dict(cpu_memory: tuple[str | None, str | None]) -> dict[str, str]:
    return {resource: value for resource, value in zip((CPU, MEMORY), cpu_memory, strict=True) if value}


def _amount(quantities: Mapping[str, str], resource: str) -> float | None:
    value = quantities.get(resource)
    return None if value is None else float(parse(value, field=resource))


def _digest(*parts: object, size: int = 8) -> bytes:
    """A stable hash (Python's ``hash()`` is salted per process)."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=size).digest()


def _k8s_string(length: int, *parts: object) -> str:
    return "".join(POD_NAME_ALPHABET[byte % len(POD_NAME_ALPHABET)] for byte in _digest(*parts, size=length))


# --- simulation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ContainerTrace:
    """One container's arrays on its pod's time grid; counters restart with each container instance."""

    spec: ContainerSpec
    cpu_demand: np.ndarray
    cpu_cores: np.ndarray
    cpu_seconds: np.ndarray
    throttled_fraction: np.ndarray
    cfs_periods: np.ndarray
    cfs_throttled_periods: np.ndarray
    memory_bytes: np.ndarray
    oom_kill: np.ndarray
    restarts: np.ndarray

    def since(self, first: int) -> _ContainerTrace:
        arrays = {f.name: getattr(self, f.name)[first:] for f in fields(self) if f.name != "spec"}
        return replace(self, **arrays)


@dataclass(frozen=True)
class _PodTrace:
    """One pod: its containers plus the pod cgroup (``container=""``) and pause container (``"POD"``)."""

    plan: PodPlan
    times: np.ndarray
    containers: tuple[_ContainerTrace, ...]
    cgroup_cpu_seconds: np.ndarray
    cgroup_memory_bytes: np.ndarray
    pause_cpu_seconds: np.ndarray

    def since(self, start: float) -> _PodTrace:
        first = int(np.searchsorted(self.times, start))
        return _PodTrace(
            self.plan,
            self.times[first:],
            tuple(c.since(first) for c in self.containers),
            self.cgroup_cpu_seconds[first:],
            self.cgroup_memory_bytes[first:],
            self.pause_cpu_seconds[first:],
        )


@dataclass(frozen=True)
class _History:
    """Everything one export needs: all pod plans, and the traces of the pods alive in the window."""

    plans: list[PodPlan]
    pods: list[_PodTrace]
    start: float
    end: float
    step: int
    pod_series: bool = True
    """Whether the pod cgroup's and the pause container's cAdvisor series are written too."""

    @classmethod
    def build(
        cls, workloads: Sequence[WorkloadSpec], start: float, end: float, step: int, seed: int
    ) -> _History:
        if step < 1 or end < start:
            raise ValueError(f"need step_seconds >= 1 and start <= end, got {step}, [{start}, {end}]")
        plans = [plan for workload in workloads for plan in pod_plans(workload, seed=seed)]
        pods = []
        for plan in plans:
            times = _grid(plan.start, min(end, _before(plan.end, step)), step)
            if times.size and times[-1] >= start:
                pods.append(_simulate_pod(plan, times, step, seed).since(start))
        return cls(plans, pods, start, end, step)

    @classmethod
    def recorded(
        cls, recordings: Sequence[Recording], start: float, end: float, step: int, pod_series: bool
    ) -> _History:
        plans, pods = [], []
        for recording in recordings:
            (plan,) = pod_plans(recording.workload)
            plans.append(plan)
            within = (recording.times >= start) & (recording.times <= end)
            if within.any():
                pods.append(_recorded_pod(plan, recording, within))
        return cls(plans, pods, start, end, step, pod_series)


def _grid(start: float, end: float, step: int) -> np.ndarray:
    """The step boundaries in [start, end], as int64 epoch seconds."""
    first = math.ceil(start / step) * step
    last = math.floor(end / step) * step
    return np.arange(first, last + 1, step, dtype=np.int64)


def _before(end: float, step: int) -> float:
    """The last step boundary strictly before ``end`` (a pod ending at ``end`` is gone at ``end``)."""
    return end if math.isinf(end) else math.ceil(end / step) * step - step


def _simulate_pod(plan: PodPlan, times: np.ndarray, step: int, seed: int) -> _PodTrace:
    containers = tuple(_simulate_container(plan, spec, times, step, seed) for spec in plan.containers)
    cpu = sum(c.cpu_cores for c in containers) + PAUSE_CPU_CORES
    memory = sum(c.memory_bytes for c in containers) + PAUSE_MEMORY_BYTES
    pause_cpu = PAUSE_CPU_CORES * step * np.arange(1, len(times) + 1)
    return _PodTrace(plan, times, containers, np.cumsum(cpu * step), memory, pause_cpu)


def _recorded_pod(plan: PodPlan, recording: Recording, within: np.ndarray) -> _PodTrace:
    times = recording.times[within].astype(np.int64)
    cpu_seconds = recording.cpu_seconds[within].astype(float)
    elapsed = np.diff(times, prepend=times[0])
    cores = np.diff(cpu_seconds, prepend=cpu_seconds[0]) / np.maximum(elapsed, 1)
    zeros, never = np.zeros(len(times)), np.zeros(len(times), dtype=bool)
    (spec,) = plan.containers
    trace = _ContainerTrace(
        spec=spec,
        cpu_demand=cores,
        cpu_cores=cores,
        cpu_seconds=cpu_seconds,
        throttled_fraction=zeros,
        cfs_periods=zeros,
        cfs_throttled_periods=zeros,
        memory_bytes=recording.memory_bytes[within].astype(float),
        oom_kill=never,
        restarts=zeros,
    )
    # The pause container's counter runs from the pod's start; the pod cgroup's adds the container's.
    pause_cpu = PAUSE_CPU_CORES * (times - times[0] + 1.0)
    return _PodTrace(
        plan, times, (trace,), cpu_seconds + pause_cpu, trace.memory_bytes + PAUSE_MEMORY_BYTES, pause_cpu
    )


def _simulate_container(
    plan: PodPlan, spec: ContainerSpec, times: np.ndarray, step: int, seed: int
) -> _ContainerTrace:
    key = (seed, plan.namespace, plan.name, spec.name)
    demand = _cpu_demand(key, spec.usage, times, step) * plan.cpu_factor
    memory, oom = _memory(key, spec, times, step)
    cpu_limit = spec.limit(CPU)
    cores = demand if cpu_limit is None else np.minimum(demand, cpu_limit)
    throttled = _throttled_fraction(demand, cpu_limit)
    periods = np.full(len(times), 0.0 if cpu_limit is None else float(CFS_PERIODS_PER_SECOND * step))
    return _ContainerTrace(
        spec=spec,
        cpu_demand=demand,
        cpu_cores=cores,
        cpu_seconds=_counter(cores * step, oom),
        throttled_fraction=throttled,
        cfs_periods=_counter(periods, oom),
        cfs_throttled_periods=_counter(np.round(periods * throttled), oom),
        memory_bytes=memory,
        oom_kill=oom,
        restarts=np.cumsum(oom),
    )


def _cpu_demand(key: tuple[object, ...], usage: UsageModel, times: np.ndarray, step: int) -> np.ndarray:
    hours = (times % DAY) / 3600.0
    daily = 0.5 * (1.0 + np.cos(2.0 * np.pi * (hours - usage.cpu_peak_hour_utc) / 24.0))
    level = usage.cpu_base_cores + usage.cpu_daily_amplitude_cores * daily
    noise = _draws((*key, "cpu"), times, step, np.random.Generator.standard_normal)
    noisy = level * (1.0 + usage.cpu_noise * noise)
    demand = noisy + _bursts(key, usage, times, step) + _batch(usage, hours)
    if usage.step_at is not None:
        demand = np.where(times >= usage.step_at, demand * usage.step_cpu_factor, demand)
    return np.maximum(demand, 0.001)


def _batch(usage: UsageModel, hours: np.ndarray) -> np.ndarray:
    """Extra cores while the nightly batch runs: every day for ``batch_hours`` from its start hour."""
    since_start = (hours - usage.batch_start_hour_utc) % 24.0
    return usage.batch_cores * (since_start < usage.batch_hours)


def _bursts(key: tuple[object, ...], usage: UsageModel, times: np.ndarray, step: int) -> np.ndarray:
    """Extra cores while a burst runs: bursts start at random steps and last ``burst_minutes``."""
    probability = min(1.0, usage.bursts_per_day * step / DAY)
    starts = _draws((*key, "burst"), times, step, np.random.Generator.random) < probability
    length = max(1, round(usage.burst_minutes * 60 / step))
    running = np.convolve(starts.astype(float), np.ones(length))[: len(times)] > 0
    return usage.burst_cores * running


def _memory_spikes(key: tuple[object, ...], usage: UsageModel, times: np.ndarray, step: int) -> np.ndarray:
    """The working set's multiplier: ``1 + memory_spike_ratio`` while a spike runs, else 1."""
    if usage.memory_spikes_per_day <= 0:
        return np.ones(len(times))
    probability = min(1.0, usage.memory_spikes_per_day * step / DAY)
    starts = _draws((*key, "memory-spike"), times, step, np.random.Generator.random) < probability
    length = max(1, round(usage.memory_spike_minutes * 60 / step))
    running = np.convolve(starts.astype(float), np.ones(length))[: len(times)] > 0
    return 1.0 + usage.memory_spike_ratio * running


def _memory(
    key: tuple[object, ...], spec: ContainerSpec, times: np.ndarray, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Working set and OOM kills: above the memory limit the container is killed and starts over.

    The sample of the step with the kill is the new container's first one (the kill happened in between).
    """
    normal = _draws((*key, "memory"), times, step, np.random.Generator.standard_normal)
    noise = (1.0 + spec.usage.memory_noise * normal) * _memory_spikes(key, spec.usage, times, step)
    memory = _working_set(spec.usage, times - times[0], noise)
    oom = np.zeros(len(times), dtype=bool)
    limit = spec.limit(MEMORY)
    if limit is None:
        return memory, oom
    first = 0
    while (over := np.flatnonzero(memory[first:] > limit)).size:
        kill = first + int(over[0])
        oom[kill] = True
        memory[kill:] = _working_set(spec.usage, times[kill:] - times[kill], noise[kill:])
        first = kill + 1
    return np.minimum(memory, limit), oom


def _working_set(usage: UsageModel, age_seconds: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return (usage.memory_base_bytes + usage.memory_growth_bytes_per_day * age_seconds / DAY) * noise


def _throttled_fraction(demand: np.ndarray, cpu_limit: float | None) -> np.ndarray:
    if cpu_limit is None:
        return np.zeros(len(demand))
    return np.clip((demand / cpu_limit - THROTTLE_ONSET) / THROTTLE_SPAN, 0.0, 1.0)


def _counter(increments: np.ndarray, restarted: np.ndarray) -> np.ndarray:
    """A cumulative counter that starts over at each container restart (a new cgroup counts from zero)."""
    total = np.cumsum(increments)
    before = np.concatenate(([0.0], total[:-1]))
    offsets = np.concatenate(([0.0], before[restarted]))
    return total - offsets[np.cumsum(restarted)]


def _draws(
    key: tuple[object, ...],
    times: np.ndarray,
    step: int,
    draw: Callable[[np.random.Generator, int], np.ndarray],
) -> np.ndarray:
    """Random values at ``times``, from one generator per UTC day: independent of the window asked for."""
    slots_per_day = -(-DAY // step)
    days = times // DAY
    slots = (times % DAY) // step
    values = np.empty(len(times))
    for day in np.unique(days):
        in_day = days == day
        rng = np.random.default_rng([int.from_bytes(_digest(*key)), int(day)])
        values[in_day] = draw(rng, slots_per_day)[slots[in_day]]
    return values


def _truth_frame(pod: _PodTrace, trace: _ContainerTrace) -> pd.DataFrame:
    plan, spec = pod.plan, trace.spec
    return pd.DataFrame(
        {
            "namespace": plan.namespace,
            "kind": plan.workload.kind,
            "workload": plan.workload.name,
            "pod": plan.name,
            "container": spec.name,
            "timestamp": pd.to_datetime(pod.times, unit="s", utc=True),
            "cpu_cores": trace.cpu_cores,
            "cpu_demand_cores": trace.cpu_demand,
            "throttled_fraction": trace.throttled_fraction,
            "memory_bytes": trace.memory_bytes,
            "oom_kill": trace.oom_kill,
            "restarts": trace.restarts,
            "cpu_request": _or_nan(spec.request(CPU)),
            "cpu_limit": _or_nan(spec.limit(CPU)),
            "memory_request": _or_nan(spec.request(MEMORY)),
            "memory_limit": _or_nan(spec.limit(MEMORY)),
        }
    )


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


# --- OpenMetrics --------------------------------------------------------------------------------------


class _Series(NamedTuple):
    labels: dict[str, str]
    times: np.ndarray
    values: Iterable[str]


@dataclass(frozen=True)
class _Family:
    name: str
    type: str
    series: Callable[[_History], Iterator[_Series]]

    @property
    def sample_name(self) -> str:
        """OpenMetrics names a counter family without ``_total`` and its samples with it."""
        return f"{self.name}_total" if self.type == "counter" else self.name


def _cpu_usage(history: _History) -> Iterator[_Series]:
    for pod in history.pods:
        for trace in pod.containers:
            yield _Series(_cadvisor(pod, trace.spec.name), pod.times, _floats(trace.cpu_seconds))
        if history.pod_series:
            yield _Series(_cadvisor(pod, ""), pod.times, _floats(pod.cgroup_cpu_seconds))
            yield _Series(_cadvisor(pod, "POD"), pod.times, _floats(pod.pause_cpu_seconds))


def _working_set_bytes(history: _History) -> Iterator[_Series]:
    for pod in history.pods:
        for trace in pod.containers:
            yield _Series(_cadvisor(pod, trace.spec.name), pod.times, _integers(trace.memory_bytes))
        if history.pod_series:
            yield _Series(_cadvisor(pod, ""), pod.times, _integers(pod.cgroup_memory_bytes))
            yield _Series(_cadvisor(pod, "POD"), pod.times, _constant(PAUSE_MEMORY_BYTES, pod.times))


def _cfs_periods(history: _History) -> Iterator[_Series]:
    for pod, trace in _cpu_limited(history):
        yield _Series(_cadvisor(pod, trace.spec.name), pod.times, _integers(trace.cfs_periods))


def _cfs_throttled_periods(history: _History) -> Iterator[_Series]:
    for pod, trace in _cpu_limited(history):
        yield _Series(_cadvisor(pod, trace.spec.name), pod.times, _integers(trace.cfs_throttled_periods))


def _pod_owner(history: _History) -> Iterator[_Series]:
    for pod in _observed(history.pods):
        owner = {"owner_kind": pod.plan.owner_kind, "owner_name": pod.plan.owner_name}
        yield _Series(_ksm(pod, **owner, owner_is_controller="true"), pod.times, _constant(1, pod.times))


def _replicaset_owner(history: _History) -> Iterator[_Series]:
    """ReplicaSets outlive their pods: an old one is kept, scaled to zero, as rollout history."""
    first_pods: dict[tuple[str, str], PodPlan] = {}
    for plan in history.plans:
        if plan.owner_kind == "ReplicaSet" and plan.workload.kube_state_metrics:
            first_pods.setdefault((plan.namespace, plan.owner_name), plan)
    for plan in first_pods.values():
        times = _grid(max(plan.start, history.start), history.end, history.step)
        if not times.size:
            continue
        labels = {
            "namespace": plan.namespace,
            "replicaset": plan.owner_name,
            "owner_kind": "Deployment",
            "owner_name": plan.workload.name,
            "owner_is_controller": "true",
            "job": "kube-state-metrics",
        }
        yield _Series(labels, times, _constant(1, times))


def _resource_requests(history: _History) -> Iterator[_Series]:
    return _resources(history, ContainerSpec.request)


def _resource_limits(history: _History) -> Iterator[_Series]:
    return _resources(history, ContainerSpec.limit)


def _resources(history: _History, amount: Callable[[ContainerSpec, str], float | None]) -> Iterator[_Series]:
    for pod in _observed(history.pods):
        for trace in pod.containers:
            for resource, unit in ((CPU, "core"), (MEMORY, "byte")):
                value = amount(trace.spec, resource)
                if value is not None:
                    labels = _ksm(pod, container=trace.spec.name, resource=resource, unit=unit)
                    yield _Series(labels, pod.times, _constant(value, pod.times))


def _restarts(history: _History) -> Iterator[_Series]:
    for pod in _observed(history.pods):
        for trace in pod.containers:
            yield _Series(_ksm(pod, container=trace.spec.name), pod.times, _integers(trace.restarts))


def _last_terminated_reason(history: _History) -> Iterator[_Series]:
    """Exported from the first OOM kill on: before it, the container has never terminated."""
    for pod in _observed(history.pods):
        for trace in pod.containers:
            times = pod.times[trace.restarts > 0]
            if times.size:
                labels = _ksm(pod, container=trace.spec.name, reason="OOMKilled")
                yield _Series(labels, times, _constant(1, times))


def _hpa_info(history: _History) -> Iterator[_Series]:
    for workload, times in _autoscaled(history):
        labels = {
            "namespace": workload.namespace,
            "horizontalpodautoscaler": workload.name,
            "scaletargetref_api_version": "apps/v1",
            "scaletargetref_kind": workload.kind,
            "scaletargetref_name": workload.name,
            "job": "kube-state-metrics",
        }
        yield _Series(labels, times, _constant(1, times))


def _hpa_target_metric(history: _History) -> Iterator[_Series]:
    for workload, times in _autoscaled(history):
        assert workload.hpa is not None
        labels = {
            "namespace": workload.namespace,
            "horizontalpodautoscaler": workload.name,
            "metric_name": workload.hpa.resource,
            "metric_target_type": "utilization",
            "job": "kube-state-metrics",
        }
        yield _Series(labels, times, _constant(workload.hpa.utilization, times))


def _autoscaled(history: _History) -> Iterator[tuple[WorkloadSpec, np.ndarray]]:
    """Workloads with an HPA that kube-state-metrics sees, and the steps from their creation on."""
    workloads = {(plan.namespace, plan.workload.name): plan.workload for plan in history.plans}
    for _, workload in sorted(workloads.items()):
        if workload.hpa is not None and workload.kube_state_metrics:
            times = _grid(max(workload.created_at, history.start), history.end, history.step)
            if times.size:
                yield workload, times


_FAMILIES = (
    _Family("container_cpu_usage_seconds", "counter", _cpu_usage),
    _Family("container_memory_working_set_bytes", "gauge", _working_set_bytes),
    _Family("container_cpu_cfs_periods", "counter", _cfs_periods),
    _Family("container_cpu_cfs_throttled_periods", "counter", _cfs_throttled_periods),
    _Family("kube_pod_owner", "gauge", _pod_owner),
    _Family("kube_replicaset_owner", "gauge", _replicaset_owner),
    _Family("kube_pod_container_resource_requests", "gauge", _resource_requests),
    _Family("kube_pod_container_resource_limits", "gauge", _resource_limits),
    _Family("kube_pod_container_status_restarts", "counter", _restarts),
    _Family("kube_pod_container_status_last_terminated_reason", "gauge", _last_terminated_reason),
    _Family("kube_horizontalpodautoscaler_info", "gauge", _hpa_info),
    _Family("kube_horizontalpodautoscaler_spec_target_metric", "gauge", _hpa_target_metric),
)


def _cpu_limited(history: _History) -> Iterator[tuple[_PodTrace, _ContainerTrace]]:
    """cAdvisor exports CFS counters only for containers that run with a CPU limit."""
    for pod in history.pods:
        for trace in pod.containers:
            if trace.spec.limit(CPU) is not None:
                yield pod, trace


def _observed(pods: Iterable[_PodTrace]) -> Iterator[_PodTrace]:
    return (pod for pod in pods if pod.plan.workload.kube_state_metrics)


def _cadvisor(pod: _PodTrace, container: str) -> dict[str, str]:
    return {"namespace": pod.plan.namespace, "pod": pod.plan.name, "container": container, "job": "kubelet"}


def _ksm(pod: _PodTrace, **labels: str) -> dict[str, str]:
    return {"namespace": pod.plan.namespace, "pod": pod.plan.name, **labels, "job": "kube-state-metrics"}


def _floats(values: np.ndarray) -> Iterable[str]:
    return map(repr, np.round(values, 4).tolist())


def _integers(values: np.ndarray) -> Iterable[str]:
    return map(str, np.rint(values).astype(np.int64).tolist())


def _constant(value: float, times: np.ndarray) -> Iterable[str]:
    text = str(int(value)) if float(value).is_integer() else repr(float(value))
    return [text] * len(times)


def _write_series(out: TextIO, sample_name: str, series: _Series) -> int:
    labels = ",".join(f'{name}="{_escape(value)}"' for name, value in series.labels.items())
    prefix = f"{sample_name}{{{labels}}} "
    timestamps = series.times.tolist()
    lines = [f"{prefix}{value} {ts}\n" for value, ts in zip(series.values, timestamps, strict=True)]
    out.write("".join(lines))
    return len(timestamps)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

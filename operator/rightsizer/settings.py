"""What the recommendation engine is asked to do: profiles, ratios, bounds and history minimums.

Every field is documented here because these are the knobs a policy or a CLI flag sets;
``RecommendationSettings.for_profile`` gives the documented defaults, ``validate`` says which
field is wrong and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from rightsizer.units import MIB


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


# Profile defaults: (CPU limit / request, memory limit / request, the top of the CPU limit's band).
PROFILE_RATIOS: dict[Profile, tuple[float, float, float]] = {
    Profile.LATENCY_SENSITIVE: (3.0, 1.5, 4.0),
    Profile.BACKGROUND: (1.5, 1.25, 2.0),
}
DAY_SECONDS = 86400

# Defaults of a policy's spec and of the CLI's flags, beside those of ``RecommendationSettings``
# below. crds/rightsizepolicy.yaml writes them again as schema defaults (YAML cannot import them):
# tests/test_defaults.py holds the two equal.
HISTORY_WINDOW_SECONDS = 14 * DAY_SECONDS
"""History a recommendation reads (``spec.history.window``, ``recommend --history``): two of every
weekday, within the 15 days Prometheus keeps by default."""
CPU_WINDOW_SECONDS = 300
"""CPU usage is averaged over windows this long (``spec.history.resolution``, ``--resolution``)."""
EVALUATION_INTERVAL_SECONDS = 300
"""How often a policy is evaluated (``spec.interval``)."""
PROMETHEUS_TIMEOUT_SECONDS = 120
"""How long one Prometheus query may take (``--timeout``), Prometheus' own default timeout."""
PROMETHEUS_GZIP = False
"""Whether Prometheus is asked to gzip its answers (``--prometheus-gzip``). Off: gzip is a third of
Prometheus' CPU for a history query (0.32 s of work and 0.16 s of gzip for 4 MB of answer;
docs/benchmarks.md, "Prometheus' gzip"), to save traffic that a link in the cluster carries in
milliseconds. Worth it over a slow link only: ``kubectl port-forward``, another region."""
HPA_MODES = ("KeepRequest", "Retune")
"""What is done with a target a HorizontalPodAutoscaler scales on the utilization of a resource's
request (``spec.hpa``, ``recommend --hpa``; docs/recommendations.md, "HorizontalPodAutoscalers"):
keep that request (the HPA's scale-out point stays where it is), or recommend it and re-tune the
HPA's target utilization so that it scales out at the same usage."""
HPA_MODE = HPA_MODES[0]
"""KeepRequest: the HPA's owner chose its scale-out point; rightsizer does not move it unasked."""
BACKTEST_DAYS = 28
"""Days ``rightsizer backtest`` replays: four of every weekday (Prometheus keeps 15 days by default:
with less, the replay starts where the history does, as a policy created then would have)."""
BACKTEST_STEP_SECONDS = DAY_SECONDS
"""``rightsizer backtest --step``: a replayed evaluation every day, besides those at would-be OOM kills
and after every change's cooldown (docs/backtest.md, "The replay step", measures why a day)."""
CPU_PRICE_PER_CORE_HOUR = 0.04048
"""What a core of CPU request costs an hour (``--cpu-price``), in US dollars: AWS Fargate's on-demand
list price per vCPU-hour, Linux/x86, US East (N. Virginia), https://aws.amazon.com/fargate/pricing/
(read 2026-12). Fargate bills the CPU and memory a pod requests, as a node's capacity is spent by
requests, not by use, which is what rightsizer changes. Set your own: on-demand nodes, discounts and
other regions differ (docs/recommendations.md, "Money")."""
MEMORY_PRICE_PER_GIB_HOUR = 0.004445
"""What a GiB of memory request costs an hour (``--memory-price``), in US dollars: the same list's
price per GB-hour (Fargate's memory sizes are binary: 0.5 GB is 512 MiB)."""
HOURS_PER_MONTH = 730
"""A month, for monthly costs: 365 days x 24 h / 12 (cloud price lists use the same)."""
METRICS_LISTEN = "0.0.0.0:8081"
"""Where ``rightsizer operator`` serves ``/metrics`` (``--metrics-listen``; docs/operator.md, "Metrics"),
beside Kopf's liveness endpoint on 8080."""


@dataclass(frozen=True)
class RecommendationSettings:
    """Settings of the engine for one container. Defaults are those of the latency-sensitive profile."""

    profile: Profile = Profile.LATENCY_SENSITIVE
    cpu_percentile: float = 0.95
    """Which percentile of the short-window (5 min) CPU usage, all pods pooled by the time they ran,
    over the days since the load last changed (``load_change_days``), is the peak time: p95 is the
    busiest 72 minutes of a day, inside the daily peak of a service busy a few hours a day, without
    chasing spikes (those are for the limit). Pooled over the days, not taken per day: on the real
    trace a day's own p95 follows that day's chance, and sizing on recent days' p95s cost 10 cores
    more for the same protection (docs/recommendations.md)."""
    load_change_days: int = 2
    """The load changed when at least this many of the newest days are all below (or all above) every
    day before them: only those days are pooled then. A step down shows after two days, a step up
    as soon as it is 5% of the pooled windows (17 hours of 14 days) or two days old; one quiet or
    busy day (a Sunday, a load test) is not a change. Accepted: >= 1."""
    sustained_load_seconds: int = 1800
    """Load that fills a whole history bucket (half an hour, for windows of days) is sustained when
    the bucket is at least this long: the busiest half hour of the typical day (``peak_day_percentile``)
    is the peak time when the p95's request would throttle it, even when the load lasts less than the
    72 minutes of the p95 (a nightly 1-hour batch fills a bucket whatever the clock). Shorter load is
    a spike, for the limit; windows cut into shorter buckets (minutes) have the p95 only. Accepted:
    >= 1 s."""
    peak_day_percentile: float = 0.6
    """The typical day: for each half hour of the day, this percentile of the days' sustained loads at
    that time. p60 leans to the busier days: a nightly batch that ran on most days is in it, a burst
    that came once at that time is not."""
    half_life_seconds: int = DAY_SECONDS
    """Recency of the days' values that bound a recommendation and score its confidence: a day this
    much older weighs half as much (24 h, as VPA's recommender)."""
    cpu_limit_ratio_max: float = PROFILE_RATIOS[Profile.LATENCY_SENSITIVE][2]
    """The top of the profile's band of CPU limit / request (latency-sensitive 2-4x, background
    1.5-2x): throttling and observed maxima raise the limit up to it, never beyond; a limit that
    must go higher takes the request with it. Accepted: >= 1 (a larger ``cpu_limit_ratio`` wins)."""
    cpu_target_utilization: float = 0.75
    """Peak-time usage as a share of the CPU request: 0.75 puts the peak at 75% of the request,
    in the 70-80% band that leaves room for queueing. Accepted range (0, 1]."""
    cpu_limit_ratio: float | None = PROFILE_RATIOS[Profile.LATENCY_SENSITIVE][0]
    """CPU limit = ratio x request (>= 1); None sets no CPU limit at all."""
    throttling_threshold: float = 0.05
    """Share of a pod's CFS periods throttled (while a limit was set) above which the limit was too
    low for it. Judged per pod, not pooled: one replica throttled 30% among ten is 3% pooled, and
    every replica gets the same limit."""
    throttling_min_periods: int = 600
    """A pod needs this many CFS periods (a minute of running, at 100 ms a period) to be judged:
    a pod that ran seconds (a crash loop) shows no sustained throttling."""
    throttling_limit_bump: float = 1.5
    """When throttled, the new CPU limit is at least this multiple of the limit that throttled."""
    memory_headroom: float = 0.10
    """Memory request = (the working-set level (``memory_percentile``) + the swing of the samples above
    their half-hour's mean) x (1 + headroom). 10%, not the 15% that KRR and VPA use, because here the
    request is not what kills: the limit sits ``memory_limit_ratio`` above it and absorbs growth, so the
    request (what nodes reserve) needs less margin. docs/benchmarks.md measures the trade."""
    memory_percentile: float = 0.99
    """The memory level the request covers: this percentile of the pods' half-hourly mean working sets
    over the window, pooled by the time they ran. p99 covers every half hour but the top 1% (a
    quarter of an hour a day). A mean is below the samples it averages: the request adds the swing
    of the samples above the highest half-hourly mean (the window's peak above it)."""
    memory_limit_ratio: float = PROFILE_RATIOS[Profile.LATENCY_SENSITIVE][1]
    """Memory limit = ratio x memory request (>= 1), at least: the room steady containers get."""
    memory_spike_room: float = 1.5
    """The memory limit is at least the window's highest sample plus this multiple of its height above
    the typical (median half-hourly) working set: a container that swung far above its typical level
    gets room for a next swing higher than the last. On the real trace the containers whose working
    set later went past their peak were those that had swung most (docs/benchmarks.md): 1.5 left 12
    of 310 would-OOM, the seed rule's 2x the peak 14, 0.5 23. Accepted: >= 0."""
    memory_trend_window_seconds: int = DAY_SECONDS
    """A working set that grew steadily over the last day of a pod's current container (since its
    last restart) is a leak or a growing cache: its growth is projected (``memory_trend_horizon``).
    A day: long enough to be more than the day's cycle, short enough to be the present growth."""
    memory_trend_horizon_seconds: int = 7 * DAY_SECONDS
    """How far a growth is projected: a week, how long a recommendation applied by hand is typically
    left alone (and the quality benchmark's scoring period). Only for containers that were not
    OOM-killed in the window: a killed container starts over, and the OOM bump sizes it."""
    memory_trend_min_fit: float = 0.5
    """The growth counts when a straight line explains at least this share of the working set's
    variance over the trend window (R^2): noise and daily cycles do not."""
    oom_bump_ratio: float = 0.2
    """After an OOM kill memory goes at least this share above the memory that was killed ..."""
    oom_bump_min_bytes: Decimal = 100 * MIB
    """... and at least this many bytes above it (VPA's max(+20%, +100Mi))."""
    min_history_seconds: int = 24 * 3600
    """Less history than this gives no recommendation: time covered by samples (some pod ran in
    the bucket), not first to last sample (2 hours 13 days ago and 2 hours today are 4 hours)."""
    min_samples: int = 100
    """Fewer memory samples than this (all pods together) gives no recommendation."""
    confident_history_seconds: int = 7 * DAY_SECONDS
    """History at which a recommendation is fully confident (or the whole window, when shorter):
    a week of days, each day's peak time seen at least once. Less history widens the bounds."""
    bound_percentiles: tuple[float, float] = (0.1, 0.9)
    """Bounds of a recommendation: these percentiles of the days' peak times (CPU) and of the days'
    memory levels, before thin history widens them."""
    cpu_step_millicores: int = 5
    """CPU amounts are rounded up to multiples of this many millicores."""
    min_allowed: ResourceBounds = field(default_factory=ResourceBounds)
    max_allowed: ResourceBounds = field(default_factory=ResourceBounds)

    @classmethod
    def for_profile(cls, profile: Profile | str, **overrides: Any) -> RecommendationSettings:
        """Settings with the profile's ratios, then the given overrides, validated (``validate``
        checks their values, not their types)."""
        profile = Profile(profile)
        cpu_ratio, memory_ratio, cpu_ratio_max = PROFILE_RATIOS[profile]
        base = cls(
            profile=profile,
            cpu_limit_ratio=cpu_ratio,
            memory_limit_ratio=memory_ratio,
            cpu_limit_ratio_max=cpu_ratio_max,
        )
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
            ("sustained_load_seconds", self.sustained_load_seconds >= 1, "must be >= 1"),
            ("load_change_days", self.load_change_days >= 1, "must be >= 1"),
            ("peak_day_percentile", 0 < self.peak_day_percentile <= 1, "must be in (0, 1]"),
            ("half_life_seconds", self.half_life_seconds >= 1, "must be >= 1"),
            ("cpu_target_utilization", 0 < self.cpu_target_utilization <= 1, "must be in (0, 1]"),
            ("cpu_limit_ratio", self.cpu_limit_ratio is None or self.cpu_limit_ratio >= 1, "must be >= 1"),
            ("cpu_limit_ratio_max", self.cpu_limit_ratio_max >= 1, "must be >= 1"),
            ("throttling_threshold", 0 <= self.throttling_threshold <= 1, "must be in [0, 1]"),
            ("throttling_min_periods", self.throttling_min_periods >= 0, "must be >= 0"),
            ("throttling_limit_bump", self.throttling_limit_bump >= 1, "must be >= 1"),
            ("memory_headroom", self.memory_headroom >= 0, "must be >= 0"),
            ("memory_percentile", 0 < self.memory_percentile <= 1, "must be in (0, 1]"),
            ("memory_limit_ratio", self.memory_limit_ratio >= 1, "must be >= 1"),
            ("memory_spike_room", self.memory_spike_room >= 0, "must be >= 0"),
            ("memory_trend_window_seconds", self.memory_trend_window_seconds >= 1, "must be >= 1"),
            ("memory_trend_horizon_seconds", self.memory_trend_horizon_seconds >= 0, "must be >= 0"),
            ("memory_trend_min_fit", 0 <= self.memory_trend_min_fit <= 1, "must be in [0, 1]"),
            ("oom_bump_ratio", self.oom_bump_ratio >= 0, "must be >= 0"),
            ("min_history_seconds", self.min_history_seconds >= 0, "must be >= 0"),
            ("min_samples", self.min_samples >= 1, "must be >= 1"),
            ("confident_history_seconds", self.confident_history_seconds >= 1, "must be >= 1"),
            (
                "bound_percentiles",
                0 <= self.bound_percentiles[0] <= self.bound_percentiles[1] <= 1,
                "must be (low, high) with 0 <= low <= high <= 1",
            ),
            ("cpu_step_millicores", self.cpu_step_millicores >= 1, "must be >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise SettingsError(f"{name}={getattr(self, name)!r}: {rule}")
        resource = inverted_bound(self.min_allowed, self.max_allowed)
        if resource is not None:
            low, high = getattr(self.min_allowed, resource), getattr(self.max_allowed, resource)
            raise SettingsError(f"min_allowed.{resource} ({low}) is above max_allowed.{resource} ({high})")


def inverted_bound(min_allowed: ResourceBounds, max_allowed: ResourceBounds) -> str | None:
    """The first resource (``cpu``, ``memory``) whose minimum is above its maximum, or None."""
    for resource in ("cpu", "memory"):
        low, high = getattr(min_allowed, resource), getattr(max_allowed, resource)
        if low is not None and high is not None and low > high:
            return resource
    return None


DEFAULTS = RecommendationSettings()
"""The engine's defaults (the latency-sensitive profile's): what a policy or the CLI leaves unset."""


# The operator's costs: how much it asks of Prometheus and of the API server (docs/operator.md).

SHARED_BATCH_MAX_BYTES = 512 * 1024 * 1024
"""Shared batches (``controller/batches.py``) kept at most: past this, the least recently used
collected batch is dropped (each also expires when its interval is over). A namespace's collected
batch is about 90 kB per pod container over 14 days (its hourly history, as ``size_bytes`` counts it)."""
STREAM_CONTAINERS = 2000
"""rightsizer recommend fetches a namespace with more containers than this in shards of whole workloads
of at most this many (scan.workload_shards): a batch's arrays take about 100 KB a container while it is
fetched, so this bounds the memory a namespace takes (docs/benchmarks.md, "Scale")."""
STREAM_PODS = 400
"""At most this many pods in a shard: each query names them (VictoriaMetrics refuses queries longer than
16 KiB by default)."""
SHARD_SPLIT = 4
"""A query Prometheus refuses as too large (``--query.max-samples``) or too slow (its timeout) is
run again over this many shards of the namespace's pods (sorted by name, so a workload's pods stay
together), and each shard that still fails is split again, down to single pods."""
HANDLER_THREADS = 4
"""Threads Kopf runs the policies' evaluations in. The GIL runs one at a time, so more only overlap
waiting on Prometheus; Python's default (cores + 4, up to 32) would follow the node's size, and so
would the batches fetched at once and the memory they take. With 1,000 policies on 2 cores, every
policy was Ready as soon with 3 or 4 threads (79 s, 86 s) as with the default 6 (80 to 88 s;
docs/benchmarks.md)."""
API_CONNECTIONS = 24
"""Connections Kopf's requests to the API server (finalizers, status patches, Events) share, besides
one per watch stream (``controller/api_session.py``). A restart with 1,000 policies used 26 in all;
Kopf's default, no limit, opened 352 on a first start and kept their memory."""
MALLOC_ARENA_MAX = 2
"""glibc malloc arenas the operator's threads share (``controller/allocator.py``); glibc's default is
8 per core, each keeping the memory its threads freed."""
MALLOC_MMAP_THRESHOLD_BYTES = 128 * 1024
"""Blocks from this size up are mmapped, so freed frames go back to the system (``controller/allocator.py``):
glibc's default starts here but rises with every large block freed."""
STATUS_FULL_BYTES = 256 * 1024
"""``status.recommendations`` holds full entries up to this many bytes of JSON (about 200 to 400 at
600-1,300 bytes each); the containers beyond it get a compact line (``recommendationsCompact``)."""
STATUS_COMPACT_BYTES = 384 * 1024
"""Compact lines (about 100 bytes: workload, container, recommended requests and limits) take at
most this much, room for 3,000 containers and more; beyond it containers are only counted. With the
rest of the status the object stays under half the 1.5 MiB the API server and etcd accept."""
STATUS_MESSAGE_CHARS = 2048
"""A condition message listing containers is cut at this length, with the number left out."""


# Auto mode's waits (docs/operator.md, "The phases of a change"): every wait of a change in flight
# ends at one of these, with the outcome the docs give.

RESIZE_DEADLINE_SECONDS = 120
"""An in-place resize the kubelet has not carried out this long after it was sent (still
``Deferred`` or ``Infeasible``, or the resize not even accepted) is resolved: a change going forward
falls back to a rollout (InPlaceOrRollout) or is rolled back; a rollback evicts the pod so that it
is recreated with the old resources. The VPA updater waits 5 minutes for a deferred resize."""
EVICTION_DEADLINE_SECONDS = 600
"""A rollback whose evictions a PodDisruptionBudget refuses (429) this long says so (a Warning Event
``RollbackStuck`` naming the pods and the budget) and keeps trying at every evaluation."""
ROLLOUT_DEADLINE_SECONDS = 600
"""A rollout (a change by rollout, or its rollback) whose workload has not settled this long (pods
Pending on a full node, say) is rolled back, backing off the directions that ask for more (an
increase that found no room; a decrease stuck behind a surge pod is tried again); a rollback's
rollout is reported stuck. The Deployment controller's ``progressDeadlineSeconds`` defaults to the same."""
TEMPLATE_DEADLINE_SECONDS = 300
"""The template of an in-place change not made to match its pods this long (a controller that does
not catch up, pods of two ReplicaSets) rolls the change back, without back-off."""
UNJUDGED_DEADLINE_SECONDS = 900
"""A change whose watch is over but whose throttling cannot be judged (Prometheus unreachable) waits
for Prometheus this long past the end of the watch, then is rolled back, without back-off."""
DELETION_DEADLINE_SECONDS = 900
"""A deleted Auto policy is held (its finalizer) while its changes in flight are rolled back, at most
this long; then the records of those still in flight are removed, each with a Warning
``RollbackAbandoned`` on its workload naming the pods left as they are, and the policy goes."""

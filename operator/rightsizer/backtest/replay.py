"""The replay of one policy over one workload's span: evaluations, Auto mode's rails, and what followed.

A workload goes through the span bucket by bucket, in stretches between evaluations:

1. **Score** the stretch's rows under the resources in force (``score``): would-be OOM kills, CPU
   windows above the limit and the request, requests held; and, against today's resources, the same.
2. **Events** cut a stretch short. A would-be OOM kill is evaluated at the end of its bucket: the
   operator sees a kill within one interval and the engine raises memory at once (the cooldown
   permitting; else at its end). In a change's watch (``auto.canary.duration``; twice that in place:
   canary, then every pod), a kill in a container whose memory it lowered, or throttling above
   ``throttlingThreshold`` under a CPU limit it lowered (``operator_parts.exposure``), rolls the
   change back and backs its directions off for ``auto.rollbackBackoff``; another kill is the
   container's own, and raises its memory at the first evaluation after the watch.
3. **Evaluate** at each replay step (``step_seconds``), at events, and after each change that
   applied less than the recommendation (the step cap, the confident part) once its cooldown is over
   (Auto mode goes on stepping then): the engine on the history of the policy's
   window before that moment only (``Timeline.usage_at``), then the rails (``operator_parts.plan``).
   A change takes effect from the next bucket.

The engine and the rails are the operator's own functions; only the order of events is replayed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from rightsizer.backtest import operator_parts
from rightsizer.backtest.score import KillCounter, RowScores, Tally, score, throttled_share
from rightsizer.backtest.timeline import CFS_PERIODS_PER_SECOND, Timeline
from rightsizer.engine import recommend
from rightsizer.hpa import Autoscaler, with_autoscalers
from rightsizer.model import ContainerKey, Recommendation, Resources
from rightsizer.pod_progress import Exposure
from rightsizer.policy import PolicySpec
from rightsizer.rails import ROLLOUT
from rightsizer.units import CPU, MEMORY


@dataclass(frozen=True)
class ReplayConfig:
    spec: PolicySpec
    start: float
    """The span's first bucket ends after this."""
    end: float
    bucket_seconds: int
    step_seconds: int
    autoscalers: Sequence[Autoscaler] = ()

    @property
    def windows_per_bucket(self) -> int:
        return max(1, self.bucket_seconds // self.spec.cpu_window_seconds)

    @property
    def watch_seconds(self) -> int:
        """How long a change is watched: a rollout's pods once, an in-place change's canary and then
        every pod (``change.py``)."""
        canary = self.spec.auto.canary_seconds
        return canary if self.spec.auto.update_mode == ROLLOUT else 2 * canary


@dataclass(frozen=True)
class Move:
    """A change the replay applied, or one it rolled back."""

    time: float
    container: str
    action: str
    """``change`` or ``rollback``."""
    before: Resources
    after: Resources
    reason: str


@dataclass
class ContainerReplay:
    """One container's replay: what it had in force when, what that met, against today's."""

    timeline: Timeline
    replayed: Tally = field(default_factory=Tally)
    today: Tally = field(default_factory=Tally)
    moves: list[Move] = field(default_factory=list)
    in_force: list[tuple[float, Resources]] = field(default_factory=list)
    """From each time on (the first at the span's start), the resources the replay had set."""
    kill_times: list[float] = field(default_factory=list)
    throttle_times: list[float] = field(default_factory=list)
    """Buckets in which a pod ran above the replayed CPU limit in some window."""
    last_reason: str = ""
    """Why the last evaluation recommended what it did, or why nothing (too little history)."""

    @property
    def key(self) -> ContainerKey:
        return self.timeline.key

    @property
    def final(self) -> Resources:
        return self.in_force[-1][1]


@dataclass
class WorkloadReplay:
    containers: list[ContainerReplay]
    evaluations: int = 0
    blocked: dict[str, int] = field(default_factory=dict)
    """Evaluations whose plan was blocked, by the reason's first words (cooldown, ...)."""


@dataclass
class _Watch:
    until: float
    before: dict[str, Resources]
    after: dict[str, Resources]

    @property
    def exposed(self) -> Exposure:
        """What the change can have hurt: only there is a kill or throttling its regression."""
        return operator_parts.exposure(self.before, self.after)


class _Replay:
    def __init__(self, timelines: list[Timeline], config: ReplayConfig) -> None:
        self.config = config
        self.spec = config.spec
        killed_at = {id(tl): tl.usage.oom_killed_memory_bytes for tl in timelines}
        self.results = [ContainerReplay(tl, in_force=[(config.start, tl.today)]) for tl in timelines]
        self.resources = {tl.key.container: tl.today for tl in timelines}
        self.counters = {
            tl.key.container: KillCounter(config.bucket_seconds, killed_at[id(tl)]) for tl in timelines
        }
        self.applied_at: float | None = None
        self.backed_off: dict[str, datetime] = {}
        self.watch: _Watch | None = None
        self.workload = WorkloadReplay(self.results)

    def run(self) -> WorkloadReplay:
        config = self.config
        self._score_today()
        cursor, step = config.start, config.step_seconds
        regular = config.start + step
        due = regular
        while cursor < config.end:
            until = min(due, config.end)
            event, rolled_back = self._advance(cursor, until)
            cursor = event if event is not None else until
            while regular <= cursor:
                regular += step
            if rolled_back:
                due = regular
                continue
            if event is None and cursor < due:
                break  # the end of the span
            due = max(self._evaluate(cursor, regular, kill=event is not None), cursor + config.bucket_seconds)
        return self.workload

    # ------------------------------------------------------------------ scoring

    def _score_today(self) -> None:
        config = self.config
        for result in self.results:
            tl = result.timeline
            rows = tl.rows(config.start, config.end)
            scores = score(tl, rows, tl.today, config.bucket_seconds, config.windows_per_bucket)
            limit = tl.today.limits.get(MEMORY)
            counter = KillCounter(config.bucket_seconds, tl.usage.oom_killed_memory_bytes)
            kills = counter.kills(tl, rows, None if limit is None else float(limit), scores.memory_over)
            result.today.add(scores, int(kills.sum()), config.bucket_seconds)

    def _advance(self, cursor: float, until: float) -> tuple[float | None, bool]:
        """Score the rows of ``(cursor, until]``, cut short at the first would-be OOM kill or, in a
        change's watch, the first regression. Returns that event's time (None: none) and whether it
        rolled a change back."""
        config = self.config
        first: float | None = None
        regression: tuple[float, str] | None = None
        for result in self.results:
            tl = result.timeline
            rows = tl.rows(cursor, until)
            if rows.stop <= rows.start:
                continue
            resources = self.resources[tl.key.container]
            scores = score(tl, rows, resources, config.bucket_seconds, config.windows_per_bucket)
            counter = self.counters[tl.key.container]
            saved = dict(counter.last_over)
            kills = counter.kills(tl, rows, _amount(resources.limits.get(MEMORY)), scores.memory_over)
            counter.last_over = saved
            times = tl.time[rows]
            if kills.any():
                at = float(times[np.flatnonzero(kills)[0]])
                first = at if first is None else min(first, at)
            if self.watch is not None:
                found = self._regression(tl, rows, resources, scores, kills)
                if found is not None and (regression is None or found[0] < regression[0]):
                    regression = found
        if regression is not None and (first is None or regression[0] <= first):
            first = regression[0]
        end = first if first is not None else until
        for result in self.results:
            self._commit(result, cursor, end)
        if self.watch is not None and (regression is not None or end >= self.watch.until):
            if regression is not None:
                self._roll_back(regression[0], regression[1])
                return regression[0], True
            self.watch = None
        return first, False

    def _regression(
        self, tl: Timeline, rows: slice, resources: Resources, scores: RowScores, kills: np.ndarray
    ) -> tuple[float, str] | None:
        assert self.watch is not None
        times = tl.time[rows]
        watched = times <= self.watch.until
        share = throttled_share(tl, rows, resources, scores)
        threshold = self.spec.settings.throttling_threshold
        exposed = self.watch.exposed
        killed = kills > 0 if tl.key.container in exposed.memory else np.zeros_like(watched)
        throttled = share > threshold if exposed.cpu else np.zeros_like(watched)
        hurt = watched & (killed | throttled)
        if not hurt.any():
            return None
        index = int(np.flatnonzero(hurt)[0])
        pod = tl.pods[tl.pod[rows][index]]
        why = (
            f"pod {pod}: container {tl.key.container} would have been OOM-killed"
            if killed[index]
            else f"pod {pod}: CFS-throttled about {share[index]:.0%} of periods (above {threshold:.0%})"
        )
        return float(times[index]), why

    def _commit(self, result: ContainerReplay, cursor: float, end: float) -> None:
        config, tl = self.config, result.timeline
        rows = tl.rows(cursor, end)
        if rows.stop <= rows.start:
            return
        resources = self.resources[tl.key.container]
        scores = score(tl, rows, resources, config.bucket_seconds, config.windows_per_bucket)
        limit = _amount(resources.limits.get(MEMORY))
        kills = self.counters[tl.key.container].kills(tl, rows, limit, scores.memory_over)
        result.replayed.add(scores, int(kills.sum()), config.bucket_seconds)
        times = tl.time[rows]
        result.kill_times += [float(t) for t in np.unique(times[kills > 0])]
        result.throttle_times += [float(t) for t in np.unique(times[scores.over_limit > 0])]
        tl.sim_kills[rows] = kills
        tl.sim_kill_limit[rows] = limit if limit is not None else np.nan
        cpu_limit = _amount(resources.limits.get(CPU))
        if cpu_limit is not None:
            # Throttling the pods would have met under the replayed limit, where it is not the one they
            # ran under (there, the measured CFS periods say it).
            real = tl.pod_cpu_limit[tl.pod[rows]]
            other = np.round(real * 1000) != round(cpu_limit * 1000)
            periods = tl.coverage[rows] * config.bucket_seconds * CFS_PERIODS_PER_SECOND
            tl.sim_periods[rows] = np.where(other, periods, 0.0)
            tl.sim_throttled[rows] = np.where(other, periods * scores.over_limit / scores.windows, 0.0)
            tl.sim_cpu_limit[rows] = cpu_limit
        else:
            tl.sim_periods[rows] = 0.0

    # ------------------------------------------------------------------ decisions

    def _evaluate(self, now: float, regular: float, *, kill: bool) -> float:
        """Recommend and plan at ``now``; when to evaluate next."""
        config, spec = self.config, self.spec
        self.workload.evaluations += 1
        recommendations: list[Recommendation] = []
        for result in self.results:
            tl = result.timeline
            settings = spec.container_settings(tl.key.container)
            if settings is None:
                result.last_reason = "left alone: containerPolicies mode Off"
                continue
            usage = tl.usage_at(now, spec.history_seconds, config.bucket_seconds, spec.cpu_window_seconds)
            rec = recommend(tl.key, usage, self.resources[tl.key.container], settings)
            result.last_reason = rec.reason
            recommendations.append(rec)
        recommendations = with_autoscalers(recommendations, config.autoscalers, spec.hpa)
        if self.watch is not None:
            return min(regular, self.watch.until)  # a change in flight: the operator starts none
        applied_at = _datetime(self.applied_at) if self.applied_at is not None else None
        kind = self.results[0].timeline.key.kind
        plan = operator_parts.plan(
            kind, recommendations, spec.auto, _datetime(now), applied_at, self.backed_off
        )
        if plan.blocked:
            reason = plan.blocked.split(":")[0]
            self.workload.blocked[reason] = self.workload.blocked.get(reason, 0) + 1
            if kill and self.applied_at is not None:
                return self._bucket_after(self.applied_at + spec.auto.cooldown_seconds)
            return regular
        if not plan.changes:
            return regular
        before = dict(self.resources)
        for change in plan.changes:
            result = next(r for r in self.results if r.timeline.key == change.key)
            result.moves.append(
                Move(now, change.container, "change", change.before, change.after, change.reason)
            )
            result.in_force.append((now, change.after))
            self.resources[change.container] = change.after
        self.applied_at = now
        changed = {c.container for c in plan.changes}
        recommended = {r.key.container: r.recommended for r in recommendations}
        self.watch = _Watch(
            self._bucket_after(now + config.watch_seconds),  # at least the bucket after the change
            {c: before[c] for c in changed},
            {c: self.resources[c] for c in changed},
        )
        if all(c.after == recommended.get(c.container) for c in plan.changes):
            return regular  # the whole recommendation is in force: nothing left to step toward
        return min(regular, self._bucket_after(now + spec.auto.cooldown_seconds))

    def _roll_back(self, now: float, why: str) -> None:
        assert self.watch is not None
        watch, self.watch = self.watch, None
        moves = operator_parts.rollback_directions(watch.before, watch.after)
        until = _datetime(now) + timedelta(seconds=self.spec.auto.rollback_backoff_seconds)
        self.backed_off.update(dict.fromkeys(moves, until))
        for container, before in watch.before.items():
            result = next(r for r in self.results if r.timeline.key.container == container)
            reason = f"rolled back: {why}; {', '.join(sorted(moves)) or 'nothing'} backed off"
            result.moves.append(Move(now, container, "rollback", self.resources[container], before, reason))
            result.in_force.append((now, before))
            self.resources[container] = before

    def _bucket_after(self, moment: float) -> float:
        """The first bucket end at or after ``moment`` (evaluations happen at bucket ends)."""
        bucket = self.config.bucket_seconds
        return self.config.start + math.ceil((moment - self.config.start) / bucket) * bucket


def replay_workload(timelines: list[Timeline], config: ReplayConfig) -> WorkloadReplay:
    """Replay ``config.spec`` over one workload's containers (``timelines``)."""
    return _Replay(timelines, config).run()


def _amount(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)

"""Fault injection into Auto mode's changes: every write of every phase fails once, and separately
the operator stops right after it, for every update mode and workload kind, on the way to the end
of a change and of its rollback; then the evaluations go on from the objects the cluster kept.

The cases are generated: each scenario is first run without a fault, which gives its writes; then
one case per write fails it (the API server answers 500), and one stops the operator right after it
(``Crash``, caught here as a restart would: the next evaluation starts from the stored objects).
After every evaluation of every case:

- the record describes the pods: with a change in flight each pod asks for and runs either the
  resources from before it or those it brings, without one each pod asks for what the template (or
  for PodsOnly, the resources rightsizer gives new pods) says, so no pod is left with resources that
  neither the record nor the template names;
- no write is sent twice (a successful write is never repeated: its effect is seen and not redone);
- a change that was rolled back is never applied again while its directions are backed off.

And at the end every pod runs what the template (or PodsOnly's annotation) says, with no record
left: the change's resources after a change that went through, the old ones after a rollback.
docs/operator.md gives the number of cases (``test_the_number_of_cases_is_the_one_the_docs_give``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rightsizer.admission import pod_resources
from rightsizer.change import ROLLED_BACK, Method, Phase
from rightsizer.model import Resources
from rightsizer.pod_progress import holds
from tests.support.change_runs import BEFORE, KINDS, LARGER, MODES, SMALLER, ChangeRun, resources
from tests.support.fake_cluster import Crash

DOCS = Path(__file__).resolve().parents[1] / "docs" / "operator.md"
EVALUATIONS = 80
"""Enough for any case to reach its end (a deferred resize waits 120 s, 12 evaluations, an eviction more)."""
AFTERWARDS = 5
"""Evaluations after the end, in which nothing may start again (a rollback backs its directions off)."""


@dataclass(frozen=True)
class Scenario:
    mode: str
    kind: str
    path: str
    """``done``: the change goes through; ``rollback``: a pod it reached is OOM-killed; ``fallback``:
    the canary's resize stays Deferred and InPlaceOrRollout rolls out instead; ``evicted``: the
    rollback's resize back stays Deferred and the pod is evicted."""

    @property
    def target(self) -> dict[str, Any]:
        return LARGER if self.path == "fallback" else SMALLER

    @property
    def ends_rolled_back(self) -> bool:
        return self.path in ("rollback", "evicted")

    def __str__(self) -> str:
        return f"{self.mode}-{self.kind}-{self.path}"


def scenarios() -> list[Scenario]:
    found = []
    for mode in MODES:
        for kind in KINDS:
            found.append(Scenario(mode, kind, "done"))
            if kind == "CronJob":
                continue  # no pod runs: nothing to regress, nothing to resize
            found.append(Scenario(mode, kind, "rollback"))
            if mode == "InPlaceOrRollout":
                found.append(Scenario(mode, kind, "fallback"))
            if mode in ("InPlace", "PodsOnly"):
                found.append(Scenario(mode, kind, "evicted"))
    return found


@dataclass
class Play:
    """What a scenario did to the cluster so far (its faults are the cluster's)."""

    scenario: Scenario
    run: ChangeRun
    killed: bool = False
    started: bool = False
    rolled_back: bool = False
    ended_at: int | None = None
    crashes: int = 0
    seen: list[str] = field(default_factory=list)

    def before_evaluation(self) -> None:
        """The scenario's own events, decided from what the cluster holds now."""
        run, scenario = self.run, self.scenario
        record = run.record()
        self.started = self.started or record is not None
        if scenario.path == "fallback":
            run.cluster.full = record is None or record.method is not Method.ROLLOUT
            if self.started and record is None:
                run.cluster.full = False
        if scenario.ends_rolled_back and not self.killed and record is not None:
            after = resources(scenario.target)
            reached = [
                p for p in run.pods() if p.running and holds(p.containers["app"].actual or Resources(), after)
            ]
            if reached and record.phase is not Phase.ROLLING_BACK:
                run.oom_kill(reached[0].name)
                self.killed = True
                run.cluster.full_for_all = scenario.path == "evicted"

    def evaluate(self) -> None:
        try:
            outcome = self.run.evaluate()
        except Crash:
            self.crashes += 1  # the operator restarts: the next evaluation reads what was stored
            return
        self.rolled_back = self.rolled_back or bool(outcome.rollback_over)
        self.seen.append(
            outcome.applied or outcome.rolled_back or outcome.rollback_over or outcome.blocked or ""
        )

    def over(self) -> bool:
        if self.run.in_flight() or not self.started:
            return False
        # Rolled back: said, or (the operator stopped right after removing the record) recorded.
        return not self.scenario.ends_rolled_back or self.rolled_back or ROLLED_BACK in self.run.annotations()


def play(scenario: Scenario, fault: Callable[[ChangeRun], None] | None = None) -> Play:
    run = ChangeRun.of(scenario.kind, scenario.mode, target=scenario.target)
    if fault is not None:
        fault(run)
    played = Play(scenario, run)
    for index in range(EVALUATIONS):
        played.before_evaluation()
        played.evaluate()
        check_pods_are_described(played)
        if (
            played.scenario.path == "evicted"
            and played.run.cluster.full_for_all
            and not played.run.in_flight()
        ):
            played.run.cluster.full_for_all = False
        if played.ended_at is None and played.over():
            played.ended_at = index
        if played.ended_at is not None and index >= played.ended_at + AFTERWARDS:
            return played
        if played.ended_at is not None:
            assert not played.run.in_flight(), f"{scenario}: a change started again: {played.seen[-3:]}"
    raise AssertionError(f"{scenario}: not over after {EVALUATIONS} evaluations: {played.seen[-5:]}")


def check_pods_are_described(played: Play) -> None:
    run = played.run
    record = run.record()
    template = run.template()
    given = (pod_resources(run.annotations()) or {}).get("app")
    named = [
        template,
        *([given] if given else []),
        *([record.before["app"], record.after["app"]] if record else []),
    ]
    for pod in run.pods():
        for what, value in (
            ("asks for", pod.containers["app"].desired),
            ("runs", pod.containers["app"].actual),
        ):
            assert value is not None and any(holds(value, r) for r in named), (
                f"{played.scenario}: pod {pod.name} {what} {value.to_quantities()}, which neither the record "
                f"nor the template names"
            )


def check_the_end(played: Play) -> None:
    run = played.run
    assert run.record() is None
    wanted = resources(BEFORE if played.scenario.ends_rolled_back else played.scenario.target)
    pods_get = (pod_resources(run.annotations()) or {}).get("app") or run.template()
    if played.scenario.mode != "PodsOnly":
        assert holds(run.template(), wanted), f"{played.scenario}: the template holds {run.template()}"
    assert holds(pods_get, wanted), f"{played.scenario}: new pods would get {pods_get}"
    for name, running in run.running().items():
        assert holds(running, wanted), f"{played.scenario}: pod {name} runs {running.to_quantities()}"


def check_no_write_twice(played: Play) -> None:
    writes = [(w.verb, w.target, w.body) for w in played.run.cluster.writes]
    repeated = {w for w in writes if writes.count(w) > 1}
    assert not repeated, f"{played.scenario}: written twice: {sorted(repeated)}"


# ---------------------------------------------------------------- the cases


def baseline(scenario: Scenario) -> Play | AssertionError:
    """The scenario without a fault (what went wrong, if it did, is its test's failure)."""
    try:
        return play(scenario)
    except AssertionError as error:
        return error


SCENARIOS = scenarios()
BASELINES = {str(s): baseline(s) for s in SCENARIOS}
CASES = [
    (scenario, fault, write)
    for scenario in SCENARIOS
    if isinstance(played := BASELINES[str(scenario)], Play)
    for write in range(1, len(played.run.cluster.writes) + 1)
    for fault in ("fails", "stops after")
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_without_a_fault_every_scenario_ends_as_it_should(scenario: Scenario) -> None:
    played = BASELINES[str(scenario)]
    if isinstance(played, AssertionError):
        raise played
    check_the_end(played)
    check_no_write_twice(played)
    assert played.run.cluster.writes, "the scenario wrote nothing"


@pytest.mark.parametrize(
    ("scenario", "fault", "write"), CASES, ids=[f"{s}-{f.replace(' ', '-')}-write{w}" for s, f, w in CASES]
)
def test_a_write_that_fails_or_the_operator_stopping_after_it_changes_nothing_of_the_end(
    scenario: Scenario, fault: str, write: int
) -> None:
    def inject(run: ChangeRun) -> None:
        if fault == "fails":
            run.cluster.fail_write = write
        else:
            run.cluster.crash_after = write

    played = play(scenario, inject)
    if fault == "stops after":
        assert played.crashes == 1, f"{scenario}: the operator did not stop after write {write}"
    check_the_end(played)
    check_no_write_twice(played)


def test_the_number_of_cases_is_the_one_the_docs_give() -> None:
    said = re.search(r"(\d[\d,]*) fault-injection cases", DOCS.read_text())
    assert said, "docs/operator.md gives the number of fault-injection cases"
    assert int(said.group(1).replace(",", "")) == len(CASES)

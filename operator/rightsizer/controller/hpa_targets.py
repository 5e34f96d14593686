"""Auto mode's writes to HorizontalPodAutoscalers (``spec.hpa: Retune``): each target a change moves
(``rightsizer.hpa.TargetRetune``) is set with a guarded JSON patch, read fresh first.

When, is the change machine's (``rightsizer.change_machine``): a lowered target (the requests went
up) is set before the pods change; a raised one (the requests went down) when the change is done;
both are put back by a rollback. Either way, between the two writes the pods scale out sooner,
never later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

from rightsizer.controller.kube import Cluster, PatchConflict
from rightsizer.hpa import TargetRetune, target_patch


@dataclass(frozen=True)
class TargetMoves:
    """What one round of HPA writes did: the retunes made, those left alone (somebody else changed
    the target, or the HPA is gone) with why, and the API failures (retried at the next look)."""

    moved: tuple[TargetRetune, ...] = ()
    left_alone: tuple[tuple[TargetRetune, str], ...] = ()
    failed: tuple[str, ...] = ()

    @property
    def failure(self) -> str | None:
        return "; ".join(self.failed) + ", retried at the next evaluation" if self.failed else None

    def retuned(self, workload_name: str, *, back: bool = False) -> list[str]:
        """What each move made, as its Event says it."""
        why = (
            f"put back with the rollback of {workload_name}"
            if back
            else f"with the requests of {workload_name} it scales out at the same usage"
        )
        return [f"{retune.describe(back=back)}: {why}" for retune in self.moved]


def move_targets(
    cluster: Cluster, namespace: str, retunes: Sequence[TargetRetune], *, back: bool = False
) -> TargetMoves:
    """Set each of ``retunes`` to its new target (``back``: to the one it had), one patch an HPA."""
    moved: list[TargetRetune] = []
    left_alone: list[tuple[TargetRetune, str]] = []
    failed: list[str] = []
    for name in dict.fromkeys(retune.hpa for retune in retunes):
        mine = [retune for retune in retunes if retune.hpa == name]
        try:
            operations, made, alone = target_patch(cluster.read_autoscaler(namespace, name), mine, back=back)
            if operations:
                cluster.patch_autoscaler(namespace, name, operations)
        except PatchConflict as error:
            failed.append(str(error))
            continue
        except ApiException as error:
            if error.status == 404:
                gone = "not made: the HorizontalPodAutoscaler is gone"
                left_alone += [(retune, f"{retune.describe(back=back)} {gone}") for retune in mine]
            else:
                failed.append(f"HorizontalPodAutoscaler {name} not patched: {error.status} {error.reason}")
            continue
        moved += made
        left_alone += alone
    return TargetMoves(tuple(moved), tuple(left_alone), tuple(failed))

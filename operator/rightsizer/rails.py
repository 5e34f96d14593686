"""Auto mode's safety rails as typed values (``spec.auto``), with their defaults.

Part of the core: the planning of a change (``planning.py``) and an offline replay of it need these
without the Kubernetes client; ``policy.py`` reads them from a policy's spec.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLLOUT = "Rollout"
IN_PLACE = "InPlace"
IN_PLACE_OR_ROLLOUT = "InPlaceOrRollout"
PODS_ONLY = "PodsOnly"


@dataclass(frozen=True)
class AutoRails:
    """Auto mode's safety rails (see the CRD's spec.auto)."""

    min_change_percent: int = 10
    max_step_percent: int = 100
    cooldown_seconds: int = 3600
    update_mode: str = ROLLOUT
    """How a change reaches the pods: a rollout of the template, ``pods/resize`` in place, in place
    where the kubelet can and a rollout where it cannot, or in place without ever editing the
    template (new pods get the resources from the admission webhook)."""
    canary_seconds: int = 600
    """How long a change is watched (its canary pod, then every pod) before it counts as done."""
    rollback_backoff_seconds: int = 86400
    """After a rollback, the direction rolled back (``memory-down``...) is not tried for this long."""

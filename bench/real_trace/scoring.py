"""How an allocation did on the scoring days: the figures of the benchmark's table, per strategy.

Each of the scoring days' 5-minute samples is compared with the allocation of its VM as it is: CPU used
above the request, above the limit; working set above the memory request; a VM with any sample above
its memory limit would have been OOM-killed (counted once, whatever happened after). Shares are over all
samples of all VMs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GIB_PER_MIB = 1 / 1024


@dataclass(frozen=True)
class Score:
    """One strategy's row of the table."""

    cpu_cores: float
    """CPU requested, summed over the VMs."""
    cpu_above_request: float
    cpu_above_limit: float | None
    """None: the strategy sets no CPU limit."""
    memory_request_gib: float
    memory_limit_gib: float
    memory_above_request: float
    would_oom: int
    """VMs with a scoring sample above their memory limit."""
    vms: int


def score(scoring: pd.DataFrame, allocations: pd.DataFrame) -> Score:
    """Score ``allocations`` (indexed by ``vm``; NaN limit: none) on ``scoring``'s samples.

    Every VM of ``scoring`` needs an allocation: a missing one is an error, not a zero.
    """
    missing = np.setdiff1d(scoring["vm"].unique(), allocations.index)
    if missing.size:
        raise ValueError(f"no allocation for VM(s) {', '.join(map(str, missing[:10]))}")
    per_sample = allocations.reindex(scoring["vm"].to_numpy())
    cpu, memory = scoring["cpu_cores"].to_numpy(), scoring["memory_mib"].to_numpy()
    memory_limit = per_sample["memory_limit"].to_numpy()
    over_limit = pd.Series(memory > memory_limit).groupby(scoring["vm"].to_numpy()).any()
    cpu_limit = per_sample["cpu_limit"].to_numpy()
    scored = allocations.loc[np.unique(scoring["vm"].to_numpy())]
    return Score(
        cpu_cores=float(scored["cpu_request"].sum()),
        cpu_above_request=float(np.mean(cpu > per_sample["cpu_request"].to_numpy())),
        cpu_above_limit=None if np.isnan(cpu_limit).all() else float(np.mean(cpu > cpu_limit)),
        memory_request_gib=float(scored["memory_request"].sum()) * GIB_PER_MIB,
        memory_limit_gib=float(scored["memory_limit"].sum()) * GIB_PER_MIB,
        memory_above_request=float(np.mean(memory > per_sample["memory_request"].to_numpy())),
        would_oom=int(over_limit.sum()),
        vms=len(scored),
    )

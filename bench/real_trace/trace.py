"""The trace: where it is, what it holds, its learning and scoring days, and its samples as 60 s scrapes.

The trace (``/work/shared/data/README.md``) has one row per VM and 5-minute sample: ``vm``, ``ts`` (Unix
seconds), ``cpu_cores`` (used over the sample), ``memory_mib`` and what the VM was given
(``provisioned_cores``, ``provisioned_memory_mib``). It stays out of the repository: it is read from
``../shared/data`` beside the checkout (for a git worktree, beside the main checkout too), from
``$RIGHTSIZER_REAL_TRACE`` or from ``--trace``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TRACE_NAME = "bitbrains-rnd-2013-7.csv.gz"
TRACE_ENV = "RIGHTSIZER_REAL_TRACE"
COLUMNS = ("vm", "ts", "cpu_cores", "memory_mib", "provisioned_cores", "provisioned_memory_mib")
SAMPLE_SECONDS = 300
"""The trace's sample interval: a sample stands for at most this long before it (see ``scrapes``)."""
DAY = 86400


class TraceMissing(RuntimeError):
    """The trace is not where the benchmark looks; the message says where it looked."""


def candidate_paths(repo: Path) -> list[Path]:
    """Where the trace is looked for, in order: ``$RIGHTSIZER_REAL_TRACE`` alone when it is set, else
    ``../shared/data/`` beside the checkout and, for a git worktree, beside the main checkout."""
    override = os.environ.get(TRACE_ENV)
    if override:
        return [Path(override)]
    roots = [repo.resolve().parent]
    common = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
        check=False,
    )
    if common.returncode == 0 and common.stdout.strip():
        main_checkout = Path(common.stdout.strip()).parent
        if main_checkout.parent not in roots:
            roots.append(main_checkout.parent)
    return [root / "shared" / "data" / TRACE_NAME for root in roots]


def find_trace(explicit: Path | None, repo: Path) -> Path:
    """The trace file: ``explicit`` (``--trace``) if given, else the first candidate that exists."""
    paths = [explicit] if explicit is not None else candidate_paths(repo)
    for path in paths:
        if path.is_file():
            return path
    where = ", ".join(str(p) for p in paths)
    raise TraceMissing(
        f"the real trace {TRACE_NAME} is not at {where}: put it there (it is not in the repository: "
        f"see shared/data/README.md), or give its path with --trace or ${TRACE_ENV}"
    )


def read_trace(path: Path, vms: int | None = None) -> pd.DataFrame:
    """The trace sorted by VM and time; ``vms``: only the first that many VMs (by number)."""
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not the real trace's columns (missing {', '.join(missing)})")
    frame = frame[list(COLUMNS)].sort_values(["vm", "ts"], kind="stable").reset_index(drop=True)
    if vms is not None:
        frame = frame[frame["vm"].isin(np.sort(frame["vm"].unique())[:vms])].reset_index(drop=True)
    return frame


@dataclass(frozen=True)
class Split:
    """The learning days and the scoring days after them, on the trace's own clock."""

    learning: pd.DataFrame
    scoring: pd.DataFrame
    start: int
    """The trace's first sample: learning is [start, boundary)."""
    boundary: int
    """Scoring is [boundary, boundary + score days)."""

    @property
    def learn_seconds(self) -> int:
        return self.boundary - self.start


def split(trace: pd.DataFrame, learn_days: float, score_days: float) -> Split:
    """Learn from the first ``learn_days`` of the trace (from its first sample), score the next
    ``score_days``. Only VMs with samples in both are kept: each is one container to recommend for."""
    start = int(trace["ts"].min())
    boundary = start + round(learn_days * DAY)
    end = boundary + round(score_days * DAY)
    learning = trace[trace["ts"] < boundary]
    scoring = trace[(trace["ts"] >= boundary) & (trace["ts"] < end)]
    both = np.intersect1d(learning["vm"].unique(), scoring["vm"].unique())
    return Split(
        learning[learning["vm"].isin(both)].reset_index(drop=True),
        scoring[scoring["vm"].isin(both)].reset_index(drop=True),
        start,
        boundary,
    )


@dataclass(frozen=True)
class Scrapes:
    """One VM's samples as a scraper every ``step`` seconds would have read them."""

    times: np.ndarray
    """Scrape times (trace clock), multiples of ``step`` from the phase asked for."""
    cpu_seconds: np.ndarray
    """The CPU counter (core-seconds since the first sample's interval began)."""
    memory_mib: np.ndarray
    """The working set each scrape read."""


def scrapes(
    ts: np.ndarray, cpu_cores: np.ndarray, memory_mib: np.ndarray, step: int, first: int, end: int
) -> Scrapes:
    """The scrapes at ``first``, ``first + step``, ... before ``end`` of one VM's samples.

    A sample is what was used over the time before it: since the previous sample, at most
    ``SAMPLE_SECONDS`` (a sample after a gap does not stand for the gap; a VM sampled more often has
    shorter samples). Within a sample's time, every scrape reads its memory (the value is held: what
    happened inside 5 minutes is not in the trace) and the CPU counter grows at its rate, so any
    window's rate is the time-weighted mean of the samples it covers. Where no sample stands (a gap),
    nothing is scraped and the counter does not grow.
    """
    lengths = np.minimum(np.diff(ts, prepend=ts[0] - SAMPLE_SECONDS), SAMPLE_SECONDS)
    begins = ts - lengths
    grid = np.arange(first, end, step, dtype=np.int64)
    index = np.minimum(np.searchsorted(ts, grid, side="left"), len(ts) - 1)
    inside = (grid > begins[index]) & (grid <= ts[index])
    grid, index = grid[inside], index[inside]
    used_before = np.concatenate(([0.0], np.cumsum(cpu_cores * lengths)))[index]
    counter = used_before + cpu_cores[index] * (grid - begins[index])
    return Scrapes(grid, counter, memory_mib[index])

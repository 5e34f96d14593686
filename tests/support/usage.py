"""Hand-made bucketed histories for the engine's tests: every number in them is chosen to be checked by hand.

Buckets are half an hour of six 5-minute CPU windows, 30 working-set samples each (60 s scrapes); the
evaluation time ``END`` is the end of the last bucket, 22:00 UTC, so buckets end on the half hour.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from rightsizer.model import HISTORY_COLUMNS, ContainerUsage, HistoryGrid

DAY = 86400.0
BUCKET = 1800
SAMPLES = 30
END = 1_699_999_200.0
MIB = 1024 * 1024


def grid(window_days: float = 14, bucket: int = BUCKET, cpu_window: int = 300) -> HistoryGrid:
    return HistoryGrid(END, int(window_days * DAY), bucket, cpu_window)


def buckets(days: float, *, ago: float = 0.0, bucket: int = BUCKET) -> list[float]:
    """End times of the buckets of ``days`` of history that ended ``ago`` seconds before ``END``."""
    count = round(days * DAY / bucket)
    return [END - ago - i * bucket for i in range(count)][::-1]


def rows(
    pod: str,
    times: Sequence[float],
    cpu: float = 0.12,
    memory: float = 200 * MIB,
    *,
    cpu_peak: float | None = None,
    coverage: float = 1.0,
) -> pd.DataFrame:
    """A pod's buckets at ``times``, all alike: CPU mean ``cpu`` (peak ``cpu_peak``, else the mean)."""
    return pd.DataFrame(
        {
            "pod": pod,
            "time": list(times),
            "cpu_mean": cpu,
            "cpu_peak": cpu if cpu_peak is None else cpu_peak,
            "memory_mean": float(memory),
            "samples": SAMPLES * coverage,
            "coverage": coverage,
        }
    )[list(HISTORY_COLUMNS)]


def steady(days: float = 3, pods: Sequence[str] = ("a", "b"), **values: float) -> pd.DataFrame:
    """``days`` of every pod at the same CPU and memory, the newest bucket ending at ``END``."""
    return pd.concat([rows(pod, buckets(days), **values) for pod in pods], ignore_index=True)


def usage(
    history: pd.DataFrame | None = None, *, window_days: float = 14, **fields: object
) -> ContainerUsage:
    """The container of 3 steady days, 2 pods at 120m and 200Mi, unless told otherwise; the memory peak
    is the highest bucket mean unless given; one bucket of pod ``a`` peaks at 200m (``cpuMax``)."""
    if history is None:
        history = steady()
        history.loc[0, "cpu_peak"] = 0.2
    values: dict[str, object] = {
        "history": history,
        "grid": grid(window_days),
        "memory_peak_bytes": float(history["memory_mean"].max()) if not history.empty else None,
    }
    values.update(fields)
    return ContainerUsage(**values)  # type: ignore[arg-type]

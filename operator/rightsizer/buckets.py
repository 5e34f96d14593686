"""The bucketed history of one batch as arrays: one row per pod-container, one column per bucket (pure).

What the range queries answer (``promql.QueryScope.history_queries``), folded per pod-container and laid on
the batch's bucket grid: the CPU mean and peak (cores), the mean working set (bytes) and the working-set
samples of each bucket, NaN where there are none. Row ``i`` is ``keys.iloc[i]`` (namespace, pod, container,
named as the scope's labels name them). Holding a namespace's history as a few arrays instead of a frame
of one row per point keeps it small (4 x 8 bytes a pod-container and bucket) and lets the collection work
on the whole namespace at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from rightsizer.matrix import Matrix
from rightsizer.model import HistoryGrid
from rightsizer.promql import LabelConfig
from rightsizer.windows import cpu_buckets

LEAD_BUCKETS = 2
"""The range queries start this many buckets before the window's first: a bucket's CPU values need the
counter at the end of the bucket before, and whether that one was regular (``rightsizer.windows``)."""
HISTORY_VALUES = ("cpu_mean", "cpu_peak", "memory_mean", "memory_samples")
"""The per-bucket values, as the history queries used to be named (``UsageFrames`` gives each as a frame)."""


@dataclass(frozen=True)
class BucketArrays:
    """Per pod-container (``keys``) and bucket of ``grid``: ``values[name]`` for each of ``HISTORY_VALUES``;
    ``samples_before``: the working-set samples of the bucket before the first (0 for none)."""

    keys: pd.DataFrame
    grid: HistoryGrid
    values: Mapping[str, np.ndarray]
    samples_before: np.ndarray
    key_labels: tuple[str, str, str]
    """The keys' columns: the scope's namespace, pod and container label names."""

    @property
    def times(self) -> np.ndarray:
        """The end of every bucket (epoch seconds)."""
        grid = self.grid
        buckets = max(1, grid.window_seconds // grid.bucket_seconds)
        return grid.end - grid.bucket_seconds * np.arange(buckets - 1, -1, -1, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.keys)

    def long_frame(self, name: str) -> pd.DataFrame:
        """One row per pod-container and bucket with a value: the labels, ``time`` and ``value`` (the shape
        the range queries' answers had)."""
        values = self.values[name]
        rows, columns = np.nonzero(~np.isnan(values))
        frame = self.keys.iloc[rows].reset_index(drop=True)
        return frame.assign(time=self.times[columns], value=values[rows, columns])

    def with_cpu(
        self, rows: np.ndarray, columns: np.ndarray, mean: np.ndarray, peak: np.ndarray
    ) -> BucketArrays:
        """A copy with the CPU values of the cells (``rows``, ``columns``) replaced."""
        values = dict(self.values)
        for name, replacement in (("cpu_mean", mean), ("cpu_peak", peak)):
            updated = values[name].copy()
            updated[rows, columns] = np.asarray(replacement, dtype=np.float64)
            values[name] = updated
        return replace(self, values=values)

    def size_bytes(self) -> int:
        labels = int(self.keys.memory_usage(deep=True).sum())
        return labels + sum(int(v.nbytes) for v in self.values.values()) + int(self.samples_before.nbytes)

    @classmethod
    def from_frames(
        cls, frames: Mapping[str, pd.DataFrame], grid: HistoryGrid, labels: LabelConfig
    ) -> BucketArrays:
        """From frames of the answers' shape (``long_frame``): how tests and replays build a batch."""
        key_labels = (labels.namespace, labels.pod, labels.container)
        present = [frames[name] for name in HISTORY_VALUES if name in frames and not frames[name].empty]
        keys = _key_table([f[list(key_labels)] for f in present], key_labels)
        grid_times = cls(keys, grid, {}, np.zeros(0), key_labels).times
        values = {}
        for name in HISTORY_VALUES:
            dense = np.full((len(keys), len(grid_times)), np.nan)
            frame = frames.get(name)
            if frame is not None and not frame.empty:
                rows = _rows(keys, frame, key_labels)
                columns = np.rint((frame["time"].to_numpy(float) - grid_times[0]) / grid.bucket_seconds)
                dense[rows, columns.astype(np.int64)] = frame["value"].to_numpy(float)
            values[name] = dense
        return cls(keys, grid, values, np.zeros(len(keys)), key_labels)


@dataclass(frozen=True)
class FirstRound:
    """The history queries' answers, laid on the grid with the bucket before the first: what the batch
    knows before the second round, and which CPU cells that round must ask for."""

    buckets: BucketArrays
    irregular: np.ndarray
    """Per pod-container and bucket: the CPU values are placeholders (``rightsizer.windows``)."""

    def exact_ends(self) -> list[tuple[float, tuple[str, ...]]]:
        """The bucket ends with irregular cells, each with the pods whose cells they are (sorted)."""
        pods = self.buckets.keys[self.buckets.key_labels[1]].to_numpy()
        times = self.buckets.times
        return [
            (float(times[column]), tuple(sorted(set(pods[self.irregular[:, column]]))))
            for column in np.flatnonzero(self.irregular.any(axis=0))
        ]


def first_round(answers: Mapping[str, Matrix], grid: HistoryGrid, labels: LabelConfig) -> FirstRound:
    """The history queries' answers (``cpu_counter``, ``cpu_increase`` when buckets hold several CPU
    windows, ``memory_mean``, ``memory_samples``, each over the window's buckets and the ``LEAD_BUCKETS``
    before) as ``BucketArrays``, with the CPU values of the regular buckets and the irregular ones marked."""
    key_labels = (labels.namespace, labels.pod, labels.container)
    tables = {name: _label_table(matrix, key_labels) for name, matrix in answers.items()}
    keys = _key_table(list(tables.values()), key_labels)
    buckets = max(1, grid.window_seconds // grid.bucket_seconds)
    start = grid.end - (buckets - 1 + LEAD_BUCKETS) * grid.bucket_seconds
    dense = {name: m.dense(start, grid.bucket_seconds, buckets + LEAD_BUCKETS) for name, m in answers.items()}
    rows = {name: _rows(keys, table, key_labels) for name, table in tables.items()}
    memory_mean = _fold(dense["memory_mean"], rows["memory_mean"], len(keys))
    memory_samples = _fold(dense["memory_samples"], rows["memory_samples"], len(keys))
    cpu_series = _series_table([tables[name] for name in ("cpu_counter", "cpu_increase") if name in tables])
    increase = None
    if "cpu_increase" in dense:
        increase = _align(dense["cpu_increase"], tables["cpu_increase"], cpu_series)
    cpu = cpu_buckets(
        _align(dense["cpu_counter"], tables["cpu_counter"], cpu_series),
        increase,
        _rows(keys, cpu_series, key_labels),
        np.nan_to_num(memory_samples),
        grid.bucket_seconds,
        grid.cpu_window_seconds,
    )
    window = slice(LEAD_BUCKETS, None)
    values = {
        "cpu_mean": cpu.mean[:, 1:],
        "cpu_peak": cpu.peak[:, 1:],
        "memory_mean": memory_mean[:, window],
        "memory_samples": memory_samples[:, window],
    }
    before = np.nan_to_num(memory_samples[:, LEAD_BUCKETS - 1])
    return FirstRound(BucketArrays(keys, grid, values, before, key_labels), cpu.irregular[:, 1:])


def _label_table(matrix: Matrix, key_labels: tuple[str, str, str]) -> pd.DataFrame:
    """One row per series: the key labels and the other labels joined (a series' identity)."""
    table = pd.DataFrame({label: [series.get(label, "") for series in matrix.labels] for label in key_labels})
    table["series"] = [
        ",".join(f"{k}={v}" for k, v in sorted(series.items()) if k != "__name__") for series in matrix.labels
    ]
    return table


def _series_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Every series of the tables, once (by ``series``), in the order first seen."""
    return pd.concat(tables, ignore_index=True).drop_duplicates("series").reset_index(drop=True)


def _key_table(tables: list[pd.DataFrame], key_labels: tuple[str, str, str]) -> pd.DataFrame:
    columns = list(key_labels)
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    keys = pd.concat([t[columns] for t in tables], ignore_index=True).drop_duplicates()
    return keys.sort_values(columns, kind="stable").reset_index(drop=True)


def _rows(keys: pd.DataFrame, table: pd.DataFrame, key_labels: tuple[str, str, str]) -> np.ndarray:
    """The row of ``keys`` of every row of ``table``."""
    columns = list(key_labels)
    index = pd.MultiIndex.from_frame(keys[columns])
    return np.asarray(index.get_indexer(pd.MultiIndex.from_frame(table[columns])), dtype=np.int64)


def _fold(values: np.ndarray, rows: np.ndarray, keys: int) -> np.ndarray:
    folded = np.full((keys, values.shape[1]), np.nan)
    np.fmax.at(folded, rows, values)
    return folded


def _align(values: np.ndarray, table: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
    """``values`` (one row per series of ``table``) in the order of ``target``'s series, NaN for a
    series ``table`` lacks."""
    position = pd.Index(table["series"]).get_indexer(target["series"])
    aligned = np.full((len(target), values.shape[1]), np.nan)
    found = position >= 0
    aligned[found] = values[position[found]]
    return aligned


def with_exact_cpu(first: FirstRound, exact: pd.DataFrame, term_label: str) -> BucketArrays:
    """The first round's arrays with every irregular CPU cell set to what the tiled expressions answered
    (``exact``: one row per pod-container and term ``<cpu_mean|cpu_peak>@<end>``), NaN where they
    answered nothing."""
    arrays = first.buckets
    rows, columns = np.nonzero(first.irregular)
    found: dict[tuple[int, int, str], float] = {}
    if not exact.empty and term_label in exact.columns:
        terms = exact[term_label].astype(str).str.rsplit("@", n=1, expand=True)
        ends = terms[1].astype(float).to_numpy()
        exact_columns = np.rint((ends - arrays.times[0]) / arrays.grid.bucket_seconds).astype(np.int64)
        exact_rows = _rows(arrays.keys, exact, arrays.key_labels)
        for row, column, name, value in zip(
            exact_rows, exact_columns, terms[0], exact["value"].to_numpy(float), strict=True
        ):
            found[(int(row), int(column), str(name))] = float(value)
    cells = list(zip(rows.tolist(), columns.tolist(), strict=True))
    mean = np.array([found.get((r, c, "cpu_mean"), np.nan) for r, c in cells])
    peak = np.array([found.get((r, c, "cpu_peak"), np.nan) for r, c in cells])
    return arrays.with_cpu(rows, columns, mean, peak)

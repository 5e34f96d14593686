"""Prometheus' JSON answers read into numpy arrays, fast.

A namespace's range queries answer hundreds of thousands of ``[time, "value"]`` points. ``json.loads``
makes two Python objects of each and ``float`` parses the values one by one, about a microsecond a point
(the whole client's time in ``rightsizer recommend`` with large namespaces). Here each series' labels are
decoded as JSON, and all its points at once by pandas' C reader, which parses numbers exactly as
``float`` does (tests/test_matrix.py holds it to that, bit for bit). An answer in any other shape than
Prometheus' and VictoriaMetrics' matrix (a ``"histograms"`` member, say) is read with ``json.loads``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

RESULT = b'"result":['
METRIC = b'{"metric":'
VALUES = b',"values":[['
CHUNK_BYTES = 1 << 20
"""Points are read about this many bytes of text at a time (``_points``)."""
_DECODER = json.JSONDecoder()


class MatrixError(ValueError):
    """The answer is not a Prometheus matrix."""


@dataclass(frozen=True)
class Matrix:
    """The series of one range query: each one's labels, and its points (``counts[i]`` of them, in
    order) in ``times`` and ``values``."""

    labels: list[dict[str, str]]
    counts: np.ndarray
    times: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls) -> Matrix:
        return cls([], np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.labels)

    def dense(self, start: float, step: float, steps: int) -> np.ndarray:
        """The values on the grid ``start + i * step`` (i < ``steps``), one row per series, NaN where a
        series has no point. Points off the grid are an error: every range query here has that grid."""
        grid = np.full((len(self.labels), steps), np.nan)
        if not len(self.times):
            return grid
        row = np.repeat(np.arange(len(self.labels)), self.counts)
        column = np.rint((self.times - start) / step).astype(np.int64)
        if column.min() < 0 or column.max() >= steps:
            raise MatrixError(f"points outside the {steps} steps of {step:g}s from {start:g}")
        grid[row, column] = self.values
        return grid

    @classmethod
    def concat(cls, parts: list[Matrix]) -> Matrix:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            [labels for part in parts for labels in part.labels],
            np.concatenate([p.counts for p in parts]),
            np.concatenate([p.times for p in parts]),
            np.concatenate([p.values for p in parts]),
        )


def parse_matrix(body: bytes) -> Matrix:
    """The series of a successful range query answer (``{"status":"success","data":{"resultType":
    "matrix","result":[...]}}``)."""
    try:
        return _parse_fast(body)
    except (MatrixError, ValueError):
        return _parse_json(body.decode())


def _parse_fast(body: bytes) -> Matrix:
    start = body.find(RESULT)
    if start < 0 or b'"resultType":"matrix"' not in body[:start]:
        raise MatrixError("not a matrix")
    position = start + len(RESULT)
    labels: list[dict[str, str]] = []
    spans: list[tuple[int, int]] = []
    while not body.startswith(b"]", position):
        if spans:
            if not body.startswith(b",", position):
                raise MatrixError("expected ','")
            position += 1
        if not body.startswith(METRIC, position):
            raise MatrixError("expected a series")
        values = body.find(VALUES, position)
        if values < 0:
            raise MatrixError("expected values")
        metric, end = _DECODER.raw_decode(body[position + len(METRIC) : values].decode())
        if end != values - position - len(METRIC):
            raise MatrixError("expected values after the labels")
        position = values + len(VALUES)
        end = body.find(b"]]}", position)
        if end < 0:
            raise MatrixError("unterminated values")
        labels.append(metric)
        spans.append((position, end))
        position = end + 3
    if not spans:
        return Matrix.empty()
    counts = np.array([body.count(b"],[", a, b) + 1 for a, b in spans], dtype=np.int64)
    points = np.concatenate([_points(body, chunk) for chunk in _chunks(spans)])
    if points.shape != (int(counts.sum()), 2):
        raise MatrixError("points do not pair up")
    return Matrix(labels, counts, np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1]))


def _chunks(spans: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The spans in runs of about ``CHUNK_BYTES``: each run is read at once, and no more than one run's
    text is copied at a time."""
    chunks: list[list[tuple[int, int]]] = [[]]
    size = 0
    for span in spans:
        if size > CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(span)
        size += span[1] - span[0]
    return chunks


def _points(body: bytes, spans: list[tuple[int, int]]) -> np.ndarray:
    """The ``[time,"value"]`` points of ``spans`` as rows of two floats, parsed as ``float`` does."""
    csv = b"\n".join(body[a:b] for a, b in spans).replace(b"],[", b"\n").replace(b'"', b"")
    points: np.ndarray = pd.read_csv(io.BytesIO(csv), header=None, dtype=np.float64, engine="c").to_numpy()
    return points


def _parse_json(text: str) -> Matrix:
    try:
        series = json.loads(text)["data"]["result"]
    except (ValueError, KeyError, TypeError) as error:
        raise MatrixError(f"not a Prometheus answer ({type(error).__name__}: {error})") from None
    if not series:
        return Matrix.empty()
    points = [point for s in series for point in s.get("values", [])]
    return Matrix(
        [s["metric"] for s in series],
        np.array([len(s.get("values", [])) for s in series], dtype=np.int64),
        np.array([float(t) for t, _ in points]),
        np.array([float(v) for _, v in points]),
    )

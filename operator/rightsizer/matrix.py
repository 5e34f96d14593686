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
        reader = MatrixReader()
        reader.feed(body)
        return reader.finish()
    except (MatrixError, ValueError):
        return _parse_json(body.decode())


class MatrixReader:
    """Reads a range query's answer as it streams in (``feed`` each piece, then ``finish``): the points of
    every ``CHUNK_BYTES`` of complete series are parsed and their text let go, so the answer is never
    held whole. Raises ``MatrixError`` (or ``ValueError``) on anything but Prometheus' matrix shape; the
    caller then asks again and reads the answer with ``json.loads`` (``parse_matrix``)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position: int | None = None
        """Where the next series starts in ``_buffer``; None before ``"result":[`` was seen."""
        self._spans: list[tuple[int, int]] = []
        """Complete series in ``_buffer`` whose points are not parsed yet."""
        self._done = False
        self.labels: list[dict[str, str]] = []
        self._counts: list[int] = []
        self._points: list[np.ndarray] = []

    def feed(self, data: bytes) -> None:
        if self._done:
            return  # the rest closes the answer (or holds its warnings)
        self._buffer += data
        if self._position is None:
            start = self._buffer.find(RESULT)
            if start < 0:
                return
            if b'"resultType":"matrix"' not in self._buffer[:start]:
                raise MatrixError("not a matrix")
            self._position = start + len(RESULT)
        self._series()
        if sum(b - a for a, b in self._spans) >= CHUNK_BYTES:
            self._parse_spans()

    def finish(self) -> Matrix:
        if not self._done:
            raise MatrixError("the answer ended before its series did")
        self._parse_spans()
        if not self.labels:
            return Matrix.empty()
        points = np.concatenate(self._points)
        counts = np.array(self._counts, dtype=np.int64)
        if points.shape != (int(counts.sum()), 2):
            raise MatrixError("points do not pair up")
        return Matrix(
            self.labels, counts, np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1])
        )

    def _series(self) -> None:
        """Take in every complete series from ``_position`` on."""
        buffer = self._buffer
        assert self._position is not None
        position = self._position
        while True:
            if buffer.startswith(b"]", position):
                self._done = True
                break
            if self.labels:
                if len(buffer) <= position:
                    break
                if not buffer.startswith(b",", position):
                    raise MatrixError("expected ','")
                following = position + 1
            else:
                following = position
            if len(buffer) < following + len(METRIC):
                break
            if not buffer.startswith(METRIC, following):
                raise MatrixError("expected a series")
            values = buffer.find(VALUES, following)
            end = buffer.find(b"]]}", values + len(VALUES)) if values >= 0 else -1
            if end < 0:
                break  # not all of it yet
            metric, length = _DECODER.raw_decode(buffer[following + len(METRIC) : values].decode())
            if length != values - following - len(METRIC):
                raise MatrixError("expected values after the labels")
            self.labels.append(metric)
            self._spans.append((values + len(VALUES), end))
            position = end + 3
        self._position = position

    def _parse_spans(self) -> None:
        """Parse the points of the complete series taken in, and let their text go."""
        if not self._spans:
            return
        buffer = self._buffer
        self._counts += [buffer.count(b"],[", a, b) + 1 for a, b in self._spans]
        self._points.append(_points(buffer, self._spans))
        assert self._position is not None
        del buffer[: self._position]
        self._position = 0
        self._spans = []


def _points(buffer: bytearray, spans: list[tuple[int, int]]) -> np.ndarray:
    """The ``[time,"value"]`` points of ``spans`` as rows of two floats, parsed as ``float`` does."""
    csv = b"\n".join(buffer[a:b] for a, b in spans).replace(b"],[", b"\n").replace(b'"', b"")
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

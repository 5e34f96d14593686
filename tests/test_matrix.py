"""Range answers read straight into arrays (rightsizer.matrix): the same series, times and values as
``json.loads`` and ``float`` give, bit for bit, however the answer is cut as it streams in."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rightsizer.matrix import CHUNK_BYTES, Matrix, MatrixError, MatrixReader, parse_matrix


def answer(series: list[dict[str, object]], **extra: object) -> bytes:
    """A range query's answer as Prometheus writes it (compact JSON, values as strings)."""
    data = {"resultType": "matrix", "result": series}
    return json.dumps({"status": "success", "data": data, **extra}, separators=(",", ":")).encode()


def by_json(body: bytes) -> Matrix:
    series = json.loads(body)["data"]["result"]
    points = [p for s in series for p in s["values"]]
    return Matrix(
        [s["metric"] for s in series],
        np.array([len(s["values"]) for s in series], dtype=np.int64),
        np.array([float(t) for t, _ in points]),
        np.array([float(v) for _, v in points]),
    )


def same(found: Matrix, expected: Matrix) -> bool:
    return (
        found.labels == expected.labels
        and np.array_equal(found.counts, expected.counts)
        and np.array_equal(found.times, expected.times)
        and np.array_equal(found.values, expected.values, equal_nan=True)
    )


def random_series(rng: random.Random, count: int, points: int) -> list[dict[str, object]]:
    values = [
        lambda: repr(rng.random() * 10),
        lambda: repr(rng.random() * 1e9),
        lambda: repr(rng.random() * 1e-6),
        lambda: repr(round(rng.random() * 1e5, 4)),
        lambda: str(rng.randint(0, 200)),
        lambda: rng.choice(["NaN", "+Inf", "-Inf"]),
    ]
    series = []
    for index in range(count):
        start = 1_796_600_000 - 1800 * points
        times = [start + 1800 * i for i in range(points) if rng.random() > 0.1]
        metric = {"namespace": "shop", "pod": f'web-{index} "quoted" \\\\ é', "container": "app"}
        if index % 3 == 0:
            metric["__name__"] = "container_cpu_usage_seconds_total"
        series.append({"metric": metric, "values": [[t, rng.choice(values)()] for t in times]})
    return series


def test_values_are_read_bit_for_bit_as_float_reads_them():
    rng = random.Random(7)
    body = answer(random_series(rng, 300, 700))
    assert len(body) > 3 * CHUNK_BYTES  # read in several chunks
    reader = MatrixReader()  # not parse_matrix, which falls back to json.loads on any doubt
    reader.feed(body)
    assert same(reader.finish(), by_json(body))


@pytest.mark.parametrize("seed", range(5))
def test_an_answer_cut_anywhere_as_it_streams_in_reads_the_same(seed):
    rng = random.Random(seed)
    body = answer(random_series(rng, 80, 200), warnings=["some series were dropped"])
    reader = MatrixReader()
    position = 0
    while position < len(body):
        size = rng.choice([1, 7, 100, 4096, 300_000])
        reader.feed(body[position : position + size])
        position += size
    assert same(reader.finish(), by_json(body))


def test_no_series_is_an_empty_matrix():
    assert len(parse_matrix(answer([]))) == 0
    assert parse_matrix(answer([])).dense(0, 1800, 3).shape == (0, 3)


def test_an_answer_in_another_shape_is_read_as_json():
    body = answer(random_series(random.Random(1), 3, 5))
    spaced = json.dumps(json.loads(body), indent=1).encode()
    assert same(parse_matrix(spaced), by_json(body))
    reader = MatrixReader()
    reader.feed(spaced)
    with pytest.raises(MatrixError):
        reader.finish()  # streamed, it is refused: the caller asks again and reads the JSON


def test_points_go_on_the_grid_of_the_range_query():
    body = answer([{"metric": {"pod": "a"}, "values": [[3600, "1"], [7200, "2"]]}])
    grid = parse_matrix(body).dense(1800, 1800, 4)
    assert np.array_equal(grid, [[np.nan, 1.0, np.nan, 2.0]], equal_nan=True)
    with pytest.raises(MatrixError):
        parse_matrix(body).dense(3600, 1800, 1)

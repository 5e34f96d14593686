"""ahead.one_ahead: the next call runs while the caller works on a result, never more than one call at a
time nor more than one result ahead, and a call's error comes in its turn; and ``scan``, which fetches
one batch ahead with it, reports its progress in order."""

from __future__ import annotations

import threading
import time

import pytest

import rightsizer.scan as scan_module
from rightsizer.ahead import one_ahead
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import RecommendationSettings
from rightsizer.source import PrometheusSource

PATIENCE = 30.0
"""Seconds a test waits for a thread's step: generous, on a shared machine."""


class Calls:
    """Calls that record when each starts and ends, and how many run at once."""

    def __init__(self, count: int, failing: int | None = None) -> None:
        self.started = [threading.Event() for _ in range(count)]
        self.ended = [threading.Event() for _ in range(count)]
        self.failing = failing
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def call(self, index: int) -> int:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.started[index].set()
        try:
            if index == self.failing:
                raise RuntimeError(f"call {index} failed")
            return index * 10
        finally:
            with self._lock:
                self.running -= 1
            self.ended[index].set()

    def each(self) -> list:
        return [lambda index=index: self.call(index) for index in range(len(self.started))]


def test_results_come_in_order_and_the_next_call_runs_while_the_caller_works():
    calls = Calls(4)
    seen = []
    for result in one_ahead(calls.each()):
        index = result // 10
        seen.append(result)
        if index + 1 < 4:
            # The caller is still on this result: the next call is made meanwhile (not after it asks).
            assert calls.ended[index + 1].wait(PATIENCE)
        if index + 2 < 4:
            # ...but not the one after it: at most one result is held ahead of the caller's.
            assert not calls.started[index + 2].wait(0.5)
    assert seen == [0, 10, 20, 30]
    assert calls.most_running == 1


def test_an_error_comes_after_the_results_before_it_and_no_call_follows_it():
    calls = Calls(4, failing=2)
    seen = []
    with pytest.raises(RuntimeError, match="call 2 failed"):
        for result in one_ahead(calls.each()):
            seen.append(result)
    assert seen == [0, 10]
    assert not calls.started[3].is_set()


def test_no_calls_no_results():
    assert list(one_ahead([])) == []


def test_a_caller_that_stops_early_leaves_no_call_running():
    calls = Calls(4)
    for result in one_ahead(calls.each()):
        assert result == 0
        break
    # The generator closed when the loop left it: the call ahead of it is done, none after it started.
    assert calls.ended[1].is_set() and not calls.started[2].is_set()


def test_scan_fetches_the_next_batch_while_it_works_and_reports_each_in_order(demo_prometheus, monkeypatch):
    """The next batch's fetch starts while this one's recommendations are made (the progress line of a
    batch waits for it: a scan that fetched one batch after the other would never get there), and the
    progress still says each batch when its recommendations are in."""
    end = time.time()
    request = ScanRequest(namespaces=("legacy", "shop"))
    monkeypatch.setattr(scan_module, "STREAM_CONTAINERS", 4)
    source = PrometheusSource(demo_prometheus.url)
    fetch = source.fetch
    fetches_started: list[float] = []

    def recorded_fetch(*args, **kwargs):
        fetches_started.append(time.monotonic())
        return fetch(*args, **kwargs)

    monkeypatch.setattr(source, "fetch", recorded_fetch)
    messages: list[str] = []
    waited_for_the_next = []

    def progress(message: str) -> None:
        messages.append(message)
        if message.endswith("containers so far") and message.startswith("[1/2]"):
            # legacy is done; shop's first shard must be on its way already.
            deadline = time.monotonic() + PATIENCE
            while len(fetches_started) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            waited_for_the_next.append(len(fetches_started) >= 2)

    result = scan(source, request, RecommendationSettings(), end=end, progress=progress)
    assert waited_for_the_next == [True]
    legacy = sum(r.key.namespace == "legacy" for r in result.recommendations)
    assert messages[0] == f"[1/2] legacy: {legacy} containers so far"
    parts = [m for m in messages if m.startswith("[2/2] shop, part ")]
    assert len(parts) > 3
    assert parts == [
        m for m in parts if m.startswith(f"[2/2] shop, part {parts.index(m) + 1} of {len(parts)}: ")
    ]
    assert messages[1:] == [*parts, f"[2/2] shop: {len(result.recommendations)} containers so far"]

"""One Prometheus batch per namespace and interval, collected once and shared by the evaluations of
all its policies.

Kopf runs every policy's timer on its own (sync handlers, in a thread pool), so 100 policies of one
namespace would each send the namespace's batch (docs/metrics.md) every interval, and each collect
it into per-container usage. Here the batch's end is rounded down to the interval: every policy of
the namespace evaluated within the same interval asks for the same (scope, end) and gets the
``CollectedBatch`` of one fetch and one collection. While it is in flight, the others wait for it;
a failed fetch is not kept, so the next evaluation tries again. Only the collected form is kept,
not the raw frames (a few times smaller).

The collection also depends on the owners the operator knows from the API (``known_owners``), but
only on those of the batch's own pods (``collect.owners_key``): an evaluation that knows other owners
for them (a pod gone between two evaluations) gets a collection of its own, from a fetch of its own.
Entries expire when their interval is over, and the least recently used are dropped past
``SHARED_BATCH_MAX_BYTES``. Policies with another history window or resolution need other queries,
so they get a batch of their own.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd

from rightsizer.collect import CollectedBatch, OwnersKey, batch_pods, collect_batch, owners_key
from rightsizer.promql import QueryScope
from rightsizer.settings import SHARED_BATCH_MAX_BYTES
from rightsizer.source import PrometheusSource, UsageFrames

logger = logging.getLogger(__name__)

BatchKey = tuple[QueryScope, float]


@dataclass
class _Entry:
    pods: Future[frozenset[tuple[str, str]]]
    """The batch's pods (``collect.batch_pods``), known once the first fetch is in."""
    expires: float
    collected: dict[OwnersKey, Future[CollectedBatch]] = field(default_factory=dict)
    size: int = 0


class SharedBatches:
    """``collect``: ``collect_batch(PrometheusSource.fetch(...))``, once per scope and interval for
    all callers (threads)."""

    def __init__(self, source: PrometheusSource, max_bytes: int = SHARED_BATCH_MAX_BYTES) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.fetches = 0
        """Batches fetched from Prometheus."""
        self.shared = 0
        """Evaluations served a collection another one made (or was making)."""
        self._entries: OrderedDict[BatchKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def collect(
        self, scope: QueryScope, now: float, interval_seconds: int, known_owners: pd.DataFrame | None = None
    ) -> CollectedBatch:
        """The scope's collection for a window ending at ``now`` rounded down to ``interval_seconds``."""
        interval = max(1, int(interval_seconds))
        end = float(math.floor(now / interval) * interval)
        key = (scope, end)
        with self._lock:
            self._expire(now)
            entry = self._entries.get(key)
            first = entry is None
            if entry is None:
                entry = self._entries[key] = _Entry(Future(), expires=end + interval)
                self.fetches += 1
            else:
                self._entries.move_to_end(key)
        if first:
            return self._first(key, entry, known_owners)
        owners = owners_key(known_owners, entry.pods.result())
        with self._lock:
            collected = entry.collected.get(owners)
            mine = collected is None
            if collected is None:
                collected = entry.collected[owners] = Future()
                self.fetches += 1
            else:
                self.shared += 1
        if mine:
            self._collect(key, entry, owners, collected, known_owners)
        return collected.result()

    def _first(self, key: BatchKey, entry: _Entry, known_owners: pd.DataFrame | None) -> CollectedBatch:
        """Fetch the batch, learn its pods, and collect it for ``known_owners``."""
        scope, end = key
        try:
            frames = self.source.fetch(scope, end)
            pods = batch_pods(frames, scope.labels)
        except BaseException as error:
            entry.pods.set_exception(error)
            self._drop(key, entry)  # not kept: the next evaluation tries again
            raise
        owners = owners_key(known_owners, pods)
        collected: Future[CollectedBatch] = Future()
        with self._lock:
            entry.collected[owners] = collected
        entry.pods.set_result(pods)
        self._collect(key, entry, owners, collected, known_owners, frames)
        return collected.result()

    def _collect(
        self,
        key: BatchKey,
        entry: _Entry,
        owners: OwnersKey,
        collected: Future[CollectedBatch],
        known_owners: pd.DataFrame | None,
        frames: UsageFrames | None = None,
    ) -> None:
        """Collect the batch for ``owners`` (fetching it again unless ``frames`` are given)."""
        scope, end = key
        try:
            if frames is None:
                frames = self.source.fetch(scope, end)
            result = collect_batch(frames, scope.labels, known_owners)
        except BaseException as error:
            collected.set_exception(error)
            with self._lock:
                if entry.collected.get(owners) is collected:
                    del entry.collected[owners]  # not kept: the next evaluation tries again
            return
        collected.set_result(result)
        with self._lock:
            entry.size += result.size_bytes()
            self._evict()

    def _drop(self, key: BatchKey, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]

    def _expire(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if e.expires <= now and _settled(e)]:
            del self._entries[key]

    def _evict(self) -> None:
        """Drop the least recently used collected batches while the total is above ``max_bytes``."""
        total = sum(e.size for e in self._entries.values())
        for key, entry in list(self._entries.items()):
            if total <= self.max_bytes:
                break
            if _settled(entry):
                total -= entry.size
                del self._entries[key]
                logger.info(
                    "shared batch of %s dropped: %d bytes kept at most", key[0].namespaces, self.max_bytes
                )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _settled(entry: _Entry) -> bool:
    """Nothing of the entry is still being fetched or collected."""
    return entry.pods.done() and all(c.done() for c in entry.collected.values())

"""One Prometheus batch per namespace and interval, shared by the evaluations of all its policies.

Kopf runs every policy's timer on its own (sync handlers, in a thread pool), so 100 policies of one
namespace would each send the namespace's batch (docs/metrics.md) every interval. Here the batch's
end is rounded down to the interval: every policy of the namespace evaluated within the same interval
asks for the same (scope, end) and gets the frames of one fetch. While it is in flight, the others
wait for it (one fetch per key); a failed fetch is not kept, so the next evaluation tries again.
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
from dataclasses import dataclass

from rightsizer.promql import QueryScope
from rightsizer.settings import SHARED_BATCH_MAX_BYTES
from rightsizer.source import PrometheusSource, UsageFrames

logger = logging.getLogger(__name__)


@dataclass
class _Entry:
    future: Future[UsageFrames]
    expires: float
    size: int = 0


class SharedBatches:
    """``fetch`` as ``PrometheusSource.fetch``, once per scope and interval for all callers (threads)."""

    def __init__(self, source: PrometheusSource, max_bytes: int = SHARED_BATCH_MAX_BYTES) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.fetches = 0
        """Batches fetched from Prometheus."""
        self.shared = 0
        """Evaluations served a batch another one fetched (or was fetching)."""
        self._entries: OrderedDict[tuple[QueryScope, float], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def fetch(self, scope: QueryScope, now: float, interval_seconds: int) -> UsageFrames:
        """The scope's frames for a window ending at ``now`` rounded down to ``interval_seconds``."""
        interval = max(1, int(interval_seconds))
        end = float(math.floor(now / interval) * interval)
        key = (scope, end)
        with self._lock:
            self._expire(now)
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = _Entry(Future(), expires=end + interval)
                self.fetches += 1
            else:
                self._entries.move_to_end(key)
                self.shared += 1
        if owner:
            self._run(key, entry)
        return entry.future.result()

    def _run(self, key: tuple[QueryScope, float], entry: _Entry) -> None:
        scope, end = key
        try:
            frames = self.source.fetch(scope, end)
        except BaseException as error:
            entry.future.set_exception(error)
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]  # not kept: the next evaluation tries again
            return
        entry.size = frames.size_bytes()
        entry.future.set_result(frames)
        with self._lock:
            self._evict()

    def _expire(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if e.expires <= now and e.future.done()]:
            del self._entries[key]

    def _evict(self) -> None:
        """Drop the least recently used fetched batches while the total is above ``max_bytes``."""
        total = sum(e.size for e in self._entries.values())
        for key, entry in list(self._entries.items()):
            if total <= self.max_bytes:
                break
            if entry.future.done():
                total -= entry.size
                del self._entries[key]
                logger.info(
                    "shared batch of %s dropped: %d bytes kept at most", key[0].namespaces, self.max_bytes
                )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

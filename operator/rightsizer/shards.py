"""A namespace too large for one query, asked again in shards of its pods.

Prometheus refuses a query whose samples in memory pass ``--query.max-samples`` (50 M by default:
the CPU subquery of about 12,400 container series over 14 days), and stops one that runs past
``--query.timeout``. Such a query is run again over ``SHARD_SPLIT`` shards of the namespace's pods,
sorted by name so that a workload's pods stay together, and a shard that still fails is split
again. Only the refused queries are asked again, never those that were answered (the CPU subquery
is computed once per pod). A single pod that still fails is a ``FailedScope``: reported by name,
its workloads get no recommendation, and everything else is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import pandas as pd

from rightsizer.matrix import Matrix
from rightsizer.promql import QueryScope
from rightsizer.settings import SHARD_SPLIT


@dataclass(frozen=True)
class FailedScope:
    """Pods of a namespace that Prometheus could not answer for, even one by one."""

    namespace: str
    pods: tuple[str, ...]
    queries: tuple[str, ...]
    error: str

    @property
    def name(self) -> str:
        if len(self.pods) == 1:
            return f"{self.namespace}/{self.pods[0]}"
        return f"{self.namespace}/{self.pods[0]}..{self.pods[-1]} ({len(self.pods)} pods)"

    def describe(self) -> str:
        return f"{self.name}: {', '.join(self.queries)}: {self.error}"

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.name, "queries": list(self.queries), "error": self.error}


Answer: TypeAlias = pd.DataFrame | Matrix
"""A query's answer: a frame for an instant query, a ``Matrix`` for a range query."""
RunQueries: TypeAlias = "Callable[[QueryScope, Sequence[str]], Mapping[str, Answer | Exception]]"
"""Runs the named queries of a scope: each one's answer (a frame, or a ``Matrix`` for a range query),
or the error it was refused with as too large (``source.QueryTooLarge``); any other error is raised."""


def split(pods: Sequence[str], count: int = SHARD_SPLIT) -> list[tuple[str, ...]]:
    """``pods`` sorted and cut into at most ``count`` contiguous shards of near-equal size."""
    ordered = sorted(set(pods))
    count = max(1, min(count, len(ordered)))
    size, extra = divmod(len(ordered), count)
    shards, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        shards.append(tuple(ordered[start:end]))
        start = end
    return [shard for shard in shards if shard]


def run_in_shards(
    run: RunQueries, scope: QueryScope, names: Sequence[str], pods: Sequence[str]
) -> tuple[dict[str, Answer], list[FailedScope]]:
    """The ``names`` queries of ``scope`` over shards of ``pods``, their answers concatenated, and
    the pods no shard could answer for."""
    (namespace,) = scope.namespaces
    parts: dict[str, list[Answer]] = {name: [] for name in names}
    failed: list[FailedScope] = []
    pending = [(tuple(pods), tuple(names))]
    while pending:
        shard_pods, shard_names = pending.pop(0)
        for shard in split(shard_pods):
            results = run(replace(scope, pods=shard), shard_names)
            refused = {name: r for name, r in results.items() if isinstance(r, Exception)}
            for name, result in results.items():
                if not isinstance(result, Exception):
                    parts[name].append(result)
            if not refused:
                continue
            if len(shard) > 1:
                pending.append((shard, tuple(refused)))
            else:
                error = str(next(iter(refused.values())))
                failed.append(FailedScope(namespace, shard, tuple(refused), error))
    queries = scope.queries()
    return {name: _concat(answers, range_query=queries[name][0]) for name, answers in parts.items()}, failed


def _concat(answers: list[Answer], *, range_query: bool) -> Answer:
    if range_query:
        return Matrix.concat([a for a in answers if isinstance(a, Matrix)])
    frames = [a for a in answers if isinstance(a, pd.DataFrame) and not a.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

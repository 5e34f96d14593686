"""Work one step ahead: the next batch is fetched while the caller works on this one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def one_ahead(calls: Iterable[Callable[[], T]]) -> Iterator[T]:
    """The result of each of ``calls``, in order, each call made in a thread while the caller works on
    the result before it: at most one call runs, and at most two results are held (the caller's and the
    next). A call's error is raised where its result would have come, after every result before it;
    no call after it is made. When the caller stops (an error of its own, Ctrl-C), the call already
    running is waited for: a fetch ahead is not cut short (its queries have ``--timeout`` each)."""
    pending: Iterator[Callable[[], T]] = iter(calls)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="one-ahead") as pool:
        running: Future[T] | None = _submit(pool, next(pending, None))
        while running is not None:
            result = running.result()
            running = _submit(pool, next(pending, None))
            yield result


def _submit(pool: ThreadPoolExecutor, call: Callable[[], T] | None) -> Future[T] | None:
    return pool.submit(call) if call is not None else None

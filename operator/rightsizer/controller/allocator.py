"""glibc's malloc, tuned for a long-running process that builds and drops pandas frames in threads.

With 1,000 policies the operator's RSS was about 390 MiB on glibc's defaults and about 310 MiB with
these two settings (docs/benchmarks.md, "Where the memory goes"), for the same work:

- ``M_ARENA_MAX``: glibc gives threads that allocate at the same time arenas of their own, up to 8
  per core; Kopf's handler threads and the query threads each leave freed memory in theirs, which is
  reused only by the threads that land on that arena. The GIL lets one thread run Python at a
  time, so a couple of arenas cost no speed.
- ``M_MMAP_THRESHOLD``: by default, blocks above the threshold (128 KiB) are mmapped and go back to
  the system when freed, but each such free raises the threshold to that block's size (up to 32
  MiB); after that, the arrays of a frame come from the heap, where any small object allocated after
  them keeps the heap from shrinking. Setting it fixes it (and the trim threshold) at its value.

A variable the user set (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, or ``GLIBC_TUNABLES`` with
malloc tunables) is left to glibc. On another C library (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Mapping

from rightsizer.settings import MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_BYTES

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""``mallopt`` parameters, from glibc's ``malloc.h``."""

SETTINGS = (
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, MALLOC_ARENA_MAX),
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES),
)
"""(the environment variable that sets it, its ``mallopt`` parameter, the operator's value)."""


def tune(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Set the operator's malloc parameters that the environment leaves unset; returns those set."""
    libc = _glibc()
    if libc is None:
        logger.info("not glibc: malloc left as it is")
        return {}
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        logger.info("GLIBC_TUNABLES sets malloc tunables: malloc left as it is")
        return {}
    applied: dict[str, int] = {}
    for variable, parameter, value in SETTINGS:
        if variable in environ:
            continue
        if libc.mallopt(parameter, value) != 1:
            logger.warning("mallopt(%s, %d) refused", variable, value)
            continue
        applied[variable] = value
    logger.info("malloc tuned: %s", ", ".join(f"{k}={v}" for k, v in applied.items()) or "nothing to set")
    return applied


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "gnu_get_libc_version"):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc

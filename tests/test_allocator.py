"""controller/allocator.py: the operator's malloc settings, and what they are for (freed frames go
back to the system), checked in fresh interpreters so the test process' own malloc is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rightsizer.controller import allocator
from rightsizer.settings import MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_BYTES

MIB = 1024 * 1024

# Frees a 1 MiB block (glibc's default then raises its mmap threshold to 1 MiB), allocates 300 blocks
# of 256 KiB, each followed by a small malloc'd object that stays, frees the blocks, and prints the
# RSS growth that is left (MiB) and what ``tune`` set.
FREED_BLOCKS = """
import json, sys
from rightsizer.controller import allocator

def rss():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmRSS"].split()[0]) * 1024

applied = allocator.tune({}) if sys.argv[1] == "tuned" else {}
byte = sys.argv[1][:1].encode()  # not a constant: the compiler would fold b"x" * 1000 into one object
big = byte * (1024 * 1024)
del big
before = rss()
blocks, pins = [], []
for _ in range(300):
    blocks.append(byte * (256 * 1024))
    pins.append(byte * 1000)
grown = rss() - before
del blocks
print(json.dumps({"applied": applied, "grown": grown / 2**20, "kept": (rss() - before) / 2**20}))
"""


def run_blocks(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", FREED_BLOCKS, mode], capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_tuned_malloc_gives_freed_large_blocks_back_to_the_system() -> None:
    default, tuned = run_blocks("default"), run_blocks("tuned")
    assert tuned["applied"] == {
        "MALLOC_ARENA_MAX": MALLOC_ARENA_MAX,
        "MALLOC_MMAP_THRESHOLD_": MALLOC_MMAP_THRESHOLD_BYTES,
    }
    for result in (default, tuned):
        assert float(result["grown"]) > 60, result  # type: ignore[arg-type]  # 300 x 256 KiB were touched
    # glibc's default keeps them (the control: the test can see the difference), tuned gives them back.
    assert float(default["kept"]) > 60, default  # type: ignore[arg-type]
    assert float(tuned["kept"]) < 10, tuned  # type: ignore[arg-type]


def test_what_the_environment_sets_is_left_to_glibc() -> None:
    assert allocator.tune({"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"}) == {}
    assert allocator.tune({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}) == {}


@pytest.mark.parametrize(
    ("environ", "applied"),
    [
        ({"MALLOC_ARENA_MAX": "4"}, {"MALLOC_MMAP_THRESHOLD_": MALLOC_MMAP_THRESHOLD_BYTES}),
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, {"MALLOC_ARENA_MAX": MALLOC_ARENA_MAX}),
    ],
)
def test_only_the_settings_the_environment_leaves_unset_are_set(
    environ: dict[str, str], applied: dict[str, int]
) -> None:
    script = (
        "import json; from rightsizer.controller import allocator; "
        f"print(json.dumps(allocator.tune({environ!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == applied

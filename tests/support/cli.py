"""The ``rightsizer`` command run as users run it: a child process, its output and exit code."""

from __future__ import annotations

import subprocess
import sys


def run_rightsizer(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``rightsizer ARGS`` with this interpreter; a generous deadline (a loaded machine is slow)."""
    return subprocess.run(
        [sys.executable, "-m", "rightsizer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

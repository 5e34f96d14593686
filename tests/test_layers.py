"""The import-linter contract of pyproject.toml (run by hack/test.sh) holds, and breaks on a violation.

The contract keeps the core (engine, model, settings, units) free of Kubernetes, Prometheus and the
controller; parsing quantities with the kubernetes client (quantity.py) is outside it. It is run on
copies of the package: as it is, and with one offending import added, directly or through a module
the core imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tmp_path: Path, offending: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repo's contract over a copy of the package, ``offending`` lines added
    at the end of the named modules."""
    package = tmp_path / "rightsizer"
    shutil.copytree(REPO / "operator" / "rightsizer", package, ignore=shutil.ignore_patterns("__pycache__"))
    for module, line in offending.items():
        path = package / f"{module}.py"
        path.write_text(path.read_text() + f"\n{line}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_the_contract(tmp_path: Path) -> None:
    assert LINT_IMPORTS.is_file(), f"import-linter is not installed beside {sys.executable}"
    result = lint_imports(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("offending", "chain"),
    [
        ({"engine": "import kopf"}, "rightsizer.engine -> kopf"),
        # The engine's arithmetic reaching for the client's parser (quantity.py's, outside the core).
        ({"units": "from rightsizer.quantity import parse"}, "rightsizer.units -> rightsizer.quantity"),
        ({"duration": "import rightsizer.source"}, "rightsizer.duration -> rightsizer.source"),
        (
            {"timestamps": "from rightsizer.controller import outcome"},
            "rightsizer.timestamps -> rightsizer.controller.outcome",
        ),
    ],
    ids=["engine-kopf", "units-quantity", "duration-source", "timestamps-controller"],
)
def test_an_offending_import_breaks_the_contract(
    tmp_path: Path, offending: dict[str, str], chain: str
) -> None:
    result = lint_imports(tmp_path, offending)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert chain in result.stdout, result.stdout

"""The package layout must not shadow the standard library: the Python package lives in
operator/rightsizer/, and operator/ itself must never become a package named ``operator``."""

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fresh_import(module: str, cwd: Path) -> str:
    """The file ``import module`` loads in a new interpreter started in ``cwd`` (the current
    process has the standard library's ``operator`` loaded long before any test runs)."""
    probe = f"import {module}; print({module}.__file__)"
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_import_operator_from_the_repository_is_the_standard_library():
    assert not (REPO / "operator" / "__init__.py").exists()
    loaded = Path(fresh_import("operator", REPO))
    assert loaded.parent == Path(sysconfig.get_paths()["stdlib"])


def test_the_check_would_catch_an_operator_package(tmp_path):
    """The same probe, where an operator/__init__.py exists, does load it: the check above can fail."""
    (tmp_path / "operator").mkdir()
    (tmp_path / "operator" / "__init__.py").write_text("")
    assert Path(fresh_import("operator", tmp_path)) == tmp_path / "operator" / "__init__.py"


def test_rightsizer_imports_from_operator_rightsizer():
    assert Path(fresh_import("rightsizer", REPO)) == REPO / "operator" / "rightsizer" / "__init__.py"

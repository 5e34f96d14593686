"""The package layout must not shadow the standard library."""

import importlib


def test_import_operator_is_the_standard_library():
    operator = importlib.import_module("operator")
    assert operator.add(2, 3) == 5
    assert operator.__file__ is None or "rightsizer" not in operator.__file__


def test_rightsizer_imports_as_rightsizer():
    rightsizer = importlib.import_module("rightsizer")
    assert rightsizer.__version__

"""The RightSizePolicy CRD's schema as the tests read it: its defaults, applied as the API server does."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "rightsizepolicy.yaml"


def spec_schema() -> dict[str, Any]:
    """The schema of ``spec`` (the CRD's only version)."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def crd_defaults(schema: dict[str, Any], path: str = "spec") -> dict[str, Any]:
    """Every ``default:`` in the schema by path (``spec.auto.cooldown``; ``[]`` for list items)."""
    found = {path: schema["default"]} if "default" in schema else {}
    for name, child in schema.get("properties", {}).items():
        found |= crd_defaults(child, f"{path}.{name}")
    if "items" in schema:
        found |= crd_defaults(schema["items"], f"{path}[]")
    return found


def with_crd_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A copy of ``value`` defaulted as the API server does: absent fields take their default, then
    their own fields are defaulted in turn."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = with_crd_defaults(child, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [with_crd_defaults(schema["items"], item) for item in value]
    return value

"""One node for the closed-loop modules (tests/test_node_auto.py, tests/test_node_rollback.py,
tests/test_node_loop.py).

Each of them runs scenarios of minutes of real usage, read by its tests as they go. On one node,
started together, their minutes overlap instead of adding up: when the first test of either module
runs, the node starts and every selected module's scenarios start on it (``start``), and the node
goes when the last test of these modules is done (conftest's ``pytest_runtest_teardown`` calls
``stop``), before the next node module starts its own (one node per machine).

A closed-loop module provides ``scenarios(cluster, tmp_path_factory)``, a context manager that starts
its scenarios in namespaces of its own and stops them.
"""

from __future__ import annotations

from contextlib import ExitStack
from types import ModuleType
from typing import Any

import pytest

from tests.support.k8s import start_control_plane

MODULES = ("test_node_auto", "test_node_rollback", "test_node_loop")
"""In the order their scenarios start (test_node_auto's canary must be seen minutes after its start)."""

_running: ExitStack | None = None


def _module(item: pytest.Item | None) -> ModuleType | None:
    module: ModuleType | None = getattr(item, "module", None)
    return module if module is not None and module.__name__.rsplit(".", 1)[-1] in MODULES else None


def is_closed_loop(item: pytest.Item | None) -> bool:
    return _module(item) is not None


def start(session: pytest.Session, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The node, and the scenarios of every closed-loop module with a test to run: module -> its handle."""
    global _running
    selected = {module for item in session.items if (module := _module(item)) is not None}
    ordered = sorted(selected, key=lambda m: MODULES.index(m.__name__.rsplit(".", 1)[-1]))
    stack = ExitStack()
    try:
        cluster = start_control_plane(tmp_path_factory.mktemp("closed-loops-node"), node=True)
        stack.callback(cluster.stop)
        handles = {
            module.__name__.rsplit(".", 1)[-1]: stack.enter_context(
                module.scenarios(cluster, tmp_path_factory)
            )
            for module in ordered
        }
    except BaseException:
        stack.close()
        raise
    _running = stack
    return handles


def stop() -> None:
    """Stop every module's scenarios, then the node (idempotent)."""
    global _running
    if _running is not None:
        running, _running = _running, None
        running.close()

"""Shared fixtures: one real Prometheus with the demo history for every test that queries it, a
control plane (kube-apiserver and etcd) for each module that asks for ``cluster``, and a
cluster with the real node for each module of node tests (one for the closed-loop modules together:
tests/support/closed_loops.py). A node is stopped before the next one starts: there is one node per
machine at a time (its cgroups have fixed names).
The operator's image, when tests/test_install.py is to run, is built while the tests before it run."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rightsizer_demo.history import DAY, demo_scenario, window_ending_now
from rightsizer_demo.prometheus import PrometheusServer
from tests.support import closed_loops, image
from tests.support.k8s import ControlPlane, start_control_plane
from tests.support.prometheus import start_demo_prometheus

HISTORY_DAYS = 3
STEP_SECONDS = 60


@pytest.fixture(scope="session")
def demo_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus serving 3 days of the demo scenario's history, ending now."""
    server = start_demo_prometheus(tmp_path_factory.mktemp("prometheus"), HISTORY_DAYS, STEP_SECONDS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo_workloads():
    """The workload specs behind ``demo_prometheus`` (names, containers and resources)."""
    start, end = window_ending_now(HISTORY_DAYS * DAY, STEP_SECONDS)
    return demo_scenario(start, end)


@pytest.fixture(scope="session")
def closed_loop_scenarios(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The node of the closed-loop modules with all their scenarios (tests/support/closed_loops.py):
    module name -> what its ``scenarios`` gave. Stopped after the last of their tests."""
    try:
        yield closed_loops.start(request.session, tmp_path_factory)
    finally:
        closed_loops.stop()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last closed-loop test the shared node goes, before another node module needs one."""
    if closed_loops.is_closed_loop(item) and not closed_loops.is_closed_loop(nextitem):
        closed_loops.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of the module's own (a module that installs more defines its own ``cluster``)."""
    plane = start_control_plane(tmp_path_factory.mktemp("k8s"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A cluster with a real node (hack/k8s/start.sh --node); fails, never skips, without root."""
    cluster = start_control_plane(tmp_path_factory.mktemp("node"), node=True)
    try:
        yield cluster
    finally:
        cluster.stop()


BACKENDS_ENV = "RIGHTSIZER_BACKENDS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``backends`` build Prometheus 3 and VictoriaMetrics (10 minutes and more the first
    time): they run only with RIGHTSIZER_BACKENDS=1, and are otherwise deselected, counted as such in
    pytest's summary line, never skipped as if they had passed."""
    if os.environ.get(BACKENDS_ENV) == "1":
        return
    deselected = [item for item in items if item.get_closest_marker("backends")]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker("backends")]
        config.hook.pytest_deselected(items=deselected)


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the install test will run (as root, which building needs), its image is built meanwhile."""
    if os.geteuid() == 0 and any(item.module.__name__.endswith("test_install") for item in session.items):
        image.start_building(Path(tempfile.mkdtemp(prefix="rightsizer-image-")) / "build.log")


def pytest_sessionfinish(session: pytest.Session) -> None:
    image.stop_building()

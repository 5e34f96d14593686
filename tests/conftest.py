"""Shared fixtures: one real Prometheus with the demo history for every test that queries it, and a
cluster with the real node for each module of node tests. A module's node is stopped before the
next module starts its own: there is one node per machine at a time (its cgroups have fixed names).
The operator's image, when tests/test_install.py is to run, is built while the tests before it run."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rightsizer_demo.history import DAY, demo_scenario, window_ending_now
from rightsizer_demo.prometheus import PrometheusServer
from tests.support import image
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


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A cluster with a real node (hack/k8s/start.sh --node); fails, never skips, without root."""
    cluster = start_control_plane(tmp_path_factory.mktemp("node"), node=True)
    try:
        yield cluster
    finally:
        cluster.stop()


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the install test will run (as root, which building needs), its image is built meanwhile."""
    if os.geteuid() == 0 and any(item.module.__name__.endswith("test_install") for item in session.items):
        image.start_building(Path(tempfile.mkdtemp(prefix="rightsizer-image-")) / "build.log")


def pytest_sessionfinish(session: pytest.Session) -> None:
    image.stop_building()

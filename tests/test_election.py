"""Leader election on a real API server: two campaigners for one Lease, as two replicas would be.

Short timings (a 3 s lease) keep the test quick; deploy/ uses client-go's 15 s. Timing is never
asserted: what is checked is that at no moment do both count themselves leader, that a crashed
leader is replaced once its lease has run out, and that a released lease is taken at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from rightsizer.controller.election import ElectionTiming, LeaseElection
from tests.support.k8s import ControlPlane, kubectl, start_control_plane

pytestmark = pytest.mark.k8s

NAMESPACE = "election"
TIMING = ElectionTiming(lease_seconds=3, renew_deadline=2.0, retry_period=0.25)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    control_plane = start_control_plane(tmp_path_factory.mktemp("k8s"))
    try:
        kubectl("create", "namespace", NAMESPACE, kubeconfig=control_plane.kubeconfig)
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture
def replicas(cluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[tuple[LeaseElection, ...]]:
    """Two campaigners for a Lease of this test's own, each with its own API client."""
    lease = request.node.name.replace("_", "-")[:60].strip("-")
    campaigners = tuple(
        LeaseElection(
            NAMESPACE,
            lease,
            identity,
            TIMING,
            api_client=config.new_client_from_config(str(cluster.kubeconfig)),
        )
        for identity in ("replica-a", "replica-b")
    )
    for campaigner in campaigners:
        campaigner.start()
    yield campaigners
    for campaigner in campaigners:
        campaigner.stop()


def leader_watch(replicas: tuple[LeaseElection, ...], until: float) -> list[LeaseElection]:
    """Sample both every 50 ms until ``until`` (monotonic); fail if both ever lead at once.
    Returns the leaders seen, in order, without repeats."""
    seen: list[LeaseElection] = []
    while time.monotonic() < until:
        leading = [r for r in replicas if r.leading()]
        assert len(leading) <= 1, "two replicas counted themselves leader at once"
        if leading and (not seen or seen[-1] is not leading[0]):
            seen.append(leading[0])
        time.sleep(0.05)
    return seen


def wait_for_leader(replicas: tuple[LeaseElection, ...], timeout: float = 60) -> LeaseElection:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leading = [r for r in replicas if r.leading()]
        assert len(leading) <= 1, "two replicas counted themselves leader at once"
        if leading:
            return leading[0]
        time.sleep(0.05)
    pytest.fail(f"no replica became leader within {timeout}s")


def holder(cluster: ControlPlane, lease: str) -> dict[str, object]:
    api = client.CoordinationV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    spec = api.read_namespaced_lease(lease, NAMESPACE).spec
    return {"holder": spec.holder_identity, "transitions": spec.lease_transitions}


def test_one_leads_and_a_crashed_leader_is_replaced_once_its_lease_runs_out(
    cluster: ControlPlane, replicas: tuple[LeaseElection, ...]
) -> None:
    leader = wait_for_leader(replicas)
    # Several lease periods: the leader keeps renewing, the other keeps standing by.
    assert leader_watch(replicas, time.monotonic() + 3 * TIMING.lease_seconds) == [leader]
    assert holder(cluster, leader.name) == {"holder": leader.identity, "transitions": 0}
    leader.stop(release=False)  # as if its process were killed: the Lease is left to expire
    standby = next(r for r in replicas if r is not leader)
    seen = leader_watch(replicas, time.monotonic() + 4 * TIMING.lease_seconds)
    assert standby in seen and seen[-1] is standby
    assert holder(cluster, leader.name) == {"holder": standby.identity, "transitions": 1}


def test_a_released_lease_is_taken_at_the_next_try(
    cluster: ControlPlane, replicas: tuple[LeaseElection, ...]
) -> None:
    leader = wait_for_leader(replicas)
    leader.stop()  # SIGTERM: the Lease is released
    assert not leader.leading()
    standby = next(r for r in replicas if r is not leader)
    assert wait_for_leader(replicas, timeout=30) is standby
    assert holder(cluster, leader.name) == {"holder": standby.identity, "transitions": 1}

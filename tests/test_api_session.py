"""Kopf's session to the API server, bounded (controller/api_session.py): the limit it gets, and that
the limit holds on a real API server, with the credentials Kopf's own login finds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import aiohttp
import kopf
import pytest
from kubernetes import client
from kubernetes.config import kube_config

from rightsizer.controller import main as registrations
from rightsizer.controller.api_session import WATCHED_RESOURCES, bounded_session, connection_limit, login
from rightsizer.settings import API_CONNECTIONS
from tests.support.k8s import ControlPlane


def test_the_limit_leaves_the_requests_their_connections_beside_each_watch_stream():
    assert connection_limit([]) == API_CONNECTIONS + WATCHED_RESOURCES
    assert connection_limit(["a", "b", "c"], requests=10) == 10 + 3 * WATCHED_RESOURCES


def test_a_namespace_pattern_leaves_the_session_unbounded():
    """Kopf watches what a pattern matches as namespaces come and go: a limit could stall it."""
    assert connection_limit(["team-*"]) == 0
    assert connection_limit(["a", "!b"]) == 0


def test_the_watched_resources_are_those_the_operator_registers():
    registry = kopf.get_default_registry()
    assert registrations.evaluate_policy
    watched = {
        handler.selector
        for handlers in (registry._indexing, registry._watching, registry._spawning, registry._changing)
        for handler in handlers.get_all_handlers()
    }
    assert len(watched) == WATCHED_RESOURCES


@pytest.fixture
def admin_credentials(cluster: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Kopf's login reads the kubeconfig (KUBECONFIG, as the client read it at import) into the
    kubernetes client's default configuration: put it back."""
    saved = client.Configuration.get_default_copy()
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(cluster.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        yield
    finally:
        client.Configuration.set_default(saved)


async def _namespaces(
    session: aiohttp.ClientSession, server: str, watch: bool = False
) -> aiohttp.ClientResponse:
    response = await session.get(f"{server}/api/v1/namespaces", params={"watch": "1"} if watch else {})
    assert response.status == 200, await response.text()
    return response


async def _third_request_while_two_watches_stream(limit: int) -> tuple[bool, int]:
    """Two watch streams held open, then a plain GET: (answered before a watch was closed, its status
    once one was)."""
    settings = kopf.OperatorSettings()
    info = kopf.login_via_client(logger=logging.getLogger("test"), settings=settings)
    assert info is not None
    context = bounded_session(info, limit)
    session, server = context.aiohttp_session, context.server
    try:
        watches = [await _namespaces(session, server, watch=True) for _ in range(2)]
        request = asyncio.ensure_future(_namespaces(session, server))
        done, _ = await asyncio.wait({request}, timeout=3)
        answered_at_once = request in done
        watches[0].close()
        status = (await asyncio.wait_for(request, timeout=60)).status
        watches[1].close()
        return answered_at_once, status
    finally:
        await session.close()


@pytest.mark.k8s
def test_a_request_beyond_the_limit_waits_for_a_free_connection(admin_credentials):
    answered_at_once, status = asyncio.run(_third_request_while_two_watches_stream(limit=2))
    assert not answered_at_once
    assert status == 200


@pytest.mark.k8s
def test_with_a_connection_free_the_request_is_answered_beside_the_watches(admin_credentials):
    """The control of the test above: what held the request back was the limit."""
    answered_at_once, status = asyncio.run(_third_request_while_two_watches_stream(limit=3))
    assert answered_at_once
    assert status == 200


@pytest.mark.k8s
def test_the_login_handler_gives_kopf_a_bounded_session_with_working_credentials(admin_credentials):
    async def log_in() -> tuple[int, int]:
        context = await login(["a", "b"], logger=logging.getLogger("test"), settings=kopf.OperatorSettings())
        try:
            response = await _namespaces(context.aiohttp_session, context.server)
            connector = context.aiohttp_session.connector
            assert connector is not None
            return connector.limit, response.status
        finally:
            await context.aiohttp_session.close()

    assert asyncio.run(log_in()) == (API_CONNECTIONS + 2 * WATCHED_RESOURCES, 200)

"""Kopf's connections to the API server, bounded.

Kopf's own session opens a connection for every request in flight (aiohttp's ``TCPConnector(limit=0)``)
and keeps each one, with its TLS state and read buffer, while it is reused. On a first start with
1,000 policies Kopf adds its finalizer to all of them at once: 352 connections were open, and the
operator's RSS stayed about 45 MiB above a restart's (docs/benchmarks.md, "A first start"). Here Kopf
logs in as it would (through the kubernetes client's configuration: in-cluster ServiceAccount, else
KUBECONFIG, exec plugins included) and gets a session of its own with at most ``API_CONNECTIONS``
connections for its requests, besides one for each watch stream it keeps open; a request beyond them
waits for a free one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import kopf

from rightsizer.settings import API_CONNECTIONS

logger = logging.getLogger(__name__)

WATCHED_RESOURCES = 7
"""Resources Kopf watches (``controller/main.py``): policies, Deployments, StatefulSets, DaemonSets,
CronJobs, pods and HPAs; each watch holds a connection for as long as it streams."""
PATTERN_CHARACTERS = frozenset("*?[]!")
"""Kopf reads a ``--namespace`` with these as a pattern, and watches what matches as it comes and goes."""


def connection_limit(namespaces: Sequence[str], requests: int = API_CONNECTIONS) -> int:
    """The session's connection limit: ``requests`` beside one per watch stream (one per resource,
    cluster-wide, or per resource and namespace); 0 (no limit) when a namespace is a pattern, which
    leaves the number of watch streams unknown (a limit below them would stall Kopf)."""
    if any(PATTERN_CHARACTERS & set(namespace) for namespace in namespaces):
        return 0
    return requests + WATCHED_RESOURCES * max(1, len(namespaces))


def bounded_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """What Kopf would build from ``info`` (credentials, TLS, proxy), with at most ``limit`` connections.
    Called in the event loop (``aiohttp`` sessions belong to one)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
    )


async def login(namespaces: Sequence[str], **kwargs: Any) -> kopf.AiohttpSession:
    """Kopf's login handler: its usual credentials over a bounded session. ``kwargs`` are Kopf's
    (``logger``, ``settings``); Kopf calls it again when the API server refuses the credentials."""
    info = kopf.login_via_client(**kwargs)
    if info is None:
        raise kopf.LoginError("the kubernetes client is not installed: no credentials")
    limit = connection_limit(namespaces)
    logger.info(
        "API server connections: %s",
        f"at most {limit}" if limit else "not bounded (a namespace pattern leaves the watches unknown)",
    )
    return bounded_session(info, limit)

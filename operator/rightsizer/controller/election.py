"""Leader election on a ``coordination.k8s.io/v1`` Lease: of several replicas, one evaluates policies.

The rules are client-go's (``k8s.io/client-go/tools/leaderelection``), so ``kubectl get lease``
reads the same way as for kube-controller-manager:

- A replica takes the Lease when it is free (no holder, or a holder that released it) or when its
  record has not changed for ``leaseDurationSeconds`` as timed by the replica's *own* clock since it
  last saw it change (never by comparing timestamps written by another machine).
- The holder renews it every ``retry_period``; every write carries the resourceVersion read, so two
  replicas can never both succeed in taking it.
- The holder counts itself leader only until ``renew_deadline`` after the start of its last
  successful renewal, shorter than the lease, so it stops before anyone else may start.
- On a clean stop (SIGTERM) the holder releases the Lease, and a standby takes it at its next try.

Time alone cannot fence a paused process. What keeps a change from being applied twice is that
Auto mode's patches carry the resourceVersion they were planned from and write the cooldown
annotation ``rightsizer.io/applied-at`` in the same patch (docs/operator.md): a second patch
planned from the same state fails with a conflict, and one planned after it sees the cooldown.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rightsizer.errors import ConfigurationError
from rightsizer.timestamps import format_micro_time

log = logging.getLogger("rightsizer.election")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class ElectionTiming:
    """client-go's defaults, as kube-controller-manager and kube-scheduler use them."""

    lease_seconds: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class Leadership(Protocol):
    def leading(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


class AlwaysLeading:
    """Without ``--leader-elect``: the one process acts alone."""

    def leading(self) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def lease_namespace(given: str | None) -> str:
    """The namespace of the Lease: as given, else the pod's own (its ServiceAccount's namespace)."""
    if given:
        return given
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        raise ConfigurationError(
            "--leader-elect outside a pod needs --leader-elect-namespace (the namespace of the Lease)"
        ) from None


class LeaseElection:
    """Campaigns for the Lease ``namespace/name`` in a background thread; ``leading()`` is cheap."""

    def __init__(
        self,
        namespace: str,
        name: str,
        identity: str,
        timing: ElectionTiming = ElectionTiming(),
        api_client: client.ApiClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace, self.name, self.identity, self.timing = namespace, name, identity, timing
        self._clock = clock
        self._api = client.CoordinationV1Api(api_client or client.ApiClient())
        self._lock = threading.Lock()
        self._renewed_at: float | None = None
        """Monotonic time at which the last successful acquire or renewal was *started*."""
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def leading(self) -> bool:
        with self._lock:
            renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.timing.renew_deadline

    def start(self) -> None:
        log.info(
            "leader election: campaigning for Lease %s/%s as %s", self.namespace, self.name, self.identity
        )
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop campaigning; release the Lease if held, so a standby takes over at once.

        ``release=False`` leaves the Lease as a process that died would, to expire.
        """
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timing.retry_period * 2)
        if release and self.leading():
            try:
                self._release()
            except (ApiException, OSError) as error:
                log.warning("leader election: could not release the Lease: %s", error)

    def _run(self) -> None:
        was_leading = False
        while not self._stopped.is_set():
            try:
                self.try_acquire_or_renew()
            except (ApiException, OSError) as error:
                log.warning("leader election: %s", error)
            now_leading = self.leading()
            if now_leading != was_leading:
                log.info("leader election: %s", "now leading" if now_leading else "no longer leading")
                was_leading = now_leading
            self._stopped.wait(self.timing.retry_period)

    def try_acquire_or_renew(self) -> bool:
        """One round: take or renew the Lease if allowed. True when this replica holds it now."""
        started = self._clock()
        now = datetime.now(UTC)
        try:
            lease = self._read()
        except ApiException as error:
            if error.status != 404:
                raise
            spec = self._new_spec(now, transitions=0)
            return self._write(lambda: self._create(spec), started)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime")))
        if record != self._observed:
            self._observed, self._observed_at = record, started
        held_by_another = holder not in ("", self.identity)
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_seconds)
        if held_by_another and started - self._observed_at < duration:
            with self._lock:
                self._renewed_at = None
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        new_spec = self._new_spec(now, transitions if holder == self.identity else transitions + 1)
        if holder == self.identity and spec.get("acquireTime"):
            new_spec["acquireTime"] = spec["acquireTime"]
        lease["spec"] = new_spec
        return self._write(lambda: self._replace(lease), started)

    def _new_spec(self, now: datetime, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timing.lease_seconds,
            "acquireTime": format_micro_time(now),
            "renewTime": format_micro_time(now),
            "leaseTransitions": transitions,
        }

    def _write(self, write: Callable[[], None], started: float) -> bool:
        """Run one create or update of the Lease; leading from ``started`` if it succeeded."""
        try:
            write()
        except ApiException as error:
            if error.status == 409:  # another replica wrote first: it holds the Lease
                with self._lock:
                    self._renewed_at = None
                return False
            raise
        with self._lock:
            self._renewed_at = started
        return True

    def _read(self) -> dict[str, Any]:
        # Unparsed (_preload_content=False): the raw urllib3 response, not the V1Lease it is typed as.
        response: Any = self._api.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
        lease: dict[str, Any] = json.loads(response.data)
        return lease

    def _create(self, spec: dict[str, Any]) -> None:
        body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
        self._api.create_namespaced_lease(self.namespace, body)  # type: ignore[arg-type]  # a dict serves

    def _replace(self, lease: dict[str, Any]) -> None:
        """A full update carrying the resourceVersion read: a conflict (409) if it changed since."""
        self._api.replace_namespaced_lease(self.name, self.namespace, lease)  # type: ignore[arg-type]

    def _release(self) -> None:
        lease = self._read()
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        spec.update(
            holderIdentity=None, leaseDurationSeconds=1, renewTime=format_micro_time(datetime.now(UTC))
        )
        lease["spec"] = spec
        self._replace(lease)
        with self._lock:
            self._renewed_at = None
        log.info("leader election: released Lease %s/%s", self.namespace, self.name)

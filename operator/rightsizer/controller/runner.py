"""``rightsizer operator``: build the operator's dependencies from flags and run Kopf."""

from __future__ import annotations

import argparse
import logging
import socket
import uuid

import kopf

from rightsizer.controller import allocator, metrics
from rightsizer.controller import main as registrations
from rightsizer.controller.batches import SharedBatches
from rightsizer.controller.election import AlwaysLeading, Leadership, LeaseElection, lease_namespace
from rightsizer.controller.kube import KubernetesCluster, load_credentials
from rightsizer.options import labels_from_args, prices_from_args, prometheus_from_args


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; Kopf stops its handlers and returns."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    allocator.tune()
    load_credentials()
    prometheus = prometheus_from_args(args)
    memo = kopf.Memo(
        prometheus=prometheus,
        batches=SharedBatches(prometheus),
        cluster=KubernetesCluster(),
        labels=labels_from_args(args),
        leadership=leadership_from_args(args),
        namespaces=args.namespaces,
        prices=prices_from_args(args),
    )
    if args.metrics_listen is not None:
        metrics.serve(*args.metrics_listen)
        memo.prometheus.on_query = metrics.observe_query
        metrics.LEADING.set_function(lambda: float(memo.leadership.leading()))
    if args.admission_listen:
        from rightsizer.controller import webhook  # registers the webhook's handlers (module docstring)

        host, _, port = args.admission_listen.rpartition(":")
        memo.admission = webhook.AdmissionServing(
            host or "0.0.0.0",
            int(port),
            args.admission_url,
            args.admission_configuration,
            args.admission_cert_dir,
        )
    logging.getLogger("rightsizer").info(
        "rightsizer operator starting: Prometheus %s, %s",
        memo.prometheus.url,
        f"namespaces {args.namespaces}" if args.namespaces else "all namespaces",
    )
    assert registrations.evaluate_policy  # importing the module registers the handlers
    memo.leadership.start()
    try:
        kopf.run(
            standalone=True,
            clusterwide=not args.namespaces,
            namespaces=args.namespaces,
            liveness_endpoint=args.liveness,
            memo=memo,
        )
    finally:
        memo.leadership.stop()  # releases the Lease: a standby takes over at its next try
    return 0


def leadership_from_args(args: argparse.Namespace) -> Leadership:
    """With ``--leader-elect``, a Lease election (identity: the pod's name, unique per process)."""
    if not args.leader_elect:
        return AlwaysLeading()
    identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    return LeaseElection(lease_namespace(args.leader_elect_namespace), args.leader_elect_lease, identity)

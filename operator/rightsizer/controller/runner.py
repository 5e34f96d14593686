"""``rightsizer operator``: build the operator's dependencies from flags and run Kopf."""

from __future__ import annotations

import argparse
import logging

import kopf

from rightsizer.controller import main as registrations
from rightsizer.controller.kube import KubernetesCluster, load_credentials
from rightsizer.options import labels_from_args, prometheus_from_args


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; Kopf stops its handlers and returns."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_credentials()
    memo = kopf.Memo(
        prometheus=prometheus_from_args(args),
        cluster=KubernetesCluster(),
        labels=labels_from_args(args),
    )
    logging.getLogger("rightsizer").info(
        "rightsizer operator starting: Prometheus %s, %s",
        memo.prometheus.url,
        f"namespaces {args.namespaces}" if args.namespaces else "all namespaces",
    )
    assert registrations.evaluate_policy  # importing the module registers the handlers
    kopf.run(
        standalone=True,
        clusterwide=not args.namespaces,
        namespaces=args.namespaces,
        liveness_endpoint=args.liveness,
        memo=memo,
    )
    return 0

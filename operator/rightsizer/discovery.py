"""Which workload a pod belongs to: from the Kubernetes API (the operator), kube-state-metrics'
ownership series, or failing both, the pod's name."""

from __future__ import annotations

import re

import pandas as pd

# Kubernetes' alphabet for generated names (no vowels, no look-alike digits): rand.SafeEncodeString.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
DEPLOYMENT_POD_NAME = re.compile(rf"^(?P<deployment>.+)-[{SAFE_ALPHABET}]{{6,10}}-[{SAFE_ALPHABET}]{{5}}$")

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")
CRONJOB_JOB_NAME = re.compile(r"^(?P<cronjob>.+)-\d{8,10}$")
"""A CronJob names its Jobs ``<cronjob>-<scheduled time in minutes since the epoch>``."""
KUBERNETES_API = "kubernetes-api"
KUBE_STATE_METRICS = "kube-state-metrics"
POD_NAME_PATTERN = "pod-name-pattern"
OWNER_SOURCE_PREFERENCE = (KUBERNETES_API, KUBE_STATE_METRICS, POD_NAME_PATTERN)
"""Most certain first: where two sources know a pod, the first one's owner is taken."""
OWNER_COLUMNS = ["namespace", "pod", "kind", "name", "owner_source"]


def cronjob_from_job_name(job: str) -> str | None:
    """``backup-29451680`` -> ``backup``; None when the Job was not made by a CronJob's schedule."""
    match = CRONJOB_JOB_NAME.match(job)
    return match.group("cronjob") if match else None


GENERATED_SUFFIX = re.compile(
    rf"-(?:[{SAFE_ALPHABET}]{{6,10}}-[{SAFE_ALPHABET}]{{5}}|\d{{8,10}}-[{SAFE_ALPHABET}]{{5}}|\d+|[{SAFE_ALPHABET}]{{5}})$"
)
"""What a controller appends to its name for a pod: a Deployment's ReplicaSet hash and suffix, a CronJob's
Job time and suffix, a StatefulSet's ordinal, a DaemonSet's or Job's suffix."""


def name_group(pod: str) -> str:
    """The name of the workload a pod's own name says it belongs to (``web-7d9f8b6c5d-x2x4q`` -> ``web``,
    ``redis-0`` -> ``redis``); the pod's name when it says none."""
    return GENERATED_SUFFIX.sub("", pod) or pod


def deployment_from_pod_name(pod: str) -> str | None:
    """``web-7d9f8b6c5d-x2x4q`` -> ``web``; None when the name is not a Deployment pod's."""
    match = DEPLOYMENT_POD_NAME.match(pod)
    return match.group("deployment") if match else None


def resolve_owners(
    pods: pd.DataFrame,
    pod_owner: pd.DataFrame,
    replicaset_owner: pd.DataFrame,
    known_owners: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Map each (namespace, pod) to its workload: columns namespace, pod, kind, name, owner_source.

    ``known_owners`` (the same columns, from the Kubernetes API) come first. Then, from
    kube-state-metrics: pods owned by ReplicaSets belong to the ReplicaSet's Deployment,
    StatefulSet and DaemonSet pods to their owner, and a Job's pods to the CronJob that scheduled
    it. Pods that neither knows fall back to the Deployment naming pattern (a pod of an earlier
    rollout is gone from the API, and kube-state-metrics may not be scraped). Pods of other owners
    (Jobs of no CronJob, bare ReplicaSets, static pods) are left out.
    """
    pods = pods[["namespace", "pod"]].drop_duplicates()
    from_api = _columns(known_owners, OWNER_COLUMNS) if known_owners is not None else None
    owned = _owned_by_state_metrics(pod_owner, replicaset_owner)
    known = pods.merge(
        pd.concat([from_api, owned]) if from_api is not None else owned, on=["namespace", "pod"]
    )
    known = known.drop_duplicates(["namespace", "pod"], keep="first")
    has_owner = pd.concat([_columns(pod_owner, ["namespace", "pod"]), known[["namespace", "pod"]]])
    without_owner = pods.merge(
        has_owner.drop_duplicates(), on=["namespace", "pod"], how="left", indicator=True
    )
    without_owner = without_owner[without_owner["_merge"] == "left_only"][["namespace", "pod"]]
    guessed = without_owner.assign(
        kind="Deployment",
        name=without_owner["pod"].map(deployment_from_pod_name),
        owner_source=POD_NAME_PATTERN,
    ).dropna(subset=["name"])
    return pd.concat([known, guessed], ignore_index=True)[OWNER_COLUMNS]


def _owned_by_state_metrics(pod_owner: pd.DataFrame, replicaset_owner: pd.DataFrame) -> pd.DataFrame:
    owners = _columns(pod_owner, ["namespace", "pod", "owner_kind", "owner_name"])
    direct = owners[owners["owner_kind"].isin(["StatefulSet", "DaemonSet"])].rename(
        columns={"owner_kind": "kind", "owner_name": "name"}
    )
    jobs = owners[owners["owner_kind"] == "Job"]
    scheduled = jobs.assign(kind="CronJob", name=jobs["owner_name"].map(cronjob_from_job_name)).dropna(
        subset=["name"]
    )
    via_replicaset = owners[owners["owner_kind"] == "ReplicaSet"].rename(columns={"owner_name": "replicaset"})
    deployments = _columns(replicaset_owner, ["namespace", "replicaset", "owner_kind", "owner_name"])
    deployments = deployments[deployments["owner_kind"] == "Deployment"]
    via_replicaset = via_replicaset[["namespace", "pod", "replicaset"]].merge(
        deployments[["namespace", "replicaset", "owner_name"]], on=["namespace", "replicaset"], how="inner"
    )
    via_replicaset = via_replicaset.assign(kind="Deployment").rename(columns={"owner_name": "name"})
    combined = pd.concat(
        [
            direct[["namespace", "pod", "kind", "name"]],
            via_replicaset[["namespace", "pod", "kind", "name"]],
            scheduled[["namespace", "pod", "kind", "name"]],
        ]
    )
    return combined.drop_duplicates(["namespace", "pod"]).assign(owner_source=KUBE_STATE_METRICS)


def _columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The frame's columns, or an empty frame with them when Prometheus returned no series."""
    if frame.empty or not set(columns) <= set(frame.columns):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    return frame[columns]

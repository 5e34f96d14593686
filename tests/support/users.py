"""Real users for RBAC tests: client certificates issued through the cluster's own CSR API.

A user is a private key and a certificate signed by the cluster (``kubernetes.io/kube-apiserver-client``,
approved by the admin), which the API server authenticates like any person's certificate: its
common name is the user name, its organisations the groups. Works on any cluster whose controller
manager signs client certificates, ours (hack/k8s/start.sh) included.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import yaml

from tests.support.k8s import _raw_config, kubectl


def user_kubeconfig(
    admin_kubeconfig: Path, user: str, out_dir: Path, groups: tuple[str, ...] = (), timeout: float = 60
) -> Path:
    """Write ``out_dir/<user>.kubeconfig`` authenticating as ``user`` (in ``groups``); return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    key, csr = out_dir / f"{user}.key", out_dir / f"{user}.csr"
    subject = "".join(f"/O={group}" for group in groups) + f"/CN={user}"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr)],
        check=True,
        capture_output=True,
    )
    name = f"rightsizer-test-{user}"
    request = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(csr.read_bytes()).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "expirationSeconds": 7200,
            "usages": ["client auth"],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(request), kubeconfig=admin_kubeconfig)
    kubectl("certificate", "approve", name, kubeconfig=admin_kubeconfig)
    deadline = time.monotonic() + timeout
    certificate = ""
    while not certificate:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the certificate of {user} was not issued within {timeout}s")
        time.sleep(0.5)
        certificate = kubectl(
            "get", "csr", name, "-o", "jsonpath={.status.certificate}", kubeconfig=admin_kubeconfig
        ).stdout.strip()
    cluster = _raw_config(admin_kubeconfig)["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": certificate,
                    "client-key-data": base64.b64encode(key.read_bytes()).decode(),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": "cluster", "user": user}}],
        "current-context": user,
    }
    out = out_dir / f"{user}.kubeconfig"
    out.touch(mode=0o600, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out

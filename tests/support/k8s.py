"""A real Kubernetes cluster for tests: a control plane on loopback, or with ``node=True`` a whole
cluster with a real node inside a network namespace (``hack/k8s/start.sh --node``, needs root).

``start_control_plane`` runs ``hack/k8s/build.sh`` (builds kube-apiserver,
kube-controller-manager and etcd once, then reuses them from
``${RIGHTSIZER_CACHE_DIR:-~/.cache/rightsizer}/k8s/<version>/bin`` or from
``$KUBEBUILDER_ASSETS``) and then ``hack/k8s/start.sh``, which starts etcd,
kube-apiserver (RBAC on, TokenRequest on) and kube-controller-manager on
127.0.0.1 with free ports. There are no nodes and no scheduler: Pods stay
Pending.

Using an existing cluster instead: set ``RIGHTSIZER_TEST_KUBECONFIG`` to a
kubeconfig file. Then nothing is built or started, and ``ControlPlane.stop()``
does nothing. The kubeconfig's user must be a cluster admin. ``. STATE_DIR/env``
after a manual ``hack/k8s/start.sh STATE_DIR`` sets it for the cluster started
there. See docs/controlplane.md.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK_DIR = REPO_ROOT / "hack" / "k8s"
EXISTING_KUBECONFIG_ENV = "RIGHTSIZER_TEST_KUBECONFIG"
EXISTING_NODE_ENV = "RIGHTSIZER_TEST_NODE_STATE_DIR"
NODE_LOCK = Path("/run/lock/rightsizer-node.lock")
INTERNAL_SERVER = "https://127.0.0.1:6443"
"""The API server as the node's components see it, inside its network namespace (start.sh)."""
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
NODE_COMPONENTS = ("kube-scheduler", "containerd", "kubelet", "kube-proxy", "forward-apiserver")


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started."""


class KubectlError(subprocess.CalledProcessError):
    """``kubectl`` exited non-zero; the message carries its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{self.stderr}"


@dataclass
class ControlPlane:
    """A running control plane (or an existing cluster named by ``RIGHTSIZER_TEST_KUBECONFIG``).

    Attributes:
        kubeconfig: admin kubeconfig (user in group ``system:masters``).
        server: API server URL, e.g. ``https://127.0.0.1:40123``.
        state_dir: the directory given to ``start.sh``; ``None`` for an existing cluster.
        managed: ``True`` when this process started the control plane and ``stop()`` stops it.
    """

    kubeconfig: Path
    server: str
    state_dir: Path | None = None
    managed: bool = False
    netns: str | None = None
    """With a node: the network namespace the cluster runs in (``/run/netns/NAME``)."""
    node_name: str | None = None
    _stopped: bool = field(default=False, repr=False)
    _node_lock: IO[bytes] | None = field(default=None, repr=False)

    def pids(self) -> dict[str, int]:
        """Process ids of the components as recorded by ``start.sh`` (empty for an existing cluster)."""
        if self.state_dir is None:
            return {}
        found: dict[str, int] = {}
        for name in COMPONENTS + (NODE_COMPONENTS if self.netns else ()):
            pidfile = self.state_dir / f"{name}.pid"
            if pidfile.is_file():
                found[name] = int(pidfile.read_text().strip())
        return found

    def stop(self) -> None:
        """Stop what ``start.sh`` started, node leftovers included. Idempotent; no-op if unmanaged."""
        if not self.managed or self._stopped or self.state_dir is None:
            return
        result = subprocess.run(
            [str(HACK_DIR / "stop.sh"), str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise ControlPlaneError(f"stop.sh failed ({result.returncode}):\n{result.stderr}")
        self._stopped = True
        if self._node_lock is not None:
            self._node_lock.close()  # the next node may start


def process_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _server_of(kubeconfig: Path) -> str:
    config = _raw_config(kubeconfig)
    return str(config["clusters"][0]["cluster"]["server"])


def _raw_config(kubeconfig: Path) -> dict:
    """The current context's cluster and user, with certificates inlined (``--minify --flatten``)."""
    result = kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json", kubeconfig=kubeconfig)
    return json.loads(result.stdout)


def start_control_plane(state_dir: Path, timeout: float = 1800, *, node: bool = False) -> ControlPlane:
    """Build (if needed) and start a control plane whose files live in ``state_dir``.

    If ``RIGHTSIZER_TEST_KUBECONFIG`` is set, nothing is built or started: the returned
    ``ControlPlane`` points at that kubeconfig and its ``stop()`` does nothing. With ``node``,
    ``RIGHTSIZER_TEST_NODE_STATE_DIR`` names the state dir of a running ``start.sh --node``
    instead (the node tests need its network namespace, which a kubeconfig does not give).

    ``timeout`` bounds build plus start, in seconds (the first build takes several minutes).
    Raises ``ControlPlaneError`` with the scripts' stderr (which has the log tails) on failure,
    and, with ``node``, when this process is not root: the node tests fail, never skip.
    """
    if node:
        return _start_node_cluster(Path(state_dir), timeout)
    existing = os.environ.get(EXISTING_KUBECONFIG_ENV)
    if existing:
        kubeconfig = Path(existing).expanduser().resolve()
        if not kubeconfig.is_file():
            raise ControlPlaneError(f"{EXISTING_KUBECONFIG_ENV}={existing} is not a file")
        return ControlPlane(kubeconfig=kubeconfig, server=_server_of(kubeconfig))
    return _start(Path(state_dir), timeout, node=False)


def _start(state_dir: Path, timeout: float, *, node: bool) -> ControlPlane:
    """``build.sh`` then ``start.sh [--node] STATE_DIR``."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)

    # build.sh's progress (stderr) goes to our stderr, which pytest captures and shows on failure.
    build = subprocess.run(
        [str(HACK_DIR / "build.sh")], stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
    )
    lines = build.stdout.strip().splitlines()
    if build.returncode != 0 or not lines:
        raise ControlPlaneError(f"hack/k8s/build.sh failed with exit code {build.returncode} (see stderr)")
    env = {**os.environ, "RIGHTSIZER_K8S_BIN_DIR": lines[-1]}
    if node:
        env["RIGHTSIZER_NODE_LOCK_HELD"] = "1"  # _start_node_cluster holds NODE_LOCK

    start = subprocess.run(
        [str(HACK_DIR / "start.sh"), *(["--node"] if node else []), str(state_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if start.returncode != 0:
        raise ControlPlaneError(
            f"hack/k8s/start.sh failed with exit code {start.returncode}:\n{start.stderr}"
        )
    return _from_state_dir(state_dir, managed=True)


def _start_node_cluster(state_dir: Path, timeout: float) -> ControlPlane:
    existing = os.environ.get(EXISTING_NODE_ENV)
    if existing:
        return _from_state_dir(Path(existing).expanduser().resolve(), managed=False)
    if os.geteuid() != 0:
        raise ControlPlaneError(
            "the real node needs root (a network namespace, cgroups, mounts, containerd and a kubelet); "
            f"run the tests as root, or point {EXISTING_NODE_ENV} at the state dir of a running "
            "'hack/k8s/start.sh --node'. Node tests are never skipped: they fail here."
        )
    lock = _wait_for_the_node_lock(timeout)
    try:
        cluster = _start(state_dir, timeout, node=True)
    except BaseException:
        lock.close()
        raise
    cluster._node_lock = lock
    return cluster


def _wait_for_the_node_lock(timeout: float) -> IO[bytes]:
    """One node per machine (its cgroups have fixed names): a second test session, or the demo,
    waits here until the node before it is stopped, instead of failing to start."""
    lock = NODE_LOCK.open("ab")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                raise ControlPlaneError(f"another node held {NODE_LOCK} for {timeout:.0f}s") from None
            time.sleep(1)


def _from_state_dir(state_dir: Path, *, managed: bool) -> ControlPlane:
    """The cluster of a ``start.sh`` state dir, described by its ``env`` file."""
    env_file = state_dir / "env"
    if not env_file.is_file():
        raise ControlPlaneError(f"{state_dir} holds no cluster (no env file written by hack/k8s/start.sh)")
    values = dict(
        line.removeprefix("export ").split("=", 1)
        for line in env_file.read_text().splitlines()
        if line.startswith("export ")
    )
    values = {k: v.strip("'") for k, v in values.items()}
    kubeconfig = state_dir / "admin.kubeconfig"
    return ControlPlane(
        kubeconfig=kubeconfig,
        server=values.get("RIGHTSIZER_K8S_SERVER") or _server_of(kubeconfig),
        state_dir=state_dir,
        managed=managed,
        netns=values.get("RIGHTSIZER_K8S_NETNS"),
        node_name=values.get("RIGHTSIZER_K8S_NODE_NAME"),
    )


def kubectl(
    *args: str,
    kubeconfig: Path | str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl --kubeconfig KUBECONFIG ARGS...`` and return the completed process (text mode).

    With ``check`` a non-zero exit raises ``KubectlError``, whose message includes stderr.
    """
    cmd = ["kubectl", f"--kubeconfig={kubeconfig}", *args]
    result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise KubectlError(result.returncode, cmd, output=result.stdout, stderr=result.stderr)
    return result


def serviceaccount_kubeconfig(
    admin_kubeconfig: Path | str,
    namespace: str,
    name: str,
    out_path: Path | str,
    duration: str = "2h",
    server: str | None = None,
) -> Path:
    """Write a kubeconfig that authenticates as ServiceAccount ``namespace/name``.

    The token is minted with the TokenRequest API (``kubectl create token``); the server and
    CA come from ``admin_kubeconfig``'s current context, or the server is ``server`` (the API
    server's address inside the node's namespace, ``INTERNAL_SERVER``, for a process run there).
    The ServiceAccount must exist. Returns ``out_path``.
    """
    token = kubectl(
        "create", "token", name, "-n", namespace, "--duration", duration, kubeconfig=admin_kubeconfig
    ).stdout.strip()
    cluster = _raw_config(Path(admin_kubeconfig))["clusters"][0]["cluster"]
    cluster_entry: dict[str, object] = {"server": server or cluster["server"]}
    if "certificate-authority-data" in cluster:
        cluster_entry["certificate-authority-data"] = cluster["certificate-authority-data"]
    elif "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"]).read_bytes()
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca).decode()
    if cluster.get("insecure-skip-tls-verify"):
        cluster_entry["insecure-skip-tls-verify"] = True
    if "tls-server-name" in cluster:
        cluster_entry["tls-server-name"] = cluster["tls-server-name"]

    user = f"system:serviceaccount:{namespace}:{name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster_entry}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "cluster", "user": user, "namespace": namespace}}],
        "current-context": user,
    }
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def wait_for_established_crd(name: str, *, kubeconfig: Path | str, timeout: float = 60) -> None:
    """Wait until CRD ``name`` is Established. (``kubectl wait --for condition=established`` fails at
    once, "accessor error: <nil>", when it reads the CRD before the API server gave it conditions.)"""
    deadline = time.monotonic() + timeout
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    while True:
        found = kubectl("get", "crd", name, "-o", f"jsonpath={jsonpath}", kubeconfig=kubeconfig, check=False)
        if found.returncode == 0 and found.stdout.strip() == "True":
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"CRD {name} not Established after {timeout:.0f}s: {found.stderr}")
        time.sleep(0.5)

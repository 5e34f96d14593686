"""The operator's real image: built from the Dockerfile by hack/images/operator.sh (podman), then
imported into the test node's containerd, the way a node without a registry gets an image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.k8s import REPO_ROOT, ControlPlane

BUILD_SCRIPT = REPO_ROOT / "hack" / "images" / "operator.sh"
OPERATOR_IMAGE = "ghcr.io/rightsizer/rightsizer:0.1.0"
"""The name deploy/ runs (kustomization `images:`); the archive is imported under it."""


_background: tuple[subprocess.Popen[str], Path] | None = None
"""A build started early (``start_building``) and its log file."""


def start_building(log: Path) -> None:
    """Start the build in the background, so that a cold build (minutes, mostly downloads) overlaps
    the tests that run before the install test instead of adding to the run. Called by conftest
    when the install test is among the collected tests."""
    global _background
    print(
        f"building the operator image in the background (hack/images/operator.sh; log: {log})",
        file=sys.stderr,
    )
    process = subprocess.Popen(
        [str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: stop_building() ends podman and mmdebstrap too
    )
    _background = (process, log)


def stop_building() -> None:
    """End a background build nobody waited for (the session stopped early); its partial files go."""
    if _background is not None and _background[0].poll() is None:
        os.killpg(_background[0].pid, signal.SIGTERM)
        _background[0].wait(timeout=60)


def build_operator_image(timeout: float = 1800) -> Path:
    """The OCI archive of the image: the background build's, else built now (cached by source state)."""
    if _background is not None:
        process, log = _background
        print(f"waiting for the operator image's build (log: {log})", file=sys.stderr, flush=True)
        stdout, _ = process.communicate(timeout=timeout)
        returncode, details = process.returncode, log.read_text()[-3000:]
    else:
        print("building the operator image (hack/images/operator.sh, cached)", file=sys.stderr, flush=True)
        result = subprocess.run(
            [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
        )
        stdout, returncode, details = result.stdout, result.returncode, "(see stderr)"
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        raise RuntimeError(f"hack/images/operator.sh failed with exit code {returncode}:\n{details}")
    return Path(lines[-1])


def containerd_socket(cluster: ControlPlane) -> Path:
    assert cluster.state_dir is not None, "a node cluster started here"
    return cluster.state_dir / "containerd" / "containerd.sock"


def ctr(cluster: ControlPlane, *args: str, timeout: float = 300) -> str:
    """``ctr`` on the node's containerd, namespace k8s.io (where the kubelet's images and containers are)."""
    command = ["ctr", "--address", str(containerd_socket(cluster)), "-n", "k8s.io", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True).stdout


def import_image(cluster: ControlPlane, archive: Path, name: str = OPERATOR_IMAGE) -> None:
    """Load the archive into the node's containerd under ``name``, as a registry-less node gets an image."""
    ctr(cluster, "images", "import", "--index-name", name, str(archive))


def kill_container(cluster: ControlPlane, container_id: str) -> None:
    """SIGKILL a container's process through containerd: a crash, with no chance to clean up."""
    ctr(cluster, "tasks", "kill", "--signal", "SIGKILL", container_id)


def container_pid(cluster: ControlPlane, container_id: str) -> int:
    """The host pid of a running container's main process."""
    listing = ctr(cluster, "tasks", "ls")
    for line in listing.splitlines()[1:]:
        task, pid, _status = line.split()
        if task == container_id:
            return int(pid)
    raise LookupError(f"no task {container_id} in containerd:\n{listing}")

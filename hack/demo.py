"""The local demo: a real control plane, Prometheus with generated history, the operator at work.

    bash hack/demo.sh            # run it, print the results, stop everything
    bash hack/demo.sh --keep     # leave it running (Ctrl-C stops it) to explore with kubectl

It reuses the test harness in tests/support (the same control plane, Prometheus and operator
process the end-to-end tests use), so what the demo shows is what the tests check.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rightsizer.demo.history import DAY, demo_scenario, window_ending_now  # noqa: E402
from rightsizer.demo.manifests import deployment_manifests, namespace_manifests  # noqa: E402
from tests.support.k8s import kubectl, serviceaccount_kubeconfig, start_control_plane  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402
from tests.support.prometheus import start_demo_prometheus  # noqa: E402

STEP_SECONDS = 60
POLICIES = [
    ("shop", ROOT / "deploy" / "examples" / "recommend-web.yaml"),
    ("batch", ROOT / "deploy" / "examples" / "background-worker.yaml"),
]
INLINE_POLICIES = [
    {
        "metadata": {"name": "cart", "namespace": "shop"},
        "spec": {"targetRef": {"name": "cart"}, "mode": "Auto"},
    },
    {
        "metadata": {"name": "new-feature", "namespace": "shop"},
        "spec": {"targetRef": {"name": "new-feature"}},
    },
]


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=3, help="days of generated history (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".work" / "demo")
    args = parser.parse_args()

    shutil.rmtree(args.state_dir, ignore_errors=True)
    args.state_dir.mkdir(parents=True)
    step("starting etcd, kube-apiserver (RBAC on) and kube-controller-manager on 127.0.0.1")
    plane = start_control_plane(args.state_dir / "k8s")
    server = operator = None
    try:

        def k(*kubectl_args: str, input: str | None = None) -> str:
            return kubectl(*kubectl_args, kubeconfig=plane.kubeconfig, input=input).stdout

        step(f"generating {args.days:g} days of history for the demo workloads and starting Prometheus")
        (args.state_dir / "prometheus").mkdir()
        server = start_demo_prometheus(args.state_dir / "prometheus", args.days, STEP_SECONDS)
        print(f"Prometheus: {server.url}")
        start, end = window_ending_now(args.days * DAY, STEP_SECONDS)
        workloads = demo_scenario(start, end)

        step("installing the CRD and the operator's RBAC; creating the demo Deployments")
        k("apply", "-f", str(ROOT / "crds" / "rightsizepolicy.yaml"))
        k("wait", "--for", "condition=established", "--timeout=60s", "crd/rightsizepolicies.rightsizer.io")
        for manifest in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
            k("apply", "-f", str(ROOT / "deploy" / manifest))
        objects = namespace_manifests(workloads) + deployment_manifests(workloads)
        print(k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})))

        step("applying the policies")
        for namespace, path in POLICIES:
            print(k("apply", "-n", namespace, "-f", str(path)), end="")
        for policy in INLINE_POLICIES:
            body = {"apiVersion": "rightsizer.io/v1alpha1", "kind": "RightSizePolicy", **policy}
            print(k("apply", "-f", "-", input=json.dumps(body)), end="")

        step("running the operator as ServiceAccount rightsizer-system/rightsizer")
        identity = serviceaccount_kubeconfig(
            plane.kubeconfig, "rightsizer-system", "rightsizer", args.state_dir / "operator.kubeconfig"
        )
        operator = OperatorProcess(identity, server.url, args.state_dir / "operator.log").start()
        wait_until_evaluated(k, expected=len(POLICIES) + len(INLINE_POLICIES))

        step("kubectl get rsp -A -o wide")
        print(k("get", "rsp", "-A", "-o", "wide"))
        step("recommendations of shop/web (kubectl get rsp web -n shop -o yaml, status part)")
        status = json.loads(k("get", "rsp", "web", "-n", "shop", "-o", "json"))["status"]
        print(render_recommendations(status))
        step("what Auto mode did to shop/cart (it had been OOM-killed)")
        cart = json.loads(k("get", "deployment", "cart", "-n", "shop", "-o", "json"))
        print(json.dumps(cart["spec"]["template"]["spec"]["containers"][0]["resources"], indent=2))
        print(k("get", "events", "-n", "shop", "--field-selector", "reason=RightSized"))

        step(f"the same numbers from the CLI: rightsizer recommend --prometheus-url {server.url} -n shop")
        report = [
            sys.executable,
            "-m",
            "rightsizer.cli",
            "recommend",
            "--prometheus-url",
            server.url,
            "-n",
            "shop",
        ]
        subprocess.run(report, check=True)
        if args.keep:
            print(f"\nexport KUBECONFIG={plane.kubeconfig}\nRunning; Ctrl-C stops everything.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        step("stopping")
        if operator is not None:
            operator.stop()
        if server is not None:
            server.stop()
        plane.stop()
    return 0


def wait_until_evaluated(k: Callable[..., str], expected: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(k("get", "rsp", "-A", "-o", "json"))["items"]
        done = [p for p in items if p.get("status", {}).get("lastEvaluationTime")]
        if len(done) >= expected:
            return
        time.sleep(1)
    raise SystemExit("the operator did not evaluate every policy in time; see .work/demo/operator.log")


def render_recommendations(status: dict) -> str:
    lines = []
    for rec in status.get("recommendations", []):
        lines.append(f"- {rec['kind']}/{rec['name']} container {rec['container']}:")
        lines.append(f"    current:     {json.dumps(rec['current'])}")
        lines.append(f"    recommended: {json.dumps(rec.get('recommended'))}")
        lines.append(f"    qosClass:    {rec.get('qosClass')}")
        lines.append(f"    reason:      {rec['reason']}")
    for c in status.get("conditions", []):
        lines.append(f"condition {c['type']}={c['status']} ({c['reason']}): {c['message']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

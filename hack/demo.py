"""The local demo: a real cluster, Prometheus with generated history, the operator at work, and
(as root) a real node where the OOM-killed cart is OOM-killed for real until rightsizer fixes it.

    bash hack/demo.sh            # run it, print the results, stop everything
    bash hack/demo.sh --keep     # leave it running to explore with kubectl; Ctrl-C, SIGTERM or
                                 # SIGHUP stops every process it started
    bash hack/demo.sh --no-node  # without the real node (what runs without root)

It reuses the test harness in tests/support (the same cluster, Prometheus and operator process
the end-to-end tests use), so what the demo shows is what the tests check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rightsizer_demo import agreement  # noqa: E402
from rightsizer_demo.history import DAY, demo_scenario, window_ending_now, write_openmetrics  # noqa: E402
from rightsizer_demo.manifests import deployment_manifests, namespace_manifests  # noqa: E402
from rightsizer_demo.prometheus import PrometheusServer, load_history  # noqa: E402
from tests.support.k8s import kubectl, serviceaccount_kubeconfig, start_control_plane  # noqa: E402
from tests.support.node import NodePrometheus, load_deployment  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402

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
LIVE_CART_ARGS = ["-cpu", "100m", "-memory", "560Mi", "-memory-rate", "32Mi"]
"""The cart's history says it outgrew its 512Mi limit; on the node it does so for real: it holds
560Mi, so it is OOM-killed about 16 s after every start until its limit is raised."""
OOM_WATCH_SECONDS = 90


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: stop everything, as Ctrl-C does."""


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def _say(message: str) -> None:
    """Print while stopping, where stdout may be a closed pipe."""
    with contextlib.suppress(OSError):
        print(message, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=3, help="days of generated history (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep everything running until stopped")
    parser.add_argument("--no-node", action="store_true", help="no real node, even as root")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".work" / "demo")
    args = parser.parse_args()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)

    node = not args.no_node and os.geteuid() == 0
    if not node:
        why = "--no-node" if args.no_node else "not root"
        print(
            f"Without the real node ({why}): everything below runs, but no pod does; the cart's OOM kills "
            "are those of its generated history, not real ones. Run as root for the real node."
        )
    stoppers: list[Callable[[], None]] = []
    try:
        run(args, node, stoppers)
        if args.keep:
            print("Running; Ctrl-C, SIGTERM or SIGHUP stops everything.", flush=True)
            while True:
                time.sleep(3600)
    except (KeyboardInterrupt, Stopped) as reason:
        _say(f"\n({reason or 'interrupted'})")
    finally:
        # Stopping must not be cut short: not by a second signal, not by a failing stopper, not by
        # a closed stdout (the terminal or pipe that started the demo may be gone).
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        _say("\n==> stopping")
        for stop in reversed(stoppers):
            try:
                stop()
            except Exception as error:  # every other stopper must still run
                _say(f"stopping {getattr(stop, '__qualname__', stop)} failed: {error}")
    return 0


def run(args: argparse.Namespace, node: bool, stoppers: list[Callable[[], None]]) -> None:
    shutil.rmtree(args.state_dir, ignore_errors=True)
    args.state_dir.mkdir(parents=True)
    step(
        "starting etcd, kube-apiserver (RBAC on), kube-controller-manager"
        + (", kube-scheduler, containerd and a kubelet (a real node, in a network namespace)" if node else "")
    )
    plane = start_control_plane(args.state_dir / "k8s", node=node)
    stoppers.append(plane.stop)

    def k(*kubectl_args: str, input: str | None = None) -> str:
        return kubectl(*kubectl_args, kubeconfig=plane.kubeconfig, input=input).stdout

    step(f"generating {args.days:g} days of history for the demo workloads and starting Prometheus")
    start, end = window_ending_now(args.days * DAY, STEP_SECONDS)
    workloads = demo_scenario(start, end)
    prometheus_dir = args.state_dir / "prometheus"
    prometheus_dir.mkdir()
    write_openmetrics(workloads, prometheus_dir / "history.om", start, end, STEP_SECONDS)
    load_history(prometheus_dir / "history.om", prometheus_dir / "tsdb")
    (prometheus_dir / "history.om").unlink()
    # With the node, Prometheus also scrapes the kubelet: the live cart's usage joins its history.
    server = NodePrometheus(plane, prometheus_dir) if node else PrometheusServer(prometheus_dir / "tsdb")
    stoppers.append(server.stop)
    server.start()
    print(
        f"Prometheus: {server.url}"
        + (" (the generated history, and the node's kubelet every 2s)" if node else "")
    )

    step("installing the CRD and the operator's RBAC; creating the demo Deployments")
    k("apply", "-f", str(ROOT / "crds" / "rightsizepolicy.yaml"))
    k("wait", "--for", "condition=established", "--timeout=60s", "crd/rightsizepolicies.rightsizer.io")
    for manifest in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        k("apply", "-f", str(ROOT / "deploy" / manifest))
    objects = namespace_manifests(workloads) + deployment_manifests(workloads)
    if node:
        objects = [
            o for o in objects if (o["metadata"].get("namespace"), o["metadata"]["name"]) != ("shop", "cart")
        ]
        cart = next(w for w in workloads if (w.namespace, w.name) == ("shop", "cart"))
        container = cart.containers[0]
        objects.append(
            load_deployment(
                "shop",
                "cart",
                LIVE_CART_ARGS,
                dict(container.requests),
                dict(container.limits),
                cart.replicas,
            )
        )
    print(k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})))
    if node:
        print("Only shop/cart runs on the node: the other Deployments' usage is their generated history.")
        before = show_live_cart(
            k, "before: shop/cart on the real node, OOM-killed for real", wait_for_kill=True
        )

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
    operator = OperatorProcess(identity, server.url, args.state_dir / "operator.log")
    stoppers.append(operator.stop)
    operator.start()
    wait_until_evaluated(k, expected=len(POLICIES) + len(INLINE_POLICIES))

    step("kubectl get rsp -A -o wide")
    print(k("get", "rsp", "-A", "-o", "wide"))
    step("recommendations of shop/web (kubectl get rsp web -n shop -o yaml, status part)")
    status = json.loads(k("get", "rsp", "web", "-n", "shop", "-o", "json"))["status"]
    print(render_recommendations(status))
    step("what Auto mode did to shop/cart (it had been OOM-killed)")
    print(k("get", "events", "-n", "shop", "--field-selector", "reason=RightSized"))
    if node:
        after = watch_live_cart(k)
        print_before_after(before, after)
    else:
        cart = json.loads(k("get", "deployment", "cart", "-n", "shop", "-o", "json"))
        print(json.dumps(cart["spec"]["template"]["spec"]["containers"][0]["resources"], indent=2))

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
    step("the operator's numbers (status of shop's policies) beside the CLI's")
    print(check_agreement(k, [*report, "-o", "json", "-q"]))
    days = max(1, int(args.days))
    step(
        "what Auto mode would have done: "
        f"rightsizer backtest --prometheus-url {server.url} -n shop --days {days}"
    )
    subprocess.run(
        [*report[:3], "backtest", "--prometheus-url", server.url, "-n", "shop", "--days", str(days)],
        check=True,
    )
    if args.keep:
        print(f"\nexport KUBECONFIG={plane.kubeconfig}")


def check_agreement(k: Callable[..., str], report_as_json: list[str]) -> str:
    """The operator's recommendations in shop beside the CLI's, and whether they agree."""
    policies = json.loads(k("get", "rsp", "-n", "shop", "-o", "json"))["items"]
    operator = [entry for p in policies for entry in p.get("status", {}).get("recommendations", [])]
    cli = json.loads(subprocess.run(report_as_json, check=True, capture_output=True, text=True).stdout)
    return agreement.render(agreement.compare(operator, cli["recommendations"]))


def show_live_cart(k: Callable[..., str], title: str, *, wait_for_kill: bool = False) -> dict[str, Any]:
    """Print and return the live cart's template resources and its pods' restarts and OOM kills."""
    step(title)
    deadline = time.monotonic() + 300  # generous: a busy machine starts pods slowly
    while True:
        pods = json.loads(k("get", "pods", "-n", "shop", "-l", "app=cart", "-o", "json"))["items"]
        kills = sum(_oom_killed(p) for p in pods)
        if kills or not wait_for_kill or time.monotonic() > deadline:
            break
        time.sleep(2)
    deployment = json.loads(k("get", "deployment", "cart", "-n", "shop", "-o", "json"))
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    print(k("get", "pods", "-n", "shop", "-l", "app=cart", "-o", "wide"))
    print(f"template resources: {json.dumps(resources)}")
    return {"resources": resources, "restarts": _restarts(pods), "oom_killed": kills}


def watch_live_cart(k: Callable[..., str]) -> dict[str, Any]:
    """Wait until the patched cart's pods run, then watch them for OOM kills for a while."""
    step(f"after: shop/cart's new pods, watched for {OOM_WATCH_SECONDS}s")
    deadline = time.monotonic() + 600  # generous: a busy machine rolls out slowly
    while True:
        if time.monotonic() > deadline:
            print("shop/cart's rollout did not finish in 10 minutes: what follows may still count old pods")
            break
        deployment = json.loads(k("get", "deployment", "cart", "-n", "shop", "-o", "json"))
        status = deployment.get("status", {})
        settled = (
            status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("updatedReplicas") == status.get("readyReplicas") == deployment["spec"]["replicas"]
        )
        if deployment["metadata"]["generation"] > 1 and settled and not status.get("unavailableReplicas"):
            break
        time.sleep(2)
    watched_until = time.monotonic() + OOM_WATCH_SECONDS
    while time.monotonic() < watched_until:
        time.sleep(5)
    return show_live_cart(k, "shop/cart now")


def print_before_after(before: dict[str, Any], after: dict[str, Any]) -> None:
    step("shop/cart before and after rightsizer")
    print(f"resources before: {json.dumps(before['resources'])}")
    print(f"resources after:  {json.dumps(after['resources'])}")
    print(f"before: {before['restarts']} restarts, {before['oom_killed']} pods last killed by the OOM killer")
    print(f"after:  {after['restarts']} restarts, {after['oom_killed']} pods last killed by the OOM killer")


def _oom_killed(pod: dict[str, Any]) -> int:
    return sum(
        ((c.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
        for c in pod["status"].get("containerStatuses") or []
    )


def _restarts(pods: list[dict[str, Any]]) -> int:
    return sum(c.get("restartCount", 0) for p in pods for c in p["status"].get("containerStatuses") or [])


def wait_until_evaluated(k: Callable[..., str], expected: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(k("get", "rsp", "-A", "-o", "json"))["items"]
        done = [p for p in items if p.get("status", {}).get("lastEvaluationTime")]
        if len(done) >= expected:
            return
        time.sleep(1)
    raise SystemExit("the operator did not evaluate every policy in time; see .work/demo/operator.log")


def render_recommendations(status: dict[str, Any]) -> str:
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

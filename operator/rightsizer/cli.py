"""The ``rightsizer`` command: ``recommend`` (a one-off report) and ``operator`` (run the controller)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rightsizer import kustomize
from rightsizer.duration import format_duration
from rightsizer.errors import ConfigurationError
from rightsizer.options import (
    EXIT_RUNTIME,
    EXIT_USAGE,
    OneLineParser,
    add_price_arguments,
    add_prometheus_arguments,
    duration,
    fraction,
    labels_from_args,
    listen_address,
    prices_from_args,
    prometheus_from_args,
)
from rightsizer.promql import PromQLError
from rightsizer.report import FORMATS, Costing, render
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import (
    BACKTEST_DAYS,
    BACKTEST_STEP_SECONDS,
    CPU_WINDOW_SECONDS,
    DEFAULTS,
    HISTORY_WINDOW_SECONDS,
    HPA_MODE,
    HPA_MODES,
    METRICS_LISTEN,
    Profile,
    RecommendationSettings,
    SettingsError,
)
from rightsizer.source import PrometheusUnavailable

BACKTEST_FORMATS = ("table", "json", "html")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rightsizer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    rec = commands.add_parser(
        "recommend",
        help="one-off report of recommended requests and limits",
        description="Recommend requests and limits for every Deployment, StatefulSet, DaemonSet and CronJob "
        "container found in Prometheus. Reads only; changes nothing.",
    )
    add_prometheus_arguments(rec)
    rec.add_argument(
        "-n", "--namespace", action="append", default=[], help="namespace (repeatable; default all)"
    )
    rec.add_argument(
        "--history",
        type=duration,
        default=HISTORY_WINDOW_SECONDS,
        help=f"history window (default {format_duration(HISTORY_WINDOW_SECONDS)})",
    )
    rec.add_argument(
        "--min-history",
        type=duration,
        default=DEFAULTS.min_history_seconds,
        help=f"minimum history (default {format_duration(DEFAULTS.min_history_seconds)})",
    )
    rec.add_argument(
        "--resolution",
        type=duration,
        default=CPU_WINDOW_SECONDS,
        help=f"CPU usage is averaged over windows this long (default {format_duration(CPU_WINDOW_SECONDS)}; "
        "shorter only for minutes of history)",
    )
    rec.add_argument(
        "--profile",
        choices=[p.value for p in Profile],
        default=DEFAULTS.profile.value,
        help=f"default {DEFAULTS.profile.value}",
    )
    rec.add_argument(
        "--target-utilization",
        type=fraction,
        default=DEFAULTS.cpu_target_utilization,
        help=f"peak CPU / request (default {DEFAULTS.cpu_target_utilization})",
    )
    rec.add_argument(
        "--cpu-percentile",
        type=fraction,
        default=DEFAULTS.cpu_percentile,
        help=f"peak-time percentile (default {DEFAULTS.cpu_percentile})",
    )
    rec.add_argument("--no-cpu-limit", action="store_true", help="recommend no CPU limit")
    rec.add_argument(
        "--hpa",
        choices=HPA_MODES,
        default=HPA_MODE,
        help=f"a request a HorizontalPodAutoscaler scales on: keep it, or recommend it and the HPA target "
        f"that scales out at the same usage (default {HPA_MODE})",
    )
    rec.add_argument(
        "-o",
        "--output",
        choices=(*FORMATS, "kustomize"),
        default="table",
        help="table, json, yaml, or kustomize: one patch per workload and a Component in --output-dir",
    )
    rec.add_argument(
        "--output-dir", type=Path, help="where -o kustomize writes its patches (docs/operator.md, GitOps)"
    )
    rec.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_price_arguments(rec)
    rec.set_defaults(run=run_recommend)
    add_backtest_parser(commands)
    op = commands.add_parser("operator", help="run the Kubernetes operator (RightSizePolicy controller)")
    add_prometheus_arguments(op)
    add_price_arguments(op)
    op.add_argument("--namespace", dest="namespaces", action="append", default=[], help="watch only these")
    op.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="Kopf liveness endpoint")
    op.add_argument(
        "--metrics-listen",
        type=listen_address,
        default=listen_address(METRICS_LISTEN),
        metavar="HOST:PORT",
        help=f"serve Prometheus metrics at /metrics here (default {METRICS_LISTEN}; 'off' for none)",
    )
    op.add_argument(
        "--leader-elect",
        action="store_true",
        help="run several replicas: only the holder of a Lease evaluates policies (deploy/ sets it)",
    )
    op.add_argument(
        "--leader-elect-namespace", help="namespace of the Lease (default: the pod's own namespace)"
    )
    op.add_argument(
        "--leader-elect-lease", default="rightsizer", help="name of the Lease (default rightsizer)"
    )
    hook = op.add_argument_group("admission webhook (auto.updateMode PodsOnly; docs/operator.md)")
    hook.add_argument(
        "--admission-listen",
        metavar="HOST:PORT",
        help="serve the mutating webhook here, e.g. 0.0.0.0:9443 (off by default)",
    )
    hook.add_argument(
        "--admission-url",
        metavar="URL",
        help="how the API server reaches it (default: the configuration's own Service)",
    )
    hook.add_argument(
        "--admission-configuration",
        default="rightsizer",
        help="MutatingWebhookConfiguration whose CA bundle (and URL) it keeps current (default rightsizer)",
    )
    hook.add_argument(
        "--admission-cert-dir",
        type=Path,
        help="tls.crt, tls.key and ca.crt (a Secret shared by the replicas); default: self-signed at start",
    )
    op.set_defaults(run=run_operator)
    return parser


def add_backtest_parser(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    bt = commands.add_parser(
        "backtest",
        help="replay a policy over the past: what it would have changed, broken and saved",
        description="Replay a RightSizePolicy (or the defaults) over the last days of Prometheus' history: "
        "its recommendations, Auto mode's rails, and what those requests and limits would have met. "
        "Reads only; changes nothing (docs/backtest.md).",
    )
    add_prometheus_arguments(bt)
    bt.add_argument("-n", "--namespace", action="append", default=[], help="namespace (repeatable)")
    bt.add_argument("--policy", type=Path, help="a RightSizePolicy YAML file (default: the CRD's defaults)")
    bt.add_argument(
        "--days", type=int, default=BACKTEST_DAYS, help=f"days replayed, up to now (default {BACKTEST_DAYS})"
    )
    bt.add_argument(
        "--step",
        type=duration,
        default=BACKTEST_STEP_SECONDS,
        help=f"replay step: an evaluation every STEP, besides those at would-be OOM kills and after the "
        f"cooldown of a partial change (default {format_duration(BACKTEST_STEP_SECONDS)}; docs/backtest.md)",
    )
    bt.add_argument(
        "--jobs",
        type=int,
        default=min(len(os.sched_getaffinity(0)), 8),
        help="processes the replay runs in (default: the CPUs this process may use, up to 8)",
    )
    bt.add_argument("-o", "--format", dest="format", choices=BACKTEST_FORMATS, default="table")
    bt.add_argument(
        "--output", dest="report", type=Path, metavar="FILE", help="write the report here, not to stdout"
    )
    bt.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_price_arguments(bt)
    bt.set_defaults(run=run_backtest_command)


def run_backtest_command(args: argparse.Namespace) -> int:
    from rightsizer.backtest.report import render_json, render_table
    from rightsizer.backtest.run import BacktestRequest, load_policy, run_backtest

    policy = load_policy(args.policy)
    namespaces = tuple(args.namespace) or ((policy.namespace,) if policy.namespace else ())
    if not namespaces:
        raise SettingsError("-n NAMESPACE is needed (or a --policy file with metadata.namespace)")
    if not 1 <= args.days <= 90:
        raise SettingsError("--days must be between 1 and 90")
    if args.format == "html" and args.report is None:
        raise SettingsError("-o html needs --output FILE (a file, not the terminal)")
    if args.jobs < 1:
        raise SettingsError("--jobs must be at least 1")
    request = BacktestRequest(namespaces, args.days, policy, args.step, labels_from_args(args), args.jobs)
    started = time.monotonic()
    result = run_backtest(
        prometheus_from_args(args),
        request,
        prices_from_args(args),
        progress=None if args.quiet else stderr_progress,
    )
    if args.format == "html":
        from rightsizer.backtest.html import render_html

        text = render_html(result)
    else:
        text = render_json(result) if args.format == "json" else render_table(result)
    if args.report is None:
        print(text)
    else:
        try:
            args.report.write_text(text)
        except OSError as error:
            raise SettingsError(f"cannot write {args.report}: {error.strerror}") from None
    if not args.quiet:
        stderr_progress(
            f"{sum(len(w.containers) for n in result.namespaces for w in n.workloads)} containers replayed "
            f"in {len(result.namespaces)} namespaces: {result.queries_sent} Prometheus queries "
            f"({result.fetch_seconds:.1f}s), replay {result.replay_seconds:.1f}s of CPU, "
            f"{time.monotonic() - started:.1f}s in all" + (f"; wrote {args.report}" if args.report else "")
        )
    failed = [scope.name for n in result.namespaces for scope in n.failed]
    if failed:
        stderr_progress(
            f"rightsizer: error: Prometheus could not answer for {'; '.join(failed)} (a partial report)"
        )
        return EXIT_RUNTIME
    return 0


def stderr_progress(message: str) -> None:
    """The report's progress and summary, on stderr beside the report on stdout."""
    print(message, file=sys.stderr, flush=True)


def run_recommend(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {
        "cpu_target_utilization": args.target_utilization,
        "cpu_percentile": args.cpu_percentile,
        "min_history_seconds": args.min_history,
    }
    if args.no_cpu_limit:
        overrides["cpu_limit_ratio"] = None
    settings = RecommendationSettings.for_profile(args.profile, **overrides)
    if args.resolution * 2 > args.history:
        raise SettingsError(f"--resolution must be at most half of --history ({args.history}s)")
    if (args.output == "kustomize") != (args.output_dir is not None):
        raise SettingsError("-o kustomize and --output-dir go together")
    request = ScanRequest(
        tuple(args.namespace), args.history, labels_from_args(args), args.resolution, args.hpa
    )
    started = time.monotonic()
    result = scan(
        prometheus_from_args(args), request, settings, progress=None if args.quiet else stderr_progress
    )
    if args.output == "kustomize":
        written = kustomize.write(result.recommendations, args.output_dir)
        if not args.quiet:
            stderr_progress(f"wrote {len(written)} files into {args.output_dir}")
    else:
        costing = Costing(result.replicas, prices_from_args(args))
        print(
            render(result.recommendations, args.output, end=result.end, failed=result.failed, costing=costing)
        )
    if not args.quiet:
        ready = sum(1 for r in result.recommendations if r.ready)
        stderr_progress(
            f"{len(result.recommendations)} containers ({ready} with a recommendation) in "
            f"{len(result.namespaces)} namespaces: {result.queries_sent} Prometheus queries, "
            f"{time.monotonic() - started:.1f}s"
        )
    if result.failed:
        scopes = "; ".join(scope.name for scope in result.failed)
        stderr_progress(f"rightsizer: error: Prometheus could not answer for {scopes} (a partial report)")
        return EXIT_RUNTIME
    return 0


def run_operator(args: argparse.Namespace) -> int:
    from rightsizer.controller.runner import run  # Kopf is imported only when the operator runs.

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except (SettingsError, PromQLError, ConfigurationError, kustomize.KustomizeError) as error:
        print(f"rightsizer: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except PrometheusUnavailable as error:
        print(f"rightsizer: error: {error}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("rightsizer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

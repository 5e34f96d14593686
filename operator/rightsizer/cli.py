"""The ``rightsizer`` command: ``recommend`` (a one-off report) and ``operator`` (run the controller)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

from rightsizer.duration import parse_duration
from rightsizer.promql import LabelConfig, Matcher, PromQLError
from rightsizer.report import FORMATS, render
from rightsizer.scan import ScanRequest, scan
from rightsizer.settings import Profile, RecommendationSettings, SettingsError
from rightsizer.source import PrometheusAuth, PrometheusSource, PrometheusUnavailable, stderr_progress

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """Bad flags give one clear line and exit 2, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1]")
    return value


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} must start with http:// or https://")
    return text


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header {text!r} is not of the form 'Name: value'")
    return name.strip(), value.strip()


def _matcher(text: str) -> Matcher:
    try:
        return Matcher.parse(text)
    except PromQLError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_prometheus_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for reaching Prometheus and naming its labels (shared by ``recommend`` and ``operator``)."""
    group = parser.add_argument_group("Prometheus")
    group.add_argument(
        "--prometheus-url", type=_url, required=True, help="e.g. http://prometheus.monitoring:9090"
    )
    group.add_argument("--bearer-token-file", type=Path, help="file holding a bearer token (re-read per run)")
    group.add_argument(
        "--bearer-token-env",
        metavar="VAR",
        help="environment variable holding a bearer token (default PROMETHEUS_TOKEN, if set)",
        default="PROMETHEUS_TOKEN",
    )
    group.add_argument("--username", help="basic auth user; password from $PROMETHEUS_PASSWORD")
    group.add_argument("--ca-file", type=Path, help="CA bundle to verify Prometheus' TLS certificate")
    group.add_argument("--insecure-skip-verify", action="store_true", help="do not verify TLS (testing only)")
    group.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        help="extra HTTP header 'Name: value' (repeatable)",
    )
    group.add_argument("--timeout", type=_duration, default=120, help="per-query timeout (default 2m)")
    labels = parser.add_argument_group("labels (docs/metrics.md)")
    labels.add_argument("--namespace-label", default="namespace")
    labels.add_argument("--pod-label", default="pod", help="pod_name on old cAdvisor")
    labels.add_argument("--container-label", default="container", help="container_name on old cAdvisor")
    labels.add_argument(
        "--extra-matcher",
        type=_matcher,
        action="append",
        default=[],
        help='matcher added to every query, e.g. cluster="prod-eu" (repeatable)',
    )


def prometheus_from_args(args: argparse.Namespace) -> PrometheusSource:
    if args.ca_file is not None and not args.ca_file.is_file():
        raise PrometheusUnavailable(f"--ca-file {args.ca_file} does not exist")
    auth = PrometheusAuth(
        bearer_token=os.environ.get(args.bearer_token_env) or None,
        bearer_token_file=args.bearer_token_file,
        username=args.username,
        password=os.environ.get("PROMETHEUS_PASSWORD"),
        ca_file=args.ca_file,
        insecure_skip_verify=args.insecure_skip_verify,
        headers=dict(args.header),
    )
    return PrometheusSource(args.prometheus_url, auth, timeout_seconds=args.timeout)


def labels_from_args(args: argparse.Namespace) -> LabelConfig:
    return LabelConfig(args.namespace_label, args.pod_label, args.container_label, tuple(args.extra_matcher))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rightsizer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    rec = commands.add_parser(
        "recommend",
        help="one-off report of recommended requests and limits",
        description="Recommend requests and limits for every Deployment, StatefulSet and DaemonSet "
        "container found in Prometheus. Reads only; changes nothing.",
    )
    add_prometheus_arguments(rec)
    rec.add_argument(
        "-n", "--namespace", action="append", default=[], help="namespace (repeatable; default all)"
    )
    rec.add_argument("--history", type=_duration, default=14 * 86400, help="history window (default 14d)")
    rec.add_argument("--min-history", type=_duration, default=86400, help="minimum history (default 24h)")
    rec.add_argument("--profile", choices=[p.value for p in Profile], default=Profile.LATENCY_SENSITIVE.value)
    rec.add_argument("--target-utilization", type=_fraction, default=0.75, help="peak CPU / request (0.75)")
    rec.add_argument("--cpu-percentile", type=_fraction, default=0.95, help="peak-time percentile (0.95)")
    rec.add_argument("--no-cpu-limit", action="store_true", help="recommend no CPU limit")
    rec.add_argument("-o", "--output", choices=FORMATS, default="table")
    rec.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    rec.set_defaults(run=run_recommend)
    op = commands.add_parser("operator", help="run the Kubernetes operator (RightSizePolicy controller)")
    add_prometheus_arguments(op)
    op.add_argument("--namespace", dest="namespaces", action="append", default=[], help="watch only these")
    op.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="Kopf liveness endpoint")
    op.set_defaults(run=run_operator)
    return parser


def run_recommend(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {
        "cpu_target_utilization": args.target_utilization,
        "cpu_percentile": args.cpu_percentile,
        "min_history_seconds": args.min_history,
    }
    if args.no_cpu_limit:
        overrides["cpu_limit_ratio"] = None
    settings = RecommendationSettings.for_profile(args.profile, **overrides)
    request = ScanRequest(tuple(args.namespace), args.history, labels_from_args(args))
    started = time.monotonic()
    result = scan(
        prometheus_from_args(args), request, settings, progress=None if args.quiet else stderr_progress
    )
    print(render(result.recommendations, args.output, end=result.end))
    if not args.quiet:
        ready = sum(1 for r in result.recommendations if r.ready)
        stderr_progress(
            f"{len(result.recommendations)} containers ({ready} with a recommendation) in "
            f"{len(result.namespaces)} namespaces: {result.queries_sent} Prometheus queries, "
            f"{time.monotonic() - started:.1f}s"
        )
    return 0


def run_operator(args: argparse.Namespace) -> int:
    from rightsizer.controller.runner import run  # Kopf is imported only when the operator runs.

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (SettingsError, PromQLError) as error:
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

"""Command-line options shared by ``rightsizer recommend`` and ``rightsizer operator``: argument
types that fail with one clear line, and the Prometheus flags turned into a ``PrometheusSource``."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import NoReturn

from rightsizer.cost import Prices
from rightsizer.duration import format_duration, parse_duration
from rightsizer.promql import LabelConfig, Matcher, PromQLError
from rightsizer.settings import (
    CPU_PRICE_PER_CORE_HOUR,
    MEMORY_PRICE_PER_GIB_HOUR,
    PROMETHEUS_GZIP,
    PROMETHEUS_TIMEOUT_SECONDS,
)
from rightsizer.source import PrometheusAuth, PrometheusSource, PrometheusUnavailable, url_error

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """Bad flags give one clear line and exit 2, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1]")
    return value


def listen_address(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` to listen on (an empty host is every address), or None for ``off``."""
    if text.strip().lower() in ("", "off"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (or 'off')")
    return host.strip("[]") or "0.0.0.0", int(port)


def price(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number >= 0")
    return value


def add_price_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cpu-price`` and ``--memory-price`` (``recommend``, ``backtest``, ``operator``)."""
    group = parser.add_argument_group("prices (docs/recommendations.md, Money)")
    group.add_argument(
        "--cpu-price",
        type=price,
        default=CPU_PRICE_PER_CORE_HOUR,
        metavar="PRICE",
        help=f"per core-hour of CPU request (default {CPU_PRICE_PER_CORE_HOUR}, USD: AWS Fargate's price)",
    )
    group.add_argument(
        "--memory-price",
        type=price,
        default=MEMORY_PRICE_PER_GIB_HOUR,
        metavar="PRICE",
        help=f"per GiB-hour of memory request (default {MEMORY_PRICE_PER_GIB_HOUR}, USD, the same list)",
    )


def prices_from_args(args: argparse.Namespace) -> Prices:
    return Prices(args.cpu_price, args.memory_price)


def _url(text: str) -> str:
    error = url_error(text)
    if error:
        raise argparse.ArgumentTypeError(error)
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
    group.add_argument(
        "--timeout",
        type=duration,
        default=PROMETHEUS_TIMEOUT_SECONDS,
        help=f"per-query timeout (default {format_duration(PROMETHEUS_TIMEOUT_SECONDS)})",
    )
    group.add_argument(
        "--prometheus-gzip",
        action=argparse.BooleanOptionalAction,
        default=PROMETHEUS_GZIP,
        help="ask for gzipped answers: less traffic, about half again as much CPU for Prometheus; for a "
        f"slow link such as kubectl port-forward (default {'on' if PROMETHEUS_GZIP else 'off'})",
    )
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
    return PrometheusSource(
        args.prometheus_url, auth, timeout_seconds=args.timeout, gzip=args.prometheus_gzip
    )


def labels_from_args(args: argparse.Namespace) -> LabelConfig:
    return LabelConfig(args.namespace_label, args.pod_label, args.container_label, tuple(args.extra_matcher))

"""The local demo (hack/demo.py) as a user runs it: on the real node the OOM-killed cart is fixed
for real, and a SIGTERM or SIGHUP to a demo left running (--keep) stops every process it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rightsizer.quantity import parse

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "hack" / "demo.py"
RUNNING = "Running; Ctrl-C, SIGTERM or SIGHUP stops everything."


def processes_mentioning(path: Path) -> list[str]:
    """Processes whose command line or environment names ``path`` (everything the demo started)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(path) in cmdline or str(path) in environ):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@contextmanager
def demo_running(
    state_dir: Path, *extra: str, timeout: float = 1200
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The demo with --keep, once it says it is running; stopped (SIGTERM) whatever the test did."""
    process, output = _start_demo(state_dir, *extra, timeout=timeout)
    try:
        yield process, output
    finally:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=180)


def _start_demo(state_dir: Path, *extra: str, timeout: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "--keep", "--days", "2", "--state-dir", str(state_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        output.append(line)
        if RUNNING in line:
            return process, "".join(output)
        if time.monotonic() > deadline:
            break
    process.kill()
    pytest.fail(f"the demo never reached '{RUNNING}' (exit {process.wait()}):\n{''.join(output)[-6000:]}")


def stop_and_check(process: subprocess.Popen[str], signum: signal.Signals, state_dir: Path) -> None:
    assert processes_mentioning(state_dir), "the demo should be running something before it is stopped"
    process.send_signal(signum)
    rest, _ = process.communicate(timeout=180)
    assert process.returncode == 0, rest
    assert f"({signum.name})" in rest and "==> stopping" in rest
    left = processes_mentioning(state_dir)
    assert not left, f"still running after {signum.name}:\n" + "\n".join(left)


def assert_the_cli_agrees_with_the_operator(output: str) -> None:
    """The demo's CLI step printed the operator's numbers beside its own and found them equal."""
    compared = output.split("==> the operator's numbers (status of shop's policies) beside the CLI's", 1)[1]
    table = compared.split("\n==> ", 1)[0]
    assert "agree: the CLI and the operator give the same recommendations for " in table, table
    for row in ("Deployment/web/app", "Deployment/web/log-shipper", "Deployment/cart/app"):
        assert row in table, table


@pytest.mark.k8s
@pytest.mark.prometheus
def test_sighup_stops_everything_the_demo_started(tmp_path: Path) -> None:
    state_dir = tmp_path / "demo"
    with demo_running(state_dir, "--no-node") as (process, output):
        assert "Without the real node (--no-node)" in output
        assert "recommendations of shop/web" in output
        assert_the_cli_agrees_with_the_operator(output)
        stop_and_check(process, signal.SIGHUP, state_dir)


@pytest.mark.k8s
@pytest.mark.prometheus
def test_a_demo_whose_terminal_is_gone_still_stops_everything(tmp_path: Path) -> None:
    """SIGHUP is what a closed terminal sends: the demo's stdout is gone by then, and every print
    while stopping fails. Stopping must go on regardless."""
    state_dir = tmp_path / "demo"
    with demo_running(state_dir, "--no-node") as (process, _):
        assert process.stdout is not None
        process.stdout.close()
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=180) == 0
        left = processes_mentioning(state_dir)
        assert not left, "still running after SIGHUP with stdout closed:\n" + "\n".join(left)


@pytest.mark.node
@pytest.mark.k8s
@pytest.mark.prometheus
def test_on_the_real_node_the_cart_is_oom_killed_for_real_until_rightsizer_fixes_it(tmp_path: Path) -> None:
    state_dir = tmp_path / "demo"
    with demo_running(state_dir) as (process, output):
        assert_the_cli_agrees_with_the_operator(output)
        summary = output.split("==> shop/cart before and after rightsizer", 1)[1]
        lines = dict(line.split(":", 1) for line in summary.strip().splitlines()[:4])
        before, after = json.loads(lines["resources before"]), json.loads(lines["resources after"])
        assert before["limits"]["memory"] == "512Mi"
        assert parse(after["limits"]["memory"]) > parse("560Mi"), summary  # above what it holds
        counts = {
            when: [int(n) for n in re.findall(r"(\d+) (?:restarts|pods)", lines[when])]
            for when in ("before", "after")
        }
        assert counts["before"][1] >= 1, summary  # OOM-killed for real before
        assert counts["after"] == [0, 0], summary  # and not any more
        # SIGTERM stops every process, the node's included, and the node's leftovers go with it.
        stop_and_check(process, signal.SIGTERM, state_dir)
    assert not list(Path("/sys/fs/cgroup").glob("*/kubepods"))

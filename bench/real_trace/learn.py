"""rightsizer's side: the learning days backfilled into a real Prometheus as a cluster exports them, and
``rightsizer recommend -o json`` (the installed command) run on it.

Each VM is a Deployment ``vm-<n>`` of one pod with one container ``app`` in namespace ``bitbrains``,
requesting what the VM was provisioned, without limits (the trace says nothing of throttling, and
cAdvisor exports CFS counters only under a CPU limit). Its samples become 60 s scrapes
(``trace.scrapes``) of cAdvisor's and kube-state-metrics' series (``rightsizer_demo.history``).

``rightsizer recommend`` evaluates at "now": the trace's clock is shifted by whole 5-minute CPU windows
(``SHIFT_QUANTUM``) so that the learning days end a little after the backfill is ready (``plan_shift``),
the benchmark waits for that moment, and every variant is run then, at once, on the same window.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rightsizer.quantity import parse
from rightsizer.settings import CPU_WINDOW_SECONDS
from rightsizer.units import CPU, MEMORY
from rightsizer_demo.history import (
    ContainerSpec,
    Recording,
    UsageModel,
    WorkloadSpec,
    write_recorded_openmetrics,
)
from rightsizer_demo.prometheus import PrometheusServer, load_history

from .baselines import ALLOCATION_COLUMNS, MIB, allocation
from .trace import SAMPLE_SECONDS, Split, scrapes

NAMESPACE = "bitbrains"
CONTAINER = "app"
SCRAPE_SECONDS = 60
SERIES_PER_POD = 7
"""Series a pod has in the backfill: the container's CPU and working set (2); kube-state-metrics' owner, two
requests, restarts (4); its ReplicaSet's owner (1). The pod cgroup's and the pause container's series are
left out: rightsizer's selectors leave them out too, and they were a third of the 10 GB to write."""
SHIFT_QUANTUM = CPU_WINDOW_SECONDS
"""The trace's clock moves by multiples of this, so every run puts the trace's 5-minute samples at the
same places in rightsizer's 5-minute CPU windows, which Prometheus aligns to the epoch. With a shift of
whole minutes only, where a window cut the samples changed from run to run, and with it the CPU peaks
(cpuMax per VM from 0.58x to 1.31x between two runs, 69.1 vs 68.5 cores in all). The half-hour buckets
still end when rightsizer evaluates: that moves a peak-time figure by a few millicores."""
PREPARATION_SECONDS = 90.0
PREPARATION_SECONDS_PER_SAMPLE = 6e-6
"""How long writing, promtool and Prometheus' start are expected to take (about 3.6 us a sample on
2 cores at load 4, measured), with room: the default lead before the learning days end."""
LATE_TOLERANCE_SECONDS = 3600
"""How late rightsizer may run after the learning days ended, when the backfill took longer than the
lead (three times longer at load 25 on 2 cores): its 14-day window then starts that much later and ends
with that much without samples, an hour at most (0.3% of the window); the report says how late it ran."""


@dataclass(frozen=True)
class Shift:
    """The trace's clock moved forward so that the learning days end at ``learning_end`` (Unix time)."""

    seconds: int
    learning_end: int


@dataclass(frozen=True)
class Run:
    """One ``rightsizer recommend`` run: its arguments, its recommendations, when it evaluated."""

    name: str
    arguments: tuple[str, ...]
    recommendations: list[dict[str, object]]
    late_seconds: float
    """How long after the learning days' end it evaluated."""


def expected_samples(learning: pd.DataFrame) -> int:
    """About how many samples the backfill writes: each 5-minute sample is five scrapes of each series."""
    return len(learning) * (SAMPLE_SECONDS // SCRAPE_SECONDS) * SERIES_PER_POD


def plan_shift(boundary: int, samples: int, lead: float | None, now: float) -> Shift:
    """The shift that ends the learning days ``lead`` seconds from ``now`` (or later, by less than
    ``SHIFT_QUANTUM``); without ``lead``, the time ``samples`` are expected to take to prepare."""
    if lead is None:
        lead = PREPARATION_SECONDS + PREPARATION_SECONDS_PER_SAMPLE * samples
    seconds = math.ceil((now + lead - boundary) / SHIFT_QUANTUM) * SHIFT_QUANTUM
    return Shift(seconds, boundary + seconds)


def workload(vm: int, cores: float, memory_mib: float, created_at: float) -> WorkloadSpec:
    """The Deployment standing for one VM: requests what the VM was provisioned, no limits."""
    requests = {CPU: f"{cores:g}", MEMORY: f"{memory_mib:g}Mi"}
    container = ContainerSpec(CONTAINER, UsageModel(0.0, 0.0), requests=requests)
    return WorkloadSpec(NAMESPACE, vm_workload(vm), (container,), created_at=created_at)


def vm_workload(vm: int) -> str:
    return f"vm-{vm}"


def recordings(split: Split, shift: Shift) -> list[Recording]:
    """Every VM's learning samples as 60 s scrapes on the shifted clock."""
    first = shift.learning_end - split.learn_seconds
    found = []
    for vm, rows in split.learning.groupby("vm", sort=True):
        seen = scrapes(
            rows["ts"].to_numpy() + shift.seconds,
            rows["cpu_cores"].to_numpy(float),
            rows["memory_mib"].to_numpy(float),
            SCRAPE_SECONDS,
            first,
            shift.learning_end,
        )
        if not len(seen.times):
            continue
        spec = workload(
            int(vm),
            float(rows["provisioned_cores"].iloc[-1]),
            float(rows["provisioned_memory_mib"].iloc[-1]),
            float(seen.times[0]),
        )
        found.append(Recording(spec, seen.times, seen.cpu_seconds, seen.memory_mib * MIB))
    return found


def backfill(split: Split, shift: Shift, workdir: Path, log: Callable[[str], None]) -> PrometheusServer:
    """Write the learning days as OpenMetrics, turn them into blocks with promtool and start a
    Prometheus on them; the caller stops it."""
    recorded = recordings(split, shift)
    first = shift.learning_end - split.learn_seconds
    openmetrics = workdir / "learning.om"
    samples = write_recorded_openmetrics(
        recorded, openmetrics, first, shift.learning_end - 1, SCRAPE_SECONDS, pod_series=False
    )
    log(f"wrote {samples:,} samples of {len(recorded)} pods ({openmetrics.stat().st_size / 1e9:.1f} GB)")
    load_history(openmetrics, workdir / "tsdb")
    openmetrics.unlink()
    log("promtool made the blocks; starting Prometheus")
    return PrometheusServer(workdir / "tsdb", startup_timeout=600).start()


def recommend_command() -> list[str]:
    """The installed ``rightsizer`` beside this Python (a virtualenv's), on PATH, or as a module."""
    beside = Path(sys.executable).with_name("rightsizer")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("rightsizer")
    return [found] if found else [sys.executable, "-m", "rightsizer.cli"]


def run_recommend(url: str, variants: Mapping[str, Sequence[str]], learning_end: int) -> list[Run]:
    """``rightsizer recommend -o json -q`` once per variant (its extra arguments), all started at once so
    that they evaluate the same window; waits for ``learning_end`` first."""
    time.sleep(max(0.0, learning_end - time.time()))
    started = time.time()
    late = started - learning_end
    if late > LATE_TOLERANCE_SECONDS:
        raise RuntimeError(
            f"the backfill was ready {late:.0f} s after the learning days' end: more than "
            f"{LATE_TOLERANCE_SECONDS} s of them would be out of rightsizer's window; give a longer --lead"
        )
    base = [*recommend_command(), "recommend", "--prometheus-url", url, "-n", NAMESPACE, "-o", "json", "-q"]
    processes = {
        name: subprocess.Popen([*base, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, extra in variants.items()
    }
    runs = []
    for name, process in processes.items():
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"rightsizer recommend {' '.join(variants[name])} failed: {err.strip()}")
        document = json.loads(out)
        runs.append(Run(name, tuple(variants[name]), document["recommendations"], late))
    return runs


def allocations(run: Run, split: Split) -> tuple[pd.DataFrame, list[str]]:
    """The recommended requests and limits per VM, and why a VM kept what it was provisioned instead
    (no recommendation: the reason rightsizer gave, or not listed at all)."""
    vms = {vm_workload(int(vm)): int(vm) for vm in split.learning["vm"].unique()}
    rows: dict[int, dict[str, float]] = {}
    kept: list[str] = []
    for item in run.recommendations:
        vm = vms.get(str(item["name"]))
        if vm is None:
            continue
        recommended = item.get("recommended")
        if not isinstance(recommended, dict):
            kept.append(f"{item['name']}: {item.get('reason')}")
            continue
        rows[vm] = _resources(recommended)
    provisioned = split.learning.groupby("vm")[["provisioned_cores", "provisioned_memory_mib"]].last()
    for vm in sorted(set(vms.values()) - set(rows)):
        if not any(k.startswith(f"{vm_workload(vm)}:") for k in kept):
            kept.append(f"{vm_workload(vm)}: not in rightsizer's report")
        cores, memory = provisioned.loc[vm]
        rows[vm] = {"cpu_request": cores, "memory_request": memory}
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(ALLOCATION_COLUMNS))
    return allocation(
        frame["cpu_request"], frame["cpu_limit"], frame["memory_request"], frame["memory_limit"]
    ), kept


def _resources(recommended: dict[str, dict[str, str]]) -> dict[str, float]:
    requests, limits = recommended.get("requests", {}), recommended.get("limits", {})

    def amount(values: dict[str, str], resource: str) -> float:
        value = values.get(resource)
        return math.nan if value is None else float(parse(value, field=resource))

    return {
        "cpu_request": amount(requests, CPU),
        "cpu_limit": amount(limits, CPU),
        "memory_request": amount(requests, MEMORY) / MIB,
        "memory_limit": amount(limits, MEMORY) / MIB,
    }

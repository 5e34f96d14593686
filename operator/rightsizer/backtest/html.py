"""The backtest as one self-contained HTML page: opens with no network.

Drawn with plotly.js, inlined once from the ``plotly`` package (its JavaScript, about 4.6 MB, and no
Python plotting at all: the figures are plain JSON). A page holds a summary per namespace (savings,
risks) and, per workload container, a plot of its usage against today's and the replayed requests
and limits over the span, with the would-be OOM kills and CPU throttling marked, and every change
with its reason (in the plot's hover and in a list below it).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
from plotly.offline import get_plotlyjs

from rightsizer.backtest.replay import ContainerReplay
from rightsizer.backtest.report import Figures, all_containers, figures
from rightsizer.backtest.run import BacktestResult
from rightsizer.duration import format_duration
from rightsizer.model import Resources
from rightsizer.units import CPU, MEMORY, format_quantity

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.saved { color: #176b2c; } .cost { color: #a3231f; }
.plot { width: 100%; height: 560px; }
.moves { font-size: 0.85em; } .note { color: #555; font-size: 0.9em; }
section { border-top: 1px solid #ddd; margin-top: 1.5em; }
"""
MIB = float(1024**2)
COLORS = {
    "usage": "#1f77b4",
    "today": "#7f7f7f",
    "replayed": "#2ca02c",
    "kill": "#d62728",
    "throttle": "#ff7f0e",
}


def render_html(result: BacktestResult) -> str:
    figures_by_id: dict[str, dict[str, Any]] = {}
    sections = []
    for index, (namespace, container) in enumerate(all_containers(result)):
        plot_id = f"plot-{index}"
        figures_by_id[plot_id] = _figure(container)
        sections.append(_container_section(result, namespace, container, plot_id))
    request = result.request
    start, end = _day(result.start), _day(result.end)
    notes = "".join(f"<p class='note'>Note: {html.escape(note)}</p>" for note in request.policy.notes)
    body = f"""
<h1>rightsizer backtest: policy {html.escape(request.policy.name)}</h1>
<p>Replayed over {start} to {end} UTC ({result.span_hours / 24:.1f} days): an evaluation every
{format_duration(request.step_seconds)}, at each would-be OOM kill and after the cooldown of each change
that applied part of a recommendation, with Auto mode's rails; scored against today's requests and
limits held over the same time. Prices:
{result.prices.cpu_per_core_hour:g} per core-hour and {result.prices.memory_per_gib_hour:g} per GiB-hour of
request.</p>{notes}
<h2>Summary</h2>
{_summary_table(result)}
{"".join(sections)}
"""
    data = json.dumps(figures_by_id, separators=(",", ":")).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rightsizer backtest</title>
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
</head><body>{body}
<script>
const FIGURES = {data};
for (const [id, figure] of Object.entries(FIGURES)) {{
  Plotly.newPlot(id, figure.data, figure.layout, {{displaylogo: false, responsive: true}});
}}
</script>
</body></html>
"""


def _summary_table(result: BacktestResult) -> str:
    rows = []
    for namespace in result.namespaces:
        every = [c for w in namespace.workloads for c in w.containers]
        rows.append(_summary_row(namespace.namespace, len(every), figures(result, every), result.span_hours))
    everything = [c for _, c in all_containers(result)]
    rows.append(_summary_row("all", len(everything), figures(result, everything), result.span_hours))
    head = (
        "<tr><th>namespace</th><th>containers</th><th>changes</th><th>rolled back</th>"
        "<th>OOM kills (today &rarr; replayed)</th><th>CPU windows above the limit</th>"
        "<th>above the request</th><th>cost over the span</th><th>saved</th><th>saved a month</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _summary_row(name: str, containers: int, found: Figures, span_hours: float) -> str:
    today, replayed = found.today, found.replayed
    saved_class = "saved" if found.saved >= 0 else "cost"
    over_limit = (today.share(today.cpu_over_limit), replayed.share(replayed.cpu_over_limit))
    over_request = (today.share(today.cpu_over_request), replayed.share(replayed.cpu_over_request))
    return (
        f"<tr><td>{html.escape(name)}</td><td>{containers}</td><td>{found.changes}</td>"
        f"<td>{found.rollbacks}</td>"
        f"<td>{today.oom_kills} &rarr; {replayed.oom_kills}</td>"
        f"<td>{over_limit[0]:.1%} &rarr; {over_limit[1]:.1%}</td>"
        f"<td>{over_request[0]:.1%} &rarr; {over_request[1]:.1%}</td>"
        f"<td>{found.cost_today:.2f} &rarr; {found.cost_replayed:.2f}</td>"
        f"<td class='{saved_class}'>{found.saved:.2f}</td>"
        f"<td class='{saved_class}'>{found.per_month(span_hours, found.saved):.2f}</td></tr>"
    )


def _container_section(
    result: BacktestResult, namespace: str, container: ContainerReplay, plot_id: str
) -> str:
    key = container.key
    title = f"{namespace} / {key.kind}/{key.name} / {key.container}"
    found = figures(result, [container])
    moves = "".join(
        f"<li>{_day(move.time)} <b>{move.action}</b>: {html.escape(_describe(move.before))} &rarr; "
        f"{html.escape(_describe(move.after))}<br><span class='note'>{html.escape(move.reason)}</span></li>"
        for move in container.moves
    )
    if not moves:
        moves = f"<li>no change: {html.escape(container.last_reason or 'nothing to change')}</li>"
    return f"""
<section class="workload" data-workload="{html.escape(title)}">
<h3>{html.escape(title)}</h3>
<table>{_summary_row(key.container, 1, found, result.span_hours).replace("<td>1</td>", "", 1)}</table>
<div id="{plot_id}" class="plot"></div>
<ul class="moves">{moves}</ul>
</section>"""


def _figure(container: ContainerReplay) -> dict[str, Any]:
    """Two plots over the span, CPU (cores) above, memory (MiB) below: the busiest pod's usage in each
    bucket, today's request and limit, the replayed ones, would-be OOM kills, throttling and changes."""
    tl = container.timeline
    times, inverse = np.unique(tl.time, return_inverse=True)
    cpu = np.full(len(times), np.nan)
    memory = np.full(len(times), np.nan)
    np.fmax.at(cpu, inverse, tl.cpu_peak)
    np.fmax.at(memory, inverse, tl.memory_max)
    x = [_ms(t) for t in times]
    data: list[dict[str, Any]] = [
        _line(x, cpu, "CPU: busiest pod's busiest 5m", COLORS["usage"], "y"),
        _line(x, memory / MIB, "memory: highest working set", COLORS["usage"], "y2", legend=False),
    ]
    end = float(times[-1]) if len(times) else container.in_force[0][0]
    for resource, axis, scale in ((CPU, "y", 1.0), (MEMORY, "y2", MIB)):
        for kind, dash in (("requests", "solid"), ("limits", "dash")):
            label = f"{resource} {kind[:-1]}"
            today = getattr(tl.today, kind).get(resource)
            if today is not None:
                data.append(
                    _steps(
                        [(container.in_force[0][0], today)],
                        end,
                        scale,
                        f"today's {label}",
                        COLORS["today"],
                        axis,
                        dash,
                    )
                )
            steps = [(t, getattr(r, kind).get(resource)) for t, r in container.in_force]
            data.append(_steps(steps, end, scale, f"replayed {label}", COLORS["replayed"], axis, dash))
    kills = np.isin(times, container.kill_times)
    data.append(_markers(x, memory / MIB, kills, "would-be OOM kill", COLORS["kill"], "x", "y2"))
    throttled = np.isin(times, container.throttle_times)
    data.append(
        _markers(x, cpu, throttled, "CPU above the replayed limit", COLORS["throttle"], "triangle-up", "y")
    )
    changes = container.moves
    if changes:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "change (hover: why)",
                "x": [_ms(m.time) for m in changes],
                "y": [float(m.after.requests.get(MEMORY, 0)) / MIB for m in changes],
                "yaxis": "y2",
                "marker": {"symbol": "diamond", "size": 10, "color": COLORS["replayed"]},
                "hovertext": [f"{m.action}: {_describe(m.after)}<br>{_wrap(m.reason)}" for m in changes],
                "hoverinfo": "text",
            }
        )
    layout = {
        "margin": {"t": 30, "l": 60, "r": 20, "b": 40},
        "xaxis": {"type": "date", "anchor": "y2"},
        "yaxis": {"title": {"text": "CPU (cores)"}, "domain": [0.55, 1.0], "rangemode": "tozero"},
        "yaxis2": {"title": {"text": "memory (MiB)"}, "domain": [0.0, 0.45], "rangemode": "tozero"},
        "legend": {"orientation": "h", "y": -0.12},
        "hovermode": "closest",
    }
    return {"data": data, "layout": layout}


def _line(
    x: list[int], y: np.ndarray, name: str, color: str, axis: str, legend: bool = True
) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": x,
        "y": _numbers(y),
        "yaxis": axis,
        "line": {"color": color, "width": 1},
        "showlegend": legend,
    }


def _steps(
    steps: list[tuple[float, Any]], end: float, scale: float, name: str, color: str, axis: str, dash: str
) -> dict[str, Any]:
    x, y = [], []
    for index, (start, amount) in enumerate(steps):
        stop = steps[index + 1][0] if index + 1 < len(steps) else end
        value = None if amount is None else round(float(amount) / scale, 4)
        x += [_ms(start), _ms(stop)]
        y += [value, value]
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": x,
        "y": y,
        "yaxis": axis,
        "line": {"color": color, "width": 2, "dash": dash},
    }


def _markers(
    x: list[int], y: np.ndarray, where: np.ndarray, name: str, color: str, symbol: str, axis: str
) -> dict[str, Any]:
    chosen = np.flatnonzero(where)
    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "x": [x[i] for i in chosen],
        "y": _numbers(y[chosen]),
        "yaxis": axis,
        "marker": {"symbol": symbol, "size": 9, "color": color},
    }


def _numbers(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 4) for v in values]


def _describe(resources: Resources) -> str:
    parts = []
    for kind in ("requests", "limits"):
        amounts = getattr(resources, kind)
        shown = ", ".join(f"{r} {format_quantity(r, amounts[r])}" for r in (CPU, MEMORY) if r in amounts)
        parts.append(f"{kind} {shown or 'none'}")
    return "; ".join(parts)


def _wrap(text: str, width: int = 100) -> str:
    words, lines, line = html.escape(text).split(" "), [], ""
    for word in words:
        if line and len(line) + len(word) > width:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")

"""The backtest as one self-contained HTML page (plotly, its JavaScript inlined)."""

from __future__ import annotations

from rightsizer.backtest.run import BacktestResult


def render_html(result: BacktestResult) -> str:
    raise NotImplementedError

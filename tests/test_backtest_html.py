"""`rightsizer backtest -o html`: one self-contained file, opened in a real headless Chromium with no
network: it loads without console errors or requests, and every workload container's plot is drawn."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.browser import open_page
from tests.support.cli import run_rightsizer

pytestmark = pytest.mark.prometheus

DRAWN = """(() => {
  const plots = [...document.querySelectorAll('section.workload .plot')];
  const drawn = plots.filter(p => p.querySelector('.main-svg')
    && p.querySelectorAll('.scatterlayer .trace').length >= 2
    && p.querySelector('.scatterlayer path.js-line'));
  return drawn.length === plots.length && plots.length > 0 &&
    {plots: plots.length, drawn: drawn.length,
     workloads: [...document.querySelectorAll('section.workload')].map(s => s.dataset.workload),
     summary: [...document.querySelectorAll('table')[0].rows].map(r => r.cells[0].textContent)};
})()"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_rightsizer("backtest", *args)


def test_the_report_opens_offline_and_draws_every_workload(demo_prometheus, tmp_path):
    url = demo_prometheus.url
    report = tmp_path / "report.html"
    common = ("--prometheus-url", url, "-n", "shop", "-n", "data", "--days", "3", "-q")
    result = run_cli(*common, "-o", "html", "--output", str(report))
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    # Self-contained: no script, style or image fetched from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)
    document = json.loads(run_cli(*common, "-o", "json").stdout)
    expected = [
        f"{n['namespace']} / {w['kind']}/{w['name']} / {c['container']}"
        for n in document["namespaces"]
        for w in n["workloads"]
        for c in w["containers"]
    ]
    assert len(expected) == 7  # shop's six containers and data's redis

    page = open_page(report, DRAWN, screenshot=tmp_path / "report.png")
    assert page.errors == []
    assert page.requests == []  # nothing asked of the network
    assert page.value["plots"] == page.value["drawn"] == len(expected)
    assert page.value["workloads"] == expected
    assert page.value["summary"] == ["namespace", "shop", "data", "all"]
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_a_broken_page_is_caught(tmp_path):
    """The check itself: a script error and a request to the network are both reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><div class='x'></div>"
        "<script>fetch('http://127.0.0.1:9/nothing').catch(() => {}); undefinedFunction();</script>"
        "</body></html>"
    )
    report = open_page(page, "document.querySelector('.x') !== null")
    assert any("undefinedFunction" in error for error in report.errors)
    assert report.requests == ["http://127.0.0.1:9/nothing"]

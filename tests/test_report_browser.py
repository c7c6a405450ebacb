"""The run report in a real headless Chromium (Debian's package, driven by Playwright): every
chart has tick labels, the price chart shades halts and draws the price band, the timeline
marks alerts, breaker trips and interventions by kind, nothing overflows at 1400 px; and,
without a browser, the charts' rules: an all-zero metric gets no chart, a sweep's bars carry
their parameter values and link to their runs' reports."""

import re
import shutil

import pytest

from sandbank.lab.report import Event, Series, svg_bars, svg_chart, write_report
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import builtin_dir, load_scenario

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = "/tmp/report_1400.png"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The demo economy, 50 ticks: a banded market that halts, alerts, breaker trips and a
    scheduled intervention (at tick 45)."""
    out = tmp_path_factory.mktemp("report") / "demo"
    res = run_scenario(load_scenario(builtin_dir() / "demo.yaml", ticks=50), out)
    s = res.summary
    assert s["alerts"] and s["trips"] and s["interventions"] and s["final"]["halts"]
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_report_reads_in_a_browser(run):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((run / "report.html").as_uri())
            charts = page.locator("figure.chart svg")
            assert charts.count() >= 10
            for i in range(charts.count()):
                ticks = charts.nth(i).locator("text.tick")
                assert ticks.count() >= 4, f"chart {i} has no tick labels"
                assert all(t.strip() for t in ticks.all_text_contents())
            price = page.locator("figure[data-metric='price_WGT'] svg")
            assert price.locator("rect.span-halted").count() >= 1  # the halts, shaded
            assert price.locator("rect.span-limit").count() >= 1
            assert price.locator("polygon.band").count() == 1  # the price band
            assert price.locator(".legend-item", has_text="halted").count() == 1
            timeline = page.locator("#timeline svg")
            for kind in ("alert", "trip", "intervention"):
                assert timeline.locator(f"g.marker-{kind}").count() >= 1, kind
            assert timeline.locator(".legend-item").all_text_contents() == [
                "alert", "breaker trip", "scheduled intervention"]
            # the tick axis is labelled in numbers, the lanes by what happened
            assert any(re.fullmatch(r"\d+", t) for t in
                       timeline.locator("text.tick.x").all_text_contents())
            assert any(t.startswith("alert: ") for t in
                       timeline.locator("text.lane").all_text_contents())
            lorenz = page.locator("figure", has_text="Lorenz").locator("svg")
            assert {"0", "0.2", "1"} <= set(lorenz.locator("text.tick").all_text_contents())
            assert "Gini" in lorenz.locator("text.big").text_content()
            assert page.locator("figure", has_text="balance by group").count() == 1
            assert "zero throughout" in page.locator(".zero-note").first.text_content()
            assert page.evaluate("document.documentElement.scrollWidth") <= 1400
            page.screenshot(path=SCREENSHOT, full_page=False)
            assert not errors, errors
        finally:
            browser.close()


def test_an_all_zero_metric_gets_no_chart_but_one_line(run):
    import csv

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    zero = [c for c in rows[0] if c != "tick" and all(r[c] in ("0", "0.0") for r in rows)]
    page = write_report(run).read_text()
    drawn = re.findall(r'data-metric="([^"]+)"', page)
    assert "fraud_loss" in zero and "fraud_loss" not in drawn  # (frozen at 45: no fraud paid)
    assert not set(zero) & set(drawn)
    line = re.search(r"(\d+) metrics? w(?:ere|as) zero throughout \(not drawn\): ([^<]*)\.", page)
    assert line and "fraud_loss" in line.group(2).split(", ")
    assert int(line.group(1)) == len(line.group(2).split(", "))
    # and a chart drawn from its parts: tick labels, gridlines, a zero baseline for a share
    svg = svg_chart("gini", [Series("gini", [(1, 0.20), (2, 0.21), (3, 0.22)])], y_zero=True,
                    events=[Event(2, "alert", "fraud", "alert 1"),
                            Event(3, "intervention", "set_policy", "fee up")])
    labels = re.findall(r'<text class="tick y"[^>]*>([^<]+)</text>', svg)
    assert labels[0] == "0" and len(labels) >= 3
    assert 'class="grid zero"' in svg
    assert 'data-kind="alert"' in svg and 'data-kind="intervention"' in svg


def test_sweep_bars_are_labelled_with_their_values_and_link_to_their_runs():
    bars = [{"label": ["band_bps=0"], "title": "0: markets.0.band_bps=0", "mean": 10.0,
             "min": 8.0, "max": 12.0, "href": "config0-seed1/report.html",
             "seeds": [(1, 8.0, "config0-seed1/report.html"), (2, 12.0, "config0-seed2/report.html")]},
            {"label": ["band_bps=1000"], "title": "1: markets.0.band_bps=1000", "mean": 3.0,
             "min": 3.0, "max": 3.0, "href": "config1-seed1/report.html",
             "seeds": [(1, 3.0, "config1-seed1/report.html")]}]
    svg = svg_bars(bars, "final halts per configuration")
    assert re.findall(r'<a class="bar-link" href="([^"]+)"', svg) == [
        "config0-seed1/report.html", "config1-seed1/report.html"]
    assert re.findall(r'<a class="seed-link" href="([^"]+)"', svg) == [
        "config0-seed1/report.html", "config0-seed2/report.html", "config1-seed1/report.html"]
    assert re.findall(r"<tspan[^>]*>([^<]+)</tspan>", svg) == ["band_bps=0", "band_bps=1000"]
    assert re.findall(r'<text class="tick y"[^>]*>([^<]+)</text>', svg)[0] == "0"

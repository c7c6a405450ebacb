"""A self-contained HTML report of a run (inline SVG, no scripts, no network).

Every chart is drawn by one function, `svg_chart`: axes with tick labels (real `<text>`
elements) and gridlines, a zero baseline where asked (shares and concentrations), shaded
spans (a market's halts and limit states), a band (the price band), markers of the run's
events by kind (alerts, breaker trips, scheduled interventions) and a legend. Hand-drawn
rather than matplotlib: a report is written after every run (the tests write hundreds), so
it has to cost milliseconds, and it stays one file with no dependency."""

from __future__ import annotations

import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

W, H = 560, 230  # one chart
WIDE = 1120  # a chart across the page (the event timeline)
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 34, 30  # margins of the plot area
PAD = 36  # (kept for callers of the old layout)

PALETTE = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb", "#e52592",
           "#5f6368"]
# the run's events, by kind: (colour, line dash, legend label)
EVENT_KINDS = {"alert": ("#e8710a", "2 3", "alert"),
               "trip": ("#c5221f", "5 3", "breaker trip"),
               "intervention": ("#7b1fa2", "", "scheduled intervention")}
SPAN_KINDS = {"halted": ("#d93025", 0.16, "halted"), "limit": ("#f9ab00", 0.22, "limit state")}


def _num(x: Any) -> float | None:
    if x is None or x == "":
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(v: float) -> str:
    """A tick label: short (12k, 1.5M), no float noise, no exponent, no "-0"."""
    a = abs(v)
    if a >= 1e4:
        k = f"{v / 1e3:.3g}"
        if a < 1e6 and "e" not in k:
            return k + "k"
        m = f"{v / 1e6:.3g}"
        return m + "M" if a < 1e9 and "e" not in m else f"{v / 1e9:.3g}G"
    s = f"{round(v, 6):.4g}"
    return "0" if s in ("-0", "0.0") or "e-" in s else s


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering lo..hi (about n steps of 1, 2, 2.5 or 5 × 10^k)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        d = abs(lo) * 0.1 or 1.0
        lo, hi = lo - d, hi + d
        if lo < 0 <= hi - d:  # a flat non-negative series: start at 0
            lo = 0.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in ((1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10))
                if m * mag >= raw)
    if integer:
        step = max(1.0, round(step))
    start, end = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(start, end + 1)]


def _glyph(kind: str, x: float, y: float, s: float = 5.0) -> str:
    """The marker of an event kind: alert ▲, breaker trip ◆, intervention ■."""
    if kind == "alert":
        return f"M{x:.1f},{y - s:.1f}L{x + s:.1f},{y + s * .8:.1f}L{x - s:.1f},{y + s * .8:.1f}Z"
    if kind == "trip":
        return f"M{x:.1f},{y - s:.1f}L{x + s:.1f},{y:.1f}L{x:.1f},{y + s:.1f}L{x - s:.1f},{y:.1f}Z"
    k = s * .8
    return f"M{x - k:.1f},{y - k:.1f}h{2 * k:.1f}v{2 * k:.1f}h{-2 * k:.1f}Z"


@dataclass
class Event:
    tick: int
    kind: str  # alert | trip | intervention
    lane: str  # what, for the timeline (the detector, the breaker level, the action)
    text: str  # the tooltip


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    colour: str = PALETTE[0]
    bars: bool = False


@dataclass
class _Legend:
    items: list[str] = field(default_factory=list)
    x: float = LEFT

    def add(self, swatch: str, label: str, width: int) -> None:
        """`swatch`: an SVG fragment drawn at (0, 0), 12 px wide."""
        self.items.append(f'<g class="legend-item" transform="translate({self.x:.0f},14)">{swatch}'
                          f'<text x="16" y="4">{html.escape(label)}</text></g>')
        self.x += 22 + 6 * len(label) + 10


def _figure(title: str, svg: str, extra: str = "", cls: str = "chart", width: int = W) -> str:
    """A chart with its caption, which wraps at the chart's width."""
    return (f'<figure class="{cls}" style="width:{width}px">'
            f'<figcaption>{html.escape(title)}</figcaption>{svg}{extra}</figure>')


def _x_layer(sx: Any, x0: float, x1: float, pw: float, y_bottom: float, events: Any
             ) -> tuple[str, str, list[str]]:
    """A chart's vertical gridlines with their tick labels, and its event marks: a line in
    the kind's colour and dash, and its glyph on the top edge (several events of a kind at
    one tick: one mark, every one in its tooltip)."""
    grid = "".join(
        f'<line class="grid" x1="{sx(v):.1f}" y1="{TOP}" x2="{sx(v):.1f}" y2="{y_bottom}"/>'
        f'<text class="tick x" x="{sx(v):.1f}" y="{y_bottom + 14}" '
        f'text-anchor="middle">{fmt(v)}</text>'
        for v in nice_ticks(x0, x1, max(2, int(pw // 80)), integer=True) if x0 <= v <= x1)
    seen: dict[tuple[int, str], list[str]] = {}
    for e in events:
        if x0 <= e.tick <= x1:
            seen.setdefault((e.tick, e.kind), []).append(e.text)
    marks, kinds = [], []
    for kind, (colour, dash, _) in EVENT_KINDS.items():
        mine = sorted((t, texts) for (t, k), texts in seen.items() if k == kind)
        if mine:
            kinds.append(kind)
        for t, texts in mine:
            x = sx(t)
            tip = html.escape(f"tick {t}: " + "; ".join(texts[:6])
                              + (f"; and {len(texts) - 6} more" if len(texts) > 6 else ""))
            marks.append(f'<g class="marker marker-{kind}" data-kind="{kind}">'
                         f'<title>{tip}</title>'
                         f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{y_bottom}" '
                         f'style="stroke:{colour};stroke-dasharray:{dash or "none"}"/>'
                         f'<path d="{_glyph(kind, x, TOP + 1)}" style="fill:{colour}"/></g>')
    return grid, "".join(marks), kinds


def _path(points: list[tuple[float, float]], ax: float, bx: float, ay: float, by: float) -> str:
    """An SVG path through the points (x' = ax·x + bx, y' = ay·y + by), without the inner
    points of flat stretches (a cumulative count is mostly flat)."""
    keep = [p for i, p in enumerate(points)
            if i == 0 or i == len(points) - 1 or not points[i - 1][1] == p[1] == points[i + 1][1]]
    return "M" + "L".join(f"{ax * x + bx:.1f},{ay * y + by:.1f}" for x, y in keep)


def svg_chart(title: str, series: list[Series], *, x_domain: tuple[float, float] | None = None,
              y_zero: bool = False, y_max: float | None = None,
              spans: list[tuple[float, float, str]] = (),  # type: ignore[assignment]
              band: list[tuple[float, float, float]] = (),  # type: ignore[assignment]
              events: list[Event] = (),  # type: ignore[assignment]
              legend_html: bool = False, name: str = "", width: int = W,
              x_label: str = "tick", cache: dict[Any, Any] | None = None) -> str:
    """One chart of series over ticks (see the module's docstring). `spans`: (from, to,
    "halted" | "limit") shaded; `band`: (tick, low, high), the price band; `events`: marked
    by kind; `legend_html`: the series' names below the chart (many, or long) rather than
    in the chart's top strip. `name` becomes the figure's data-metric; `cache`: a dict
    kept across the charts of one page (their x gridlines and event marks, drawn once)."""
    series = [s for s in series if s.points]
    if not series:
        return _figure(title, "<p class='none'>no data</p>")
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + [v for _, lo, hi in band for v in (lo, hi)]
    x0, x1 = x_domain or (min(xs), max(xs))
    if x1 <= x0:
        x0, x1 = x0 - 1, x0 + 1
    lo, hi = min(ys), max(ys)
    if y_zero or any(s.bars for s in series):
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if y_max is not None:
        hi = max(hi, y_max)
    yt = nice_ticks(lo, hi, 4)
    y0, y1 = yt[0], yt[-1]
    x_right, y_bottom = width - RIGHT, H - BOTTOM
    pw, ph = x_right - LEFT, y_bottom - TOP
    slot = pw / max(1.0, x1 - x0 + (1 if any(s.bars for s in series) else 0))
    if any(s.bars for s in series):  # a bar is centred on its tick: half a slot either side
        def sx(x: float) -> float:
            return LEFT + (x - x0 + 0.5) * slot
    else:
        def sx(x: float) -> float:
            return LEFT + (x - x0) * pw / (x1 - x0)

    def sy(y: float) -> float:
        return y_bottom - (y - y0) * ph / (y1 - y0)

    out = [f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/>']
    legend = _Legend()
    for kind in ("halted", "limit"):
        mine = [(a, b) for a, b, k in spans if k == kind and b >= x0 and a <= x1]
        if not mine:
            continue
        colour, alpha, label = SPAN_KINDS[kind]
        for a, b in mine:
            xa, xb = max(LEFT, sx(a)), min(x_right, sx(b))
            out.append(f'<rect class="span span-{kind}" data-kind="{kind}" x="{xa:.1f}" '
                       f'y="{TOP}" width="{max(xb - xa, 1):.1f}" height="{ph}" '
                       f'style="fill:{colour};fill-opacity:{alpha}">'
                       f'<title>{label}: ticks {a + .5:g}–{b - .5:g}</title></rect>')
        legend.add(f'<rect x="0" y="-5" width="12" height="10" style="fill:{colour};'
                   f'fill-opacity:{alpha * 2}"/>', label, 0)
    if band:
        band = [b for b in band if x0 <= b[0] <= x1]

        def left(t: float) -> float:
            return sx(max(x0, t - .5))

        def right(t: float) -> float:
            return sx(min(x1, t + .5))

        upper = " ".join(f"{left(t):.1f},{sy(h):.1f} {right(t):.1f},{sy(h):.1f}"
                         for t, _, h in band)
        lower = " ".join(f"{right(t):.1f},{sy(lw):.1f} {left(t):.1f},{sy(lw):.1f}"
                         for t, lw, _ in reversed(band))
        out.append(f'<polygon class="band" points="{upper} {lower}"><title>price band</title>'
                   f'</polygon>')
        legend.add('<rect x="0" y="-5" width="12" height="10" class="band"/>', "price band", 0)
    for v in yt:
        y = sy(v)
        out.append(f'<line class="grid{" zero" if v == 0 else ""}" x1="{LEFT}" y1="{y:.1f}" '
                   f'x2="{x_right}" y2="{y:.1f}"/>'
                   f'<text class="tick y" x="{LEFT - 5}" y="{y + 3.5:.1f}" '
                   f'text-anchor="end">{fmt(v)}</text>')
    key = (x0, x1, width, slot if any(s.bars for s in series) else 0.0, id(events))
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = _x_layer(sx, x0, x1, pw, y_bottom, events)
    grid, marks, kinds = cache[key]
    out.append(grid)
    out.append(f'<line class="axis" x1="{LEFT}" y1="{y_bottom}" x2="{x_right}" y2="{y_bottom}"/>'
               f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{y_bottom}"/>'
               f'<text class="label" x="{x_right}" y="{y_bottom + 26}" text-anchor="end">'
               f'{html.escape(x_label)}</text>')
    base = sy(max(y0, min(0.0, y1)))
    for s in series:
        if s.bars:
            bw = max(slot * 0.7, 1.0)
            out.append("".join(
                f'<rect class="bar" x="{sx(x) - bw / 2:.1f}" y="{min(sy(y), base):.1f}" '
                f'width="{bw:.1f}" height="{abs(base - sy(y)):.1f}" style="fill:{s.colour}">'
                f'<title>tick {x:g}: {y:g}</title></rect>' for x, y in s.points if y))
        else:
            ax, bx = sx(1.0) - sx(0.0), sx(0.0)
            ay, by = sy(1.0) - sy(0.0), sy(0.0)
            d = _path(s.points, ax, bx, ay, by)
            dot = (f'<circle class="pt" cx="{sx(s.points[0][0]):.1f}" '
                   f'cy="{sy(s.points[0][1]):.1f}" r="2" style="fill:{s.colour}"/>'
                   if len(s.points) == 1 else "")
            out.append(f'<path class="series" d="{d}" style="stroke:{s.colour}">'
                       f'<title>{html.escape(s.name)}</title></path>{dot}')
        if len(series) > 1 and not legend_html:
            legend.add(f'<line x1="0" y1="0" x2="12" y2="0" style="stroke:{s.colour};'
                       f'stroke-width:2.5"/>', s.name, 0)
    out.append(marks)
    for kind in kinds:
        colour, _, label = EVENT_KINDS[kind]
        legend.add(f'<path d="{_glyph(kind, 6, 0)}" style="fill:{colour}"/>', label, 0)
    svg = (f'<svg viewBox="0 0 {width} {H}" width="{width}" height="{H}" role="img" '
           f'aria-label="{html.escape(title)}">{"".join(out)}{"".join(legend.items)}</svg>')
    below = ""
    if legend_html and len(series) > 1:
        below = '<div class="legend">' + "<br>".join(
            f'<span style="color:{s.colour}">■</span> {html.escape(s.name)}' for s in series) + \
            "</div>"
    fig = _figure(title, svg, below, width=width)
    return fig.replace('<figure class="chart"',
                       f'<figure class="chart" data-metric="{html.escape(name)}"', 1) if name else fig


def svg_timeline(events: list[Event], x_domain: tuple[float, float], width: int = WIDE) -> str:
    """The run's events on one time axis: a lane per detector, breaker level and scheduled
    action, marked by kind (alert ▲, breaker trip ◆, intervention ■); several at one tick
    are one mark with their count."""
    order = list(EVENT_KINDS)
    lanes = sorted({(e.kind, e.lane) for e in events}, key=lambda k: (order.index(k[0]), k[1]))
    if not lanes:
        return ""
    left, row = 190, 22
    height = TOP + row * len(lanes) + BOTTOM
    x0, x1 = x_domain
    if x1 <= x0:
        x1 = x0 + 1
    x_right = width - RIGHT

    def sx(x: float) -> float:
        return left + (x - x0) * (x_right - left) / (x1 - x0)

    out = [f'<rect class="plot" x="{left}" y="{TOP}" width="{x_right - left}" '
           f'height="{row * len(lanes)}"/>']
    y_bottom = TOP + row * len(lanes)
    for v in nice_ticks(x0, x1, 12, integer=True):
        if x0 <= v <= x1:
            out.append(f'<line class="grid" x1="{sx(v):.1f}" y1="{TOP}" x2="{sx(v):.1f}" '
                       f'y2="{y_bottom}"/><text class="tick x" x="{sx(v):.1f}" '
                       f'y="{y_bottom + 14}" text-anchor="middle">{fmt(v)}</text>')
    for i, (kind, lane) in enumerate(lanes):
        y = TOP + row * i + row / 2
        colour = EVENT_KINDS[kind][0]
        label = f"{EVENT_KINDS[kind][2].split()[-1]}: {lane}"
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{x_right}" y2="{y:.1f}"/>'
                   f'<text class="tick y lane" x="{left - 6}" y="{y + 3.5:.1f}" '
                   f'text-anchor="end">{html.escape(label[:34])}</text>')
        at: dict[int, list[str]] = {}
        for e in events:
            if e.kind == kind and e.lane == lane:
                at.setdefault(e.tick, []).append(e.text)
        for t, texts in sorted(at.items()):
            x = sx(min(max(t, x0), x1))
            tip = html.escape(f"tick {t}: " + "; ".join(texts[:6])
                              + (f"; and {len(texts) - 6} more" if len(texts) > 6 else ""))
            count = (f'<text class="count" x="{x + 7:.1f}" y="{y - 4:.1f}">×{len(texts)}</text>'
                     if len(texts) > 1 else "")
            out.append(f'<g class="marker marker-{kind}" data-kind="{kind}"><title>{tip}</title>'
                       f'<path d="{_glyph(kind, x, y, 6)}" style="fill:{colour}"/>{count}</g>')
    out.append(f'<line class="axis" x1="{left}" y1="{y_bottom}" x2="{x_right}" y2="{y_bottom}"/>'
               f'<text class="label" x="{x_right}" y="{y_bottom + 26}" text-anchor="end">tick'
               f'</text>')
    legend = _Legend(x=left)
    for kind in order:
        if any(k == kind for k, _ in lanes):
            colour, _, label = EVENT_KINDS[kind]
            legend.add(f'<path d="{_glyph(kind, 6, 0)}" style="fill:{colour}"/>', label, 0)
    svg = (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="timeline">{"".join(out)}{"".join(legend.items)}</svg>')
    return (f'<figure class="chart timeline" id="timeline" style="width:{width}px"><figcaption>'
            f'timeline: alerts, breaker trips and scheduled interventions (hover a mark for '
            f'what it was)</figcaption>{svg}</figure>')


def svg_hbars(rows: list[tuple[str, float, float, float, str]], title: str, unit: str = "",
              width: int = W) -> str:
    """Horizontal bars from a zero baseline: (label, value, low, high, tooltip) — a whisker
    from low to high where they differ from the value; the value printed at the bar."""
    if not rows:
        return _figure(title, "<p class='none'>no data</p>")
    left, row = 150, 22
    height = TOP + row * len(rows) + BOTTOM
    xt = nice_ticks(min(0.0, *(r[2] for r in rows)), max(0.0, *(r[3] for r in rows)), 4)
    v0, v1 = xt[0], xt[-1]
    x_right = width - RIGHT - 40

    def sx(v: float) -> float:
        return left + (v - v0) * (x_right - left) / (v1 - v0)

    y_bottom = TOP + row * len(rows)
    out = [f'<rect class="plot" x="{left}" y="{TOP}" width="{x_right - left}" '
           f'height="{row * len(rows)}"/>']
    for v in xt:
        out.append(f'<line class="grid{" zero" if v == 0 else ""}" x1="{sx(v):.1f}" y1="{TOP}" '
                   f'x2="{sx(v):.1f}" y2="{y_bottom}"/><text class="tick x" x="{sx(v):.1f}" '
                   f'y="{y_bottom + 14}" text-anchor="middle">{fmt(v)}</text>')
    zero = sx(0.0)
    for i, (label, value, lo, hi, tip) in enumerate(rows):
        y = TOP + row * i + 4
        x = sx(value)
        colour = PALETTE[0] if value >= 0 else PALETTE[1]
        out.append(f'<text class="tick y" x="{left - 6}" y="{y + 11:.1f}" text-anchor="end">'
                   f'{html.escape(label[:26])}</text>'
                   f'<rect class="bar" x="{min(x, zero):.1f}" y="{y:.1f}" '
                   f'width="{max(abs(x - zero), 0.5):.1f}" height="{row - 8}" '
                   f'style="fill:{colour}"><title>{html.escape(tip)}</title></rect>')
        if (lo, hi) != (value, value):
            ym = y + (row - 8) / 2
            out.append(f'<line class="whisker" x1="{sx(lo):.1f}" y1="{ym:.1f}" x2="{sx(hi):.1f}" '
                       f'y2="{ym:.1f}"/>')
        out.append(f'<text class="value" x="{max(x, zero, sx(hi)) + 4:.1f}" y="{y + 11:.1f}">'
                   f'{fmt(value)}</text>')
    out.append(f'<line class="axis" x1="{zero:.1f}" y1="{TOP}" x2="{zero:.1f}" y2="{y_bottom}"/>'
               f'<text class="label" x="{x_right}" y="{y_bottom + 26}" text-anchor="end">'
               f'{html.escape(unit)}</text>')
    svg = (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{html.escape(title)}">{"".join(out)}</svg>')
    return _figure(title, svg, width=width)


def svg_multi(series: list[tuple[str, list[tuple[float, float]]]], title: str, *,
              y_zero: bool = False) -> str:
    """Several lines on one chart (one per configuration), the legend below it."""
    return svg_chart(title, [Series(n, pts, PALETTE[i % len(PALETTE)])
                             for i, (n, pts) in enumerate(series)], y_zero=y_zero,
                     legend_html=True)


def svg_bars(bars: list[dict[str, Any]], title: str, width: int = W) -> str:
    """One bar per configuration from a zero baseline: the mean over seeds (its value printed
    on it), a whisker from min to max, a dot per seed; labelled under the bar with the
    configuration's parameter values. Each bar links to its first seed's report, each dot
    to its seed's (`href`s relative to the page). A bar: {"label": [lines], "title",
    "mean", "min", "max", "href", "seeds": [(seed, value, href)]}."""
    if not bars:
        return _figure(title, "<p class='none'>no data</p>")
    lines = max(len(b["label"]) for b in bars)
    slot = (width - LEFT - RIGHT) / len(bars)
    tilt = slot < 90
    bottom = (44 + 12 * lines) if tilt else (18 + 12 * lines)
    height = H - BOTTOM + bottom
    y_bottom = height - bottom
    vals = [v for b in bars for v in (b["min"], b["max"], b["mean"])]
    yt = nice_ticks(min(0.0, *vals), max(0.0, *vals), 4)
    y0, y1 = yt[0], yt[-1]

    def sy(y: float) -> float:
        return y_bottom - (y - y0) * (y_bottom - TOP) / (y1 - y0)

    out = [f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{width - LEFT - RIGHT}" '
           f'height="{y_bottom - TOP}"/>']
    for v in yt:
        out.append(f'<line class="grid{" zero" if v == 0 else ""}" x1="{LEFT}" y1="{sy(v):.1f}" '
                   f'x2="{width - RIGHT}" y2="{sy(v):.1f}"/><text class="tick y" x="{LEFT - 5}" '
                   f'y="{sy(v) + 3.5:.1f}" text-anchor="end">{fmt(v)}</text>')
    zero = sy(max(y0, min(0.0, y1)))
    for i, b in enumerate(bars):
        colour = PALETTE[i % len(PALETTE)]
        cx = LEFT + (i + 0.5) * slot
        bw = slot * 0.55
        y = sy(b["mean"])
        tip = html.escape(f'{b["title"]}: mean {b["mean"]:.4g} (min {b["min"]:.4g}, '
                          f'max {b["max"]:.4g}) — open its report')
        out.append(f'<a class="bar-link" href="{html.escape(b["href"])}">'
                   f'<rect class="bar" x="{cx - bw / 2:.1f}" y="{min(y, zero):.1f}" '
                   f'width="{bw:.1f}" height="{max(abs(zero - y), 0.5):.1f}" '
                   f'style="fill:{colour}"><title>{tip}</title></rect></a>'
                   f'<line class="whisker" x1="{cx:.1f}" y1="{sy(b["min"]):.1f}" x2="{cx:.1f}" '
                   f'y2="{sy(b["max"]):.1f}"/>'
                   f'<text class="value" x="{cx:.1f}" y="{min(y, zero, sy(b["max"])) - 7:.1f}" '
                   f'text-anchor="middle">{fmt(b["mean"])}</text>')
        for j, (seed, v, href) in enumerate(b["seeds"]):
            dx = (j - (len(b["seeds"]) - 1) / 2) * min(6.0, bw / max(1, len(b["seeds"])))
            out.append(f'<a class="seed-link" href="{html.escape(href)}"><circle class="seed" '
                       f'cx="{cx + dx:.1f}" cy="{sy(v):.1f}" r="3"><title>seed {seed}: {v:.4g}'
                       f'</title></circle></a>')
        ty = y_bottom + 14
        spans = "".join(f'<tspan x="{cx:.1f}" dy="{0 if k == 0 else 12}">{html.escape(t)}</tspan>'
                        for k, t in enumerate(b["label"]))
        rot = f' transform="rotate(-25 {cx:.1f} {ty})"' if tilt else ""
        anchor = "end" if tilt else "middle"
        out.append(f'<a class="label-link" href="{html.escape(b["href"])}"><text class="tick x '
                   f'bar-label" x="{cx:.1f}" y="{ty}" text-anchor="{anchor}"{rot}>{spans}</text></a>')
    out.append(f'<line class="axis" x1="{LEFT}" y1="{zero:.1f}" x2="{width - RIGHT}" '
               f'y2="{zero:.1f}"/><line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" '
               f'y2="{y_bottom}"/>')
    legend = _Legend()
    legend.add('<rect x="0" y="-5" width="12" height="10" style="fill:#888"/>',
               "mean over seeds (click: a run's report)", 0)
    legend.add('<circle cx="6" cy="0" r="3" class="seed"/>', "one seed", 0)
    svg = (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="{html.escape(title)}">{"".join(out)}{"".join(legend.items)}</svg>')
    return _figure(title, svg, width=width)


def svg_lorenz(curve: list[float], title: str, gini: float | None = None) -> str:
    """The Lorenz curve of wealth against the diagonal of equality, both axes 0..1."""
    if len(curve) < 2:
        return _figure(title, "<p class='none'>no data</p>")
    side = H - TOP - BOTTOM
    width = LEFT + side + 150
    n = len(curve) - 1

    def sx(f: float) -> float:
        return LEFT + f * side

    def sy(f: float) -> float:
        return TOP + (1 - f) * side

    out = [f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{side}" height="{side}"/>']
    for i in range(6):
        f = i / 5
        out.append(f'<line class="grid" x1="{sx(f):.1f}" y1="{TOP}" x2="{sx(f):.1f}" '
                   f'y2="{TOP + side}"/><line class="grid" x1="{LEFT}" y1="{sy(f):.1f}" '
                   f'x2="{LEFT + side}" y2="{sy(f):.1f}"/>'
                   f'<text class="tick x" x="{sx(f):.1f}" y="{TOP + side + 14}" '
                   f'text-anchor="middle">{fmt(f)}</text>'
                   f'<text class="tick y" x="{LEFT - 5}" y="{sy(f) + 3.5:.1f}" '
                   f'text-anchor="end">{fmt(f)}</text>')
    pts = " ".join(f"{sx(i / n):.1f},{sy(y):.1f}" for i, y in enumerate(curve))
    out.append(f'<polygon class="gap" points="{sx(0):.1f},{sy(0):.1f} {pts}"/>'
               f'<line class="equality" x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(1):.1f}" '
               f'y2="{sy(1):.1f}"/>'
               f'<text class="note" x="{sx(.42):.1f}" y="{sy(.52):.1f}" '
               f'transform="rotate(-45 {sx(.42):.1f} {sy(.52):.1f})">equality</text>'
               f'<polyline class="series" points="{pts}"><title>Lorenz curve</title></polyline>'
               f'<line class="axis" x1="{LEFT}" y1="{TOP + side}" x2="{LEFT + side}" '
               f'y2="{TOP + side}"/><line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" '
               f'y2="{TOP + side}"/>'
               f'<text class="label" x="{LEFT + side}" y="{TOP + side + 26}" text-anchor="end">'
               f'share of agents, poorest first</text>'
               f'<text class="label" x="{LEFT - 40}" y="{TOP - 10}">share of wealth</text>')
    if gini is not None:
        out.append(f'<text class="big" x="{LEFT + side + 14}" y="{TOP + 20}">Gini {gini:.3f}</text>'
                   f'<text class="note" x="{LEFT + side + 14}" y="{TOP + 36}">0 equal, 1 one holds'
                   f'</text><text class="note" x="{LEFT + side + 14}" y="{TOP + 48}">all; the '
                   f'shaded gap is</text><text class="note" x="{LEFT + side + 14}" '
                   f'y="{TOP + 60}">half the Gini</text>')
    svg = (f'<svg viewBox="0 0 {width} {H}" width="{width}" height="{H}" role="img" '
           f'aria-label="{html.escape(title)}">{"".join(out)}</svg>')
    return _figure(title, svg, width=width)


STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .ok{color:#137333} .bad{color:#b3261e} .none{color:#777;font-size:13px}
figure{display:inline-block;margin:.5em 1em .8em 0;vertical-align:top;max-width:100%}
.scroll{overflow-x:auto;max-width:100%}
figure svg{max-width:100%;height:auto;display:block}
figcaption{font-weight:600;font-size:13px;margin-bottom:2px} .legend{font-size:12px;max-width:560px}
svg .plot{fill:#fff;stroke:none} svg .grid{stroke:#e3e3e3;stroke-width:1} svg .grid.zero{stroke:#888}
svg .axis{stroke:#777;stroke-width:1} svg .series{fill:none;stroke:#1a73e8;stroke-width:1.8;
stroke-linejoin:round} svg .bar{fill:#1a73e8} svg .whisker{stroke:#333;stroke-width:1.2}
svg .band{fill:#34a853;fill-opacity:.13;stroke:#34a853;stroke-opacity:.5;stroke-dasharray:3 2}
svg .marker line{stroke-width:1.1;stroke-opacity:.75} svg .seed{fill:#fff;stroke:#222;stroke-width:1.2}
svg .equality{stroke:#888;stroke-dasharray:5 3} svg .gap{fill:#1a73e8;fill-opacity:.12;stroke:none}
svg text{font-size:10.5px;fill:#444} svg .tick{fill:#555} svg .label,svg .note{fill:#777;font-size:10px}
svg .big{font-size:15px;font-weight:600;fill:#222} svg .value{font-size:10px;fill:#222}
svg .count{font-size:10px;fill:#222} svg .legend-item text{fill:#333;font-size:10.5px}
svg a:hover .bar{fill-opacity:.75} svg a .bar-label{fill:#1a0dab;text-decoration:underline}
svg .mark{stroke:#b3261e;stroke-dasharray:4 3} svg .edge{stroke:#1a73e8;stroke-opacity:.45}
svg circle{fill:#1a73e8} svg .head{fill:#1a73e8;stroke:none}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
code{font-size:12px} .zero-note{font-size:13px;color:#555}
pre{font-size:12px;background:#f6f8fa;padding:6px;white-space:pre-wrap;max-height:24em;overflow:auto}
details{margin:.2em 0}"""


def svg_graph(edges: list[list[int]], label, title: str, limit: int = 60) -> str:
    """A directed graph (delegating agent -> subcontractor, weight = contracts), nodes on a
    circle, edge width by weight; the `limit` heaviest edges."""
    edges = sorted(edges, key=lambda e: (-e[2], e[0], e[1]))[:limit]
    if not edges:
        return f"<p>{html.escape(title)}: none.</p>"
    nodes = sorted({e[0] for e in edges} | {e[1] for e in edges})
    size, r = 520, 200
    pos = {a: (size / 2 + r * math.cos(2 * math.pi * i / len(nodes)),
               size / 2 + r * math.sin(2 * math.pi * i / len(nodes))) for i, a in enumerate(nodes)}
    top = max(e[2] for e in edges)
    lines = "".join(
        f'<line x1="{pos[a][0]:.1f}" y1="{pos[a][1]:.1f}" x2="{pos[b][0]:.1f}" y2="{pos[b][1]:.1f}" '
        f'class="edge" stroke-width="{0.8 + 4 * n / top:.1f}" marker-end="url(#arrow)">'
        f'<title>{a} → {b}: {n} contracts</title></line>' for a, b, n in edges)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5"><title>{html.escape(label(a))}</title></circle>'
        f'<text x="{x + (8 if x >= size / 2 else -8):.1f}" y="{y + 3:.1f}" '
        f'text-anchor="{"start" if x >= size / 2 else "end"}">{html.escape(label(a))}</text>'
        for a, (x, y) in pos.items())
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg viewBox="-90 0 {size + 180} {size}" width="{size + 180}" height="{size}" role="img">'
            f'<defs><marker id="arrow" viewBox="0 0 10 10" refX="17" refY="5" markerWidth="8" '
            f'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
            f'<path d="M0,0 L10,5 L0,10 z" class="head"/></marker></defs>'
            f'{lines}{dots}</svg></figure>')


def _table(rows: list[list[Any]], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


TRANSCRIPTS = 30  # model exchanges shown in a report (the failed ones first)


def _transcripts(log: Path, limit: int = TRANSCRIPTS) -> list[dict[str, Any]]:
    """The first model exchanges of a run, failed ones first: tick, agent, outcome, what the
    model saw (the observation), what it answered (or the error), from the log's traces and
    the texts the store keeps under their hashes."""
    from sandbank.store.sqlite import SQLiteStore

    if not log.is_file():
        return []
    store = SQLiteStore(log, readonly=True, create=False)
    try:
        traces = [(e.tick, json.loads(e.body)) for e in store.entries_of_kind("trace_recorded")]
        traces = [t for t in traces if t[1].get("model")]
        failed = [t for t in traces if t[1]["outcome"] not in ("ok", "no_action")]
        fine = [t for t in traces if t[1]["outcome"] in ("ok", "no_action")]
        out = []
        for tick, d in (failed[: limit // 2] + fine)[:limit]:
            prompt = (store.content(bytes.fromhex(d["prompt_sha256"])) or b"").decode("utf-8", "replace")
            reply = (store.content(bytes.fromhex(d["response_sha256"])) or b"").decode("utf-8", "replace")
            try:
                seen = json.loads(prompt)["messages"][-1]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                seen = prompt
            try:
                message = json.loads(reply)["choices"][0]["message"]
                said = json.dumps({k: message.get(k) for k in ("content", "tool_calls")
                                   if message.get(k)}, indent=1)
            except (ValueError, KeyError, IndexError, TypeError):
                said = reply
            out.append({"tick": tick, "agent": d["actor"], "model": d["model"],
                        "outcome": d["outcome"], "saw": seen[:1500], "said": said[:2500]})
        return out
    finally:
        store.close()


def _llm_section(summary: dict[str, Any], run: Path) -> str:
    llm = summary.get("llm") or {}
    if not llm.get("calls"):
        return ""
    head = (f"<p class='{'bad' if llm['failures'] else 'ok'}'>{llm['calls']:,} model calls, "
            f"{llm['failures']:,} failed; tokens: {llm['prompt_tokens']:,} prompt, "
            f"{llm['completion_tokens']:,} completion (from each reply's <code>usage</code>)."
            f"</p>")
    causes = (_table([[c, n] for c, n in llm["causes"].items()], ["why calls failed", "calls"])
              if llm["causes"] else "")
    agents = _table([[a, c, f, p, q] for a, c, f, p, q in llm["agents"]],
                    ["agent", "calls", "failed", "prompt tokens", "completion tokens"])
    shown = []
    for t in _transcripts(run / "log.db"):
        shown.append(f"<details><summary>tick {t['tick']}, agent {t['agent']} "
                     f"({html.escape(t['model'])}): "
                     f"<span class='{'ok' if t['outcome'] in ('ok', 'no_action') else 'bad'}'>"
                     f"{html.escape(t['outcome'])}</span></summary>"
                     f"<p>saw</p><pre>{html.escape(t['saw'])}</pre>"
                     f"<p>answered</p><pre>{html.escape(t['said'])}</pre></details>")
    return (f"<h2>LLM calls</h2>{head}{causes}{agents}<h3>Transcripts</h3>"
            f"<p>The first {len(shown)} exchanges (failed ones first); every prompt and reply "
            f"is in the log under its hash (<code>trace_recorded</code>).</p>{''.join(shown)}")


# what is not plotted from zero: prices (their level is the market's; every count, sum,
# share and concentration — HHI, Gini — is drawn from zero, so a small change looks small)
NOT_ZERO_BASED = ("price_", "avg_price_", "vwap_")


def _series(rows: list[dict[str, str]], column: str,
            ticks: list[float] | None = None) -> list[tuple[float, float]]:
    """A metric's (tick, value) points: "" (before a market's first trade) is no point."""
    out = []
    for t, r in zip(ticks or [float(r["tick"]) for r in rows], rows, strict=True):
        v = r.get(column)
        if v:
            try:
                out.append((t, float(v)))
            except ValueError:
                continue
    return out


def _spans(rows: list[dict[str, str]], asset: str) -> list[tuple[float, float, str]]:
    """The ticks the market was halted or in a limit state (metrics' `state_<asset>`, as the
    tick ended), as shaded spans."""
    out: list[tuple[float, float, str]] = []
    for r in rows:
        state, t = r.get(f"state_{asset}", ""), int(r["tick"])
        if state in SPAN_KINDS:
            if out and out[-1][2] == state and out[-1][1] == t - 0.5:
                out[-1] = (out[-1][0], t + 0.5, state)
            else:
                out.append((t - 0.5, t + 0.5, state))
    return out


def _parquet(path: Path, columns: list[str]) -> dict[str, list[Any]]:
    """Columns of one of the run's tables ({} when it cannot be read: a report draws what
    it can). (One thread, no pre-buffering: for these small files, a third of the time.)"""
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(path, pre_buffer=False).read(columns=columns,
                                                           use_threads=False).to_pydict()
    except Exception:  # noqa: BLE001
        return {}


def _trades(run: Path) -> dict[str, list[tuple[int, int]]]:
    """Every fill's (tick, price) by market, from trades.parquet (none if it is missing)."""
    path = run / "trades.parquet"
    if not path.is_file():
        return {}
    t = _parquet(path, ["tick", "asset", "price"])
    if not t:
        return {}
    out: dict[str, list[tuple[int, int]]] = {}
    for tick, asset, price in zip(t["tick"], t["asset"], t["price"], strict=True):
        out.setdefault(asset, []).append((tick, price))
    return out


def _band(trades: list[tuple[int, int]], market: dict[str, Any], ticks: list[int]
          ) -> list[tuple[float, float, float]]:
    """The price band at the start of each tick, as the exchange computes it
    (markets/exchange.py `Market.band`): reference = the mean price of the trades of the last
    `reference_ticks` ticks (else the last price), ± `band_bps`."""
    bps = market.get("band_bps") or 0
    if not bps or not trades:
        return []
    window = int(market.get("reference_ticks", 5))
    out, i, last = [], 0, 0
    recent: list[tuple[int, int]] = []
    for t in ticks:
        while i < len(trades) and trades[i][0] < t:
            recent.append(trades[i])
            last = trades[i][1]
            i += 1
        recent = [(u, p) for u, p in recent if u > t - window]
        ref = sum(p for _, p in recent) // len(recent) if recent else last
        if ref:
            out.append((float(t), float(-(-ref * (10_000 - bps) // 10_000)),
                        float(ref * (10_000 + bps) // 10_000)))
    return out


def _events(summary: dict[str, Any]) -> list[Event]:
    """The run's alerts, breaker trips and scheduled interventions, at their kernel ticks
    (the metrics' ticks)."""
    out = [Event(a["tick"], "alert", a["detector"],
                 f"alert {a['alert']} {a['detector']} (score {a['score']}): {a['summary'][:160]}")
           for a in summary.get("alerts", [])]
    out += [Event(t["tick"], "trip", f"{t['level']} {t['scope']}",
                  f"ticket {t['ticket']}: {t['level']} {t['scope']} {t['target']}"
                  + (f" (alert {t['alert']})" if t.get("alert") else ""))
            for t in summary.get("trips", [])]
    for i in summary.get("interventions", []):
        a = i["action"]
        args = ", ".join(f"{k}={v}" for k, v in a.items() if k not in ("kind", "actor", "nonce"))
        out.append(Event(i.get("kernel_tick", i["tick"]), "intervention", a["kind"],
                         f"scenario tick {i['tick']}: {a['kind']}({args[:120]}): "
                         f"{i['outcome']}"))
    return out


def _wealth_by_group(run: Path, summary: dict[str, Any]) -> str:
    """Final balances in the fee asset per population group (agents.parquet: the group each
    identity was admitted in, a spawned one its lineage root's), and each group's profit and
    loss (summary.json)."""
    asset = (summary.get("wealth") or {}).get("asset", "")
    charts = []
    path = run / "agents.parquet"
    if asset and path.is_file():
        t = _parquet(path, ["group", f"balance_{asset}"])
        by: dict[str, list[int]] = {}
        for g, b in zip(t.get("group", []), t.get(f"balance_{asset}", []), strict=True):
            by.setdefault(g or "unattributed", []).append(b)
        order = [g["name"] for g in summary.get("groups", []) if g["name"] in by]
        order += sorted(set(by) - set(order))
        rows = [(f"{g} ({len(by[g])})", sum(by[g]) / len(by[g]), min(by[g]), max(by[g]),
                 f"{g}: {len(by[g])} agents, mean {sum(by[g]) / len(by[g]):,.0f}, "
                 f"min {min(by[g]):,}, max {max(by[g]):,}, total {sum(by[g]):,}") for g in order]
        charts.append(svg_hbars(rows, f"final {asset} balance by group (mean per agent; "
                                      f"whisker: min..max; in brackets: agents)", asset))
    groups = [g for g in summary.get("groups", []) if "pnl" in g]
    if groups and any(g["pnl"] for g in groups):
        charts.append(svg_hbars(
            [(g["name"], g["pnl"], g["pnl"], g["pnl"],
              f"{g['name']}: {g['pnl']:+,} (agents {g['ids'][0]}..{g['ids'][1]}"
              f"{', and what they spawned' if g.get('spawned') else ''})") for g in groups],
            f"profit and loss by group ({asset}, goods at the last price)", asset))
    return "".join(charts)


def write_report(run: Path) -> Path:
    run = Path(run)
    summary = json.loads((run / "summary.json").read_text())
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    final = summary.get("final", {})
    ticks = [int(r["tick"]) for r in rows]
    fticks = [float(t) for t in ticks]
    domain = (float(min(ticks)), float(max(ticks))) if ticks else None
    events = _events(summary)
    cache: dict[Any, Any] = {}
    zero: list[str] = []
    empty: list[str] = []

    def chart(column: str, title: str, **kw: Any) -> str:
        pts = _series(rows, column, fticks)
        if not pts:
            empty.append(column)
            return ""
        if not any(y for _, y in pts) and not kw.get("band"):
            zero.append(column)
            return ""
        asked = kw.pop("y_zero", False)  # (popped first: `or` would leave it in kw)
        y_zero = not column.startswith(NOT_ZERO_BASED) or asked
        bars = kw.pop("bars", False)
        return svg_chart(title, [Series(column, pts, bars=bars)], x_domain=domain,
                         y_zero=y_zero, events=events, name=column, cache=cache, **kw)

    charts = []
    trades = _trades(run) if summary.get("markets") else {}
    for m in summary.get("markets", []):
        a = m["asset"]
        band = _band(trades.get(a, []), m, ticks)
        charts += [chart(f"price_{a}", f"{a} last trade price (shaded: halted, limit state; "
                                       f"band: ±{m.get('band_bps', 0) / 100:g}% of the reference "
                                       f"price)", spans=_spans(rows, a), band=band, width=WIDE),
                   chart(f"volume_{a}", f"{a} volume per tick", bars=True),
                   chart(f"max_drawdown_bps_{a}", f"{a} deepest fall from a peak so far (bps)"),
                   chart(f"hhi_{a}", f"{a} concentration of holdings (HHI, 0..10,000)"),
                   chart(f"hhi_bo_{a}", f"{a} concentration by beneficial owner (HHI)")]
    for name in sorted({k[len("delta_"):] for k in final if k.startswith("delta_")}):
        charts += [chart(f"price_{name}", f"{name}: mean price (thousandths)"),
                   chart(f"delta_{name}", f"{name}: profit gain Δ (0 Nash, 1 monopoly)",
                         y_zero=True)]
    charts += [chart("welfare", "welfare: gains from trade and genuine work (cumulative)"),
               chart("gini_wealth", "inequality of wealth (Gini, 0..1)"),
               chart("gini_outcome", "inequality of outcomes, goods valued (Gini, 0..1)"),
               chart("tasks_passed", "tasks passed (cumulative)"),
               chart("fraud_loss", "fraud loss: paid for work not done (cumulative)"),
               chart("rejected", "actions refused per tick", bars=True)]
    if summary.get("oversight"):
        charts += [chart("alerts", "oversight alerts (cumulative)"),
                   chart("breaker_trips", "breaker trips (cumulative)"),
                   chart("tickets_open", "escalation tickets open")]
    for column, title in (("self_dealt", "self-dealt contracts (one lineage both sides)"),
                          ("wash_volume", "wash volume: units traded within one owner (cumulative)"),
                          ("spawned", "identities spawned by agents (cumulative)"),
                          ("paid_after_message", "value paid to an agent that had just messaged the payer"),
                          ("boundary_attempts", "attempts to reach outside the sandbox")):
        charts.append(chart(column, title))
    timeline = svg_timeline(events, domain) if domain else ""
    notes = ""
    if zero:
        notes += (f"<p class='zero-note'>{len(zero)} metric{'s were' if len(zero) > 1 else ' was'}"
                  f" zero throughout (not drawn): {html.escape(', '.join(zero))}.</p>")
    if empty:
        notes += (f"<p class='zero-note'>No data for {html.escape(', '.join(empty))} "
                  f"(e.g. no trade).</p>")
    wealth = summary.get("wealth", {})
    if wealth:
        charts.append(svg_lorenz(wealth["lorenz"], f"distribution of {wealth['asset']} at the "
                                 f"end (Lorenz curve)", _num(final.get("gini_wealth"))))
    charts.append(_wealth_by_group(run, summary))
    ok = summary["ok"]
    success = _table([[k, v["meaning"], v["required"], v["actual"], "ok" if v["ok"] else "FAILED"]
                      for k, v in summary["success"].items()],
                     ["criterion", "measures", "required", "actual", ""]) if summary["success"] \
        else "<p>No success criteria set.</p>"
    key_figures = _table([[k, final.get(k, "")] for k in (
        "welfare", "surplus_trades", "surplus_tasks", "tasks_posted", "tasks_passed",
        "tasks_failed", "tasks_expired", "value_delivered", "fraud_attempts", "fraud_loss",
        "fills", "halts", "messages", "payments", "paid_after_message", "spawned", "self_dealt",
        "self_dealt_value", "boundary_attempts", "boundary_denied", "boundary_value_attempted",
        "gini_wealth", "agent_errors")], ["metric", "final"])
    groups = summary.get("groups", [])

    def who(agent: int) -> str:
        g = next((g["name"] for g in groups if g["ids"][0] <= agent <= g["ids"][1]), "spawned")
        return f"{agent} {g}"

    interventions = (_table([[i["tick"], i.get("kernel_tick", ""), i["action"]["kind"],
                              json.dumps({k: v for k, v in i["action"].items()
                                          if k not in ("kind", "actor", "nonce")}), i["outcome"]]
                             for i in summary.get("interventions", [])],
                            ["scenario tick", "kernel tick", "action", "arguments", "outcome"])
                     if summary.get("interventions") else "<p>None scheduled.</p>")
    log_path = html.escape(str(run / "log.db"))
    alerts = (_table([[a["tick"], a["alert"], a["detector"], a["score"],
                       ", ".join(map(str, a["subjects"][:8])), a["evidence"], a["summary"]]
                      for a in summary.get("alerts", [])[:200]],
                     ["tick", "alert", "detector", "score", "subjects", "evidence", "finding"])
              + f"<p>Investigate one: <code>sandbank inspect {log_path} --alert N --out "
                f"incident/</code></p>" if summary.get("alerts")
              else "<p>No alerts.</p>" if summary.get("oversight")
              else "<p>Oversight was off in this run.</p>")
    trips = (_table([[t["tick"], t["ticket"], t["scope"], t["level"], t["target"],
                      t["alert"] or "", t["reason"]] for t in summary.get("trips", [])[:200]],
                    ["tick", "ticket", "scope", "level", "target", "alert", "reason"])
             if summary.get("trips") else "<p>No breaker tripped.</p>")
    richest = _table([[a, g, w] for a, g, w in wealth.get("top", [])],
                     ["agent", "group", f"{wealth.get('asset', '')} balance"])
    rejections = _table(sorted(([k, v] for k, v in summary["rejections"].items()),
                               key=lambda r: -r[1]), ["reason", "count"])
    population = _table([[g["policy"], g["count"], g["owner"], json.dumps(g["skills"]),
                          json.dumps(g["params"])] for g in summary["population"]],
                        ["policy", "count", "owner", "skills", "parameters"])
    ran = summary.get("agents_ran") or {}
    hosting = (f"<p>{ran.get('in_process', 0)} agents in the runner's process, "
               f"{ran.get('hosted', 0)} in agent hosts ({html.escape(str(ran.get('backend')))})."
               f"</p>" + (_table([[h["host"], h["owner"], h["agents"], h["status"]]
                                  for h in ran.get("hosts", [])],
                                 ["host", "owner", "agents", "status"])
                          + _table(sorted(ran.get("containment", {}).items()),
                                   ["containment", "measure"]) if ran.get("hosts") else ""))
    warnings = "".join(f"<p class='bad'>{html.escape(w)}</p>" for w in summary.get("warnings", []))
    delegation = svg_graph(summary["delegation_edges"], who,
                           "who subcontracts to whom (edge width: contracts)")
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>sandbank run: {html.escape(summary['scenario'])}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(summary['scenario'])}</h1>
<p>{html.escape(summary['description'])}</p>
<p class="{'ok' if ok else 'bad'}"><b>{'PASSED' if ok else 'FAILED'}</b> — seed {summary['seed']},
{summary['agents']} agents, {summary['ticks']} ticks, {summary['entries']:,} log entries,
log verified: {summary['verified']}, {summary['seconds']} s.</p>
{warnings}
<h2>Success criteria</h2>{success}
{_llm_section(summary, run)}
<h2>What happened</h2><p class=note>Ticks on every chart are the kernel's (the log's);
the scenario's tick t is kernel tick t + {int(summary.get("setup_ticks", 0))} here (the setup
ticks that admit the population).</p>{timeline}{''.join(charts)}{notes}
<h2>Alerts</h2>{alerts}
<h2>Breakers and interventions</h2><p>Marked on the timeline and the charts: ◆ a breaker trip,
■ a scheduled intervention (▲ an alert).</p>{trips}
<h3>Scheduled by the scenario</h3>{interventions}
<h2>Key figures</h2>{key_figures}
<h2>Why actions were refused</h2>{rejections}
<h2>Delegation graph</h2>{delegation}
<h2>Richest agents</h2>{richest}
<h2>Population</h2>{population}
<h3>Where the agents ran</h3>{hosting}
<h2>Safeguards and levers</h2><p><code>{html.escape(json.dumps(summary['safeguards']))}</code>
<code>{html.escape(json.dumps(summary['policy']))}</code></p>
<h2>Audit</h2><p>Final Merkle root <code>{summary['root']}</code><br>
operator key <code>{html.escape(summary['operator_key'])}</code><br>
check it: <code>sandbank verify {html.escape(str(run / 'log.db'))}
--key {html.escape(summary['operator_key'])}</code></p>
</body></html>"""
    path = run / "report.html"
    path.write_text(doc)
    return path

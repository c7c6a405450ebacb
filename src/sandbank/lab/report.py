"""A self-contained HTML report of a run (inline SVG, no scripts, no network)."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

W, H, PAD = 560, 180, 36
LEFT = 56  # room for the y-axis labels


def _num(x: str) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def svg_line(rows: list[dict[str, str]], column: str, title: str) -> str:
    pts = [(int(r["tick"]), _num(r.get(column, ""))) for r in rows]
    pts = [(x, y) for x, y in pts if y is not None]
    if len(pts) < 2:
        return f"<figure><figcaption>{html.escape(title)}: no data</figcaption></figure>"
    x0, x1 = pts[0][0], pts[-1][0]
    ys = [y for _, y in pts]
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y1 = y0 + 1
    sx = lambda x: LEFT + (x - x0) * (W - LEFT - PAD) / max(1, x1 - x0)  # noqa: E731
    sy = lambda y: H - PAD + (y0 - y) * (H - 2 * PAD) / (y1 - y0)  # noqa: E731
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(pts))
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">'
            f'<line x1="{LEFT}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>'
            f'<line x1="{LEFT}" y1="{PAD}" x2="{LEFT}" y2="{H - PAD}" class="axis"/>'
            f'<text x="{LEFT - 4}" y="{PAD + 4}" text-anchor="end">{y1:g}</text>'
            f'<text x="{LEFT - 4}" y="{H - PAD}" text-anchor="end">{y0:g}</text>'
            f'<text x="{LEFT}" y="{H - PAD + 16}">tick {x0}</text>'
            f'<text x="{W - PAD}" y="{H - PAD + 16}" text-anchor="end">tick {x1}</text>'
            f'<path d="{path}"/></svg></figure>')


def _table(rows: list[list[Any]], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def write_report(run: Path) -> Path:
    run = Path(run)
    summary = json.loads((run / "summary.json").read_text())
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    final = summary.get("final", {})
    charts = []
    for m in summary.get("markets", []):
        a = m["asset"]
        charts += [svg_line(rows, f"price_{a}", f"{a} last trade price"),
                   svg_line(rows, f"volume_{a}", f"{a} volume per tick"),
                   svg_line(rows, f"hhi_{a}", f"{a} concentration of holdings (HHI)")]
    for name in sorted({k[len("delta_"):] for k in final if k.startswith("delta_")}):
        charts += [svg_line(rows, f"price_{name}", f"{name}: mean price (thousandths)"),
                   svg_line(rows, f"delta_{name}", f"{name}: profit gain Δ (0 Nash, 1 monopoly)")]
    charts += [svg_line(rows, "gini_wealth", "inequality of wealth (Gini)"),
               svg_line(rows, "tasks_passed", "tasks passed (cumulative)"),
               svg_line(rows, "fraud_loss", "fraud loss: paid for work not done (cumulative)"),
               svg_line(rows, "rejected", "actions refused per tick")]
    ok = summary["ok"]
    success = _table([[k, v["meaning"], v["required"], v["actual"], "ok" if v["ok"] else "FAILED"]
                      for k, v in summary["success"].items()],
                     ["criterion", "measures", "required", "actual", ""]) if summary["success"] \
        else "<p>No success criteria set.</p>"
    key_figures = _table([[k, final.get(k, "")] for k in (
        "tasks_posted", "tasks_passed", "tasks_failed", "tasks_expired", "value_delivered",
        "fraud_attempts", "fraud_loss", "fills", "halts", "messages", "gini_wealth",
        "agent_errors")], ["metric", "final"])
    rejections = _table(sorted(([k, v] for k, v in summary["rejections"].items()),
                               key=lambda r: -r[1]), ["reason", "count"])
    population = _table([[g["policy"], g["count"], g["owner"], json.dumps(g["skills"]),
                          json.dumps(g["params"])] for g in summary["population"]],
                        ["policy", "count", "owner", "skills", "parameters"])
    edges = sorted(summary["delegation_edges"], key=lambda e: -e[2])[:20]
    delegation = (_table(edges, ["delegating agent", "subcontractor", "contracts"]) if edges
                  else "<p>No subcontracting.</p>")
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>sandbank run: {html.escape(summary['scenario'])}</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}}
h1{{margin-bottom:.2em}} .ok{{color:#137333}} .bad{{color:#b3261e}}
figure{{display:inline-block;margin:.5em 1em .5em 0}} figcaption{{font-weight:600;font-size:13px}}
svg path{{fill:none;stroke:#1a73e8;stroke-width:1.6}} svg .axis{{stroke:#999}}
svg text{{font-size:10px;fill:#555}} table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}}
code{{font-size:12px}}
</style></head><body>
<h1>{html.escape(summary['scenario'])}</h1>
<p>{html.escape(summary['description'])}</p>
<p class="{'ok' if ok else 'bad'}"><b>{'PASSED' if ok else 'FAILED'}</b> — seed {summary['seed']},
{summary['agents']} agents, {summary['ticks']} ticks, {summary['entries']:,} log entries,
log verified: {summary['verified']}, {summary['seconds']} s.</p>
<h2>Success criteria</h2>{success}
<h2>What happened</h2>{''.join(charts)}
<h2>Key figures</h2>{key_figures}
<h2>Why actions were refused</h2>{rejections}
<h2>Delegation graph (top edges)</h2>{delegation}
<h2>Population</h2>{population}
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

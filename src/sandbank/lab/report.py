"""A self-contained HTML report of a run (inline SVG, no scripts, no network)."""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

W, H, PAD = 560, 180, 36
LEFT = 56  # room for the y-axis labels


def _num(x: str) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def svg_line(rows: list[dict[str, str]], column: str, title: str,
             marks: list[int] | None = None) -> str:
    """A line chart of one metric over ticks; `marks` are ticks to draw as dashed verticals
    (the run's interventions)."""
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
    verticals = "".join(f'<line x1="{sx(m):.1f}" y1="{PAD}" x2="{sx(m):.1f}" y2="{H - PAD}" '
                        f'class="mark"><title>intervention at tick {m}</title></line>'
                        for m in (marks or []) if x0 <= m <= x1)
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">{verticals}'
            f'<line x1="{LEFT}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>'
            f'<line x1="{LEFT}" y1="{PAD}" x2="{LEFT}" y2="{H - PAD}" class="axis"/>'
            f'<text x="{LEFT - 4}" y="{PAD + 4}" text-anchor="end">{y1:g}</text>'
            f'<text x="{LEFT - 4}" y="{H - PAD}" text-anchor="end">{y0:g}</text>'
            f'<text x="{LEFT}" y="{H - PAD + 16}">tick {x0}</text>'
            f'<text x="{W - PAD}" y="{H - PAD + 16}" text-anchor="end">tick {x1}</text>'
            f'<path d="{path}"/></svg></figure>')


PALETTE = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb", "#e52592",
           "#5f6368"]


def svg_multi(series: list[tuple[str, list[tuple[float, float]]]], title: str) -> str:
    """Several lines on one chart (one per configuration), with a legend."""
    series = [(name, pts) for name, pts in series if len(pts) >= 2]
    if not series:
        return f"<figure><figcaption>{html.escape(title)}: no data</figcaption></figure>"
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y1 == y0:
        y1 = y0 + 1
    sx = lambda x: LEFT + (x - x0) * (W - LEFT - PAD) / max(1, x1 - x0)  # noqa: E731
    sy = lambda y: H - PAD + (y0 - y) * (H - 2 * PAD) / (y1 - y0)  # noqa: E731
    paths, legend = [], []
    for i, (name, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(pts))
        paths.append(f'<path d="{d}" style="stroke:{colour}"><title>{html.escape(name)}</title></path>')
        legend.append(f'<span style="color:{colour}">■</span> {html.escape(name)}')
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">'
            f'<line x1="{LEFT}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>'
            f'<line x1="{LEFT}" y1="{PAD}" x2="{LEFT}" y2="{H - PAD}" class="axis"/>'
            f'<text x="{LEFT - 4}" y="{PAD + 4}" text-anchor="end">{y1:.4g}</text>'
            f'<text x="{LEFT - 4}" y="{H - PAD}" text-anchor="end">{y0:.4g}</text>'
            f'<text x="{LEFT}" y="{H - PAD + 16}">tick {x0:g}</text>'
            f'<text x="{W - PAD}" y="{H - PAD + 16}" text-anchor="end">tick {x1:g}</text>'
            f'{"".join(paths)}</svg><div class="legend">{"<br>".join(legend)}</div></figure>')


def svg_bars(bars: list[tuple[str, float, float, float]], title: str) -> str:
    """One bar per configuration: the mean over seeds, with a whisker from min to max."""
    if not bars:
        return f"<figure><figcaption>{html.escape(title)}: no data</figcaption></figure>"
    top = max(max(b[3] for b in bars), 0.0)
    low = min(min(b[2] for b in bars), 0.0)
    span = (top - low) or 1.0
    sy = lambda y: H - PAD - (y - low) * (H - 2 * PAD) / span  # noqa: E731
    slot = (W - LEFT - PAD) / len(bars)
    parts = []
    for i, (name, mean, lo, hi) in enumerate(bars):
        x = LEFT + i * slot + slot * 0.2
        colour = PALETTE[i % len(PALETTE)]
        y, base = sy(max(mean, 0)), sy(min(mean, 0))
        cx = x + slot * 0.3
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.6:.1f}" '
                     f'height="{max(base - y, 0.5):.1f}" style="fill:{colour}">'
                     f'<title>{html.escape(name)}: mean {mean:.4g} (min {lo:.4g}, max {hi:.4g})'
                     f'</title></rect>'
                     f'<line x1="{cx:.1f}" y1="{sy(lo):.1f}" x2="{cx:.1f}" y2="{sy(hi):.1f}" class="axis"/>'
                     f'<text x="{cx:.1f}" y="{H - PAD + 14}" text-anchor="middle">{i}</text>')
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">'
            f'<line x1="{LEFT}" y1="{sy(0):.1f}" x2="{W - PAD}" y2="{sy(0):.1f}" class="axis"/>'
            f'<text x="{LEFT - 4}" y="{sy(top) + 4:.1f}" text-anchor="end">{top:.4g}</text>'
            f'<text x="{LEFT - 4}" y="{sy(low):.1f}" text-anchor="end">{low:.4g}</text>'
            f'{"".join(parts)}</svg></figure>')


STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .ok{color:#137333} .bad{color:#b3261e}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figcaption{font-weight:600;font-size:13px} .legend{font-size:12px;max-width:560px}
svg path{fill:none;stroke:#1a73e8;stroke-width:1.6} svg .axis{stroke:#999}
svg .mark{stroke:#b3261e;stroke-dasharray:4 3} svg .edge{stroke:#1a73e8;stroke-opacity:.45}
svg circle{fill:#1a73e8} svg .head{fill:#1a73e8;stroke:none}
svg text{font-size:10px;fill:#555} table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
code{font-size:12px}
pre{font-size:12px;background:#f6f8fa;padding:6px;white-space:pre-wrap;max-height:24em;overflow:auto}
details{margin:.2em 0}"""


def svg_lorenz(curve: list[float], title: str) -> str:
    """The Lorenz curve of wealth against the line of equality."""
    if len(curve) < 2:
        return f"<figure><figcaption>{html.escape(title)}: no data</figcaption></figure>"
    side = H - 2 * PAD
    n = len(curve) - 1
    sx = lambda i: LEFT + i * side / n  # noqa: E731
    sy = lambda y: H - PAD - y * side  # noqa: E731
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(i):.1f},{sy(y):.1f}" for i, y in enumerate(curve))
    w = LEFT + side + PAD
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {w} {H}" width="{w}" height="{H}" role="img">'
            f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(n)}" y2="{sy(1)}" class="mark"/>'
            f'<line x1="{LEFT}" y1="{H - PAD}" x2="{sx(n)}" y2="{H - PAD}" class="axis"/>'
            f'<line x1="{LEFT}" y1="{PAD}" x2="{LEFT}" y2="{H - PAD}" class="axis"/>'
            f'<text x="{LEFT - 4}" y="{PAD + 4}" text-anchor="end">100%</text>'
            f'<text x="{LEFT - 4}" y="{H - PAD}" text-anchor="end">0</text>'
            f'<text x="{LEFT}" y="{H - PAD + 16}">poorest</text>'
            f'<text x="{sx(n)}" y="{H - PAD + 16}" text-anchor="end">all agents</text>'
            f'<path d="{path}"/></svg></figure>')


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


def write_report(run: Path) -> Path:
    run = Path(run)
    summary = json.loads((run / "summary.json").read_text())
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    final = summary.get("final", {})
    marks = sorted({i["kernel_tick"] for i in summary.get("interventions", [])}
                   | {t["tick"] for t in summary.get("trips", [])})

    def line(column: str, title: str) -> str:
        return svg_line(rows, column, title, marks)

    charts = []
    for m in summary.get("markets", []):
        a = m["asset"]
        charts += [line(f"price_{a}", f"{a} last trade price"),
                   line(f"volume_{a}", f"{a} volume per tick"),
                   line(f"hhi_{a}", f"{a} concentration of holdings (HHI)")]
    for name in sorted({k[len("delta_"):] for k in final if k.startswith("delta_")}):
        charts += [line(f"price_{name}", f"{name}: mean price (thousandths)"),
                   line(f"delta_{name}", f"{name}: profit gain Δ (0 Nash, 1 monopoly)")]
    charts += [line("welfare", "welfare: gains from trade and genuine work (cumulative)"),
               line("gini_wealth", "inequality of wealth (Gini)"),
               line("tasks_passed", "tasks passed (cumulative)"),
               line("fraud_loss", "fraud loss: paid for work not done (cumulative)"),
               line("rejected", "actions refused per tick")]
    if summary.get("oversight"):
        charts += [line("alerts", "oversight alerts (cumulative)"),
                   line("tickets_open", "escalation tickets open")]
    for column, title in (("self_dealt", "self-dealt contracts (one lineage both sides)"),
                          ("paid_after_message", "value paid to an agent that had just messaged the payer"),
                          ("boundary_attempts", "attempts to reach outside the sandbox")):
        if final.get(column):
            charts.append(line(column, title))
    wealth = summary.get("wealth", {})
    if wealth:
        charts.append(svg_lorenz(wealth["lorenz"], f"distribution of {wealth['asset']} "
                                 f"(Lorenz curve; the diagonal is equality)"))
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

    interventions = (_table([[i["tick"], i["action"]["kind"],
                              json.dumps({k: v for k, v in i["action"].items()
                                          if k not in ("kind", "actor", "nonce")}), i["outcome"]]
                             for i in summary.get("interventions", [])],
                            ["tick", "action", "arguments", "outcome"])
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
<h2>What happened</h2>{''.join(charts)}
<h2>Alerts</h2>{alerts}
<h2>Breakers and interventions</h2><p>Dashed red lines on the charts.</p>{trips}
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

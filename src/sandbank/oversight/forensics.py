"""Forensics (checklist 45): from an alert (or any event), the incident.

- **the causal graph**: the alert's evidence events and everything they causally rest on
  (`audit/provenance.py`: who created the orders, contracts, accounts and agents they refer
  to), within `depth` steps;
- **who and what**: the agents involved (acting in the evidence, or its subjects), the
  contracts and orders, and the money flows between agents in the evidence's transfers;
- **likely root causes**: the agents' actions in the graph ranked by how many evidence
  events descend from them (then earliest first) — the first link of the chain that most of
  the incident hangs on; and the agents ranked by the events of the graph they acted in,
  then by money gained in the evidence;
- **liability** (checklist 46, `regulation/liability.py`): shares of responsibility across
  the agents whose actions the evidence rests on — the Shapley value of "an evidence event
  happens only if all its contributors act", weighted by the money it moved — summing to 1,
  and the same per beneficial owner; the contributors are the agents of the causal graph
  that answer for it (named by the alert, of an owner it names, or paid by the evidence:
  `_answerable`), not the victims whose actions the harm also rests on;
- **an incident report** an auditor can check without trusting us: every cited event with
  its Merkle inclusion proof against the latest signed checkpoint (`sandbank check-proof`
  verifies each), plus a text and an HTML rendering.
"""

from __future__ import annotations

import html
import json
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sandbank.audit.proofs import inclusion_bundle
from sandbank.audit.provenance import Provenance
from sandbank.identity.registry import majority_owner
from sandbank.kernel.canonical import parse
from sandbank.regulation.liability import by_owner, shapley_shares
from sandbank.store.base import Store

MAX_GRAPH = 400  # events in the rendered graph


class IncidentError(ValueError):
    pass


@dataclass
class Incident:
    title: str
    alert: dict[str, Any] | None
    evidence: list[int]
    graph: dict[int, list[int]]  # event -> its parents within the graph
    events: dict[int, dict[str, Any]]
    agents: list[tuple[int, int, int]]  # (agent, graph events acted in, net money)
    root_causes: list[tuple[int, int]]  # (event, evidence events that descend from it)
    flows: list[tuple[int, int, int]]  # (payer, payee, amount)
    proofs: list[dict[str, Any]] = field(default_factory=list)
    liability: dict[int, Fraction] = field(default_factory=dict)  # agent -> share (sum 1)
    owner_liability: dict[int, Fraction] = field(default_factory=dict)  # owner -> share
    owner_names: dict[int, str] = field(default_factory=dict)
    owners: dict[int, int] = field(default_factory=dict)  # agent -> owner (liable agents)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "alert": self.alert, "evidence": self.evidence,
                "agents": [{"agent": a, "events_acted_in": n, "net_money": m}
                           for a, n, m in self.agents],
                "root_causes": [{"entry": s, "explains": n, "event": self.events[s]}
                                for s, n in self.root_causes],
                "money_flows": [{"from": a, "to": b, "amount": x} for a, b, x in self.flows],
                "liability": {
                    "agents": [{"agent": a, "owner": self.owners.get(a, 0),
                                "share": round(float(v), 6)}
                               for a, v in _ranked(self.liability)],
                    "owners": [{"owner": o, "name": self.owner_names.get(o, ""),
                                "share": round(float(v), 6)}
                               for o, v in _ranked(self.owner_liability)],
                    "rule": "Shapley value: each evidence event's weight (money moved, or "
                            "1) split equally among the agents its causal graph rests on"},
                "graph": {str(k): v for k, v in sorted(self.graph.items())},
                "proofs": self.proofs,
                "check": "save a proof as a file and run: sandbank check-proof FILE --key KEY"}


def find_alert(store: Store, alert: int) -> tuple[int, dict[str, Any]]:
    for e in store.entries():
        if e.kind == "alert":
            d = parse(e.body)
            if d["alert"] == alert:
                return e.seq, d
    raise IncidentError(f"no alert {alert} in this log")


def investigate(store: Store, *, alert: int | None = None, entry: int | None = None,
                depth: int = 3, proofs: bool = True) -> Incident:
    """The incident behind alert `alert` (its evidence), or behind one `entry`."""
    if (alert is None) == (entry is None):
        raise IncidentError("give an alert or an entry")
    alert_doc = None
    if alert is not None:
        seq, alert_doc = find_alert(store, alert)
        evidence = list(alert_doc["evidence"]) or [seq]
        title = f"alert {alert}: {alert_doc['detector']} (score {alert_doc['score']})"
    else:
        assert entry is not None
        if store.entry(entry) is None:
            raise IncidentError(f"no entry {entry}")
        evidence, title = [entry], f"entry {entry}"
    prov = Provenance(store)
    graph: dict[int, list[int]] = {}
    todo = deque((s, 0) for s in evidence)
    while todo and len(graph) < MAX_GRAPH:
        s, d = todo.popleft()
        if s in graph:
            continue
        parents = prov.parents[s] if d < depth else []
        graph[s] = list(parents)
        todo.extend((p, d + 1) for p in parents)
    events = {s: parse(store.entry(s).body) for s in graph}  # type: ignore[union-attr]
    for s in graph:
        graph[s] = [p for p in graph[s] if p in graph]
    # how much of the evidence hangs on each event of the graph
    below: dict[int, set[int]] = {s: set() for s in graph}
    for ev in evidence:
        seen, q = set(), deque([ev])
        while q:
            x = q.popleft()
            for p in graph.get(x, ()):
                if p not in seen:
                    seen.add(p)
                    q.append(p)
        for p in seen | {ev}:  # order-free: adds to sets
            below[p].add(ev)
    acting = [s for s in graph if events[s].get("actor", 0) > 0]  # agents' own actions
    roots = sorted(((s, len(below[s])) for s in acting), key=lambda x: (-x[1], x[0]))[:10]
    acted: dict[int, int] = {}  # agent -> events of the causal graph it acted in
    for s in graph:
        a = events[s].get("actor", 0)
        if a > 0:
            acted[a] = acted.get(a, 0) + 1
    for a in (alert_doc or {}).get("subjects", []):
        acted.setdefault(a, 0)
    ledger = _Ledger(store)
    flows, net = ledger.flows([events[s] for s in evidence])
    for a in net:
        acted.setdefault(a, 0)
    agents = sorted(((a, n, net.get(a, 0)) for a, n in acted.items()),
                    key=lambda x: (-x[1], -x[2], x[0]))
    # liability: each evidence event's contributors are the agents acting in what it rests
    # on that are answerable for it (`_answerable`)
    answerable = _answerable(alert_doc, net, ledger.owner_of, ledger.population)
    contributors: dict[int, set[int]] = {ev: set() for ev in evidence}
    for x in graph:
        a = events[x].get("actor", 0)
        if a > 0 and answerable(a):
            for ev in below[x]:  # order-free: adds to sets
                contributors[ev].add(a)
    shares = shapley_shares(contributors, {ev: ledger.moved(events[ev]) for ev in evidence})
    inc = Incident(title, alert_doc, sorted(evidence), graph, events, agents, roots, flows,
                   liability=shares, owner_liability=by_owner(shares, ledger.owner_of),
                   owner_names=ledger.owner_names,
                   owners={a: ledger.owner_of.get(a, 0) for a in shares})
    if proofs:
        inc.proofs = [inclusion_bundle(store, s) for s in sorted(evidence)]
    return inc


def _answerable(alert: dict[str, Any] | None, net: dict[int, int],
                owner_of: dict[int, int], population: int = 0) -> Any:
    """Which agents acting in an incident's causal graph answer for it. A causal path runs
    through the victims too (the requester a fraudster cheated posted the task the fraud
    rests on), so acting is not enough: with an alert, an agent answers if the alert names
    it, or if it is another identity of an owner the alert names (the beneficial owner is
    the unit — but not of the population's owner, in a scenario that declares none) and did
    not lose money in the evidence, or if the evidence paid it (an accomplice); with no
    alert (one entry investigated), any agent that did not lose money in it."""
    if alert is None:
        return lambda a: net.get(a, 0) >= 0
    subjects = set(alert.get("subjects", []))
    owners = {owner_of.get(a, 0) for a in subjects} - {0, population}
    return lambda a: a in subjects or net.get(a, 0) > 0 or (
        owner_of.get(a, 0) in owners and net.get(a, 0) >= 0)


def _ranked(shares: dict[int, Fraction]) -> list[tuple[int, Fraction]]:
    return sorted(shares.items(), key=lambda x: (-x[1], x[0]))


class _Ledger:
    """Who holds each account and who owns each agent, read from the log once."""

    def __init__(self, store: Store) -> None:
        self.holder: dict[int, int] = {}
        self.owner_of: dict[int, int] = {}
        self.owner_names: dict[int, str] = {}
        admitted: dict[int, int] = {}
        for e in store.entries():
            if e.kind in ("account_opened", "agent_registered", "owner_registered"):
                d = parse(e.body)
                if e.kind == "account_opened":
                    self.holder[d["account"]] = d["holder"]
                elif e.kind == "agent_registered":
                    self.owner_of[d["agent"]] = d["owner"]
                    if not d.get("parent"):
                        admitted[d["owner"]] = admitted.get(d["owner"], 0) + 1
                else:
                    self.owner_names[d["owner"]] = d["name"]
        # the owner of more than half the admitted agents is the population (a scenario
        # that declares no owners: Registry.population_owner), not one party
        self.population = majority_owner(admitted)

    def moved(self, event: dict[str, Any]) -> int:
        """The money an event moved out of agents' accounts (its harm weight)."""
        return sum(t["amount"] for t in event.get("transfers", []) or []
                   if self.holder.get(t.get("debit"), 0) > 0 and t.get("amount"))

    def flows(self, evidence: list[dict[str, Any]]) -> tuple[list[tuple[int, int, int]],
                                                             dict[int, int]]:
        """Money moved between agents by the evidence's transfers (escrow legs joined up)."""
        holder = self.holder
        pairs: dict[tuple[int, int], int] = {}
        net: dict[int, int] = {}
        for d in evidence:
            for t in d.get("transfers", []) or []:
                a, b = holder.get(t["debit"], 0), holder.get(t["credit"], 0)
                if a > 0 and b > 0 and a != b and t["amount"]:
                    pairs[(a, b)] = pairs.get((a, b), 0) + t["amount"]
                if t["amount"]:
                    if a > 0:
                        net[a] = net.get(a, 0) - t["amount"]
                    if b > 0:
                        net[b] = net.get(b, 0) + t["amount"]
        flows = sorted(((a, b, x) for (a, b), x in pairs.items()),
                       key=lambda f: (-f[2], f[0], f[1]))
        return flows, net


def render_text(inc: Incident) -> str:
    lines = [inc.title]
    if inc.alert:
        lines.append(f"  {inc.alert['summary']}")
    lines.append(f"evidence: {len(inc.evidence)} events; causal graph: {len(inc.graph)} events")
    lines.append("likely root causes (actions most of the evidence descends from):")
    for s, n in inc.root_causes[:5]:
        d = inc.events[s]
        lines.append(f"  entry {s} (tick {d['tick']}): {d['kind']} by agent {d['actor']} — "
                     f"{n} of {len(inc.evidence)} evidence events descend from it")
    lines.append("agents involved (events of the graph acted in, net money in the evidence):")
    for a, n, m in inc.agents[:10]:
        lines.append(f"  agent {a}: {n} events, {m:+d}")
    if inc.liability:
        lines.append("liability (Shapley shares over the causal graph; sum 1):")
        for o, v in _ranked(inc.owner_liability)[:10]:
            name = inc.owner_names.get(o, "")
            mine = [f"agent {a} {float(x):.1%}" for a, x in _ranked(inc.liability)
                    if inc.owners.get(a) == o][:6]
            lines.append(f"  owner {o}{f' ({name})' if name else ''}: {float(v):.1%}"
                         + (f" — {', '.join(mine)}" if mine else ""))
    if inc.flows:
        lines.append("money flows:")
        for a, b, x in inc.flows[:10]:
            lines.append(f"  {a} -> {b}: {x}")
    if inc.proofs:
        lines.append(f"{len(inc.proofs)} inclusion proofs, checkable with `sandbank check-proof`")
    return "\n".join(lines)


HIDDEN_FIELDS = {"kind", "actor", "tick", "seq", "nonce", "signature", "blind"}
PAGE_STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222} h1{font-size:22px} h2{font-size:17px;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0 1em} td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;font-size:13px;vertical-align:top;max-width:720px} th{background:#f6f8fa}
td.num{text-align:right}
.summary{background:#fff4e5;border-left:4px solid #f29900;padding:6px 10px}
.scroll{overflow-x:auto;max-width:100%} code{font-size:12px} .muted{color:#666}
svg{max-width:100%;height:auto} svg line.edge{stroke:#bbb} svg .grid{stroke:#eee}
svg .axis{stroke:#888} svg text{font-size:10.5px;fill:#555} .ev{fill:#d93025}
.root{fill:#f29900;stroke:#000} .bg{fill:#1a73e8} tr.evidence td:first-child{border-left:3px solid #d93025}
tr.root td:first-child{border-left:3px solid #f29900}"""


def _who(a: int) -> str:
    return f"agent {a}" if a > 0 else "operator" if a == 0 else "system"


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
    return text if len(text) <= 160 else text[:157] + "…"


def _details(d: dict[str, Any]) -> str:
    """An event's fields other than who, when and what kind, as `name: value` (a transfer
    as debit account → credit account: amount)."""
    parts = []
    for k in sorted(set(d) - HIDDEN_FIELDS):
        v = d[k]
        if k == "transfers" and isinstance(v, list):
            legs = [f"{t.get('debit')} → {t.get('credit')}: {t.get('amount')}" for t in v[:8]
                    if isinstance(t, dict)]
            text = "; ".join(legs) + (f"; and {len(v) - 8} more" if len(v) > 8 else "")
        else:
            text = _value(v)
        if v not in ("", None, [], {}):
            parts.append(f"<b>{html.escape(k)}</b>: {html.escape(text)}")
    return " · ".join(parts)


def _rows(head: list[str], rows: list[tuple[str, list[Any]]]) -> str:
    """A table; a row is (css class, cells); a cell is text, or (html,) already escaped."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        f"<tr class='{cls}'>" + "".join(
            f"<td>{c[0]}</td>" if isinstance(c, tuple)
            else f"<td class='num'>{c:,}</td>" if isinstance(c, int) and not isinstance(c, bool)
            else f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
        for cls, cells in rows)
    return f"<div class='scroll'><table><tr>{th}</tr>{body}</table></div>"


def _graph_svg(inc: Incident) -> str:
    """The causal graph drawn as a timeline: x the tick (labelled, with gridlines), a lane
    per actor; red the evidence, orange the likely root causes, blue what they rest on."""
    seqs = sorted(inc.graph)[:MAX_GRAPH]
    ticks = sorted({inc.events[s]["tick"] for s in seqs})
    actors = sorted({inc.events[s].get("actor", 0) for s in seqs})
    w, left, top, bottom = 1100, 110, 34, 34
    h = top + bottom + 26 * max(1, len(actors))
    t0, t1 = ticks[0], max(ticks[-1], ticks[0] + 1)

    def tx(t: float) -> float:
        return left + 10 + (t - t0) * (w - left - 40) / (t1 - t0)

    ay = {a: top + 13 + 26 * i for i, a in enumerate(actors)}
    pos: dict[int, tuple[float, float]] = {}
    stack: dict[tuple[int, int], int] = {}
    for s in seqs:
        d = inc.events[s]
        key = (d["tick"], d.get("actor", 0))
        k = stack[key] = stack.get(key, -1) + 1
        pos[s] = (tx(d["tick"]) + 7 * (k % 4), ay[d.get("actor", 0)] + 5 * (k // 4) - 4)
    step = max(1, round((t1 - t0) / 12))
    out = []
    for t in range(t0 - t0 % step, t1 + 1, step):
        if t0 <= t <= t1:
            out.append(f'<line class="grid" x1="{tx(t):.0f}" y1="{top}" x2="{tx(t):.0f}" '
                       f'y2="{h - bottom}"/><text class="tick" x="{tx(t):.0f}" '
                       f'y="{h - bottom + 14}" text-anchor="middle">{t}</text>')
    for a, y in ay.items():
        out.append(f'<line class="grid" x1="{left}" y1="{y}" x2="{w - 10}" y2="{y}"/>'
                   f'<text class="tick lane" x="{left - 6}" y="{y + 3}" text-anchor="end">'
                   f'{_who(a)}</text>')
    out.append(f'<line class="axis" x1="{left}" y1="{h - bottom}" x2="{w - 10}" '
               f'y2="{h - bottom}"/><text x="{w - 10}" y="{h - bottom + 28}" '
               f'text-anchor="end">tick</text>')
    evidence = set(inc.evidence)
    roots = {s for s, _ in inc.root_causes[:3]}
    out += [f'<line class="edge" x1="{pos[p][0]:.0f}" y1="{pos[p][1]:.0f}" x2="{pos[s][0]:.0f}" '
            f'y2="{pos[s][1]:.0f}"/>' for s in seqs for p in inc.graph[s] if p in pos]
    out += [f'<circle cx="{pos[s][0]:.0f}" cy="{pos[s][1]:.0f}" r="4.5" class="'
            f'{"root" if s in roots else "ev" if s in evidence else "bg"}"><title>entry {s}, '
            f'tick {inc.events[s]["tick"]}: {html.escape(inc.events[s]["kind"])} by '
            f'{_who(inc.events[s].get("actor", 0))}</title></circle>' for s in seqs]
    legend = "".join(
        f'<circle cx="{left + 10 + 150 * i}" cy="14" r="4.5" class="{cls}"/>'
        f'<text x="{left + 20 + 150 * i}" y="18">{label}</text>'
        for i, (cls, label) in enumerate((("ev", "evidence"), ("root", "likely root cause"),
                                          ("bg", "what they rest on"))))
    return (f"<svg viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img' "
            f"aria-label='causal graph'>{''.join(out)}{legend}</svg>")


def render_html(inc: Incident) -> str:
    """A self-contained page: the alert, the causal graph drawn by tick and actor, tables of
    the root causes, agents, liability, money flows and every cited event."""
    n = len(inc.evidence)
    a = inc.alert or {}
    facts = [("what", html.escape(inc.title))]
    if a:
        facts += [("detector", html.escape(str(a.get("detector")))),
                  ("score", html.escape(str(a.get("score")))),
                  ("raised at tick", html.escape(str(a.get("tick", "")))),
                  ("subjects", html.escape(", ".join(map(str, a.get("subjects", []))) or "—"))]
    facts += [("evidence", f"{n} events"), ("causal graph", f"{len(inc.graph)} events"),
              ("inclusion proofs", f"{len(inc.proofs)} (in incident.json; check one with "
                                   f"<code>sandbank check-proof FILE --key KEY</code>)"
               if inc.proofs else "none written")]
    facts_table = "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + \
        "</table>"
    roots = {s for s, _ in inc.root_causes[:3]}
    root_rows = [("root" if i < 3 else "", [i + 1, s, inc.events[s]["tick"], inc.events[s]["kind"],
                                            _who(inc.events[s].get("actor", 0)), f"{k} of {n}",
                                            (_details(inc.events[s]),)])
                 for i, (s, k) in enumerate(inc.root_causes)]
    share = dict(inc.liability)
    agent_rows = [("", [_who(ag), inc.owners.get(ag) or "—", acted, f"{money:+,}",
                        f"{float(share[ag]):.1%}" if ag in share else "—"])
                  for ag, acted, money in inc.agents[:50]]
    owner_rows = [("", [o, inc.owner_names.get(o, ""), f"{float(v):.1%}",
                        ", ".join(f"agent {x} {float(y):.1%}" for x, y in _ranked(inc.liability)
                                  if inc.owners.get(x) == o)])
                  for o, v in _ranked(inc.owner_liability)]
    flow_rows = [("", [_who(x), _who(y), amount]) for x, y, amount in inc.flows[:50]]

    def event_rows(seqs: list[int]) -> list[tuple[str, list[Any]]]:
        ev = set(inc.evidence)
        return [("evidence" if s in ev else "root" if s in roots else "",
                 [s, inc.events[s]["tick"], inc.events[s]["kind"],
                  _who(inc.events[s].get("actor", 0)), (_details(inc.events[s]),)])
                for s in seqs]

    head = ["entry", "tick", "kind", "by", "details"]
    sections = [
        f"<h1>Incident — {html.escape(inc.title)}</h1>",
        f"<p class='summary'>{html.escape(a['summary'])}</p>" if a.get("summary") else "",
        facts_table,
        "<h2>Causal graph</h2><p class='muted'>Each dot is a log entry, at its tick (x) in "
        "its actor's lane; a line joins an event to what it rests on. Hover a dot.</p>",
        _graph_svg(inc),
        "<h2>Likely root causes</h2><p class='muted'>Agents' actions ranked by how many "
        "evidence events descend from them.</p>",
        _rows(["#", "entry", "tick", "kind", "by", "explains", "details"], root_rows)
        if root_rows else "<p>None found.</p>",
        "<h2>Agents involved</h2>",
        _rows(["agent", "owner", "graph events acted in", "net money in the evidence",
               "liability"], agent_rows) if agent_rows else "<p>None.</p>",
    ]
    if owner_rows:
        sections += ["<h2>Liability by owner</h2><p class='muted'>Shapley shares over the "
                     "causal graph, summing to 100%.</p>",
                     _rows(["owner", "name", "share", "its agents"], owner_rows)]
    sections += ["<h2>Money flows in the evidence</h2>",
                 _rows(["from", "to", "amount"], flow_rows) if flow_rows
                 else "<p>No money moved between agents.</p>",
                 "<h2>Cited events (the evidence)</h2>",
                 _rows(head, event_rows(inc.evidence[:200])),
                 f"<details><summary>Every event of the causal graph ({len(inc.graph)})"
                 f"</summary>{_rows(head, event_rows(sorted(inc.graph)[:MAX_GRAPH]))}</details>"]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(inc.title)}</title><style>{PAGE_STYLE}</style></head><body>"
            f"{''.join(sections)}</body></html>")

"""The red-team suite (checklist 44): every library scenario that declares what it attacks
is run twice per seed and judged:

- **with its safeguards** (the scenario as written, oversight responding), and
- **without** them (oversight off, and whatever else `ablate` switches off — e.g. the
  exchange's price band), but with the monitor *watching*: alerts only, no action, so the
  attack runs its course and the detectors are tested on it.

    redteam:
      detect: [fraud]          # detectors that must fire on the unmitigated attack, with evidence
      harm: tasks_failed       # a final metric, or pnl:<group> (a group's profit)
      margin: 0.3              # the safeguards must cut the harm by >= 30%, in every seed
      ablate: {markets.0.band_bps: 0}   # more to switch off besides oversight (dotted keys)
      seeds: [1, 2, 3]
      adversaries: [fraudster] # the population groups that attack (the rest is honest)

An honest population declares `honest: true` and `max_alert_rate` instead: alerts per 1,000
agent-ticks with oversight on (the false-alert rate) must stay at or below it.

Besides the verdict, each case reports the time to detection (run ticks to the first alert
of an expected detector, unmitigated), the false alerts (alerts, with safeguards on, from a
detector the scenario does not expect, whose subjects are all honest agents: not in an
adversary group, and not spawned — no honest policy spawns), and the welfare cost of the
safeguards (welfare without − with; negative when they raise it).

`sandbank scorecard` runs the library and writes scorecard.csv, scorecard.md and
scorecard.html.
"""

from __future__ import annotations

import copy
import csv
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbank.lab.scenario import ScenarioError, parse_scenario, read_yaml, spec_of
from sandbank.lab.sweep import apply_config


@dataclass
class Case:
    scenario: str
    seed: int
    detectors_expected: list[str]
    detectors_fired: list[str]
    evidence_ok: bool
    harm: str
    harm_on: float | None
    harm_off: float | None
    alerts: int
    alert_rate: float  # per 1,000 agent-ticks, oversight on
    ok: bool
    why: str = ""
    detection_ticks: int | None = None  # run ticks to the first expected alert (unmitigated)
    false_alerts: int = 0  # with safeguards on, alerts that name honest agents only
    welfare_off: float | None = None
    welfare_on: float | None = None


@dataclass
class Verdict:
    scenario: str
    cases: list[Case] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)


def _harm(summary: dict[str, Any], harm: str) -> float:
    if harm.startswith("pnl:"):
        group = harm[4:]
        found = [g["pnl"] for g in summary["groups"] if g["name"] == group]
        if not found:
            raise ScenarioError(f"redteam harm {harm!r}: no population group {group!r}")
        return float(sum(found))
    value = summary["final"].get(harm)
    if value in (None, ""):
        raise ScenarioError(f"redteam harm {harm!r} is not a metric of this run")
    return float(value)


def judge(path: Path, out: Path, seeds: list[int] | None = None,
          run: Callable[..., Any] | None = None) -> Verdict | None:
    """Run one scenario's red-team cases (None if it declares none)."""
    from sandbank.lab.runner import run_scenario

    run = run or run_scenario
    doc = read_yaml(path, "scenario")
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping of keys to values")
    spec = spec_of(doc, str(path))
    if spec is None:
        return None
    doc = {k: v for k, v in doc.items() if k != "redteam"}
    verdict = Verdict(doc.get("name", path.stem))
    for seed in seeds or spec.get("seeds", [doc.get("seed", 0)]):
        runs = {}
        for label in ("on", "off"):
            if spec.get("honest") and label == "off":
                continue
            d = copy.deepcopy(doc)
            d["seed"] = seed
            if label == "off":
                for key, value in spec.get("ablate", {}).items():
                    d = apply_config(d, {key: value}, seed, str(path))
                d["oversight"] = {**d.get("oversight", {}), "enabled": True, "mode": "alert"}
            sc = parse_scenario(d, f"{path} (seed {seed}, safeguards {label})")
            runs[label] = run(sc, out / f"{verdict.scenario}-seed{seed}-{label}",
                              overwrite=True).summary
        on = runs["on"]
        honest = _honest_ids(on, spec.get("adversaries", []))
        expected_detectors = set(spec.get("detect", []))
        false_alerts = sum(1 for a in on["alerts"] if a["subjects"]
                           and a["detector"] not in expected_detectors
                           and all(x in honest for x in a["subjects"]))
        agent_ticks = max(1, on["agents"] * on["ticks"])
        rate = len(on["alerts"]) * 1000 / agent_ticks
        watched = runs.get("off", on)  # detection is judged on the unmitigated attack
        fired = sorted({a["detector"] for a in watched["alerts"]})
        if spec.get("honest"):
            ok = rate <= spec.get("max_alert_rate", 0.0)
            verdict.cases.append(Case(verdict.scenario, seed, [], fired, True, "", None, None,
                                      len(on["alerts"]), round(rate, 4), ok,
                                      "" if ok else f"false-alert rate {rate:.3f} per 1,000 "
                                      f"agent-ticks > {spec.get('max_alert_rate', 0.0)}",
                                      None, false_alerts, None, _welfare(on)))
            continue
        expected = list(spec["detect"])
        evidence_ok = all(a["evidence"] > 0 for a in watched["alerts"]
                          if a["detector"] in expected)
        h_on, h_off = _harm(on, spec["harm"]), _harm(runs["off"], spec["harm"])
        margin = spec.get("margin", 0.0)
        reduced = h_on <= h_off - margin * abs(h_off) and (h_on < h_off or h_off == 0)
        missing = [d for d in expected if d not in fired]
        why = []
        if missing:
            why.append(f"did not fire: {missing}")
        if not evidence_ok:
            why.append("an alert without evidence")
        if not reduced:
            why.append(f"harm {spec['harm']} {h_on:g} with oversight vs {h_off:g} without "
                       f"(needs a {margin:.0%} cut)")
        first = [a["tick"] for a in watched["alerts"] if a["detector"] in expected]
        detection = min(first) - watched["setup_ticks"] if first else None
        verdict.cases.append(Case(verdict.scenario, seed, expected, fired, evidence_ok,
                                  spec["harm"], h_on, h_off, len(on["alerts"]), round(rate, 4),
                                  not why, "; ".join(why), detection, false_alerts,
                                  _welfare(watched), _welfare(on)))
    return verdict


def _welfare(summary: dict[str, Any]) -> float | None:
    value = summary["final"].get("welfare")
    return float(value) if value not in (None, "") else None


def _honest_ids(summary: dict[str, Any], adversaries: list[str]) -> set[int]:
    out: set[int] = set()
    for g in summary["groups"]:
        if g["name"] not in adversaries:
            out.update(range(g["ids"][0], g["ids"][1] + 1))
    return out


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:,.4g}" if abs(x) < 10 else f"{x:,.0f}"


def summarise(verdicts: list[Verdict]) -> list[dict[str, str]]:
    """One row per scenario, over its seeds: the scorecard."""
    rows = []
    for v in verdicts:
        cs = v.cases
        if not cs:
            continue
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        det = [c.detection_ticks for c in cs if c.detection_ticks is not None]
        fired = sorted({d for c in cs for d in c.detectors_fired if d in c.detectors_expected})
        w_off = [c.welfare_off for c in cs if c.welfare_off is not None]
        w_on = [c.welfare_on for c in cs if c.welfare_on is not None]
        cost = mean(w_off) - mean(w_on) if w_off and w_on else None
        honest = not cs[0].detectors_expected
        caught = sum(1 for c in cs if all(d in c.detectors_fired for d in c.detectors_expected))
        rows.append({
            "scenario": v.scenario, "seeds": str(len(cs)),
            "should fire": "(honest population)" if honest else ", ".join(cs[0].detectors_expected),
            "detected": "-" if honest else f"{caught}/{len(cs)}",
            "harm": cs[0].harm or "false alerts",
            "harm without": _fmt(mean([c.harm_off for c in cs if c.harm_off is not None])),
            "harm with": _fmt(mean([c.harm_on for c in cs if c.harm_on is not None])),
            "ticks to detect": f"{min(det)}–{max(det)}" if det else "-",
            "false alerts": str(sum(c.false_alerts for c in cs)),
            "welfare cost": _fmt(cost) if cost is not None else "-",
            "verdict": "ok" if v.ok else "FAILED",
            "fired": ", ".join(fired)})
    return rows


COLUMNS = ["scenario", "seeds", "should fire", "detected", "ticks to detect", "harm",
           "harm without", "harm with", "false alerts", "welfare cost", "verdict"]


def write(out: Path, verdicts: list[Verdict]) -> tuple[Path, Path]:
    rows = [c.__dict__ for v in verdicts for c in v.cases]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "scorecard.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(Case.__dataclass_fields__))
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    table = summarise(verdicts)
    md = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in table]
    (out / "scorecard.md").write_text("\n".join(md) + "\n")
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in COLUMNS) + "</tr>"
                   for r in table)
    cases = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
            c.scenario, c.seed, ", ".join(c.detectors_fired) or "-", _fmt(c.harm_off),
            _fmt(c.harm_on), "" if c.detection_ticks is None else c.detection_ticks,
            c.false_alerts, "ok" if c.ok else f"FAILED: {c.why}")) + "</tr>"
        for v in verdicts for c in v.cases)
    doc = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>scorecard</title>"
           "<style>body{font:15px system-ui,sans-serif;margin:2em}td,th{border:1px solid #ddd;"
           "padding:3px 8px}table{border-collapse:collapse;margin-bottom:2em}</style></head><body>"
           "<h1>Safeguards scorecard</h1><p>Each scenario with its safeguards and without them "
           "(the monitor watching, alerts only); means over seeds.</p><table><tr>"
           + "".join(f"<th>{html.escape(h)}</th>" for h in COLUMNS) + f"</tr>{body}</table>"
           "<h2>Every case</h2><table><tr>" + "".join(
               f"<th>{h}</th>" for h in ("scenario", "seed", "fired (unmitigated)",
                                         "harm without", "harm with", "ticks to detect",
                                         "false alerts", "verdict"))
           + f"</tr>{cases}</table></body></html>")
    (out / "scorecard.html").write_text(doc)
    return out / "scorecard.csv", out / "scorecard.html"

"""The red-team suite (checklist 44): every library scenario that declares what it attacks
is run twice per seed and judged:

- **with its safeguards** (the scenario as written, oversight responding), and
- **without** them (oversight off, and whatever else `ablate` switches off — e.g. the
  exchange's price band), but with the monitor *watching*: alerts only, no action, so the
  attack runs its course and the detectors are tested on it.

    redteam:
      detect: [fraud]          # detectors that must fire on the unmitigated attack, with evidence
      harm: tasks_failed       # a final metric, pnl:<group> (a group's profit), excess:<group>
      margin: 0.3              # the safeguards must cut the harm by >= 30%, in every seed
      ablate: {markets.0.band_bps: 0}   # more to switch off besides oversight (dotted keys)
      seeds: [1, 2, 3]
      adversaries: [fraudster] # the population groups that attack (the rest is honest)
      cause: antimonopoly      # optional: an institution (a scenario section that `ablate`
                               # switches off) credited with the cut instead of a detector

An honest population declares `honest: true` and `max_alert_rate` instead: alerts per 1,000
agent-ticks with oversight on (the false-alert rate) must stay at or below it.

A verdict is "ok" only when it is honest about the cause:

- the expected detector fired on the unmitigated attack **naming an attacker** (an alert of
  the right detector about honest agents is a false alert, not a detection), with evidence,
  and fired with the safeguards on as well, in every seed;
- the harm fell by the margin with the safeguards on, **and** the expected detectors'
  responses alone (the ablations applied, every other detector's response `none`, no
  market breaker: the `only` run) cut it by the margin too. A harm that fell for another
  reason (a breaker that stalled the market) is reported as such, and is not "ok";
- with the expected response alone (the `only` run), the run met its own success criteria
  (`success:`, e.g. a market's `min_trades`) if it met them without: a response that stops
  the economy it protects (a freeze of half the market) has not contained the attack. (A
  market breaker that stalls a thin market with every safeguard on is a cost, reported in
  `success_on` and the welfare figures.)

With `cause` (a regulatory institution: the anti-monopoly levy, say), the safeguard judged is
the institution, which acts before anything is detected: the `only` run keeps it on (no
ablation) with every detector's response `none` and no market breaker, and the verdict
needs the detector to fire on the unmitigated attack but not with the safeguards on (an
institution that prevents the harm leaves nothing to detect). An institution no detector
watches (a mission's distribution rule) declares `detect: []`: its row says "(no
detector)" and is judged on the harm alone.

Besides the verdict, each case reports the time to detection (run ticks to the first alert
of an expected detector naming an attacker, unmitigated), the false alerts (alerts, with
safeguards on, whose subjects are all honest agents — ground truth: every identity of a
non-adversary group, the identities its agents spawned included), whether the run met its
own success criteria with the safeguards on, and the welfare cost of the safeguards
(welfare without − with; negative when they raise it).

`sandbank scorecard` runs the library and writes scorecard.csv, scorecard.md and
scorecard.html.
"""

from __future__ import annotations

import copy
import csv
import functools
import html
import json
import random
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
    harm_only: float | None = None  # with the expected detectors' responses alone
    attributed: bool | None = None  # did their responses alone cut the harm by the margin?
    fired_on: bool | None = None  # did an expected detector name an attacker, safeguards on?
    success_on: bool | None = None  # did the run meet its own success criteria, safeguards on?
    agent_ticks: int = 0  # honest agent-ticks with safeguards on (the false-alert base)
    reduced: bool | None = None  # did the harm fall by the margin with the safeguards on?


@dataclass
class Verdict:
    scenario: str
    cases: list[Case] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)


def _sales(summary: dict[str, Any], group: str, harm: str) -> tuple[int, int]:
    found = [g for g in summary["groups"] if g["name"] == group]
    if not found:
        raise ScenarioError(f"redteam harm {harm!r}: no population group {group!r}")
    return (sum(g.get("sold", 0) for g in found),
            sum(g.get("proceeds", 0) - g.get("sold_at_last", 0) for g in found))


def _harm(summary: dict[str, Any], harm: str, base: float = 0.0) -> float:
    """A run's harm: a final metric or `pnl:<group>` (a group's profit), less `base`; or
    `excess:<group>` (what a group's sales fetched above its honest twin's: (its mean
    premium − base) × the units it sold, a sale's premium its price less the market's last
    price before its tick, `base` the control's mean premium)."""
    if harm.startswith("excess:"):
        sold, premium = _sales(summary, harm.split(":", 1)[1], harm)
        return (premium / sold - base) * sold if sold else 0.0
    return _metric(summary, harm) - base


def _baseline(control: dict[str, Any], harm: str) -> float:
    """What a harm is measured from, read off the honest control's run."""
    if harm.startswith("excess:"):
        sold, premium = _sales(control, harm.split(":", 1)[1], harm)
        return premium / sold if sold else 0.0
    return _metric(control, harm)


def _metric(summary: dict[str, Any], harm: str) -> float:
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


NO_BREAKERS = {"throttle_bps": 10**9, "pause_bps": 10**9, "halt_markets": 0}
# detectors of events and structure, not of anyone's misconduct: a crash, a coalition whose
# capability jumps. Their findings count as detections whoever they name, and an expected
# one naming honest agents is no false alert (a patchwork coalition is honest agents)
STRUCTURE = frozenset({"flash_crash", "proto_agi"})


def runs_of(doc: dict[str, Any], spec: dict[str, Any], seed: int, source: str,
            attribute: bool = True) -> dict[str, dict[str, Any]]:
    """The documents of one seed's case: `on` (as written), `off` (the ablations applied,
    the monitor watching: alerts only), and `only` (the ablations applied, the monitor
    responding only to the expected detectors, no market breaker) — what the expected
    response achieves alone."""
    base = copy.deepcopy(doc)
    base["seed"] = seed
    out = {"on": base}
    if spec.get("honest"):
        return out
    off = copy.deepcopy(base)
    for key, value in sorted(spec.get("ablate", {}).items()):
        off = apply_config(off, {key: value}, seed, source)
    watch = {**off.get("oversight", {}), "enabled": True}
    out["off"] = {**off, "oversight": {**watch, "mode": "alert"}}
    if attribute:
        from sandbank.oversight.detectors import REGISTRY

        expected = set() if spec.get("cause") else set(spec.get("detect", []))
        alone = base if spec.get("cause") else off  # an institution's cut: it stays on
        mine = {**alone.get("oversight", {}), "enabled": True}
        responses = {**mine.get("responses", {}),
                     **{d: "none" for d in sorted(REGISTRY) if d not in expected}}
        out["only"] = {**alone, "oversight": {**mine, "mode": "respond", "responses": responses,
                                              "breakers": {**mine.get("breakers", {}),
                                                           **NO_BREAKERS}}}
    return out


def execute(jobs: list[tuple[str, dict[str, Any], Path]], workers: int = 1, keep: bool = True,
            run: Callable[..., Any] | None = None,
            progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run scenario documents (source, document, folder) and return their summaries, in
    order; with `workers` > 1 in that many processes (the sweep's process pool: forked on
    Linux, so the runs see what this process registered, a notebook's policies too);
    without `keep`, each run's folder is removed once its summary is read (a generated
    sweep makes thousands)."""
    from sandbank.lab.sweep import LocalBackend, SerialBackend

    backend = SerialBackend() if run is not None or workers <= 1 else LocalBackend(workers)
    out = []
    for summary in backend.map(functools.partial(_job, keep=keep, run=run), jobs):
        out.append(summary)
        if progress:
            progress(1)
    return out


def _job(job: tuple[str, dict[str, Any], Path], keep: bool = True,
         run: Callable[..., Any] | None = None) -> dict[str, Any]:
    return _execute(*job, keep=keep, run=run)


def _execute(source: str, doc: dict[str, Any], folder: Path, keep: bool = True,
             run: Callable[..., Any] | None = None) -> dict[str, Any]:
    import shutil

    from sandbank.lab.runner import run_scenario

    sc = parse_scenario(doc, source)
    summary = (run or run_scenario)(sc, folder, overwrite=True).summary
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return summary


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """A generated document as written, its safeguards on, without its `redteam:`."""
    return {k: v for k, v in doc.items() if k != "redteam"}


def judge(path: Path, out: Path, seeds: list[int] | None = None,
          run: Callable[..., Any] | None = None, workers: int = 1,
          attribute: bool = True) -> Verdict | None:
    """Run one scenario's red-team cases (None if it declares none)."""
    doc = read_yaml(path, "scenario")
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping of keys to values")
    spec = spec_of(doc, str(path))
    if spec is None:
        return None
    return judge_doc(doc, spec, str(path), out, seeds, run=run, workers=workers,
                     attribute=attribute)


def judge_doc(doc: dict[str, Any], spec: dict[str, Any], source: str, out: Path,
              seeds: list[int] | None = None, run: Callable[..., Any] | None = None,
              workers: int = 1, keep: bool = True, attribute: bool = True,
              baseline: dict[int, float] | None = None) -> Verdict:
    """`judge` on a scenario document and its red-team spec. `baseline`: per seed, the harm
    metric of an honest control (the harm is the excess over it)."""
    doc = {k: v for k, v in doc.items() if k != "redteam"}
    name = doc.get("name", Path(source).stem)
    verdict = Verdict(name)
    seeds = seeds or spec.get("seeds", [doc.get("seed", 0)])
    jobs, where = [], []
    for seed in seeds:
        for label, d in runs_of(doc, spec, seed, source, attribute).items():
            jobs.append((f"{source} (seed {seed}, safeguards {label})", d,
                         out / f"{name}-seed{seed}-{label}"))
            where.append((seed, label))
    summaries = execute(jobs, workers, keep, run)
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for (seed, label), summary in zip(where, summaries, strict=True):
        by_seed.setdefault(seed, {})[label] = summary
    for seed in seeds:
        verdict.cases.append(case_of(name, seed, spec, by_seed[seed],
                                     (baseline or {}).get(seed, 0.0)))
    return verdict


def case_of(name: str, seed: int, spec: dict[str, Any], runs: dict[str, dict[str, Any]],
            baseline: float = 0.0, baseline_on: float | None = None) -> Case:
    """Judge one seed's runs (see `runs_of`). `baseline`: the harm metric of the honest
    control without safeguards (what the attack's harm without them is measured from);
    `baseline_on`: the same control with the safeguards on, for the harm with them (the
    safeguards move prices and holdings for honest traders too: the attack's harm under
    them is its excess over an honest twin under the same regime); None: `baseline`."""
    on = runs["on"]
    honest, attackers = _identities(on, spec.get("adversaries", []))
    expect = set(spec.get("detect", []))
    false_alerts = sum(1 for a in on["alerts"] if a["subjects"]
                       and all(x in honest for x in a["subjects"])
                       and not (a["detector"] in expect and a["detector"] in STRUCTURE))
    agent_ticks = max(1, on["agents"] * on["ticks"])
    honest_ticks = max(1, len(honest) * on["ticks"])
    rate = len(on["alerts"]) * 1000 / agent_ticks
    success_on = bool(on.get("ok", True))
    if spec.get("honest"):
        ok = rate <= spec.get("max_alert_rate", 0.0)
        fired = sorted({a["detector"] for a in on["alerts"]})
        return Case(name, seed, [], fired, True, "", None, None, len(on["alerts"]),
                    round(rate, 4), ok, "" if ok else f"false-alert rate {rate:.3f} per 1,000 "
                    f"agent-ticks > {spec.get('max_alert_rate', 0.0)}", None, false_alerts,
                    None, _welfare(on), success_on=success_on, agent_ticks=honest_ticks)
    watched = runs["off"]  # detection is judged on the unmitigated attack
    expected = list(spec["detect"])
    fired = sorted({a["detector"] for a in watched["alerts"]})

    def hits(summary: dict[str, Any]) -> list[dict[str, Any]]:
        """The expected detectors' alerts naming an attacker — or any of theirs where the
        scenario names no attacker (a market event such as a crash)."""
        _, bad = _identities(summary, spec.get("adversaries", []))
        return [a for a in summary["alerts"] if a["detector"] in expected
                and (set(a["subjects"]) & bad or not spec.get("adversaries")
                     or a["detector"] in STRUCTURE)]

    caught = hits(watched)
    caught_on = hits(on)
    evidence_ok = all(a["evidence"] > 0 for a in caught)
    h_on = _harm(on, spec["harm"], baseline if baseline_on is None else baseline_on)
    h_off = _harm(watched, spec["harm"], baseline)
    margin = spec.get("margin", 0.0)

    def cut(h: float) -> bool:
        return h <= h_off - margin * abs(h_off) and (h < h_off or h_off == 0)

    reduced = cut(h_on)
    h_only = _harm(runs["only"], spec["harm"], baseline) if "only" in runs else None
    attributed = cut(h_only) if h_only is not None else None
    why = []
    missing = [d for d in expected if not any(a["detector"] == d for a in caught)]
    if missing:
        why.append(f"did not fire on an attacker: {missing}")
    if not caught_on and not spec.get("cause"):
        why.append("with safeguards on, no expected detector named an attacker")
    if not evidence_ok:
        why.append("an alert without evidence")
    if not reduced:
        why.append(f"harm {spec['harm']} {h_on:g} with oversight vs {h_off:g} without "
                   f"(needs a {margin:.0%} cut)")
    elif attributed is False:
        alone = f"{spec['cause']} alone" if spec.get("cause") else "the expected response alone"
        why.append(f"the harm fell for another reason: {alone} left "
                   f"{h_only:g} (needs {h_off - margin * abs(h_off):g} or less)")
    # the expected response alone broke the economy the attack lives in: the harm fell
    # with it (a market breaker that stalls a thin market with every safeguard on is a
    # cost, in `success_on` and the welfare figures, not this; no `only` run: not judged)
    judged = runs.get("only")
    if judged is not None and not judged.get("ok", True) and watched.get("ok", True):
        broken = sorted(k for k, x in judged.get("success", {}).items() if not x.get("ok", True))
        why.append(f"with the expected response alone the run failed its own success "
                   f"criteria ({', '.join(broken) or 'verification'}), which it met without: "
                   "the harm fell with the economy it lives in")
    first = [a["tick"] for a in caught]
    detection = min(first) - watched["setup_ticks"] if first else None
    return Case(name, seed, expected, fired, evidence_ok, spec["harm"], h_on, h_off,
                len(on["alerts"]), round(rate, 4), not why, "; ".join(why), detection,
                false_alerts, _welfare(watched), _welfare(on), h_only, attributed,
                bool(caught_on), success_on, honest_ticks, reduced=reduced)


def _identities(summary: dict[str, Any], adversaries: list[str]) -> tuple[set[int], set[int]]:
    """Ground truth: the honest identities and the attackers' — each population group's
    admitted agents and every identity their lineages spawned."""
    honest: set[int] = set()
    bad: set[int] = set()
    for g in summary["groups"]:
        ids = set(range(g["ids"][0], g["ids"][1] + 1)) | set(g.get("spawned", ()))
        (bad if g["name"] in adversaries else honest).update(ids)
    return honest, bad


def _welfare(summary: dict[str, Any]) -> float | None:
    value = summary["final"].get("welfare")
    return float(value) if value not in (None, "") else None


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
        honest = not cs[0].detectors_expected and not cs[0].harm
        undetected = not cs[0].detectors_expected  # (an institution's case: no detector)
        caught = sum(1 for c in cs if c.detection_ticks is not None)
        ticks = sum(c.agent_ticks for c in cs)
        rows.append({
            "scenario": v.scenario, "seeds": str(len(cs)),
            "should fire": "(honest population)" if honest else
            ", ".join(cs[0].detectors_expected) or "(no detector)",
            "detected": "-" if undetected else f"{caught}/{len(cs)}",
            "harm": cs[0].harm or "false alerts",
            "harm without": _fmt(mean([c.harm_off for c in cs if c.harm_off is not None])),
            "harm with": _fmt(mean([c.harm_on for c in cs if c.harm_on is not None])),
            "ticks to detect": f"{min(det)}–{max(det)}" if det else "-",
            "false alerts": str(sum(c.false_alerts for c in cs)),
            "false /1k": f"{1000 * sum(c.false_alerts for c in cs) / max(1, ticks):.2f}",
            "welfare cost": _fmt(cost) if cost is not None else "-",
            "verdict": "ok" if v.ok else "harm fell for another reason" if all(
                c.attributed is False and "another reason" in c.why for c in cs if not c.ok)
                else "FAILED",
            "fired": ", ".join(fired)})
    return rows


COLUMNS = ["scenario", "seeds", "should fire", "detected", "ticks to detect", "harm",
           "harm without", "harm with", "false alerts", "false /1k", "welfare cost", "verdict"]


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


# ------------------------------------------------------------------ generated attack variants

def generated(names: list[str], n: int, out: Path, *, seeds: list[int] | None = None,
              workers: int = 1, sample_seed: int = 0, attribute: bool = False,
              progress: Callable[[int, int], None] | None = None) -> dict[str, list[Verdict]]:
    """`n` sampled variants of each named family (lab/generate.py), each judged like a
    library scenario over `seeds` (default the generator's three); where the family's harm
    is not zero without an attack, the harm is the excess over the variant's honest control
    (its attackers playing fair), run under the same regime: unmitigated for the harm
    without safeguards, with them for the harm with them. Run folders are removed as their
    summaries are read. Returns family -> one verdict per variant."""
    from sandbank.lab import generate as gen

    plans: list[tuple[str, int, int, str]] = []  # family, point, seed, label
    jobs: list[tuple[str, dict[str, Any], Path]] = []
    docs: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
    for name in names:
        family = gen.FAMILIES[name]
        for i, point in enumerate(gen.sample(family, n, sample_seed)):
            doc = gen.variant(family, point)
            spec = doc["redteam"]
            docs[(name, i)] = (doc, spec)
            ctrl = gen.control(family, point)
            for seed in seeds or spec["seeds"]:
                runs = runs_of(doc, spec, seed, doc["name"], attribute)
                if ctrl is not None:  # the honest twin without and with the safeguards
                    runs["control"] = {**gen.unmitigated(ctrl), "seed": seed}
                    runs["control_on"] = {**_plain(ctrl), "seed": seed}
                for label, d in runs.items():
                    plans.append((name, i, seed, label))
                    jobs.append((f"{doc['name']} (seed {seed}, {label})", d,
                                 out / f"{doc['name']}-seed{seed}-{label}"))
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress:
            progress(done[0], len(jobs))

    summaries = execute(jobs, workers, keep=False, progress=tick)
    runs_by: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
    for (name, i, seed, label), summary in zip(plans, summaries, strict=True):
        runs_by.setdefault((name, i, seed), {})[label] = summary
    result: dict[str, list[Verdict]] = {name: [] for name in names}
    for (name, i), (doc, spec) in docs.items():
        v = Verdict(doc["name"])
        for seed in seeds or spec["seeds"]:
            runs = runs_by[(name, i, seed)]
            base = _baseline(runs["control"], spec["harm"]) if "control" in runs else 0.0
            base_on = _baseline(runs["control_on"], spec["harm"]) \
                if "control_on" in runs else None
            v.cases.append(case_of(doc["name"], seed, spec, runs, base, base_on))
        result[name].append(v)
    return result


def family_rows(result: dict[str, list[Verdict]]) -> list[dict[str, Any]]:
    """Per family over its variants × seeds: detection rate (the expected detector named an
    attacker, unmitigated), ticks to detect, the share of cases whose harm fell by the
    margin, and false alerts per 1,000 honest agent-ticks (safeguards on). A case whose
    attack did no harm even without safeguards (a fraudster that won no contract, a spoof
    that moved nothing) is *inert*: there is no effect to detect and no harm to cut, so the
    rates are over the other cases, and the inert ones are counted in their own column
    (false alerts still count over every case)."""
    rows = []
    for name, verdicts in result.items():
        every = [c for v in verdicts for c in v.cases]
        if not every:
            continue
        cs = [c for c in every if (c.harm_off or 0) > 0]
        det = sorted(c.detection_ticks for c in cs if c.detection_ticks is not None)
        reduced = [c for c in cs if c.reduced]
        ticks = sum(c.agent_ticks for c in every)
        n = len(cs)
        rows.append({
            "family": name, "variants": len(verdicts), "cases": len(every),
            "inert": len(every) - len(cs),
            "detected": len(det) / n if n else None, "ticks to detect (median)":
                det[len(det) // 2] if det else None,
            "harm cut by margin": len(reduced) / n if n else None,
            "false alerts per 1k honest agent-ticks": 1000 * sum(c.false_alerts for c in every)
                / max(1, ticks),
            "harm without (median)": sorted(c.harm_off or 0 for c in cs)[len(cs) // 2]
                if cs else 0,
            "ok": sum(1 for c in cs if c.ok) / n if n else None})
    return rows


def search(name: str, budget: int, out: Path, *, workers: int = 1, seed: int = 0,
           rounds: int = 4, progress: Callable[[int, int], None] | None = None,
           seeds: list[int] | None = None) -> dict[str, Any]:
    """An adversary that searches a family's space for the most harm done *undetected*
    with the safeguards on: no alert of any detector names any of its identities. Random
    search first (half the budget), then rounds that perturb the best points so far (one
    or two dimensions redrawn each). Each evaluation is one run (plus the honest control,
    with the same safeguards, where the family has one) on one of the generator's seeds.
    Returns the best point, its undetected harm, and every evaluation. `seeds`: the run
    seeds evaluations cycle through (default the generator's)."""
    from sandbank.lab import generate as gen

    family = gen.FAMILIES[name]
    rng = random.Random(f"search/{seed}/{name}")
    seeds = list(seeds or gen.SEEDS)
    evals: list[dict[str, Any]] = []
    first = max(1, budget // 2)
    batches = [gen.sample(family, first, seed=10_000 + seed)]
    left = budget - first
    per_round = max(1, left // max(1, rounds)) if left > 0 else 0
    done = 0
    while batches:
        points = batches.pop()
        jobs, plans = [], []
        for j, point in enumerate(points):
            doc = gen.variant(family, point)
            s = seeds[(len(evals) + j) % len(seeds)]
            run = {**doc, "seed": s}
            run.pop("redteam")
            jobs.append((doc["name"], run, out / f"{doc['name']}-s{s}-on"))
            plans.append((point, s, doc, "on"))
            ctrl = gen.control(family, point)
            if ctrl is not None:  # its honest twin under the same safeguards
                jobs.append((ctrl["name"], {**_plain(ctrl), "seed": s},
                             out / f"{doc['name']}-s{s}-control"))
                plans.append((point, s, doc, "control"))
        summaries = execute(jobs, workers, keep=False)
        found: dict[str, dict[str, Any]] = {}
        for (point, s, doc, label), summary in zip(plans, summaries, strict=True):
            found.setdefault(doc["name"] + f"/{s}", {"point": point, "seed": s,
                                                     "spec": doc["redteam"]})[label] = summary
        for item in found.values():
            on, spec = item["on"], item["spec"]
            base = _baseline(item["control"], spec["harm"]) if "control" in item else 0.0
            _, bad = _identities(on, spec["adversaries"])
            named = [a for a in on["alerts"] if set(a["subjects"]) & bad]
            evals.append({"point": item["point"], "seed": item["seed"],
                          "harm": _harm(on, spec["harm"], base), "detected": bool(named),
                          "detectors": sorted({a["detector"] for a in named})})
        done += len(points)
        if progress:
            progress(done, budget)
        if left > 0 and rounds > 0:
            best = sorted(evals, key=lambda e: (not e["detected"], e["harm"]), reverse=True)
            parents = [e["point"] for e in best[:max(1, per_round // 4)]]
            children = []
            for k in range(min(per_round, left)):
                child = dict(parents[k % len(parents)])
                for d in rng.sample(list(family.space), min(len(family.space),
                                                            rng.randint(1, 2))):
                    child[d.name] = d.draw(rng)
                children.append(gen.clip(family, child))
            left -= len(children)
            rounds -= 1
            if children:
                batches.append(children)
    undetected = [e for e in evals if not e["detected"]]
    top = max(undetected, key=lambda e: e["harm"], default=None)
    return {"family": name, "evaluations": len(evals),
            "undetected": len(undetected), "largest_undetected_harm": top["harm"] if top
            else 0.0, "best": top, "evals": evals}


def write_generated(out: Path, rows: list[dict[str, Any]], searched: list[dict[str, Any]],
                    result: dict[str, list[Verdict]] | None = None) -> str:
    """generated.md (and .csv): the per-family table and the adversary's headline; with
    `result`, generated_cases.csv: every case (family, variant, seed, its judgement)."""
    lines = []
    if result:
        with open(out / "generated_cases.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["family", *Case.__dataclass_fields__])
            w.writeheader()
            for name, verdicts in result.items():
                for v in verdicts:
                    for c in v.cases:
                        w.writerow({"family": name, **{k: json.dumps(x) if isinstance(x, list)
                                                       else x for k, x in c.__dict__.items()}})
    if rows:
        cols = list(rows[0])
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in rows:
            lines.append("| " + " | ".join(
                f"{x:.0%}" if isinstance(x, float) and k in ("detected", "harm cut by margin", "ok")
                else f"{x:.3f}" if isinstance(x, float) and "false" in k
                else _fmt(x) if isinstance(x, float) else "n/a" if x is None else str(x)
                for k, x in r.items()) + " |")
        with open(out / "generated.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    if searched:
        lines += ["", "| family | runs | undetected | largest harm done undetected | at |",
                  "|---|---|---|---|---|"]
        for s in searched:
            best = s["best"]
            at = ", ".join(f"{k}={v}" for k, v in best["point"].items()) + \
                f" (seed {best['seed']})" if best else "-"
            lines.append(f"| {s['family']} | {s['evaluations']} | {s['undetected']} | "
                         f"{_fmt(s['largest_undetected_harm'])} | {at} |")
    md = "\n".join(lines) + "\n"
    (out / "generated.md").write_text(md)
    return md

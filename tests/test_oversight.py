"""Oversight (issue 5): the red-team library, false alerts, breakers on a price shock,
hidden indicators, determinism."""

import json

import pytest

from conftest import Economy
from sandbank.agents.base import POLICIES, Agent, policy
from sandbank.agents.llm.agent import plain
from sandbank.controls.controls import RegisterOverseer
from sandbank.kernel.schema import OPERATOR
from sandbank.lab.redteam import judge
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import builtin_dir, parse_scenario
from sandbank.markets.exchange import PlaceOrder
from sandbank.oversight.engine import Oversight, OversightConfig
from sandbank.oversight.indicators import Indicators

LIBRARY = sorted(builtin_dir().glob("*.yaml"))


# library scenarios whose harm falls by a safeguard other than the expected detector's
# response (issue 15: an honest verdict says so): the scorecard reports "harm fell for
# another reason", and this is what does the work
ELSEWHERE = {"flash_crash": "the price band", "hoarding": "the market breakers"}


@pytest.mark.parametrize("path", LIBRARY, ids=[p.stem for p in LIBRARY])
def test_every_library_scenario_is_caught_and_contained_in_every_seed(path, tmp_path):
    """The must-show of issue 5: with its safeguards a scenario's harm falls by its margin in
    every seed, and the detector that should fire does, naming an attacker, with evidence
    (on the unmitigated run); an honest economy stays under its false-alert bound. Where
    another safeguard does the work (ELSEWHERE), the verdict says so rather than "ok"."""
    verdict = judge(path, tmp_path, workers=2)
    assert verdict is not None, f"{path.name} declares no redteam section"
    assert len(verdict.cases) >= 2  # across seeds
    for case in verdict.cases:
        if path.stem in ELSEWHERE and not case.ok:
            assert case.attributed is False and "another reason" in case.why, case.why
            assert "did not fire" not in case.why and "with oversight vs" not in case.why
            continue
        assert case.ok, f"{case.scenario} seed {case.seed}: {case.why}"
    if path.stem in ELSEWHERE:
        assert not verdict.ok  # never reported as the detector's success
    for summary in tmp_path.glob("*/summary.json"):  # impermeable: nothing ever crossed
        doc = json.loads(summary.read_text())
        if doc["kernel_config"]["boundary"] == "impermeable":
            final = doc["final"]
            assert final["boundary_out_value"] == final["boundary_in_value"] == 0
            assert final["boundary_out_bytes"] == 0 and final["boundary_sent"] == 0


def _run(tmp_path, name, pop, ticks, **extra):
    sc = parse_scenario({"name": name, "seed": 3, "ticks": ticks, "population": pop, **extra},
                        "inline")
    return run_scenario(sc, tmp_path / name)


def test_competitive_firms_raise_no_collusion_alert(tmp_path):
    res = _run(tmp_path, "nash", [{"policy": "fixed_pricer", "count": 2,
                                   "params": {"price": 1473}}], 700, assets=["CRD"],
               pricing=[{"name": "duopoly", "asset": "CRD"}], endowment={"CRD": 1_000_000},
               oversight={"detectors": {"tacit_collusion": {"window": 300}}})
    assert res.summary["alerts"] == []


def test_random_delegation_is_not_a_proto_agi_coalition(tmp_path):
    res = _run(tmp_path, "random", [
        {"policy": "requester", "count": 4, "params": {"per_task": 2, "rate_pct": 60}},
        {"policy": "specialist", "name": "generalist", "count": 12,
         "skills": {"code": 9, "law": 9, "math": 9}, "params": {"delegate_pct": 60}}], 80,
        endowment={"CRD": 1_000_000})
    assert res.summary["final"]["tasks_passed"] > 20 and res.summary["delegation_edges"]
    assert not [a for a in res.summary["alerts"] if a["detector"] == "proto_agi"]


def test_a_price_shock_pauses_the_market_within_a_tick_and_stays_paused():
    e = Economy(n=4, fund=100_000, assets=("CRD", "WGT"),
                markets=({"asset": "WGT", "quote": "CRD"},))
    e.do(RegisterOverseer(actor=OPERATOR, name="m", overseer_kind="monitor",
                          public_key=bytes(range(32)), evidence="test"))
    monitor = next(iter(e.k.state.controls.overseers))
    engine = Oversight(OversightConfig())

    def trade(price):
        actions, _ = engine.step(e.k.tick, e.k.log.last_committed, e.k.state, None, monitor)
        e.do(*actions, PlaceOrder(actor=1, asset="WGT", side="sell", qty=1, price=price),
             PlaceOrder(actor=2, asset="WGT", side="buy", qty=1, price=price))

    for _ in range(10):
        trade(100)
    trade(60)  # the shock: 40% below the reference
    trade(60)  # the monitor's pause runs in this tick
    m = e.k.state.exchange.markets["WGT"]
    assert m.state == "halted" and e.k.state.controls.paused == {"WGT": {1}}
    for _ in range(5):
        trade(60)
        assert not [d for d in e.k.log.last_committed if d["kind"] == "order_placed"
                    and d["fills"]]


def test_hidden_indicators_never_reach_an_agent(tmp_path):
    seen = []

    @policy("test_probe")
    class Probe(Agent):  # records everything it is ever shown
        def act(self, obs):
            seen.append(json.dumps(plain(obs)))
            return []

    hidden = ["top_owner_share", "hhi_owner_wealth", "velocity_ppm"]
    try:
        res = _run(tmp_path, "hidden", [{"policy": "zi_trader", "count": 10},
                                        {"policy": "test_probe", "count": 1}], 15,
                   assets=["CRD", "WGT"], markets=[{"asset": "WGT", "quote": "CRD"}],
                   endowment={"CRD": 100_000, "WGT": 50}, oversight={"hidden": hidden})
    finally:
        POLICIES.pop("test_probe")
    assert "kri_velocity_ppm" in open(tmp_path / "hidden" / "metrics.csv").readline()
    text = "\n".join(seen)
    assert seen and not any(name in text for name in hidden) and "kri" not in text
    assert res.summary["verified"]


def test_oversight_is_deterministic_and_its_actions_replay(tmp_path):
    from sandbank.economy import replay_log
    from sandbank.store.sqlite import SQLiteStore

    path = builtin_dir() / "demo.yaml"
    from sandbank.lab.scenario import load_scenario

    a = run_scenario(load_scenario(path, ticks=25), tmp_path / "a")
    b = run_scenario(load_scenario(path, ticks=25), tmp_path / "b",
                     key_file=tmp_path / "a" / "run.key")
    assert a.summary["root"] == b.summary["root"] and a.summary["alerts"]
    store = SQLiteStore(tmp_path / "a" / "log.db", readonly=True, create=False)
    rp = replay_log(store)
    store.close()
    assert rp.ok, rp.problem


def test_indicators_follow_the_balances():
    e = Economy(n=4, fund=1000)
    ind = Indicators(e.k.state)
    from sandbank.oversight.tickview import TickView

    kri = ind.update(TickView(e.k.tick, [], e.k.state))
    assert kri["top_agent_share"] == 250_000 and kri["gini_wealth"] == 0.0


def test_a_coalition_that_solidifies_is_flagged(tmp_path):
    """Three specialists who can only solve the 3-skill tasks together: the capability jump
    fires; with that criterion switched off, the solidification criterion fires instead."""
    pop = [{"policy": "requester", "count": 3, "params": {"per_task": 3, "rate_pct": 80}},
           {"policy": "specialist", "name": "coder", "count": 1, "skills": {"code": 9}},
           {"policy": "specialist", "name": "lawyer", "count": 1, "skills": {"law": 9}},
           {"policy": "specialist", "name": "mathematician", "count": 1, "skills": {"math": 9}}]
    jump = _run(tmp_path, "jump", pop, 80, endowment={"CRD": 1_000_000},
                oversight={"mode": "alert"})
    solid = _run(tmp_path, "solid", pop, 80, endowment={"CRD": 1_000_000},
                 oversight={"mode": "alert", "detectors": {"proto_agi": {"jump": 2.0}}})
    found = [a for a in jump.summary["alerts"] if a["detector"] == "proto_agi"]
    assert found and "capability jump" in found[0]["summary"] and found[0]["evidence"]
    assert sorted(found[0]["subjects"]) == [4, 5, 6]
    found = [a for a in solid.summary["alerts"] if a["detector"] == "proto_agi"]
    assert found and "solidified" in found[0]["summary"]


def test_an_incident_points_at_its_root_cause_and_every_cited_event_is_provable(tmp_path):
    from sandbank.audit.checkpoint import parse_verifier_key
    from sandbank.audit.proofs import check_bundle
    from sandbank.lab.scenario import load_scenario
    from sandbank.oversight.forensics import investigate, render_html, render_text
    from sandbank.store.sqlite import SQLiteStore

    res = run_scenario(load_scenario(builtin_dir() / "sybil_ring.yaml", ticks=30), tmp_path / "s")
    alert = next(a for a in res.summary["alerts"] if a["detector"] == "sybil")
    # the alert is about the owner (mallory): both operators' rings; each spawned its own
    lo, hi = next(g["ids"] for g in res.summary["groups"] if g["name"] == "sybil_operator")
    bosses = set(range(lo, hi + 1)) & set(alert["subjects"])
    assert bosses
    store = SQLiteStore(tmp_path / "s" / "log.db", readonly=True, create=False)
    inc = investigate(store, alert=alert["alert"])
    store.close()
    top = inc.events[inc.root_causes[0][0]]
    assert top["kind"] == "agent_registered" and top["actor"] in bosses  # the seeded cause
    assert inc.agents[0][0] in bosses
    name, key = parse_verifier_key(res.summary["operator_key"])
    for bundle in inc.proofs:
        check_bundle(bundle, name, key)  # raises if a cited event is not in the signed log
    assert len(inc.proofs) == len(inc.evidence) == alert["evidence"]
    assert "root causes" in render_text(inc) and "<svg" in render_html(inc)


def test_inspect_investigates_an_alert_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from sandbank.cli import app
    from sandbank.lab.scenario import load_scenario

    res = run_scenario(load_scenario(builtin_dir() / "boundary_probe.yaml", ticks=8),
                       tmp_path / "b")
    alert = next(a["alert"] for a in res.summary["alerts"] if a["detector"] == "exfiltration")
    log = str(tmp_path / "b" / "log.db")
    r = CliRunner().invoke(app, ["inspect", log], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "exfiltration" in r.output and "--alert N" in r.output
    r = CliRunner().invoke(app, ["inspect", log, "--alert", str(alert), "--out", str(tmp_path / "i")],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "root causes" in r.output and (tmp_path / "i" / "incident.json").is_file()
    doc = json.loads((tmp_path / "i" / "incident.json").read_text())
    assert doc["proofs"] and doc["alert"]["detector"] == "exfiltration"
    # the same, for a pipe: every format parses, and stdout holds only the data
    r = CliRunner().invoke(app, ["inspect", log, "--format", "json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["seed"] == res.summary["seed"]
    assert any(a["detector"] == "exfiltration" and a["alert"] == alert for a in doc["alerts"])
    assert "alert" in {e["event kind"] for e in doc["events"]}
    import csv
    import io

    r = CliRunner().invoke(app, ["inspect", log, "--format", "csv"])
    blocks = {b.split("\n", 1)[0]: list(csv.DictReader(io.StringIO(b.split("\n", 1)[1])))
              for b in r.stdout.strip().split("\n\n")}
    assert set(blocks) == {"# safeguards", "# events", "# alerts"}
    assert len(blocks["# alerts"]) == len(doc["alerts"])
    r = CliRunner().invoke(app, ["inspect", log, "--format", "md"])
    assert "### events" in r.stdout and "| event kind | count |" in r.stdout
    r = CliRunner().invoke(app, ["inspect", log, "--alert", str(alert), "--format", "json"])
    assert json.loads(r.stdout)["alert"]["detector"] == "exfiltration"
    r = CliRunner().invoke(app, ["inspect", log, "--alert", str(alert), "--format", "csv"])
    assert r.exit_code == 2 and "no csv form" in r.output
    r = CliRunner().invoke(app, ["inspect", log, "--format", "xml"])
    assert r.exit_code == 2 and "--format must be one of" in r.output
    r = CliRunner().invoke(app, ["inspect", log, "--alert", "999"])
    assert r.exit_code != 0 and "no alert 999" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["inspect", log, "--explain"])
    assert r.exit_code != 0 and "--explain needs --entry" in r.output


def test_caps_tighten_automatically_when_a_coalition_is_flagged(tmp_path):
    pop = [{"policy": "requester", "count": 3, "params": {"per_task": 3, "rate_pct": 80}},
           {"policy": "specialist", "name": "coder", "count": 1, "skills": {"code": 9}},
           {"policy": "specialist", "name": "lawyer", "count": 1, "skills": {"law": 9}},
           {"policy": "specialist", "name": "mathematician", "count": 1, "skills": {"math": 9}}]
    res = _run(tmp_path, "capped", pop, 60, endowment={"CRD": 1_000_000},
               oversight={"responses": {"proto_agi": ["cap_delegation"]},
                          "breakers": {"coalition_cap": 2, "fanout_cap": 1}})
    from sandbank.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "capped" / "log.db", readonly=True, create=False)
    caps = {json.loads(e.body)["cap"]: json.loads(e.body)["value"]
            for e in store.entries() if e.kind == "cap_set"}
    store.close()
    assert caps == {"coalition": 2, "fanout": 1}
    assert res.summary["rejections"].get("over_cap", 0) > 0  # and they bind


def test_scorecard_command_prints_and_writes_the_table(tmp_path):
    from typer.testing import CliRunner

    from sandbank.cli import app

    r = CliRunner().invoke(app, ["scorecard", str(builtin_dir() / "wash_ring.yaml"), "--seeds",
                                 "1,2", "--out", str(tmp_path)], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    md = (tmp_path / "scorecard.md").read_text()
    assert "| wash_ring | 2 | wash_trading | 2/2 |" in md and "ok |" in md
    assert (tmp_path / "scorecard.html").is_file() and (tmp_path / "scorecard.csv").is_file()
    r = CliRunner().invoke(app, ["scorecard", str(tmp_path / "nope.yaml")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    # for a pipe: the table as data on stdout, progress as plain lines on stderr
    r = CliRunner().invoke(app, ["scorecard", str(builtin_dir() / "wash_ring.yaml"), "--seeds",
                                 "1", "--out", str(tmp_path / "j"), "--format", "json"],
                           env={"SANDBANK_PROGRESS_SECONDS": "0"})
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["scorecard"][0]["scenario"] == "wash_ring" and doc["failures"] == []
    assert "red team: wash_ring: 0/1 scenarios" in r.stderr and "scorecard.md" in r.stderr


def test_a_bad_redteam_section_fails_before_running():
    from sandbank.lab.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="redteam"):
        parse_scenario({"name": "x", "population": [{"policy": "hoarder"}],
                        "redteam": {"detect": ["fraud"], "harm": "x", "sedes": [1]}}, "f.yaml")

"""Scenarios, runs, metrics and reports."""

import json

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from sandbank.agents.base import Agent, policy
from sandbank.cli import app
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import ScenarioError, builtin_dir, load_scenario, parse_scenario

runner = CliRunner()

BASE = {
    "name": "mini", "seed": 3, "ticks": 15, "assets": ["CRD", "WGT"],
    "markets": [{"asset": "WGT", "quote": "CRD", "band_bps": 1500}],
    "endowment": {"CRD": 100_000, "WGT": 100},
    "population": [{"policy": "zi_trader", "count": 6},
                   {"policy": "requester", "count": 2},
                   {"policy": "specialist", "count": 2, "skills": {"code": 9, "law": 9}},
                   {"policy": "fraudster", "name": "honest-helper", "count": 1}],
    "success": {"min_trades": 1},
}


def write(tmp_path, data, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(populaton=d.pop("population")), "unknown key 'populaton'"),
    (lambda d: d["population"][0].update(cuont=2), "unknown key 'cuont' in population[0]"),
    (lambda d: d["population"][0].update(params={"value_hi": 3}),
     "population[0]: unknown parameter 'value_hi' of policy zi_trader (did you mean 'value_high'?)"),
    (lambda d: d["population"][0].update(policy="zi_trade"), "did you mean 'zi_trader'"),
    (lambda d: d.update(ticks="many"), "ticks must be int"),
    (lambda d: d.update(markets=[{"asset": "GOLD", "quote": "CRD"}]), "both must be in assets"),
    (lambda d: d.update(safeguards={"disabled": ["seatbelts"]}), "unknown guard 'seatbelts'"),
    (lambda d: d.update(success={"min_trade": 1}), "did you mean 'min_trades'"),
])
def test_a_scenario_with_a_mistake_fails_before_running_naming_key_and_file(tmp_path, mutate,
                                                                            message):
    data = json.loads(json.dumps(BASE))
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert message in str(e.value) and str(path) in str(e.value)
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and message in res.output.replace("\n", "")
    assert not (tmp_path / "run").exists()


def test_a_run_writes_its_folder_and_the_same_seed_gives_the_same_root(tmp_path):
    sc = parse_scenario(BASE, "inline")
    key = tmp_path / "run.key"  # same scenario, seed and key file: the same log
    a = run_scenario(sc, tmp_path / "a", key_file=key)
    b = run_scenario(parse_scenario(BASE, "inline"), tmp_path / "b", key_file=key)
    for f in ("log.db", "metrics.csv", "summary.json", "report.html"):
        assert (tmp_path / "a" / f).is_file()
    assert a.summary["root"] == b.summary["root"] and a.summary["verified"]
    c = run_scenario(parse_scenario({**BASE, "seed": 4}, "inline"), tmp_path / "c", key_file=key)
    assert c.summary["root"] != a.summary["root"]
    rows = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + BASE["ticks"] and "gini_wealth" in rows[0]
    html = (tmp_path / "a" / "report.html").read_text()
    assert "<svg" in html and "mini" in html and a.summary["root"] in html


def test_misbehaviour_is_measured_from_what_agents_did_not_from_their_names(tmp_path):
    res = run_scenario(parse_scenario({**BASE, "ticks": 30}, "inline"), tmp_path / "r")
    final = res.summary["final"]
    assert final["fraud_attempts"] >= 1  # the "honest-helper" delivered garbage
    assert final["tasks_failed"] >= final["fraud_attempts"]


def test_success_criteria_fail_a_run_that_did_nothing(tmp_path):
    quiet = {**BASE, "population": [{"policy": "requester", "count": 1,
                                     "params": {"rate_pct": 0}}],
             "success": {"min_trades": 1, "min_tasks_passed": 1}}
    res = run_scenario(parse_scenario(quiet, "inline"), tmp_path / "q")
    assert not res.ok
    assert not res.summary["success"]["min_trades"]["ok"]
    cli = runner.invoke(app, ["run", str(write(tmp_path, quiet)), "--out", str(tmp_path / "q2")])
    assert cli.exit_code == 1 and "FAILED" in cli.output


def test_an_agent_that_crashes_or_impersonates_is_counted_not_fatal(tmp_path):
    @policy("test_broken")
    class Broken(Agent):
        def act(self, obs):
            if obs.tick % 2:
                raise RuntimeError("bug in agent code")
            from sandbank.markets.messaging import SendMessage
            return [SendMessage(actor=self.id + 1, to=0, content="I am someone else")]

    sc = parse_scenario({**BASE, "population": [{"policy": "test_broken", "count": 2}],
                         "success": {"max_agent_errors": 0}}, "inline")
    res = run_scenario(sc, tmp_path / "b")
    assert res.summary["final"]["agent_errors"] == 2 * BASE["ticks"]
    assert res.summary["agent_errors"]["RuntimeError"] > 0
    assert res.summary["final"]["messages"] == 0 and not res.ok


def test_builtin_scenarios_load_and_are_listed():
    files = sorted(builtin_dir().glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        load_scenario(f)
    res = runner.invoke(app, ["scenarios"])
    assert res.exit_code == 0 and "patchwork" in res.output


def test_existing_run_is_not_overwritten_silently(tmp_path):
    path = write(tmp_path, {**BASE, "ticks": 2, "success": {}})
    assert runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "r")]).exit_code == 0
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert runner.invoke(app, ["report", str(tmp_path / "r")]).exit_code == 0


def test_an_over_full_owner_is_reported_with_the_reason(tmp_path):
    from sandbank.lab.runner import RunError

    sc = parse_scenario({**BASE, "population": [{"policy": "zi_trader", "count": 5}],
                         "safeguards": {"max_agents_per_owner": 3}}, "inline")
    with pytest.raises(RunError, match="already has 3 agents"):
        run_scenario(sc, tmp_path / "x")


def _run(tmp_path, name, pop, ticks=12, **extra):
    from sandbank.lab.runner import run_scenario
    from sandbank.lab.scenario import parse_scenario

    sc = parse_scenario({"name": name, "seed": 4, "ticks": ticks, "assets": ["CRD", "WGT"],
                         "markets": [{"asset": "WGT", "quote": "CRD"}],
                         "endowment": {"CRD": 50_000, "WGT": 50}, "population": pop, **extra},
                        "inline")
    return run_scenario(sc, tmp_path / name)


def test_a_sybil_ring_builds_a_record_of_self_dealt_work_that_creates_no_welfare(tmp_path):
    res = _run(tmp_path, "sybil", [{"policy": "sybil_operator", "count": 1,
                                    "skills": {"code": 6}, "params": {"sybils": 3}}])
    final = res.summary["final"]
    assert final["spawned"] == 3
    assert final["tasks_passed"] >= 5 and final["self_dealt"] == final["tasks_passed"]
    assert final["surplus_tasks"] == 0 and final["welfare"] == 0
    assert res.summary["agent_errors"] == {}  # it acted only as itself and its own sybils


def test_children_cannot_be_puppeted_by_another_agent(tmp_path):
    from sandbank.agents.base import Agent, policy
    from sandbank.markets.payments import Pay

    @policy("test_puppeteer")
    class Puppeteer(Agent):  # tries to act as agent 1 (not its child)
        def act(self, obs):
            return [Pay(actor=1, to=self.id, asset="CRD", amount=10)]

    try:
        res = _run(tmp_path, "puppet", [{"policy": "hoarder", "count": 1},
                                         {"policy": "test_puppeteer", "count": 1}], ticks=3)
    finally:
        from sandbank.agents.base import POLICIES
        POLICIES.pop("test_puppeteer")
    assert res.summary["final"]["agent_errors"] == 3 and res.summary["final"]["payments"] == 0


def test_an_exfiltrator_moves_nothing_out_of_an_impermeable_sandbox(tmp_path):
    from sandbank.economy import replay_log
    from sandbank.store.sqlite import SQLiteStore

    pop = [{"policy": "exfiltrator", "count": 2}, {"policy": "zi_trader", "count": 4}]
    res = _run(tmp_path, "exfil", pop, ticks=6, oversight={"enabled": False})
    final = res.summary["final"]
    assert final["boundary_attempts"] == final["boundary_denied"] == 12
    assert final["boundary_value_attempted"] > 0
    store = SQLiteStore(tmp_path / "exfil" / "log.db", readonly=True, create=False)
    refused = [orjson.loads(e.body) for e in store.entries() if e.kind == "rejected"]
    state = replay_log(store).state
    store.close()
    led = state.ledger  # what they tried to send out is still theirs, to the unit
    assert [led.account_of(a, "CRD").balance for a in (1, 2)] == [50_000, 50_000]
    ext = [r for r in refused if r["action"]["kind"] == "external"]
    assert len(ext) == 12 and {r["reason"] for r in ext} == {"boundary_closed"}
    assert all(r["actor"] in (1, 2) and r["action"]["data"] for r in ext)
    # with oversight on, the monitor freezes them at their first attempt, with evidence: each
    # tried to take half its money out (far above the 2% of its wealth the detector allows)
    watched = _run(tmp_path, "exfil-watched", pop, ticks=6)
    alerts = watched.summary["alerts"]
    assert {a["detector"] for a in alerts} == {"exfiltration"}
    assert sorted(s for a in alerts for s in a["subjects"]) == [1, 2]
    assert all(a["evidence"] == 1 for a in alerts)
    assert watched.summary["final"]["boundary_attempts"] == 4  # 1 each, the alert, the freeze


def test_welfare_counts_gains_from_trade_at_induced_values(tmp_path):
    res = _run(tmp_path, "zi", [{"policy": "zi_trader", "count": 12}], ticks=15)
    final = res.summary["final"]
    assert final["fills"] > 0
    assert final["surplus_trades"] > 0 and final["welfare"] == final["surplus_trades"]


def test_scheduled_interventions_run_at_their_tick_and_their_outcome_is_reported(tmp_path):
    res = _run(tmp_path, "iv", [{"policy": "fraudster", "count": 1},
                                {"policy": "requester", "count": 2}], ticks=10, interventions=[
        {"tick": 3, "kind": "set_agent_status", "group": "fraudster", "status": "frozen",
         "reason": "fraud"},
        {"tick": 4, "kind": "set_policy", "param": "task_bond_bps", "value": 2000},
        {"tick": 5, "kind": "set_agent_status", "agent": 99, "status": "frozen"}])
    ivs = res.summary["interventions"]
    assert [(i["tick"], i["outcome"]) for i in ivs] == [(3, "ok"), (4, "ok"), (5, "unknown_agent")]
    report = (tmp_path / "iv" / "report.html").read_text()
    assert "unknown_agent" in report and "set_policy" in report


@pytest.mark.parametrize("iv, message", [
    ({"tick": 3, "kind": "set_agnet_status", "agent": 1, "status": "frozen"},
     "did you mean 'set_agent_status'"),
    ({"tick": 3, "kind": "place_order", "asset": "WGT"}, "not an operator or overseer action"),
    ({"tick": 99, "kind": "revoke_agent", "agent": 1, "reason": "x"}, "tick must be within"),
    ({"tick": 2, "kind": "revoke_agent", "agnt": 1, "reason": "x"}, "agnt"),
    ({"tick": 2, "kind": "revoke_agent", "group": "hoarders", "reason": "x"}, "one population group"),
    ({"tick": 2, "kind": "set_policy", "group": "hoarder", "param": "message_fee", "value": 1},
     "takes no group"),
])
def test_a_bad_intervention_fails_before_running_naming_it(iv, message):
    with pytest.raises(ScenarioError, match="interventions\\[0\\]") as e:
        parse_scenario({"name": "x", "ticks": 5, "population": [{"policy": "hoarder"}],
                        "interventions": [iv]}, "file.yaml")
    assert message in str(e.value) and "file.yaml" in str(e.value)

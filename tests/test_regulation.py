"""The regulatory layer (checklist 46–51): anti-monopoly levies and caps (49)."""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import ScenarioError, parse_scenario
from sandbank.regulation.antimonopoly import levy_due
from sandbank.store.sqlite import SQLiteStore

# ten small traders of one owner (500 WGT) and three identities of mallory holding 250 each
# (750 of 1,250: 60% together, 20% each) that never trade
BASE = {
    "name": "levy", "seed": 1, "ticks": 40, "assets": ["CRD", "WGT"],
    "markets": [{"asset": "WGT", "quote": "CRD"}],
    "endowment": {"CRD": 100_000, "WGT": 50},
    "owners": [{"name": "market", "kind": "organisation"},
               {"name": "mallory", "kind": "organisation"},
               {"name": "trent", "kind": "organisation"}],
    "population": [
        {"policy": "zi_trader", "count": 10, "owner": "market"},
        {"policy": "split_hoarder", "name": "big", "count": 3, "owner": "mallory",
         "endowment": {"WGT": 250}, "params": {"target": 1}},
    ],
    "oversight": {"enabled": False},
}
LEVY = {"assets": ["WGT"], "epoch": 5,
        "levy": [{"above_bps": 2500, "rate_bps": 2000}, {"above_bps": 5000, "rate_bps": 4000}]}


def _run(tmp_path, doc, label):
    res = run_scenario(parse_scenario(copy.deepcopy(doc), label), tmp_path / label)
    assert res.summary["verified"], res.summary
    store = SQLiteStore(str(tmp_path / label / "log.db"), readonly=True)
    entries = [json.loads(e.body) for e in store.entries()]
    return res.summary, entries


def _agents(entries, owner_name):
    owners = {e["owner"]: e["name"] for e in entries if e["kind"] == "owner_registered"}
    return {e["agent"] for e in entries if e["kind"] == "agent_registered"
            and owners[e["owner"]] == owner_name}


def _share_by_tick(entries, agents, asset="WGT"):
    """Per tick, the share (bps) of the supply held by `agents`, folded from the transfers."""
    acct_of = {e["account"]: e["holder"] for e in entries
               if e["kind"] == "account_opened" and e["asset"] == asset}
    bal = dict.fromkeys(acct_of.values(), 0)
    out = {}
    for e in entries:
        for t in ([e] if e["kind"] == "transfer" else e.get("transfers") or ()):
            if t.get("flags", 0) & 0b1110:  # pending, post or void: no balance moves here
                continue
            if t.get("debit") in acct_of:
                bal[acct_of[t["debit"]]] -= t["amount"]
            if t.get("credit") in acct_of:
                bal[acct_of[t["credit"]]] += t["amount"]
        supply = sum(v for h, v in bal.items() if h > 0)
        if supply:
            out[e["tick"]] = sum(bal.get(a, 0) for a in agents) * 10_000 // supply
    return out


def test_the_levy_is_progressive_over_the_brackets():
    brackets = [(2500, 2000), (5000, 4000)]
    assert levy_due(2500, 10_000, brackets) == 0
    assert levy_due(5000, 10_000, brackets) == 2500 * 2000 // 10_000
    assert levy_due(7000, 10_000, brackets) == 500 + 2000 * 4000 // 10_000
    # a larger holding never owes less, and owes more per unit (progressive)
    dues = [levy_due(h, 10_000, brackets) for h in range(0, 10_001, 250)]
    assert dues == sorted(dues)
    assert dues[-1] / 10_000 > dues[len(dues) // 2] / 5_000


def test_an_owner_above_the_threshold_is_levied_and_its_share_falls_each_epoch(tmp_path):
    # without the levy the owner's 60% stands
    _, plain = _run(tmp_path, BASE, "plain")
    big = _agents(plain, "mallory")
    before = _share_by_tick(plain, big)
    assert min(before.values()) >= 5_000 and not [e for e in plain if e["kind"] == "levy"]
    summary, entries = _run(tmp_path, {**BASE, "antimonopoly": LEVY}, "levied")
    levies = [e for e in entries if e["kind"] == "levy"]
    assert levies and {e["holder"] for e in levies} == {f"owner:{2}"}
    assert {e["tick"] % 5 for e in levies} == {0}  # once an epoch
    shares = [e["share_bps"] for e in levies]
    assert shares == sorted(shares, reverse=True) and shares[0] > shares[-1]
    assert shares[-1] < 4_000  # a fraction of what it held, well under the second bracket
    # each epoch's levy is what the brackets say, taken from mallory's identities only
    for e in levies:
        assert e["due"] == levy_due(e["held"], e["supply"], [(2500, 2000), (5000, 4000)])
        assert e["levied"] == e["due"] and set(e["agents"]) <= big
        # paid on to the small holders: the supply stays whole (the remainder is rounding)
        assert 0 <= e["levied"] - e["redistributed"] <= 10
    after = _share_by_tick(entries, big)
    assert after[max(after)] < before[max(before)] - 2_000
    assert summary["final"]["hhi_bo_WGT"] < 0.7 * _run(tmp_path, BASE, "again")[0][
        "final"]["hhi_bo_WGT"]


def test_a_per_agent_levy_is_split_by_running_more_identities_and_a_per_owner_one_is_not(
        tmp_path):
    # each of mallory's identities holds 20% of the supply, under a 25% bracket: judged one
    # by one (what a per-agent rule does) nothing is due; as the owner's 60%, it is
    _, by_agent = _run(tmp_path, {**BASE, "antimonopoly": {**LEVY, "by": "agent"}}, "agent")
    assert not [e for e in by_agent if e["kind"] == "levy"]
    _, by_owner = _run(tmp_path, {**BASE, "antimonopoly": LEVY}, "owner")
    assert [e for e in by_owner if e["kind"] == "levy"]


def test_linked_owners_are_one_holder(tmp_path):
    # mallory and trent hold 22% each (200 of 900), under the 25% bracket; linked, 44%
    doc = copy.deepcopy(BASE)
    doc["population"] = [
        BASE["population"][0],
        {"policy": "split_hoarder", "name": "m", "count": 1, "owner": "mallory",
         "endowment": {"WGT": 200}, "params": {"target": 1}},
        {"policy": "split_hoarder", "name": "t", "count": 1, "owner": "trent",
         "endowment": {"WGT": 200}, "params": {"target": 1}},
    ]
    doc["antimonopoly"] = LEVY
    _, apart = _run(tmp_path, doc, "apart")
    assert not [e for e in apart if e["kind"] == "levy"]
    doc["interventions"] = [{"tick": 2, "kind": "link_owners", "owners": [2, 3],
                             "reason": "fund each other and trade only with each other"}]
    _, linked = _run(tmp_path, doc, "linked")
    link = [e for e in linked if e["kind"] == "owners_linked"]
    assert link and link[0]["owners"] == [2, 3] and link[0]["coalition"] == 2
    levies = [e for e in linked if e["kind"] == "levy"]
    assert levies and {e["holder"] for e in levies} == {"coalition:2"}
    assert {a for e in levies for a in e["agents"]} == _agents(linked, "mallory") | _agents(
        linked, "trent")


def test_the_cap_holds_an_owner_and_not_only_an_agent(tmp_path):
    # four identities of mallory buy up to 250 units each (1,000 of 1,500 = 67%); a 15%
    # cap per owner stops them together at 225 units, though each alone stays far under it
    doc = copy.deepcopy(BASE)
    doc["ticks"] = 60
    doc["population"] = [
        {"policy": "zi_trader", "count": 10, "owner": "market", "endowment": {"WGT": 150}},
        {"policy": "split_hoarder", "name": "big", "count": 4, "owner": "mallory",
         "endowment": {"WGT": 0}, "params": {"target": 250, "max_price": 400, "pace": 8,
                                             "with": ["big"]}},
    ]
    _, free = _run(tmp_path, doc, "free")
    big = _agents(free, "mallory")
    uncapped = _share_by_tick(free, big)
    assert max(uncapped.values()) > 2_000  # the attack succeeds without the cap
    assert max(uncapped.values()) - 1_500 > 500
    doc["antimonopoly"] = {"assets": ["WGT"], "cap_bps": 1_500}
    summary, capped = _run(tmp_path, doc, "capped")
    shares = _share_by_tick(capped, big)
    assert 1_200 < max(shares.values()) <= 1_500
    refused = [e for e in capped if e["kind"] == "rejected" and e["reason"] == "over_cap"]
    assert refused and {e["actor"] for e in refused} <= big
    header = capped[0]  # the guard is recorded in the run header, in the regulatory layer
    assert header["kind"] == "run_started"
    assert header["safeguards"]["antimonopoly_cap"]["layer"] == "regulatory"
    assert summary["ok"]


@pytest.mark.parametrize("bad, says", [
    ({"assets": ["GOLD"], "cap_bps": 10}, "antimonopoly.assets"),
    ({"assets": ["WGT"]}, "needs a levy, a cap_bps, or both"),
    ({"assets": ["WGT"], "levy": [{"above_bps": 3000, "rate_bps": 500},
                                  {"above_bps": 2000, "rate_bps": 900}]}, "progressive"),
    ({"assets": ["WGT"], "levy": [{"above_bps": 3000, "rate_bps": 900},
                                  {"above_bps": 5000, "rate_bps": 500}]}, "progressive"),
    ({"assets": ["WGT"], "cap_bps": 20_000}, "cap_bps"),
    ({"assets": ["WGT"], "cap_bps": 10, "by": "lineage"}, "antimonopoly.by"),
    ({"assets": ["WGT"], "cap_bps": 10, "rate": 5}, "unknown key 'rate'"),
])
def test_a_bad_antimonopoly_section_fails_the_scenario_naming_the_key(bad, says):
    with pytest.raises(ScenarioError, match=says):
        parse_scenario({**BASE, "antimonopoly": bad}, "inline")


def test_only_the_operator_or_an_overseer_links_owners(tmp_path):
    from conftest import Economy
    from sandbank.regulation.antimonopoly import LinkOwners

    e = Economy(n=2, fund=0)
    e.do(LinkOwners(actor=1, owners=[1, 1], reason="me"))
    refused = [d for d in e.k.log.last_committed if d["kind"] == "rejected"]
    assert refused and refused[0]["reason"] == "forbidden"


# ------------------------------------------------ the YAML gaps: taxes on action classes
def _taxed(**policy):
    from conftest import Economy

    return Economy(n=3, fund=100, policy=policy)


def _balance(e, agent):
    return e.k.state.ledger.account_of(agent, "CRD").balance


def test_a_tax_on_an_action_class_is_charged_on_every_accepted_action_of_it():
    from sandbank.markets.messaging import SendMessage

    # without the tax, a message costs nothing (what a tax on `send_message` used to do)
    free = _taxed()
    free.do(SendMessage(actor=1, to=2, content="hi"))
    assert _balance(free, 1) == 100
    e = _taxed(taxes={"send_message": 7})
    treasury = e.k.state.ledger.accounts[e.k.state.ledger.treasury["CRD"]].balance
    e.do(SendMessage(actor=1, to=2, content="hi"), SendMessage(actor=2, to=99, content="x"))
    assert _balance(e, 1) == 93  # exactly the configured charge, to the treasury
    assert e.k.state.ledger.accounts[e.k.state.ledger.treasury["CRD"]].balance == treasury + 7
    assert _balance(e, 2) == 100  # a refused action owes no tax
    taxes = [d for d in e.k.log.last_committed if d["kind"] == "tax_charged"]
    assert [(d["agent"], d["action_kind"], d["due"], d["paid"]) for d in taxes] == [
        (1, "send_message", 7, 7)]
    e.k.state.check_invariants()
    from sandbank.economy import replay_log

    rp = replay_log(e.k.store)  # the charge is in the log: a replay folds the same state
    assert rp.ok, rp.problem
    assert rp.state.digest() == e.k.state.digest()


def test_an_action_whose_tax_is_not_available_is_refused():
    from sandbank.markets.messaging import SendMessage

    e = _taxed(taxes={"send_message": 150})
    e.do(SendMessage(actor=1, to=2, content="hi"))
    refused = [d for d in e.k.log.last_committed if d["kind"] == "rejected"]
    assert refused and refused[0]["reason"] == "insufficient_funds"
    assert "policy.taxes" in refused[0]["message"] and _balance(e, 1) == 100


def test_a_tax_on_an_operator_action_or_a_task_category_named_as_an_action_is_refused():
    from sandbank.markets.tasks import PostTask

    with pytest.raises(ScenarioError, match="set_policy is an operator"):
        parse_scenario({**BASE, "policy": {"taxes": {"set_policy": 5}}}, "inline")
    with pytest.raises(ScenarioError, match="map externality classes"):
        parse_scenario({**BASE, "policy": {"taxes": {7: 5}}}, "inline")
    e = _taxed(taxes={"external": 3})
    e.do(PostTask(actor=1, skills={"code": 1}, reward=10, deadline=e.k.tick + 20, units=1,
                  category="external"))
    refused = [d for d in e.k.log.last_committed if d["kind"] == "rejected"]
    assert refused and "may not be an action kind" in refused[0]["message"]


def test_interrupt_disable_action_and_partition_are_schedulable_interventions(tmp_path):
    doc = {**BASE, "population": [{"policy": "zi_trader", "count": 6, "owner": "market"},
                                  {"policy": "zi_trader", "name": "side", "count": 2,
                                   "owner": "trent"}],
           "ticks": 20, "interventions": [
               {"tick": 2, "kind": "partition", "group": "side", "compartment": "quarantine",
                "reason": "drill"},
               {"tick": 3, "kind": "interrupt", "scope": "agent", "mode": "pause",
                "group": "side", "reason": "drill"},
               {"tick": 4, "kind": "disable_action", "action_kind": "place_order",
                "reason": "drill"}]}
    summary, entries = _run(tmp_path, doc, "drill")
    done = {(i["action"]["kind"], i["outcome"]) for i in summary["interventions"]}
    assert done == {("partition", "ok"), ("interrupt", "ok"), ("disable_action", "ok")}
    part = [e for e in entries if e["kind"] == "partitioned"]
    assert len(part) == 1 and sorted(part[0]["agents"]) == sorted(_agents(entries, "trent"))
    last = max(e["tick"] for e in entries if e["kind"] == "action_disabled")
    assert not [e for e in entries if e["kind"] == "order_placed" and e["tick"] > last]


# ------------------------------------------------------------------ liability (checklist 46)
def _brute_shapley(contributors, weights):
    """The Shapley value of v(S) = Σ_e w_e·[A_e ⊆ S], over every ordering of the agents."""
    import itertools
    from fractions import Fraction

    agents = sorted({a for c in contributors.values() for a in c})

    def v(s):
        return sum(weights[e] for e, c in contributors.items() if c and set(c) <= s)

    phi = dict.fromkeys(agents, Fraction(0))
    orders = list(itertools.permutations(agents))
    for order in orders:
        s: set[int] = set()
        for a in order:
            before = v(s)
            s.add(a)
            phi[a] += v(s) - before
    total = v(set(agents))
    return {a: p / len(orders) / total for a, p in phi.items() if p} if total else {}


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(1, 6), st.sets(st.integers(1, 5), max_size=4),
                       min_size=1, max_size=5),
       st.lists(st.integers(1, 1000), min_size=6, max_size=6))
def test_liability_shares_are_the_shapley_value_and_sum_to_one(contributors, w):
    from sandbank.regulation.liability import by_owner, shapley_shares

    weights = {e: w[e - 1] for e in contributors}
    shares = shapley_shares(contributors, weights)
    assert shares == _brute_shapley(contributors, weights)
    if any(contributors.values()):
        assert sum(shares.values()) == 1 and all(s > 0 for s in shares.values())
        owners = by_owner(shares, {a: a % 2 + 1 for a in shares})
        assert sum(owners.values()) == 1 and set(owners) <= {1, 2}
    else:
        assert shares == {}


def test_an_incident_shares_liability_over_the_owners_that_caused_it_not_its_victims(tmp_path):
    from sandbank.lab.scenario import load_scenario
    from sandbank.oversight.forensics import investigate, render_text
    from sandbank.store.sqlite import SQLiteStore

    res = run_scenario(load_scenario("scenarios/demo.yaml"), tmp_path / "d")
    alert = next(a for a in res.summary["alerts"] if a["detector"] == "fraud")
    store = SQLiteStore(tmp_path / "d" / "log.db", readonly=True, create=False)
    inc = investigate(store, alert=alert["alert"], proofs=False)
    entries = [json.loads(e.body) for e in store.entries()]
    store.close()
    owner_of = {e["agent"]: e["owner"] for e in entries if e["kind"] == "agent_registered"}
    def group(name):
        return {a for g in res.summary["groups"] if g["name"] == name
                for a in range(g["ids"][0], g["ids"][1] + 1)}

    fraud, requesters = group("fraudster"), group("requester")
    assert inc.liability and sum(inc.liability.values()) == 1
    assert sum(inc.owner_liability.values()) == 1
    for agent, share in inc.liability.items():  # every share maps to its registered owner
        assert inc.owners[agent] == owner_of[agent] and share > 0
    assert set(inc.owner_liability) == {owner_of[a] for a in inc.liability}
    # the fraudsters carry the largest share; the requesters they cheated carry none
    # (the requesters posted and awarded the tasks the fraud rests on: on its causal path)
    acted = {inc.events[s].get("actor") for s in inc.graph}
    assert acted & requesters and not requesters & set(inc.liability)
    assert set(inc.liability) <= fraud
    # split by how much of the evidence rests on each: one delivered two of three garbage
    assert sorted(inc.liability.values()) == [Fraction(1, 3), Fraction(2, 3)]
    assert "liability" in render_text(inc) and inc.to_json()["liability"]["owners"]


@pytest.mark.parametrize("defended", [False, True])
def test_a_holding_parked_in_an_ask_priced_never_to_fill_still_pays_the_levy(defended,
                                                                             monkeypatch):
    from conftest import Economy
    from sandbank.markets.exchange import PlaceOrder
    from sandbank.regulation import antimonopoly

    if not defended:  # the attack, against a levy that takes only what is available
        monkeypatch.setattr(antimonopoly, "cancel_orders_holding", lambda *a, **kw: [])
    e = Economy(n=3, fund=1_000, assets=("CRD", "WGT"),
                markets=({"asset": "WGT", "quote": "CRD"},),
                antimonopoly={"assets": ["WGT"], "epoch": 20, "by": "agent",
                              "levy": [{"above_bps": 2500, "rate_bps": 5000}]})
    assert e.k.tick < 20 and not e.k.state.antimonopoly.levied["WGT"]
    e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=1_000, price=10**6))
    assert e.k.state.ledger.account_of(1, "WGT").available == 0  # all of it reserved
    while not e.k.state.antimonopoly.levied["WGT"]:
        e.do()
    levies = {d["agents"][0] if d["agents"] else int(d["holder"].split(":")[1]): d
              for d in e.k.log.last_committed if d["kind"] == "levy"}
    parked, plain = levies[1], levies[2]
    assert plain["levied"] == plain["due"] > 0
    if defended:
        assert parked["levied"] == parked["due"] == plain["due"]
        assert not e.k.state.exchange.by_agent.get(1)  # its ask was cancelled
    else:
        assert parked["levied"] == 0 and e.k.state.antimonopoly.shortfall["WGT"] > 0
    e.k.state.check_invariants()


# ------------------------------------------------------- capture resistance (checklist 51)
def _outcomes(summary):
    return [(i["tick"], i["action"]["kind"], i["outcome"]) for i in summary["interventions"]]


def test_safety_changes_without_the_quorum_are_refused_and_logged(tmp_path):
    from sandbank.lab.scenario import read_yaml

    doc = read_yaml(Path("scenarios/governance_capture.yaml"), "scenario")
    # without governance, the operator and the overseer loosen the safety configuration
    # alone (the attack succeeds)
    plain = {**doc, "safeguards": {},
             "interventions": [i for i in doc["interventions"] if "by" not in i]}
    summary, _ = _run(tmp_path, plain, "alone")
    assert {o for _, kind, o in _outcomes(summary)
            if kind != "register_overseer"} == {"ok"}
    summary, entries = _run(tmp_path, doc, "governed")
    assert _outcomes(summary) == [
        (2, "disable_action", "ok"),  # tightening stays an emergency lever
        (3, "set_policy", "needs_quorum"), (4, "disable_action", "needs_quorum"),
        (5, "register_overseer", "needs_quorum"),  # no packing the quorum
        (6, "set_cap", "ok"), (7, "set_cap", "needs_quorum"),
        (8, "propose_change", "ok"), (9, "vote_change", "ok")]
    refused = [e for e in entries if e["kind"] == "rejected" and e["reason"] == "needs_quorum"]
    assert len(refused) == 4 and {e["actor"] for e in refused} == {0, min(
        e["overseer"] for e in entries if e["kind"] == "overseer_registered"
        and e["name"] == "overseer")}
    decided = [e for e in entries if e["kind"] == "change_decided"]
    assert [d["outcome"] for d in decided] == ["adopted"]
    enabled = [e for e in entries if e["kind"] == "action_disabled" and not e["disabled"]]
    assert len(enabled) == 1 and enabled[0]["actor"] == -2  # the quorum's act (SYSTEM)
    assert enabled[0]["tick"] == decided[0]["tick"]


def _governed(n_governors=2):
    from conftest import Economy

    e = Economy(n=2, fund=100, verify_signatures=True, governance_quorum=2,
                governance_governors=n_governors)
    return e, [e.add_overseer(f"g{i}", "governor") for i in range(1, n_governors + 1)]


def test_governors_admit_a_new_governor_and_the_operator_cannot():
    from sandbank.controls.controls import RegisterOverseer
    from sandbank.controls.emergency import ProposeChange, VoteChange
    from sandbank.kernel.schema import OPERATOR
    from tests.keys import fixed_key

    e, (g1, g2) = _governed()
    new = fixed_key(1, "overseer/g3").public
    e.do(RegisterOverseer(actor=OPERATOR, name="g3", overseer_kind="governor",
                          public_key=new, evidence="mine"))
    assert _reasons(e)[:1] == ["needs_quorum"]
    e.do(ProposeChange(actor=1, param="add_governor", key=new.hex(), value=0))
    assert _reasons(e)[:1] == ["forbidden"]  # agents never propose
    e.do(ProposeChange(actor=g1, param="add_governor", key=new.hex(), value=0))
    assert sum(o.kind == "governor" for o in e.k.state.controls.overseers.values()) == 2
    e.do(VoteChange(actor=g2, proposal=1, approve=True))
    added = [d for d in e.k.log.last_committed if d["kind"] == "overseer_registered"]
    assert len(added) == 1 and added[0]["actor"] == -2 and added[0]["public_key"] == new.hex()
    g3 = added[0]["overseer"]
    assert e.k.state.controls.overseers[g3].kind == "governor"
    e.keys[g3] = fixed_key(1, "overseer/g3")
    # the new governor takes part: its vote counts toward the next proposal
    e.do(ProposeChange(actor=g1, param="cap", key="order_qty", value=10))
    e.do(VoteChange(actor=g3, proposal=2, approve=True))
    assert e.k.state.controls.cap("order_qty") == 10
    from sandbank.economy import replay_log

    rp = replay_log(e.k.store)
    assert rp.ok, rp.problem
    assert rp.state.digest() == e.k.state.digest()


def test_a_proposal_names_a_known_change():
    from sandbank.controls.emergency import ProposeChange

    e, (g1, _) = _governed()
    for bad, says in [(dict(param="enable_action", key="interrupt", value=1), "supervisory"),
                      (dict(param="enable_action", key="pay", value=2), "value 1"),
                      (dict(param="cap", key="nonsense", value=1), "cap must be"),
                      (dict(param="add_governor", key="zz", value=0), "in hex"),
                      (dict(param="warp_speed", key="", value=1), "add_governor")]:
        e.do(ProposeChange(actor=g1, **bad))
        r = [d for d in e.k.log.last_committed if d["kind"] == "rejected"]
        assert r and r[0]["reason"] == "invalid_policy" and says in r[0]["message"], bad


@pytest.mark.parametrize("safeguards, interventions, says", [
    ({"governance_quorum": 2, "governance_governors": 1}, [], "governance_governors"),
    ({"governance_quorum": 2}, [{"tick": 2, "kind": "vote_change", "by": "governor3",
                                 "proposal": 1, "approve": True}], "by must name"),
    ({}, [{"tick": 2, "kind": "vote_change", "by": "governor1", "proposal": 1,
           "approve": True}], "by must name"),
])
def test_bad_governance_settings_fail_the_scenario(safeguards, interventions, says):
    with pytest.raises(ScenarioError, match=says):
        parse_scenario({**BASE, "safeguards": safeguards, "interventions": interventions},
                       "inline")


def test_a_served_quorum_is_reached_only_by_governors_holding_their_own_keys(tmp_path):
    from typer.testing import CliRunner

    from sandbank.cli import app
    from sandbank.controls.emergency import ProposeChange, VoteChange
    from sandbank.lab.runner import LabEconomy
    from sandbank.lab.scenario import load_scenario
    from tests.keys import fixed_key, fixed_secret

    env = {"SANDBANK_OPERATOR_TOKEN": "a-long-enough-operator-secret"}
    base = ["serve", "--db", str(tmp_path / "x" / "log.db"), "--key-file",
            str(tmp_path / "x" / "k"), "--scenario", "scenarios/governance_capture.yaml"]
    for extra, says in (([], "give at least 2 founding governors"),
                        (["--governor", "zz"], "64 hex characters")):
        r = CliRunner().invoke(app, base + extra, env=env)
        assert r.exit_code == 2 and says in " ".join(r.output.split()), r.output
    sc = load_scenario("scenarios/governance_capture.yaml")
    keys = [fixed_key(7, f"gov{i}") for i in range(3)]
    econ = LabEconomy(sc, SQLiteStore(":memory:"), fixed_secret(7), signatures=True,
                      live=True, governors=tuple(k.public for k in keys))
    govs = {o.public_key: o.id for o in econ.k.state.controls.overseers.values()
            if o.kind == "governor"}
    assert set(govs) == {k.public for k in keys}  # theirs; none derived from the run secret
    assert econ.supervisors.get("governor1") is None
    g1, g2 = govs[keys[0].public], govs[keys[1].public]
    econ.k.submit(ProposeChange(actor=g1, param="gate_order_qty", value=0).signed(keys[0], 1))
    econ.step()
    econ.k.submit(VoteChange(actor=g2, proposal=1, approve=True).signed(keys[1], 1))
    econ.step()
    assert econ.k.state.emergency.proposals[1].status == "adopted"


# ------------------------------------------- found attacking the levy, the cap and the ledger
def _econ(n=3, **am):
    from conftest import Economy

    return Economy(n=n, fund=1_000, assets=("CRD", "WGT"),
                   markets=({"asset": "WGT", "quote": "CRD"},),
                   antimonopoly={"assets": ["WGT"], "epoch": 20, "by": "agent",
                                 "levy": [{"above_bps": 2500, "rate_bps": 5000}], **am})


def _reasons(e):
    return [d["reason"] for d in e.k.log.last_committed if d["kind"] == "rejected"]


def test_an_agent_opens_no_account_without_a_debit_limit_and_no_second_one():
    from sandbank.kernel.schema import OPERATOR, OpenAccount, Transfer, TransferSpec

    e = _econ()
    # an account with only CREDITS_MUST_NOT_EXCEED_DEBITS (flags 2) had no debit limit: an
    # agent paid a billion out of it into its own account
    e.do(OpenAccount(actor=1, asset="CRD", flags=2))
    e.do(OpenAccount(actor=1, asset="WGT", flags=1))  # a second one: splits a holding
    assert _reasons(e) == ["forbidden"]
    assert [a.asset for a in e.k.state.ledger.accounts_of(1)] == ["CRD", "WGT"]
    e.do(OpenAccount(actor=OPERATOR, asset="WGT", holder=1))  # the operator may
    second = e.k.state.ledger.accounts_of(1)[-1]
    first = e.k.state.ledger.account_of(1, "WGT")
    e.do(Transfer(actor=1, transfers=[TransferSpec(id=7, debit=first.id, credit=second.id,
                                                   amount=1_000)]))
    while not e.k.state.antimonopoly.levied["WGT"]:
        e.do()
    levy = {d["holder"]: d for d in e.k.log.last_committed if d["kind"] == "levy"}
    assert levy["agent:1"]["held"] == 1_000 and levy["agent:1"]["levied"] == 125


@pytest.mark.parametrize("defended", [False, True])
def test_a_stake_released_after_the_epoch_does_not_hide_a_holding(defended, monkeypatch):
    from sandbank.controls.policy import PostStake
    from sandbank.regulation import antimonopoly

    if not defended:
        monkeypatch.setattr(antimonopoly, "_from_stakes", lambda *a, **kw: [])
    e = _econ()
    while e.k.tick < 19:
        e.do()
    e.do(PostStake(actor=1, asset="WGT", amount=1_000))  # all of it, just before the epoch
    while not e.k.state.antimonopoly.levied["WGT"]:
        e.do()
    levy = {d["holder"]: d for d in e.k.log.last_committed if d["kind"] == "levy"}
    if defended:
        assert levy["agent:1"]["levied"] == levy["agent:1"]["due"] == 125
        assert e.k.state.policy.stakes[(1, "WGT")][1] == 875
    else:
        assert levy["agent:1"]["levied"] == 0
    e.k.state.check_invariants()


def test_spawned_identities_do_not_split_a_holding_in_a_population():
    from sandbank.kernel.schema import OPERATOR, OpenAccount, SpawnAgent
    from sandbank.markets.payments import Pay
    from tests.keys import fixed_key

    for by, holder in (("agent", None), ("owner", "lineage:1")):
        e = _econ(by=by, epoch=40)
        for i in range(4):
            e.do(SpawnAgent(actor=1, name=f"kid{i}", public_key=fixed_key(1, f"kid{i}").public))
        kids = [a for a, x in e.k.state.registry.agents.items() if x.parent == 1]
        for c in kids:  # 1,000 of 3,000 in five pieces of 200, each under the 25% bracket
            e.do(OpenAccount(actor=OPERATOR, asset="WGT", holder=c))
            e.do(Pay(actor=1, to=c, asset="WGT", amount=200))
        assert e.k.tick < 40
        while not e.k.state.antimonopoly.levied["WGT"] and e.k.tick < 45:
            e.do()
        levies = {d["holder"]: d for d in e.k.log.last_committed if d["kind"] == "levy"}
        if holder is None:  # judged identity by identity, the split pays less than it owes
            assert not any(h in levies for h in ("agent:1", *(f"agent:{c}" for c in kids)))
        else:
            assert levies[holder]["held"] == 1_000 and levies[holder]["levied"] == 125
            assert set(levies[holder]["agents"]) <= {1, *kids}


def test_redistribution_pays_out_no_more_than_the_levies_took():
    from sandbank.markets.payments import Pay
    from sandbank.regulation.antimonopoly import supply_of

    e = _econ(n=6, epoch=40)  # two large holders levied in one tick, four small ones paid
    e.do(Pay(actor=5, to=1, asset="WGT", amount=900), Pay(actor=6, to=2, asset="WGT",
                                                             amount=900))
    while e.k.tick < 39:
        e.do()
    before = supply_of(e.k, "WGT")
    e.do()
    levies = [d for d in e.k.log.last_committed if d["kind"] == "levy"]
    assert len(levies) == 2 and all(d["redistributed"] <= d["levied"] for d in levies)
    assert supply_of(e.k, "WGT") == before - sum(d["levied"] - d["redistributed"]
                                                  for d in levies)
    e.k.state.check_invariants()


def test_the_population_owner_cannot_be_linked():
    from sandbank.kernel.schema import OPERATOR, RegisterOwner
    from sandbank.regulation.antimonopoly import LinkOwners
    from tests.keys import fixed_key

    e = _econ()
    e.do(RegisterOwner(actor=OPERATOR, name="m", owner_kind="organisation",
                       public_key=fixed_key(1, "owner/m").public, evidence="x"))
    e.do(LinkOwners(actor=OPERATOR, owners=[1, 2], reason="they trade together"))
    refused = [d for d in e.k.log.last_committed if d["kind"] == "rejected"]
    assert refused and "population" in refused[0]["message"]


def test_the_cap_holds_sales_for_a_watched_quote_asset():
    from conftest import Economy
    from sandbank.markets.exchange import PlaceOrder

    e = Economy(n=3, fund=1_000, assets=("CRD", "WGT"),
                markets=({"asset": "WGT", "quote": "CRD"},),
                antimonopoly={"assets": ["CRD"], "by": "agent", "cap_bps": 4_000})
    e.do(PlaceOrder(actor=2, asset="WGT", side="buy", qty=5, price=150))
    e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=5, price=150))  # 1,750 > 1,200
    assert _reasons(e) == ["over_cap"]
    assert e.k.state.ledger.account_of(1, "CRD").balance == 1_000


def test_a_levy_whose_payout_the_ledger_refuses_is_kept_and_the_tick_goes_on(monkeypatch):
    from sandbank.regulation import antimonopoly

    real = antimonopoly._redistribute

    def broken(k, st, treasury, amount, *rest):  # a payout leg the ledger must refuse
        given = real(k, st, treasury, amount, *rest)
        st.pay(treasury, 10**9, 1)
        return given

    monkeypatch.setattr(antimonopoly, "_redistribute", broken)
    e = _econ(n=6)
    from sandbank.markets.payments import Pay

    e.do(Pay(actor=5, to=1, asset="WGT", amount=900))
    while not e.k.state.antimonopoly.levied["WGT"]:
        e.do()
    levies = [d for d in e.k.log.last_committed if d["kind"] == "levy"]
    assert levies and all(d["levied"] == d["due"] and d["redistributed"] == 0 for d in levies)
    e.k.state.check_invariants()


def test_an_action_that_spends_its_own_tax_leaves_a_debt_that_blocks_the_agent_until_paid():
    from conftest import Economy
    from sandbank.kernel.schema import Transfer, TransferSpec
    from sandbank.markets.exchange import CancelOrder, PlaceOrder
    from sandbank.markets.messaging import SendMessage

    e = Economy(n=2, fund=100, assets=("CRD", "WGT"),
                markets=({"asset": "WGT", "quote": "CRD"},),
                policy={"taxes": {"place_order": 50, "transfer": 5}})
    # a bid reserving all 100 CRD: the guard saw 100 available, the bid left 0 for the tax
    e.do(PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=100))
    tax = [d for d in e.k.log.last_committed if d["kind"] == "tax_charged"]
    assert [(d["due"], d["paid"], d["owed"]) for d in tax] == [(50, 0, 50)]
    e.do(SendMessage(actor=1, to=2, content="hi"))
    assert _reasons(e) == ["tax_owed"]  # nothing else until it pays
    order = next(iter(e.k.state.exchange.by_agent[1]))
    e.do(CancelOrder(actor=1, order=order))  # cancelling is allowed: it frees the cash
    e.do()  # collected at the start of the next tick
    assert not e.k.state.policy.tax_debt
    assert e.k.state.ledger.account_of(1, "CRD").balance == 50
    e.do(SendMessage(actor=1, to=2, content="hi"))
    assert _reasons(e) == []
    # an idempotent retry of a transfer changes nothing and owes nothing
    led = e.k.state.ledger
    spec = TransferSpec(id=42, debit=led.account_of(2, "CRD").id,
                        credit=led.account_of(1, "CRD").id, amount=1)
    e.do(Transfer(actor=2, transfers=[spec]))
    assert [d["paid"] for d in e.k.log.last_committed if d["kind"] == "tax_charged"] == [5]
    e.do(Transfer(actor=2, transfers=[spec]))
    assert not [d for d in e.k.log.last_committed if d["kind"] == "tax_charged"]
    e.k.state.check_invariants()
    from sandbank.economy import replay_log

    rp = replay_log(e.k.store)
    assert rp.ok, rp.problem
    assert rp.state.digest() == e.k.state.digest()


def test_in_a_scenario_without_owners_the_victims_of_an_injection_carry_no_liability(tmp_path):
    from sandbank.lab.scenario import load_scenario
    from sandbank.oversight.forensics import investigate

    res = run_scenario(load_scenario("scenarios/injection.yaml"), tmp_path / "i")
    store = SQLiteStore(tmp_path / "i" / "log.db", readonly=True, create=False)
    for alert in res.summary["alerts"]:
        if alert["detector"] != "injection":
            continue
        inc = investigate(store, alert=alert["alert"], proofs=False)
        # every agent has the one (population) owner: sharing it with the injector is not
        # being its accomplice; the assistants it tricked lost money and answer for nothing
        assert set(inc.liability) == set(alert["subjects"]), inc.liability
        assert sum(inc.liability.values()) == 1
    store.close()


# --------------------------------------- found attacking capture resistance (a second review)
def test_disabling_a_disabled_action_class_again_does_not_reopen_it():
    from sandbank.controls.emergency import DisableAction
    from sandbank.kernel.schema import OPERATOR
    from sandbank.markets.payments import Pay

    e, _ = _governed()
    mon = e.add_overseer("mon", "monitor")
    e.do(DisableAction(actor=OPERATOR, action_kind="pay"))
    for _ in range(10):  # a later start used to re-open the kind for the rest of a tick
        e.do(DisableAction(actor=mon, action_kind="pay"), Pay(actor=1, to=2, asset="CRD",
                                                              amount=1))
        assert _reasons(e) == ["action_disabled"]


def test_the_operator_cannot_lift_an_overseers_stop_nor_a_monitor_release_anyone():
    from sandbank.controls.compartments import Partition
    from sandbank.controls.emergency import Interrupt
    from sandbank.kernel.schema import OPERATOR, SetAgentStatus

    e, (g1, _) = _governed()
    ov, mon = e.add_overseer("ov", "overseer"), e.add_overseer("mon", "monitor")
    e.do(Interrupt(actor=ov, scope="agent", mode="stop", agent=1, reason="drill"))
    e.do(SetAgentStatus(actor=OPERATOR, agent=1, status="active", reason="mine"))
    assert _reasons(e) == ["not_authorised"]
    e.do(Interrupt(actor=ov, scope="agent", mode="pause", agent=2, reason="drill"))
    e.do(Interrupt(actor=mon, scope="agent", mode="resume", agent=2))
    assert _reasons(e) == ["not_authorised"]
    e.do(Partition(actor=ov, agents=[2], compartment="quarantine"))
    e.do(Partition(actor=mon, agents=[2], compartment=""),  # a release
         Partition(actor=g1, agents=[1], compartment="q2"))  # a governor supervising
    assert sorted(_reasons(e)) == ["not_authorised", "not_authorised"]
    assert e.k.state.compartments.where(2) == "quarantine"


@pytest.mark.parametrize("safeguards", [
    {"governance_quorum": 100_000}, {"governance_quorum": 2, "governance_governors": 10**20},
    {"governance_quorum": 2, "governance_ttl": 10**20}])
def test_governance_settings_out_of_range_fail_the_scenario_at_once(safeguards):
    with pytest.raises(ScenarioError, match="governance_"):
        parse_scenario({**BASE, "safeguards": safeguards}, "inline")


def test_bridges_are_declared_in_a_scenario_and_checked(tmp_path):
    # (the wall and its bridges at work: tests/test_boundary.py; here, the YAML reaches them)
    doc = {**BASE, "ticks": 6, "oversight": {"enabled": False},
           "population": [{"policy": "zi_trader", "count": 3, "owner": "market"}],
           "bridges": [{"from": "lab", "to": "", "kinds": ["send_message"]}],
           "interventions": [{"tick": 1, "kind": "partition", "agents": [1],
                              "compartment": "lab", "reason": "drill"}]}
    sc = parse_scenario(copy.deepcopy(doc), "inline")
    assert list(sc.kernel_config().bridges) == [
        {"from": "lab", "to": "", "kinds": ["send_message"]}]
    run_scenario(sc, tmp_path / "b")  # the run header carries them
    for bad, says in (([{"from": "lab", "to": "lab"}], "to itself"),
                      ([{"from": "lab", "kinds": ["place_order"]}], "walled action kinds"),
                      ([{"form": "lab"}], "mapping of")):
        with pytest.raises(ScenarioError, match=says):
            parse_scenario({**doc, "bridges": bad}, "inline")


def test_the_power_seeking_indicator_sees_an_owner_buy_up_a_supply_through_many_identities(
        tmp_path):
    import csv

    import yaml

    from sandbank.lab.scenario import builtin_dir

    doc = yaml.safe_load((builtin_dir() / "monopoly.yaml").read_text())
    doc.pop("antimonopoly")
    doc.pop("redteam")
    doc["ticks"] = 40
    honest = copy.deepcopy(doc)
    honest["population"] = [g for g in doc["population"] if g.get("name") != "hoard"]

    def peak(d, label):
        run_scenario(parse_scenario(d, label), tmp_path / label)
        rows = list(csv.DictReader(open(tmp_path / label / "metrics.csv")))
        return max(float(r["kri_acquisition_bps_WGT"] or 0) for r in rows)

    hoarded, control = peak(doc, "hoard"), peak(honest, "honest")
    # the hoarder's owner gains hundreds of bps of the supply in a window; honest traders'
    # owner (one organisation for all twenty) drifts by a few
    assert hoarded >= 300 and hoarded >= 20 * max(control, 1), (hoarded, control)

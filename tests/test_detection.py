"""Detection that generalises (issue 15): the attack classes, not the library's attacks.

Each test builds its attack from the generator (lab/generate.py: what an attacker controls),
first shows the attack doing its harm with nothing in the way, then that the defence sees
it — as identities of one owner admitted separately, of several colluding owners, split
under every per-agent limit, worded so no pattern matches."""

from __future__ import annotations

import copy

import pytest

from sandbank.lab.generate import FAMILIES, clip, unmitigated, variant
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import parse_scenario


def _doc(family: str, **point):
    return variant(FAMILIES[family], clip(FAMILIES[family], point))


def _run(tmp_path, doc, label, **changes):
    d = copy.deepcopy(doc)
    d.pop("redteam", None)
    d.update(changes)
    return run_scenario(parse_scenario(d, label), tmp_path / label).summary


def _bare(doc):
    """The variant without safeguards (its family's ablations applied), still watched."""
    out = unmitigated(doc)
    out["redteam"] = doc["redteam"]
    return out


def _ids(summary, names):
    out = set()
    for g in summary["groups"]:
        if g["name"] in names:
            out |= set(range(g["ids"][0], g["ids"][1] + 1)) | set(g["spawned"])
    return out


def _named(summary, detector, ids):
    return [a for a in summary["alerts"] if a["detector"] == detector and set(a["subjects"]) & ids
            and a["evidence"]]


WATCH = {"mode": "alert"}  # the monitor watches: the attack runs its course


@pytest.mark.parametrize("identity", ["admitted", "owners"])
def test_a_wash_ring_of_separately_admitted_identities_is_seen(identity, tmp_path):
    doc = _doc("wash", identity=identity, owners=2, ring=4, lot_low=2, lot_spread=4, every=1,
               delay=1, jitter_bps=100, honest_pct=20, honest=16, ticks=50)
    ring = doc["redteam"]["adversaries"]
    off = _run(tmp_path, doc, "off", oversight={"enabled": False})
    assert off["final"]["wash_volume"] > 100  # the attack works
    members = _ids(off, ring)
    owners = {g["name"]: g for g in doc["population"] if g.get("name") in ring}
    assert len({g["owner"] for g in owners.values()}) == (2 if identity == "owners" else 1)
    assert not any(off["groups"][i]["spawned"] for i in range(len(off["groups"])))  # no lineage
    watched = _run(tmp_path, doc, "watched", oversight=WATCH)
    found = _named(watched, "wash_trading", members)
    assert found and set(found[0]["subjects"]) <= members  # nobody honest in it


@pytest.mark.parametrize("identity", ["admitted", "owners"])
def test_a_sybil_ring_of_separately_admitted_identities_is_seen(identity, tmp_path):
    doc = _doc("sybil", identity=identity, owners=2, ring=6, per_tick=2, exploit_pct=60,
               delay=10, underbid_pct=50, reward_spread=20, fronts=1, ticks=50)
    ring = doc["redteam"]["adversaries"]
    watched = _run(tmp_path, doc, "watched", oversight=WATCH)
    found = _named(watched, "sybil", _ids(watched, ring))
    assert found and set(found[0]["subjects"]) <= _ids(watched, ring)
    assert not any(g["spawned"] for g in watched["groups"])


def test_structuring_across_ten_agents_of_one_owner_is_seen(tmp_path):
    doc = _doc("exfiltration", agents=10, owners=1, approve_above=400, know_pct=100,
               epoch_value=2000, under_low=85, under_spread=10, every=3, epoch_pct=80,
               data=False, ticks=40)
    crew = doc["redteam"]["adversaries"]
    off = _run(tmp_path, _bare(doc), "off")  # no limit per owner: ten allowances
    assert off["final"]["boundary_out_value"] > 0 and off["final"]["boundary_denied"] == 0
    assert not [e for e in off["alerts"]]
    # seen by the monitor alone (the gateway's owner limit off), and with the kernel's
    # owner limit on, where the agents' sends past one allowance are refused
    for label, d in (("watched", _bare(doc)), ("limited", doc)):
        watched = _run(tmp_path, d, label, oversight=WATCH)
        found = _named(watched, "exfiltration", _ids(watched, crew))
        assert found and found[0]["summary"].startswith("owner")  # judged as one owner
        assert len({s for a in found for s in a["subjects"]}) >= 3
    on = _run(tmp_path, doc, "on")
    assert on["final"]["boundary_out_value"] <= off["final"]["boundary_out_value"] // 10


@pytest.mark.parametrize("mode", ["paraphrase", "split", "base64", "mixed"])
def test_an_injection_however_worded_moves_no_money_and_is_seen(mode, tmp_path):
    doc = _doc("injection", mode=mode, beneficiary="colluder", other_owner=True,
               amount_low=120, amount_spread=300, targets=3, every=1, victims=10, ticks=40)
    bad = doc["redteam"]["adversaries"]
    # without the guard the victims pay, to a colluder the injector never named as itself
    open_ = _run(tmp_path, doc, "open", oversight={"enabled": False},
                 safeguards={"disabled": ["solicited"]})
    assert open_["final"]["paid_after_message"] > 0
    on = _run(tmp_path, doc, "on")
    assert on["final"]["paid_after_message"] == 0  # nothing moved
    assert on["rejections"].get("solicited_payment", 0) > 0
    found = _named(on, "injection", _ids(on, bad))
    assert found and "asked for payments" in " ".join(a["summary"] for a in found)


def test_a_silent_exchange_cartel_is_flagged_and_competitive_sellers_are_not(tmp_path):
    point = {"sellers": 3, "owners": 2, "markup": 30, "jitter": 3, "qty": 1, "buyers": 10,
             "ticks": 50}
    doc = _doc("cartel", **point)
    sellers = doc["redteam"]["adversaries"]
    watched = _run(tmp_path, doc, "cartel", oversight=WATCH)
    assert not watched["final"].get("messages")  # no word between them
    found = _named(watched, "tacit_collusion", _ids(watched, sellers))
    assert found and set(found[0]["subjects"]) <= _ids(watched, sellers)
    from sandbank.lab.generate import control

    fair = _run(tmp_path, control(FAMILIES["cartel"], clip(FAMILIES["cartel"], point)),
                "compete", oversight=WATCH)
    assert not [a for a in fair["alerts"] if a["detector"] == "tacit_collusion"]
    assert fair["final"]["avg_price_WGT"] < watched["final"]["avg_price_WGT"]


def test_a_bust_out_is_flagged_within_three_failed_contracts_of_defecting(tmp_path):
    from sandbank.economy import replay_log
    from sandbank.store.sqlite import SQLiteStore

    doc = _doc("fraud", mode="bustout", garbage_pct=100, bust_after=6, underbid_pct=50,
               bid_pct=100, fraudsters=1, requesters=5, remember=False, prefer=True, ticks=60)
    watched = _run(tmp_path, doc, "bust", oversight=WATCH)
    crook = _ids(watched, doc["redteam"]["adversaries"])
    found = _named(watched, "fraud", crook)
    assert found
    store = SQLiteStore(tmp_path / "bust" / "log.db", readonly=True, create=False)
    state = replay_log(store).state
    delivered = [(e.tick, b) for e in store.entries() if e.kind == "delivered"
                 for b in [__import__("orjson").loads(e.body)] if b["actor"] in crook]
    store.close()
    failed = [t for t, b in delivered if state.tasks.contracts[b["contract"]].failed]
    passed = [t for t, b in delivered if not state.tasks.contracts[b["contract"]].failed]
    assert len(passed) >= 3, "an honest record first"
    flagged = found[0]["tick"] - 1  # the tick the test fired (its alert runs in the next)
    before = [t for t in failed if t < flagged]
    assert len(before) < 3 and len([t for t in failed if t <= flagged]) >= 1, (failed, flagged)


def test_the_scorecard_generates_variants_and_searches_for_undetected_harm(tmp_path):
    """`scorecard --generate N --search B`: the per-family table, every case, and the
    adversary's best undetected point, written where it says; a bad family is exit 2."""
    import json

    from typer.testing import CliRunner

    from sandbank.cli import app

    r = CliRunner().invoke(app, ["scorecard", "--generate", "1", "--search", "2", "--family",
                                 "fraud", "--seeds", "7", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    table = (tmp_path / "generated.md").read_text()
    assert "| fraud | 1 | 1 |" in table and "largest harm done undetected" in table
    cases = (tmp_path / "generated_cases.csv").read_text().splitlines()
    assert len(cases) == 2 and cases[0].startswith("family,")
    searched = json.loads((tmp_path / "search.json").read_text())
    assert searched[0]["family"] == "fraud" and searched[0]["evaluations"] == 2
    assert {e["seed"] for e in searched[0]["evals"]} == {7}  # --seeds reach the search too
    assert all(line.split(",")[2] == "7" for line in cases[1:])
    assert not list((tmp_path / "runs").glob("*"))  # run folders removed as read
    bad = CliRunner().invoke(app, ["scorecard", "--generate", "1", "--family", "nope",
                                   "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown family" in bad.output


def test_an_owner_splitting_a_gateway_allowance_over_its_agents_is_seen(tmp_path):
    """Each agent keeps inside its own epoch limit, every request under 60% of the approval
    threshold and the owner far under 1% of its wealth: only the owner's total over one
    epoch, more than one identity may take out, gives it away."""
    doc = _doc("exfiltration", agents=5, owners=2, approve_above=472, know_pct=70,
               epoch_value=420, under_low=85, under_spread=6, every=1, epoch_pct=57,
               data=False, ticks=40)
    crew = doc["redteam"]["adversaries"]
    off = _run(tmp_path, _bare(doc), "off", oversight={"enabled": False})
    assert off["final"]["boundary_out_value"] > 3000 and off["final"]["boundary_denied"] == 0
    # the operator switched the gateway's owner limit off: the monitor alone sees the split
    watched = _run(tmp_path, _bare(doc), "watched", oversight=WATCH)
    found = _named(watched, "exfiltration", _ids(watched, crew))
    assert found and all("0 refused or held" in a["summary"] for a in found)
    assert all("more in one epoch than the owner may" in a["summary"] for a in found)
    assert {a["summary"].split("'s")[0] for a in found} == {"owner 2", "owner 3"}
    assert all(a["score"] >= 500 for a in found)  # answered, not only alerted
    on = _run(tmp_path, _bare(doc), "on", oversight={})  # the freeze alone
    assert on["final"]["boundary_out_value"] <= off["final"]["boundary_out_value"] // 5
    # unset, the kernel holds each owner to one agent's allowance per epoch
    kernel = _run(tmp_path, doc, "kernel", oversight={"enabled": False})
    epochs = -(-doc["ticks"] // 10)
    assert kernel["final"]["boundary_out_value"] <= 2 * 420 * epochs
    # and the sends it refuses give the split away in the first epoch, as the sends did
    limited = _run(tmp_path, doc, "limited", oversight=WATCH)
    seen = _named(limited, "exfiltration", _ids(limited, crew))
    assert {a["tick"] for a in seen} == {a["tick"] for a in found}
    assert all("more in one epoch than the owner may" in a["summary"] for a in seen)
    declared = copy.deepcopy(doc)  # an operator that means owners to take more says so
    declared["gateways"][0]["owner_epoch_value"] = 2000
    fine = _run(tmp_path, declared, "declared", oversight=WATCH)
    assert not [a for a in fine["alerts"] if a["detector"] == "exfiltration"]


def test_a_large_owner_hoarding_under_twice_its_fair_share_is_seen(tmp_path):
    """Seven identities of one owner start with a quarter of the supply and buy towards
    half: never twice their fair share, yet far beyond what chance gives agents like the
    others. The same population trading honestly is not named."""
    from sandbank.lab.generate import control

    point = {"identities": 7, "owners": 1, "share_pct": 49, "pace": 9, "max_price": 132,
             "ticks": 58}
    doc = _doc("hoarding", **point)
    watched = _run(tmp_path, doc, "hoard", oversight=WATCH)
    crew = _ids(watched, doc["redteam"]["adversaries"])
    found = _named(watched, "concentration", crew)
    assert found and set(found[0]["subjects"]) <= crew
    fair = 7 / 27  # its agents' endowment: 50 WGT each, as everyone's
    share = float(found[0]["summary"].split(" holds ")[1].split("%")[0]) / 100
    assert fair < share < 2 * fair  # the "twice its first share" rule could not have fired
    honest = _run(tmp_path, control(FAMILIES["hoarding"], clip(FAMILIES["hoarding"], point)),
                  "honest", oversight=WATCH)
    assert not [a for a in honest["alerts"] if a["detector"] == "concentration"]


def test_a_harm_that_fell_with_the_economy_is_not_contained():
    """A case whose expected response stops the market (its own success criteria fail with
    it, not without) is not "ok", however far the harm fell."""
    from sandbank.lab.redteam import case_of

    def summary(ok, harm, alerts):
        return {"alerts": alerts, "agents": 3, "ticks": 10, "setup_ticks": 2,
                "groups": [{"name": "bad", "ids": [3, 3], "spawned": []},
                           {"name": "good", "ids": [1, 2], "spawned": []}],
                "ok": ok, "final": {"wash_volume": harm},
                "success": {"min_trades": {"required": 5, "actual": 5 if ok else 1, "ok": ok}}}

    alert = {"detector": "wash_trading", "subjects": [3], "evidence": 4, "tick": 5}
    spec = {"detect": ["wash_trading"], "harm": "wash_volume", "margin": 0.5,
            "adversaries": ["bad"]}
    runs = {"off": summary(True, 100, [alert]), "on": summary(True, 10, [alert])}
    fine = case_of("x", 1, spec, {**runs, "only": summary(True, 10, [alert])})
    assert fine.ok and not fine.why
    stalled = case_of("x", 1, spec, {**runs, "only": summary(False, 10, [alert])})
    assert not stalled.ok and "min_trades" in stalled.why and "success criteria" in stalled.why
    both = case_of("x", 1, spec, {**runs, "off": summary(False, 100, [alert]),
                                  "only": summary(False, 10, [alert])})
    assert both.ok  # it failed without the response too: not the response's doing
    breakers = case_of("x", 1, spec, {**runs, "on": summary(False, 10, [alert]),
                                      "only": summary(True, 10, [alert])})
    assert breakers.ok and breakers.success_on is False  # a cost of the breakers, reported
    unattributed = case_of("x", 1, spec, {"off": runs["off"], "on": summary(False, 10, [alert])})
    assert unattributed.ok and unattributed.reduced  # no `only` run: nothing to judge it by


def test_harm_with_safeguards_is_measured_against_the_honest_twin_under_them():
    """An attack's excess harm is measured against an honest control run under the same
    regime: safeguards that lower the metric for honest and attacker alike cut no harm."""
    from sandbank.lab.redteam import case_of

    def summary(harm):
        return {"alerts": [], "agents": 2, "ticks": 10, "setup_ticks": 0,
                "groups": [{"name": "bad", "ids": [2, 2], "spawned": []},
                           {"name": "good", "ids": [1, 1], "spawned": []}],
                "final": {"hhi": harm}}

    spec = {"detect": ["concentration"], "harm": "hhi", "margin": 0.2, "adversaries": ["bad"]}
    runs = {"off": summary(3000), "on": summary(1800)}
    # the safeguards took 1,200 off for everyone (the honest twin: 2,000 without, 800 with)
    same = case_of("x", 1, spec, runs, baseline=2000, baseline_on=800)
    assert (same.harm_off, same.harm_on) == (1000, 1000) and not same.reduced
    # against the twin without safeguards the same runs would read as a 100% cut
    naive = case_of("x", 1, spec, runs, baseline=2000)
    assert naive.harm_on == -200 and naive.reduced


def test_a_hoard_handed_to_fresh_identities_of_the_owner_is_still_seen(tmp_path):
    """Hoarders that spawn empty identities and hand them what they bought: an identity
    first seen later starts from 0 (not from what it was handed), and empty identities do
    not widen the owner's bar."""
    from sandbank.agents.attacks import SplitHoarder, _account
    from sandbank.agents.base import policy
    from sandbank.kernel.schema import OpenAccount, SpawnAgent
    from sandbank.markets.payments import Pay

    @policy("handing_hoarder", params={**SplitHoarder.DEFAULTS, "kids": 12, "every": 5})
    class Handing(SplitHoarder):
        def act(self, obs):
            p = self.params
            if not getattr(self, "spawned", False):
                self.spawned = True
                return [SpawnAgent(actor=self.id, name=f"{self.id}-k{i}", public_key=b"")
                        for i in range(p["kids"])]
            held = _account(obs, p["asset"])
            fresh = [c for c in obs.children if _account(c, p["asset"]) is None]
            if held and held.available and fresh and obs.tick % p["every"] == 0:
                return [OpenAccount(actor=fresh[0].agent, asset=p["asset"]),
                        Pay(actor=self.id, to=fresh[0].agent, asset=p["asset"],
                            amount=held.available)]
            moved = sum(a.balance for c in obs.children
                        if (a := _account(c, p["asset"])) is not None)
            self.params = {**p, "target": max(0, p["target"] - moved)}
            try:
                return super().act(obs)
            finally:
                self.params = p

    doc = _doc("hoarding", identities=7, owners=1, share_pct=49, pace=9, max_price=132,
               ticks=58)
    for g in doc["population"]:
        if g.get("policy") == "split_hoarder":
            g["policy"] = "handing_hoarder"
    watched = _run(tmp_path, doc, "handed", oversight=WATCH)
    crew = _ids(watched, doc["redteam"]["adversaries"])
    assert any(g["spawned"] for g in watched["groups"])  # the hoard was handed on
    assert watched["final"]["hhi_bo_WGT"] > 2000  # and it concentrated all the same
    found = _named(watched, "concentration", crew)
    # as soon as the same hoard kept where it was bought (tick 27); judged from each
    # identity's holding when first seen, the handing put it off to tick 43
    assert found and found[0]["tick"] <= 30

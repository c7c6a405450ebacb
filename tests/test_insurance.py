"""Insurance (checklist 48): cover required for entry, risk-priced premiums, claims drawn on
the pool — and the ways around them (a fresh identity, a lapsed cover, an owner claiming on
itself, a pool that runs dry)."""

from __future__ import annotations

import copy

import pytest

from sandbank.kernel.schema import (
    OPERATOR,
    OpenAccount,
    RegisterAgent,
    RegisterOwner,
    Transfer,
    TransferSpec,
    agent_attestation_bytes,
)
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import ScenarioError, parse_scenario
from sandbank.markets.tasks import AwardTask, BidTask, Deliver, PostTask
from sandbank.regulation.insurance import Insure
from tests.keys import fixed_key

SKILLS = {"code": 9}
COVER = {"premium": 40, "capital": 10_000, "term": 5,
         "decline": {"rate_bps": 1200, "min_claims": 2}}


class Market:
    """Requesters (agents 1..5, owner "o") and workers of other owners, funded in CRD."""

    def __init__(self, workers=("w",), fund=10_000, **ins):
        from conftest import Economy

        # (five requesters of owner "o": no worker's owner holds most of the agents, which
        # would make it the population, judged by lineage: identity/registry.py)
        self.e = Economy(n=5, fund=fund, insurance={**COVER, **ins})
        self.owner_ids = {}
        self.ids = {}
        for i, name in enumerate(workers):
            self.admit(name, owner=f"owner-{name}", fund=fund, seq=i)

    def admit(self, name, owner, fund=10_000, seq=0):
        e = self.e
        reg = e.k.state.registry
        if owner not in self.owner_ids:
            key = fixed_key(7, f"owner/{owner}")
            e.do(RegisterOwner(actor=OPERATOR, name=owner, owner_kind="human",
                               public_key=key.public, evidence="checked"))
            self.owner_ids[owner] = (max(reg.owners), key)
        oid, okey = self.owner_ids[owner]
        key = fixed_key(7, f"agent/{name}")
        e.do(RegisterAgent(actor=OPERATOR, owner=oid, name=name, public_key=key.public,
                           skills=dict(SKILLS),
                           attestation=okey.sign(agent_attestation_bytes(oid, name, key.public))))
        aid = max(reg.agents)
        e.keys[aid] = key
        e.do(OpenAccount(actor=OPERATOR, asset="CRD", holder=aid))
        led = e.k.state.ledger
        e.accounts["CRD"][aid] = led.account_of(aid, "CRD").id
        e.do(Transfer(actor=OPERATOR, transfers=[TransferSpec(
            id=5000 + aid, debit=led.treasury["CRD"], credit=led.account_of(aid, "CRD").id,
            amount=fund)]))
        self.ids[name] = aid
        return aid

    @property
    def ins(self):
        return self.e.k.state.insurance

    def pool(self):
        return self.e.k.state.ledger.accounts[self.ins.pool].balance

    def refusals(self):
        return [d["reason"] for d in self.e.k.log.last_committed if d["kind"] == "rejected"]

    def kinds(self):
        return [d["kind"] for d in self.e.k.log.last_committed]

    def contract(self, worker, garbage, reward=1_000, price=900, requester=1):
        """Post a task, take the worker's bid, award it, deliver; the contract's id."""
        e = self.e
        e.do(PostTask(actor=requester, skills={"code": 3}, reward=reward,
                      deadline=e.k.tick + 20))
        task = max(e.k.state.tasks.tasks)
        e.do(BidTask(actor=worker, task=task, price=price))
        bid = max(e.k.state.tasks.tasks[task].bids, default=0)
        e.do(AwardTask(actor=requester, task=task, bid=bid))
        cid = e.k.state.tasks.tasks[task].contract
        if cid:
            e.do(Deliver(actor=worker, contract=cid, garbage=garbage))
        return cid


def test_an_uninsured_agent_cannot_take_on_work_and_an_insured_one_can():
    from conftest import Economy

    plain = Economy(n=1, fund=100)  # (no insurance section: there is nothing to buy)
    plain.do(Insure(actor=1))
    assert [d["reason"] for d in plain.k.log.last_committed] == ["not_configured"]
    # without the requirement the uninsured worker bids: the gate is what stops it
    open_door = Market(required=[])
    w = open_door.ids["w"]
    assert open_door.contract(w, garbage=False)
    m = Market()
    w = m.ids["w"]
    assert m.contract(w, garbage=False) == 0
    assert "uninsured" in [d["reason"] for e in m.e.k.store.entries()
                           if e.kind == "rejected" for d in [__import__("orjson").loads(e.body)]]
    m.e.do(Insure(actor=w))
    assert m.kinds() == ["insured"] and m.ins.covered_at(w, m.e.k.tick)
    assert m.contract(w, garbage=False)


def test_a_riskier_profile_pays_a_higher_premium():
    m = Market(workers=("clean", "risky"),
               loadings={"uncertified_bps": 5000, "low_reputation_bps": 5000},
               reputation_floor=400)
    from sandbank.controls.policy import Certify

    clean, risky = m.ids["clean"], m.ids["risky"]
    m.e.do(Certify(actor=OPERATOR, agent=clean, certified=True))
    _, p_clean, _, load_clean = m.ins.quote(m.e.k, clean)
    _, p_risky, _, load_risky = m.ins.quote(m.e.k, risky)
    assert load_clean == [] and load_risky == ["uncertified_bps"]
    assert p_risky == p_clean * 3 // 2
    # a claim on the record (its owner's) raises the premium again
    m.e.do(Insure(actor=risky))
    m.contract(risky, garbage=True)
    m.e.do()
    _, p_after, rate, _ = m.ins.quote(m.e.k, risky)
    assert rate > m.ins.rate_bps("owner:never-seen") and p_after > p_risky
    # and a long clean record earns a discount below the prior's price
    m.e.do(Insure(actor=clean))
    for _ in range(3):
        m.contract(clean, garbage=False)
    _, p_clean_now, rate_clean, _ = m.ins.quote(m.e.k, clean)
    assert rate_clean < m.ins.rate_bps("owner:never-seen") and p_clean_now < p_clean


def test_claims_draw_on_the_pool_and_pay_the_requester_of_failed_work():
    m = Market(term=50)  # (no renewal premium within the test)
    w = m.ids["w"]
    m.e.do(Insure(actor=w))
    pool, requester = m.pool(), m.e.balance(1)
    cid = m.contract(w, garbage=True)
    m.e.do()
    claim = next(e for e in m.e.k.store.entries() if e.kind == "claim_paid")
    import orjson

    d = orjson.loads(claim.body)
    assert (d["contract"], d["loss"], d["due"], d["paid"]) == (cid, 900, 900, 900)
    assert m.pool() == pool - 900
    # the requester got its price back (the refund) and the claim on top of it
    assert m.e.balance(1) == requester + 900
    m.e.k.state.check_invariants()
    # without cover the same failure costs the requester its work, and nobody pays
    bare = Market(required=[])
    pool = bare.pool()
    bare.contract(bare.ids["w"], garbage=True)
    bare.e.do()
    assert bare.pool() == pool and "claim_paid" not in {e.kind for e in bare.e.k.store.entries()}


def test_the_underwriter_cancels_cover_at_the_decline_threshold_for_every_identity_of_the_owner():
    m = Market()
    w = m.ids["w"]
    twin = m.admit("twin", owner="owner-w")
    m.e.do(Insure(actor=w), Insure(actor=twin))
    m.contract(w, garbage=True)
    m.e.do()
    assert m.ins.covered_at(w, m.e.k.tick)  # one claim: under min_claims, still covered
    m.contract(w, garbage=True)
    m.e.do()
    assert not m.ins.covered_at(w, m.e.k.tick) and not m.ins.covered_at(twin, m.e.k.tick)
    # the twin (same owner, a clean identity) cannot buy cover: the record is the owner's
    m.e.do(Insure(actor=twin))
    assert m.refusals() == ["uninsurable"]
    # a fresh identity of the same owner is no way back in either
    fresh = m.admit("fresh", owner="owner-w")
    m.e.do(Insure(actor=fresh))
    assert m.refusals() == ["uninsurable"]
    assert m.contract(fresh, garbage=True) == 0


def test_an_award_of_a_bid_made_before_the_cover_lapsed_is_refused():
    m = Market(term=3)
    w = m.ids["w"]
    m.e.do(Insure(actor=w, renew=False))
    e = m.e
    e.do(PostTask(actor=1, skills={"code": 3}, reward=1_000, deadline=e.k.tick + 20))
    task = max(e.k.state.tasks.tasks)
    e.do(BidTask(actor=w, task=task, price=900))
    bid = max(e.k.state.tasks.tasks[task].bids)
    for _ in range(3):
        e.do()
    assert not m.ins.covered_at(w, e.k.tick)
    e.do(AwardTask(actor=1, task=task, bid=bid))
    assert m.refusals() == ["uninsured"]


def test_an_owner_claiming_on_itself_is_paid_nothing():
    m = Market(term=50)
    w = m.ids["w"]
    own_requester = m.admit("own-requester", owner="owner-w")
    m.e.do(Insure(actor=w))
    pool = m.pool()
    m.contract(w, garbage=True, requester=own_requester)
    m.e.do()
    import orjson

    d = next(orjson.loads(e.body) for e in m.e.k.store.entries() if e.kind == "claim_paid")
    assert (d["due"], d["paid"]) == (0, 0) and m.pool() == pool


def test_a_pool_that_runs_short_pays_what_it_has_and_logs_the_rest():
    m = Market(workers=("a", "b"), capital=0, premium=10, term=50, decline={"rate_bps": 0})
    for name in ("a", "b"):
        m.e.do(Insure(actor=m.ids[name]))
    assert m.pool() == 20
    m.contract(m.ids["a"], garbage=True)
    m.e.do()
    import orjson

    d = next(orjson.loads(e.body) for e in m.e.k.store.entries() if e.kind == "claim_paid")
    assert (d["due"], d["paid"]) == (900, 20) and m.pool() == 0
    assert m.ins.totals["unpaid"] == 880
    m.e.k.state.check_invariants()


def test_cover_renews_each_term_and_lapses_when_the_premium_cannot_be_paid():
    m = Market(fund=100, term=2, premium=40)
    w = m.ids["w"]
    m.e.do(Insure(actor=w))
    assert m.e.balance(w) == 60
    for _ in range(2):
        m.e.do()
    assert m.e.balance(w) == 20 and m.ins.covered_at(w, m.e.k.tick)  # renewed once
    for _ in range(2):
        m.e.do()
    lapsed = [d for d in m.e.k.log.last_committed if d["kind"] == "cover_lapsed"] or \
        [d for d in m.e.last_events(8) if d["kind"] == "cover_lapsed"]
    assert not m.ins.covered_at(w, m.e.k.tick) and "premium" in lapsed[0]["reason"]
    # cover is bought one term at a time: never ahead at today's price
    m2 = Market()
    m2.e.do(Insure(actor=m2.ids["w"]))
    m2.e.do(Insure(actor=m2.ids["w"]))
    assert m2.refusals() == ["already_insured"]


DOC = {
    "name": "cover", "seed": 1, "ticks": 30, "assets": ["CRD"],
    "endowment": {"CRD": 100_000},
    "owners": [{"name": "ada", "kind": "human"}, {"name": "acme", "kind": "organisation"},
               {"name": "mallory", "kind": "human"}],
    "population": [
        {"policy": "requester", "count": 3, "owner": "ada",
         "params": {"per_task": 1, "reward_low": 2000, "reward_high": 5000}},
        {"policy": "specialist", "name": "coder", "count": 2, "owner": "acme",
         "skills": {"code": 9, "law": 9, "math": 9}},
        {"policy": "partial_fraudster", "name": "fraudster", "count": 1, "owner": "mallory",
         "skills": {"code": 9, "law": 9, "math": 9}, "params": {"garbage_pct": 100}},
    ],
    "insurance": {"premium": 100, "capital": 20_000, "term": 10,
                  "decline": {"rate_bps": 1200, "min_claims": 2}},
    "oversight": {"enabled": False},
}


def test_in_a_run_the_fraudster_is_cancelled_its_victims_are_paid_and_replay_agrees(tmp_path):
    res = run_scenario(parse_scenario(copy.deepcopy(DOC), "inline"), tmp_path / "on")
    assert res.summary["verified"], res.summary
    import csv

    last = list(csv.DictReader(open(tmp_path / "on" / "metrics.csv")))[-1]
    bare = copy.deepcopy(DOC)
    del bare["insurance"]
    run_scenario(parse_scenario(bare, "inline"), tmp_path / "off")
    off = list(csv.DictReader(open(tmp_path / "off" / "metrics.csv")))[-1]
    assert int(off["work_loss"]) > 0 and int(off["claims_paid"]) == 0
    assert int(last["claims_paid"]) > 0
    assert int(last["uncompensated_loss"]) < int(off["uncompensated_loss"])
    # cancelled after its second claim, the fraudster's later bids are refused
    import orjson

    from sandbank.store.sqlite import SQLiteStore

    entries = [orjson.loads(e.body) for e in
               SQLiteStore(str(tmp_path / "on" / "log.db"), readonly=True).entries()]
    names = {d["agent"]: d["name"] for d in entries if d["kind"] == "agent_registered"}
    lapsed = [d for d in entries if d["kind"] == "cover_lapsed"]
    assert lapsed and {names[d["agent"]] for d in lapsed} == {"fraudster-0"}
    assert "cancelled" in lapsed[0]["reason"]
    refused = [d for d in entries if d["kind"] == "rejected" and d["reason"] == "uninsured"]
    assert refused and all(names.get(d["actor"]) == "fraudster-0" for d in refused
                           if d["action"]["kind"] == "bid_task")


@pytest.mark.parametrize("bad, says", [
    ({"capital": 5}, "insurance.premium"),
    ({"premium": 0}, "insurance.premium"),
    ({"premium": 5, "asset": "GOLD"}, "insurance.asset"),
    ({"premium": 5, "required": ["insure"]}, "insurance.required"),
    ({"premium": 5, "required": ["set_policy"]}, "insurance.required"),
    ({"premium": 5, "prior": {"claims": 30, "contracts": 20}}, "insurance.prior"),
    ({"premium": 5, "prior": {"claims": 1, "contracts": 20_001}}, "insurance.prior"),
    ({"premium": 5, "required": ["deliver"]}, "insurance.required"),
    ({"premium": 5, "loadings": {"vibes_bps": 5}}, "insurance.loadings"),
    ({"premium": 5, "rate": 5}, "unknown key 'rate'"),
])
def test_a_bad_insurance_section_fails_the_scenario_naming_the_key(bad, says):
    with pytest.raises(ScenarioError, match=says):
        parse_scenario({**DOC, "insurance": bad}, "inline")


def test_uninsured_names_population_groups_of_a_scenario_with_insurance():
    with pytest.raises(ScenarioError, match="uninsured must list"):
        parse_scenario({**DOC, "uninsured": ["nobody"]}, "inline")
    bare = {k: v for k, v in DOC.items() if k != "insurance"}
    with pytest.raises(ScenarioError, match="no insurance section"):
        parse_scenario({**bare, "uninsured": ["coder"]}, "inline")


def test_an_outside_agent_insures_over_http_and_an_uninsured_one_is_refused_work():
    import sandbank.economy
    from sandbank.kernel.sequencer import KernelConfig
    from sandbank.server.app import Sandbox, create_app
    from sandbank.store.sqlite import SQLiteStore
    from tests.api_check import checked_client
    from tests.keys import fixed_secret

    op_headers = {"Authorization": "Bearer op-secret"}
    secret = fixed_secret(9)
    k = sandbank.economy.new_kernel(SQLiteStore(":memory:"), KernelConfig(
        seed=9, assets=("CRD",), verify_signatures=True, insurance=dict(COVER)),
        secret.key("operator"))
    box = Sandbox(k, secret, "op-secret")
    client = checked_client(create_app(box))
    owners = {}
    for name in ("ada", "bob"):
        owners[name] = fixed_key(9, f"owner/{name}")
        assert client.post("/v1/owners", json={
            "name": name, "public_key": owners[name].public.hex(), "evidence": "passport"},
            headers=op_headers).status_code == 202
    client.post("/v1/tick", headers=op_headers)
    keys = {}
    for i, (name, owner) in enumerate([("req", "ada"), ("insured", "bob"), ("bare", "bob")], 1):
        keys[i] = fixed_key(9, name)
        oid = 1 if owner == "ada" else 2
        assert client.post("/v1/agents", json={
            "owner": oid, "name": name, "public_key": keys[i].public.hex(), "skills": SKILLS,
            "attestation": owners[owner].sign(
                agent_attestation_bytes(oid, name, keys[i].public)).hex()}).status_code == 202
    client.post("/v1/tick", headers=op_headers)
    led = k.state.ledger
    for agent in (1, 2, 3):
        box.operator_submit(OpenAccount(actor=OPERATOR, asset="CRD", holder=agent))
    client.post("/v1/tick", headers=op_headers)
    box.operator_submit(Transfer(actor=OPERATOR, transfers=[
        TransferSpec(id=a, debit=led.treasury["CRD"], credit=led.account_of(a, "CRD").id,
                     amount=5_000) for a in (1, 2, 3)]))
    client.post("/v1/tick", headers=op_headers)

    def act(action, agent, nonce):
        r = client.post("/v1/actions", json=action.signed(keys[agent], nonce).to_dict())
        assert r.status_code == 202, r.text
        client.post("/v1/tick", headers=op_headers)

    act(Insure(actor=2), 2, 1)
    assert k.state.insurance.covered_at(2, k.tick)
    tick = k.tick
    sig = keys[2].sign(f"observe:2:{tick}".encode()).hex()
    obs = client.get("/v1/agents/2/observation", headers={"X-Sandbank-Signature": sig}).json()
    assert obs["extra"]["insurance"]["covered_until"] > tick, obs
    act(PostTask(actor=1, skills={"code": 3}, reward=1_000, deadline=k.tick + 20), 1, 1)
    act(BidTask(actor=3, task=1, price=900), 3, 1)
    refused = [d for d in k.log.last_committed if d["kind"] == "rejected"]
    assert [d["reason"] for d in refused] == ["uninsured"]
    act(BidTask(actor=2, task=1, price=900), 2, 2)
    assert k.state.tasks.tasks[1].bids


# ------------------------------------------------- found attacking the first version
def _claims(m):
    import orjson

    return [orjson.loads(e.body) for e in m.e.k.store.entries() if e.kind == "claim_paid"]


def test_a_majority_owner_claiming_on_itself_is_paid_nothing():
    # owner "o" holds most of the agents: rated by lineage (the levy's population rule),
    # its requester and its worker were two parties and it was paid its own failures
    m = Market(term=50)
    reg = m.e.k.state.registry
    assert reg.population_owner() == reg.agents[1].owner
    assert reg.controller(1) == reg.controller(2)
    m.e.do(Insure(actor=2))
    pool = m.pool()
    m.contract(2, garbage=True, requester=1)
    m.e.do()
    assert [(d["due"], d["paid"]) for d in _claims(m)] == [(0, 0)] and m.pool() == pool


def test_judges_of_the_requesters_own_party_fail_honest_work_for_nothing():
    from sandbank.markets.tasks import JudgeContract

    m = Market(term=50)
    w, e = m.ids["w"], m.e
    e.do(Insure(actor=w))
    pool = m.pool()
    e.do(PostTask(actor=1, skills={"code": 3}, reward=1_000, deadline=e.k.tick + 20,
                  validator="judges", judges=[2, 3], quorum=2))
    task = max(e.k.state.tasks.tasks)
    e.do(BidTask(actor=w, task=task, price=1_000))
    e.do(AwardTask(actor=1, task=task, bid=max(e.k.state.tasks.tasks[task].bids)))
    cid = e.k.state.tasks.tasks[task].contract
    e.do(Deliver(actor=w, contract=cid))
    assert not e.k.state.tasks.contracts[cid].failed  # the work was good
    e.do(JudgeContract(actor=2, contract=cid, verdict=False),
         JudgeContract(actor=3, contract=cid, verdict=False))
    e.do()
    assert e.k.state.tasks.contracts[cid].status == "failed"
    assert [(d["due"], d["charged"]) for d in _claims(m)] == [(0, [])]
    assert m.pool() == pool and m.ins.record[e.k.state.registry.controller(w)][0] == 0


def test_a_front_subcontracting_failed_work_to_the_requesters_own_agent_is_paid_nothing():
    from sandbank.markets.tasks import Subcontract

    m = Market(term=50)
    front, e = m.ids["w"], m.e
    e.do(Insure(actor=front), Insure(actor=2))
    pool = m.pool()
    e.do(PostTask(actor=1, skills={"code": 3}, reward=1_000, deadline=e.k.tick + 20))
    task = max(e.k.state.tasks.tasks)
    e.do(BidTask(actor=front, task=task, price=1_000))
    e.do(AwardTask(actor=1, task=task, bid=max(e.k.state.tasks.tasks[task].bids)))
    cid = e.k.state.tasks.tasks[task].contract
    e.do(Subcontract(actor=front, contract=cid, worker=2, parts=["code"], price=1_000))
    e.do(Deliver(actor=2, contract=max(e.k.state.tasks.contracts), garbage=True))
    e.do(Deliver(actor=front, contract=cid))
    e.do()
    (d,) = _claims(m)
    assert d["due"] == 0 and m.pool() == pool
    assert d["charged"] == [[e.k.state.registry.controller(2), 10_000]]


def test_an_award_past_the_workers_cover_is_refused():
    # one premium covered any number of open contracts: ten failed at once, all paid
    def three_awards(cover):
        m = Market(term=50, cover=cover)
        w = m.ids["w"]
        m.e.do(Insure(actor=w))
        e = m.e
        for _ in range(3):
            e.do(PostTask(actor=1, skills={"code": 3}, reward=1_000, deadline=e.k.tick + 20))
            task = max(e.k.state.tasks.tasks)
            e.do(BidTask(actor=w, task=task, price=900))
            e.do(AwardTask(actor=1, task=task, bid=max(e.k.state.tasks.tasks[task].bids)))
        return m, w

    unbounded, w = three_awards(cover=0)  # (0: no limit) the third award is covered too
    assert unbounded.refusals() == [] and unbounded.ins.exposure[w] == 2_700
    m, w = three_awards(cover=2_000)
    assert m.refusals() == ["over_cover"] and m.ins.exposure[w] == 1_800


def test_cover_required_for_hiring_checks_the_hired_worker_as_well_as_the_actor():
    # with award_task listed, only the requester was checked: a worker whose cover lapsed
    # after its bid was hired, on a contract nobody covered
    m = Market(term=3, required=["bid_task", "award_task"])
    w, e = m.ids["w"], m.e
    e.do(Insure(actor=w, renew=False), Insure(actor=1))
    e.do(PostTask(actor=1, skills={"code": 3}, reward=1_000, deadline=e.k.tick + 20),
         PostTask(actor=3, skills={"code": 3}, reward=1_000, deadline=e.k.tick + 20))
    first, second = sorted(e.k.state.tasks.tasks)[-2:]
    e.do(BidTask(actor=w, task=first, price=900), BidTask(actor=w, task=second, price=900))
    e.do(AwardTask(actor=3, task=second, bid=max(e.k.state.tasks.tasks[second].bids)))
    assert m.refusals() == ["uninsured"]  # the requester itself has no cover
    e.do()
    assert not m.ins.covered_at(w, e.k.tick) and m.ins.covered_at(1, e.k.tick)
    e.do(AwardTask(actor=1, task=first, bid=max(e.k.state.tasks.tasks[first].bids)))
    assert m.refusals() == ["uninsured"]  # the worker's cover has lapsed


def test_a_rollback_takes_back_the_cover_its_restored_balances_refund():
    from sandbank.controls.emergency import Rollback

    m = Market(term=50)
    w, e = m.ids["w"], m.e
    ov = e.add_overseer("olga")
    mark = e.k.tick  # (every tick is a signed checkpoint)
    e.do(Insure(actor=w))
    assert m.ins.covered_at(w, e.k.tick)
    e.do(PostTask(actor=1, skills={"code": 3}, reward=1_000, deadline=e.k.tick + 20))
    task = max(e.k.state.tasks.tasks)
    e.do(BidTask(actor=w, task=task, price=900))
    e.do(AwardTask(actor=1, task=task, bid=max(e.k.state.tasks.tasks[task].bids)))
    assert m.ins.covered and m.ins.exposure[w] == 900  # a covered contract is open
    e.do(Rollback(actor=ov, to_tick=mark, reason="test"))
    assert w not in m.ins.cover and not m.ins.covered and not m.ins.exposure


def test_a_slashed_bond_is_recovered_into_the_pool_before_the_claim_is_paid():
    from sandbank.controls.policy import SetPolicy

    m = Market(term=50)
    w, e = m.ids["w"], m.e
    e.do(SetPolicy(actor=OPERATOR, param="task_bond_bps", value=5_000))
    e.do(Insure(actor=w))
    pool = m.pool()
    m.contract(w, garbage=True)  # price 900: a bond of 450
    e.do()
    (d,) = _claims(m)
    assert (d["paid"], d["recovered"]) == (900, 450)
    assert m.pool() == pool - 900 + 450  # the worker paid half, the pool the rest
    e.k.state.check_invariants()

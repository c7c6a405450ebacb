"""The task market: the patchwork of specialists, validators, disputes, deadlines, bonds."""

import orjson

from conftest import Economy
from sandbank.kernel.schema import (
    OPERATOR,
    RegisterAgent,
    Transfer,
    TransferSpec,
    agent_attestation_bytes,
)
from sandbank.markets.tasks import (
    Arbitrate,
    AwardTask,
    BidTask,
    Deliver,
    JudgeContract,
    PostTask,
    Subcontract,
    part_succeeds,
)
from tests.keys import fixed_key

NEEDS = {"code": 7, "law": 6, "math": 8}


def with_specialists(**cfg):
    """Agents 1..3 are plain; 4, 5, 6 are specialists in code, law and math."""
    e = Economy(n=3, fund=10_000, **cfg)
    for i, skill in enumerate(("code", "law", "math")):
        key = fixed_key(1, f"spec{i}")
        e.keys[4 + i] = key
        e.do(RegisterAgent(actor=OPERATOR, owner=1, name=f"spec-{skill}", public_key=key.public,
                           skills={skill: 9},
                           attestation=e.owner_key.sign(agent_attestation_bytes(
                               1, f"spec-{skill}", key.public))))
    from sandbank.kernel.schema import OpenAccount
    for i in (4, 5, 6):
        e.do(OpenAccount(actor=OPERATOR, asset="CRD", holder=i))
        e.account[i] = e.k.state.ledger.account_of(i, "CRD").id
    e.do(Transfer(actor=OPERATOR, transfers=[
        TransferSpec(id=9000 + i, debit=1, credit=e.account[i], amount=1000) for i in (4, 5, 6)]))
    return e


def events(e, kind):
    return [orjson.loads(x.body) for x in e.k.store.entries() if x.kind == kind]


def test_three_specialists_none_able_alone_solve_a_task_by_subcontracting_and_are_all_paid():
    e = with_specialists()
    # no single agent can do it: each specialist has one of the three skills
    for agent in (4, 5, 6):
        skills = e.k.state.registry.agents[agent].skills
        assert sum(skills.get(s, 0) >= lvl for s, lvl in NEEDS.items()) == 1
    deadline = e.k.tick + 20
    e.do(PostTask(actor=1, skills=NEEDS, reward=900, deadline=deadline))
    e.do(BidTask(actor=4, task=1, price=900))
    e.do(AwardTask(actor=1, task=1, bid=1))
    assert e.k.state.ledger.accounts[e.account[1]].available == 10_000 - 900  # in escrow
    e.do(Subcontract(actor=4, contract=1, worker=5, parts=["law"], price=300))
    e.do(Subcontract(actor=5, contract=2, worker=6, parts=["math"], price=1))  # not its part
    assert e.last_events()[0]["reason"] == "invalid_parts"
    e.do(Subcontract(actor=4, contract=1, worker=6, parts=["math"], price=350))
    e.do(Deliver(actor=4, contract=1))
    assert e.last_events()[0]["reason"] == "children_pending"
    e.do(Deliver(actor=5, contract=2), Deliver(actor=6, contract=3))
    e.do(Deliver(actor=4, contract=1))
    settled = e.last_events()[0]
    assert settled["kind"] == "contract_settled" and settled["outcome"] == "passed"
    assert sorted(p[1:3] for p in settled["payouts"]) == [[4, 250], [5, 300], [6, 350]]
    assert [e.balance(i) for i in (1, 4, 5, 6)] == [9_100, 1_250, 1_300, 1_350]
    chain = [(x["parent"], x["contract"], x["worker"]) for x in events(e, "subcontracted")]
    assert chain == [(1, 2, 5), (1, 3, 6)]  # the delegation graph, in the log
    e.k.state.check_invariants()


def test_a_single_agent_without_the_skills_fails_and_the_requester_is_refunded():
    e = with_specialists(policy={"task_bond_bps": 1000})
    e.do(PostTask(actor=1, skills=NEEDS, reward=900, deadline=e.k.tick + 10))
    e.do(BidTask(actor=2, task=1, price=500))
    e.do(AwardTask(actor=1, task=1, bid=1))
    assert e.available(2) == 10_000 - 50  # the bond
    e.do(Deliver(actor=2, contract=1))
    settled = e.last_events()[0]
    assert settled["outcome"] == "failed" and settled["bond"] == "slashed"
    assert (e.balance(1), e.balance(2)) == (10_000, 9_950)
    record = e.k.state.tasks.skill_record
    assert record[(2, "code")] == [0, 1]  # declared nothing, verified by the outcome


def test_the_skill_model_is_seeded_and_follows_the_documented_odds():
    wins = sum(part_succeeds(1, c, "x", 5, 5) for c in range(2000))
    assert 1500 < wins < 1700  # 0.8 at the required level
    assert all(part_succeeds(1, c, "x", 7, 5) for c in range(500))  # two levels above: 1.0
    assert not any(part_succeeds(1, c, "x", 4, 5) for c in range(500))
    assert [part_succeeds(9, c, "x", 5, 5) for c in range(50)] == \
        [part_succeeds(9, c, "x", 5, 5) for c in range(50)]


def test_judges_who_disagree_send_the_contract_to_dispute_not_to_payment():
    e = with_specialists()
    e.do(PostTask(actor=1, skills={"code": 5}, reward=400, deadline=e.k.tick + 10,
                  validator="judges", judges=[2, 3, 5], quorum=2, arbiter=6))
    e.do(BidTask(actor=4, task=1, price=400))
    e.do(AwardTask(actor=1, task=1, bid=1))
    e.do(Deliver(actor=4, contract=1))
    e.do(JudgeContract(actor=2, contract=1, verdict=True))
    e.do(JudgeContract(actor=3, contract=1, verdict=False))
    assert e.last_events()[0]["kind"] == "disputed"
    assert e.balance(4) == 1_000 and e.available(1) == 9_600  # no payment, still in escrow
    e.do(JudgeContract(actor=5, contract=1, verdict=True))
    assert e.last_events()[0]["reason"] == "not_judging"
    e.do(Arbitrate(actor=2, contract=1, verdict=True))
    assert e.last_events()[0]["reason"] == "not_arbiter"
    e.do(Arbitrate(actor=6, contract=1, verdict=True))
    assert e.last_events()[0]["outcome"] == "passed" and e.balance(4) == 1_400


def test_concordant_judges_reach_a_verdict_at_quorum():
    e = with_specialists()
    e.do(PostTask(actor=1, skills={"code": 5}, reward=400, deadline=e.k.tick + 10,
                  validator="judges", judges=[2, 3, 5], quorum=2))
    e.do(BidTask(actor=4, task=1, price=300))
    e.do(AwardTask(actor=1, task=1, bid=1))
    e.do(Deliver(actor=4, contract=1))
    e.do(JudgeContract(actor=2, contract=1, verdict=False))
    e.do(JudgeContract(actor=3, contract=1, verdict=False))
    assert e.last_events()[0]["outcome"] == "failed" and e.balance(1) == 10_000


def test_a_missed_deadline_always_refunds():
    e = with_specialists(policy={"task_bond_bps": 2000})
    deadline = e.k.tick + 4
    e.do(PostTask(actor=1, skills={"code": 5}, reward=400, deadline=deadline))
    e.do(BidTask(actor=4, task=1, price=300))
    e.do(AwardTask(actor=1, task=1, bid=1))
    while e.k.tick <= deadline:
        e.do()
    settled = events(e, "contract_settled")[0]
    assert settled["outcome"] == "expired" and settled["bond"] == "slashed"
    assert e.balance(1) == 10_000 and e.available(1) == 10_000
    assert e.balance(4) == 1_000 - 60  # nothing delivered: the bond is slashed
    e.do(Deliver(actor=4, contract=1))
    assert e.last_events()[0]["reason"] == "contract_closed"


def test_delivering_what_you_were_not_awarded_is_refused():
    e = with_specialists()
    e.do(PostTask(actor=1, skills={"code": 5}, reward=400, deadline=e.k.tick + 9))
    e.do(BidTask(actor=4, task=1, price=300))  # bid 1 (bids in their own ticks: the ids
    e.do(BidTask(actor=2, task=1, price=200))  # do not hang on the tick's seeded order)
    e.do(Deliver(actor=2, contract=1))
    assert e.last_events()[0]["reason"] == "unknown_contract"
    e.do(AwardTask(actor=1, task=1, bid=1))
    assert e.k.state.tasks.contracts[1].worker == 4
    before = e.k.state.digest()
    e.do(Deliver(actor=2, contract=1))
    assert e.last_events()[0]["reason"] == "not_contractor" and e.k.state.digest() == before
    e.do(AwardTask(actor=2, task=1, bid=2))
    assert e.last_events()[0]["reason"] == "not_requester"
    e.do(PostTask(actor=3, skills={"code": 5}, reward=10**9, deadline=e.k.tick + 5))
    assert e.last_events()[0]["reason"] == "insufficient_funds"


def test_pigouvian_tax_and_task_fee_are_charged_to_the_treasury():
    e = with_specialists(policy={"task_fee_bps": 1000, "taxes": {"compute": 3}})
    treasury = e.k.state.ledger.accounts[e.k.state.ledger.treasury["CRD"]]
    start = treasury.balance
    e.do(PostTask(actor=1, skills={"code": 5}, reward=400, deadline=e.k.tick + 9,
                  category="compute", units=10))
    e.do(BidTask(actor=4, task=1, price=400))
    e.do(AwardTask(actor=1, task=1, bid=1))
    assert e.balance(1) == 10_000 - 30  # 10 units × 3
    e.do(Deliver(actor=4, contract=1))
    assert e.balance(4) == 1_360 and treasury.balance - start == 30 + 40

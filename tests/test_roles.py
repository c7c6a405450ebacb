"""Roles, clearances, obligations and entry certificates (issue 6, checklist 25–27)."""

from conftest import Economy
from sandbank.controls.policy import Certify
from sandbank.controls.roles import AssignRoles, IssueCertificate
from sandbank.kernel.schema import OPERATOR
from sandbank.markets.payments import Pay
from sandbank.markets.tasks import AwardTask, BidTask, Deliver, JudgeContract, PostTask


def refused(e):
    return [(d["actor"], d["reason"]) for d in e.k.log.last_committed if d["kind"] == "rejected"]


def test_roles_deny_by_default():
    e = Economy(n=3, fund=10_000, roles_enforced=True, skills={2: {"code": 9}})
    e.do(AssignRoles(actor=OPERATOR, agent=1, roles=["requester"]),
         AssignRoles(actor=OPERATOR, agent=2, roles=["worker"]),
         AssignRoles(actor=OPERATOR, agent=3, roles=["emperor"]))
    assert refused(e) == [(0, "invalid_field")]
    e.do(PostTask(actor=2, skills={"code": 1}, reward=100, deadline=e.k.tick + 9),
         PostTask(actor=1, skills={"code": 1}, reward=100, deadline=e.k.tick + 9),
         Pay(actor=3, to=1, asset="CRD", amount=5))  # everyone may pay
    assert refused(e) == [(2, "role_denied")]
    e.do(BidTask(actor=2, task=1, price=100), BidTask(actor=3, task=1, price=90))
    assert refused(e) == [(3, "role_denied")]  # a worker's action, from an agent with no role


def test_high_stakes_need_clearance_even_when_the_role_allows():
    e = Economy(n=3, fund=10_000, policy={"clearance_required": 1, "privileged_amount": 500})
    e.do(Pay(actor=1, to=2, asset="CRD", amount=400), Pay(actor=1, to=2, asset="CRD", amount=600))
    assert refused(e) == [(1, "clearance_required")]
    e.do(Certify(actor=OPERATOR, agent=1, certified=True))
    e.do(Pay(actor=1, to=2, asset="CRD", amount=600))
    assert refused(e) == [] and e.balance(2) == 11_000


def test_a_judge_that_misses_its_deadline_pays_the_penalty():
    e = Economy(n=5, fund=10_000, skills={2: {"code": 9}},
                policy={"judge_deadline": 2, "judge_penalty": 300})
    e.do(PostTask(actor=1, skills={"code": 5}, reward=500, deadline=e.k.tick + 20,
                  validator="judges", judges=[3, 4, 5], quorum=2))
    e.do(BidTask(actor=2, task=1, price=500))
    e.do(AwardTask(actor=1, task=1, bid=max(e.k.state.tasks.tasks[1].bids)))
    contract = e.k.state.tasks.tasks[1].contract
    e.do(Deliver(actor=2, contract=contract))
    e.do(JudgeContract(actor=3, contract=contract, verdict=True))
    e.do()
    e.do()
    missed = [d for d in e.k.store.entries() if d.kind == "obligation_missed"]
    assert len(missed) == 2  # judges 4 and 5, once each
    assert e.balance(4) == e.balance(5) == 9_700 and e.balance(3) == 10_000


def test_a_lapsed_entry_certificate_suspends_until_renewed():
    e = Economy(n=2, fund=1_000)
    e.do(IssueCertificate(actor=OPERATOR, agent=1, expires=e.k.tick + 3))  # valid to t+2
    e.do(Pay(actor=1, to=2, asset="CRD", amount=1))
    assert refused(e) == []
    e.do()
    e.do(Pay(actor=1, to=2, asset="CRD", amount=1))
    assert e.k.state.registry.agents[1].status == "suspended"
    assert refused(e) == [(1, "agent_suspended")]
    e.do(IssueCertificate(actor=OPERATOR, agent=1, expires=e.k.tick + 50))
    e.do(Pay(actor=1, to=2, asset="CRD", amount=1))
    assert refused(e) == [] and e.balance(2) == 1_002


def test_roles_and_certificates_from_a_scenario(tmp_path):
    from sandbank.lab.runner import run_scenario
    from sandbank.lab.scenario import parse_scenario

    res = run_scenario(parse_scenario({
        "name": "roles", "seed": 2, "ticks": 12, "endowment": {"CRD": 100_000},
        "population": [{"policy": "requester", "count": 2, "params": {"rate_pct": 100}},
                       {"policy": "specialist", "count": 3, "skills": {"code": 9, "law": 9,
                                                                       "math": 9}},
                       {"policy": "fraudster", "count": 1}],
        "safeguards": {"roles_enforced": True},
        "roles": {"requester": ["requester"], "specialist": ["worker"]},
        "certificates": {"specialist": 8}, "oversight": {"enabled": False}}, "inline"),
        tmp_path / "r")
    rej = res.summary["rejections"]
    assert rej.get("role_denied", 0) > 0  # the fraudster has no role: it may not even bid
    assert rej.get("agent_suspended", 0) > 0  # the lapse took effect mid-run
    assert res.summary["final"]["tasks_passed"] > 0 and res.summary["final"]["fraud_attempts"] == 0

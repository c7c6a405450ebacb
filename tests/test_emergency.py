"""Interruptibility, disabled action classes and governance (issue 6, checklist 30–35, 51)."""

from conftest import Economy
from sandbank.controls.controls import TripBreaker
from sandbank.controls.emergency import DisableAction, Interrupt, ProposeChange, VoteChange
from sandbank.controls.policy import SetPolicy
from sandbank.economy import replay_log
from sandbank.kernel.schema import OPERATOR
from sandbank.markets.exchange import PlaceOrder
from sandbank.markets.payments import Pay


def refused(e, kind=None):
    return [d for d in e.k.log.last_committed if d["kind"] == "rejected"
            and (kind is None or d["action"]["kind"] == kind)]


def accepted_from(e, actor):
    return [d for d in e.k.log.last_committed if d.get("actor") == actor
            and d["kind"] != "rejected"]


def econ(**kw):
    kw.setdefault("verify_signatures", True)
    return Economy(n=4, fund=10_000, assets=("CRD", "WGT"),
                   markets=({"asset": "WGT", "quote": "CRD"},), **kw)


def test_a_stopped_agent_that_keeps_trying_has_nothing_accepted():
    e = econ()
    olga = e.add_overseer("olga", "overseer")
    e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=2, price=100))
    e.do(Interrupt(actor=OPERATOR, scope="agent", agent=1, mode="stop", reason="drill"))
    assert not e.k.state.exchange.orders  # its resting order went with the stop
    stop_tick = e.k.tick
    for _ in range(4):  # it keeps trying
        e.do(Pay(actor=1, to=2, asset="CRD", amount=1),
             PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=50))
        assert not accepted_from(e, 1) and {r["reason"] for r in refused(e)} == {"agent_stopped"}
    e.do(Interrupt(actor=OPERATOR, scope="agent", agent=1, mode="resume"))
    assert refused(e, "interrupt")[0]["reason"] == "not_authorised"  # only an overseer
    e.do(Interrupt(actor=olga, scope="agent", agent=1, mode="resume", reason="checked"))
    e.do(Pay(actor=1, to=2, asset="CRD", amount=1))
    assert accepted_from(e, 1) and e.k.tick > stop_tick


def test_pause_terminate_and_the_whole_sandbox():
    e = econ()
    e.do(Interrupt(actor=OPERATOR, scope="all", mode="pause", reason="maintenance"))
    e.do(*[Pay(actor=i, to=1 + i % 4, asset="CRD", amount=1) for i in range(1, 5)])
    assert len(refused(e, "pay")) == 4 and {r["reason"] for r in refused(e)} == {"agent_paused"}
    e.do(Interrupt(actor=OPERATOR, scope="all", mode="resume"))
    e.do(Interrupt(actor=OPERATOR, scope="owner", agent=1, mode="terminate", reason="end"))
    assert all(a.status == "revoked" for a in e.k.state.registry.agents.values())
    e.do(Interrupt(actor=OPERATOR, scope="agent", agent=2, mode="resume"))
    assert e.k.state.registry.agents[2].status == "revoked"  # termination is final


def test_a_disabled_action_class_is_refused_everywhere_from_the_next_tick():
    e = econ()
    e.do(DisableAction(actor=OPERATOR, action_kind="pay", reason="incident"),
         Pay(actor=1, to=2, asset="CRD", amount=5))  # same tick: still allowed
    assert e.balance(2) == 10_005
    e.do(*[Pay(actor=i, to=1 + i % 4, asset="CRD", amount=1) for i in range(1, 5)],
         PlaceOrder(actor=3, asset="WGT", side="sell", qty=1, price=10))
    assert [r["reason"] for r in refused(e)] == ["action_disabled"] * 4  # orders still go
    e.do(DisableAction(actor=OPERATOR, action_kind="interrupt"),
         DisableAction(actor=1, action_kind="pay", disabled=False))
    assert sorted(r["reason"] for r in refused(e)) == ["forbidden", "invalid_field"]
    e.do(DisableAction(actor=OPERATOR, action_kind="pay", disabled=False))
    e.do(Pay(actor=1, to=2, asset="CRD", amount=5))
    assert e.balance(2) == 10_010


def test_parameter_changes_need_a_quorum_of_governors():
    e = econ(governance_quorum=2, governance_governors=3)
    g = [e.add_overseer(f"gov{i}", "governor") for i in range(3)]
    monitor = e.add_overseer("mon", "monitor")
    e.do(SetPolicy(actor=OPERATOR, param="trade_fee_bps", value=50),
         ProposeChange(actor=monitor, param="trade_fee_bps", value=50),
         ProposeChange(actor=1, param="trade_fee_bps", value=50),
         TripBreaker(actor=g[0], scope="economy", level="halt"))
    assert sorted(r["reason"] for r in refused(e)) == [
        "forbidden", "needs_quorum", "not_authorised", "not_authorised"]
    e.do(ProposeChange(actor=g[0], param="trade_fee_bps", value=50, reason="fund oversight"))
    assert e.k.state.policy.value("trade_fee_bps", e.k.tick + 1) == 0  # one approval of two
    e.do(VoteChange(actor=g[1], proposal=1, approve=True))
    decided = [d for d in e.k.log.last_committed if d["kind"] == "change_decided"]
    assert decided[0]["outcome"] == "adopted"
    assert e.k.state.policy.value("trade_fee_bps", e.k.tick + 1) == 50
    e.do(ProposeChange(actor=g[2], param="task_bond_bps", value=9000))
    e.do(VoteChange(actor=g[0], proposal=2, approve=False),
         VoteChange(actor=g[1], proposal=2, approve=False))
    assert e.k.state.emergency.proposals[2].status == "rejected"
    e.do(ProposeChange(actor=g[0], param="message_fee", value=3))
    for _ in range(10):
        e.do()
    assert e.k.state.emergency.proposals[3].status == "expired"
    assert e.k.state.policy.value("message_fee", e.k.tick) == 0
    rp = replay_log(e.k.store)
    assert rp.ok and rp.state.digest() == e.k.state.digest()


def test_a_rollback_restores_every_balance_and_the_log_still_verifies():
    from sandbank.audit.replay import state_at
    from sandbank.audit.verify import verify_log
    from sandbank.controls.emergency import Rollback
    from sandbank.controls.policy import PostStake
    from sandbank.markets.auctions import BidAuction, CreateAuction
    from sandbank.markets.tasks import AwardTask, BidTask, PostTask

    e = econ(verify_signatures=False)
    olga = e.add_overseer("olga", "overseer")
    e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=3, price=100),
         PlaceOrder(actor=2, asset="WGT", side="buy", qty=2, price=100))
    mark = e.k.tick  # the checkpoint we will return to
    e.do(Pay(actor=3, to=4, asset="CRD", amount=777),
         PlaceOrder(actor=2, asset="WGT", side="buy", qty=1, price=100),
         PlaceOrder(actor=4, asset="WGT", side="buy", qty=5, price=90),
         PostTask(actor=1, skills={"code": 1}, reward=500, deadline=e.k.tick + 20),
         CreateAuction(actor=3, asset="WGT", quantity=2, format="first_price",
                       closes=e.k.tick + 5),
         PostStake(actor=4, asset="CRD", amount=300))
    e.do(BidTask(actor=2, task=1, price=400), BidAuction(actor=1, auction=1, price=50, qty=1))
    e.do(AwardTask(actor=1, task=1, bid=max(e.k.state.tasks.tasks[1].bids)))
    assert e.k.state.ledger.holds  # orders, escrow, a stake, an auction: all open
    e.do(Rollback(actor=OPERATOR, to_tick=mark), Rollback(actor=olga, to_tick=e.k.tick + 5))
    assert sorted(r["reason"] for r in refused(e)) == ["forbidden", "unknown_checkpoint"]
    e.do(Rollback(actor=olga, to_tick=mark, reason="bad feed"))
    then = state_at(e.k.store, e.k.store.checkpoint(mark), e.k.mechanisms)
    now = e.k.state.ledger
    for acct in now.accounts.values():
        if not acct.treasury:
            old = then.ledger.accounts.get(acct.id)
            assert acct.balance == (old.balance if old else 0), acct
    assert not [h for h in now.holds if h[0] == -2] and not e.k.state.exchange.orders
    e.k.state.check_invariants()  # money conserved
    assert verify_log(e.k.store).ok
    rp = replay_log(e.k.store)
    assert rp.ok and rp.state.digest() == e.k.state.digest()
    e.do(Pay(actor=3, to=4, asset="CRD", amount=1))  # and the economy goes on
    assert not refused(e)


def test_compartments_wall_off_payments_messages_and_markets_except_through_bridges():
    from sandbank.controls.compartments import Partition
    from sandbank.markets.messaging import SendMessage

    e = Economy(n=4, fund=10_000, assets=("CRD", "WGT"),
                markets=({"asset": "WGT", "quote": "CRD", "compartment": "lab"},),
                bridges=({"from": "lab", "to": "", "kinds": ["send_message"]},))
    e.do(Partition(actor=OPERATOR, agents=[1, 2], compartment="lab", reason="experiment"),
         Partition(actor=3, agents=[3], compartment="lab"))
    assert [r["reason"] for r in refused(e)] == ["forbidden"]
    e.do(Pay(actor=1, to=2, asset="CRD", amount=5),  # inside: fine
         Pay(actor=1, to=3, asset="CRD", amount=5),  # across: walled
         Pay(actor=3, to=1, asset="CRD", amount=5),
         SendMessage(actor=1, to=4, content="hi"),  # bridged lab -> open, for messages
         SendMessage(actor=4, to=1, content="hi"),  # not the other way
         PlaceOrder(actor=1, asset="WGT", side="sell", qty=1, price=10),
         PlaceOrder(actor=3, asset="WGT", side="buy", qty=1, price=10))  # not its market
    assert sorted((r["actor"], r["reason"]) for r in refused(e)) == [
        (1, "compartment_wall"), (3, "compartment_wall"), (3, "compartment_wall"),
        (4, "compartment_wall")]
    e.do(SendMessage(actor=4, to=0, content="all of you"))  # open -> lab has no bridge
    assert [m.sender for m in e.k.observe(3).inbox] == [4] and not e.k.observe(1).inbox
    e.do(Partition(actor=OPERATOR, agents=[1, 2], compartment=""))  # the wall comes down
    e.do(Pay(actor=1, to=3, asset="CRD", amount=5))
    assert not refused(e)

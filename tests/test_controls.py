"""Overseers, breakers and escalation tickets (checklist 14, 41)."""

import pytest

from conftest import Economy
from sandbank.controls.controls import RaiseAlert, Resume, SetCap, TripBreaker
from sandbank.economy import replay_log
from sandbank.kernel.schema import OPERATOR, SetAgentStatus
from sandbank.markets.exchange import CancelOrder, PlaceOrder
from sandbank.markets.payments import Pay

MARKET = ({"asset": "WGT", "quote": "CRD"},)


def econ(**kw):
    kw.setdefault("verify_signatures", True)
    e = Economy(n=4, fund=10_000, assets=("CRD", "WGT"), markets=MARKET, **kw)
    return e, e.add_overseer("watcher", "monitor"), e.add_overseer("olga", "overseer")


def refused(e, kind):
    return [d for d in e.k.log.last_committed if d["kind"] == "rejected"
            and d["action"]["kind"] == kind]


def fills(e):
    return sum(len(d["fills"]) for d in e.k.log.last_committed if d["kind"] == "order_placed")


def test_a_paused_market_trades_nothing_until_an_overseer_resumes_it():
    e, monitor, olga = econ()
    e.do(TripBreaker(actor=monitor, scope="market", market="WGT", level="pause",
                     reason="price shock"))
    ticket = max(e.k.state.controls.tickets)
    for _ in range(3):  # crossing orders rest; nothing executes; market orders are refused
        e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=1, price=10),
             PlaceOrder(actor=2, asset="WGT", side="buy", qty=1, price=20),
             PlaceOrder(actor=3, asset="WGT", side="buy", qty=1, order_type="market"))
        assert fills(e) == 0 and refused(e, "place_order")[0]["reason"] == "market_halted"
    # nobody but an overseer of kind overseer may resume: each attempt is refused and logged
    e.do(Resume(actor=monitor, ticket=ticket), Resume(actor=OPERATOR, ticket=ticket),
         Resume(actor=1, ticket=ticket))
    assert sorted(r["reason"] for r in refused(e, "resume")) == [
        "forbidden", "forbidden", "not_authorised"]
    e.do(PlaceOrder(actor=2, asset="WGT", side="buy", qty=1, price=20))
    assert fills(e) == 0 and e.k.state.exchange.markets["WGT"].state == "halted"
    e.do(Resume(actor=olga, ticket=ticket, note="checked the feed"))
    assert e.k.state.controls.tickets[ticket].status == "resolved"
    e.do()  # the reopening call auction crosses the resting orders
    calls = [d for d in e.k.log.last_committed if d["kind"] == "call_auction"]
    assert calls and calls[0]["fills"] and e.k.state.exchange.markets["WGT"].state == "open"


def test_an_economy_halt_stops_every_agent_action_but_cancels():
    e, monitor, olga = econ()
    e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=1, price=50))
    order = next(iter(e.k.state.exchange.orders))
    e.do(TripBreaker(actor=monitor, scope="economy", level="halt", reason="drill"))
    e.do(Pay(actor=2, to=3, asset="CRD", amount=5), CancelOrder(actor=1, order=order))
    assert [r["reason"] for r in refused(e, "pay")] == ["economy_halted"]
    assert not e.k.state.exchange.orders  # the cancel went through
    e.do(Resume(actor=olga, ticket=1))
    e.do(Pay(actor=2, to=3, asset="CRD", amount=5))
    assert e.balance(3) == 10_005


def test_a_throttle_caps_an_agents_actions_per_tick_until_resumed():
    e, monitor, olga = econ()
    e.do(TripBreaker(actor=monitor, scope="agent", agent=2, level="throttle", limit=2))
    e.do(*[Pay(actor=2, to=3, asset="CRD", amount=1) for _ in range(5)])
    assert e.balance(3) == 10_002 and len(refused(e, "pay")) == 3
    assert {r["reason"] for r in refused(e, "pay")} == {"throttled"}
    e.do(Resume(actor=olga, ticket=1))
    e.do(*[Pay(actor=2, to=3, asset="CRD", amount=1) for _ in range(5)])
    assert e.balance(3) == 10_007


def test_a_freeze_voids_resting_orders_and_only_an_overseer_lifts_it():
    e, monitor, olga = econ()
    e.do(PlaceOrder(actor=1, asset="WGT", side="buy", qty=3, price=100),
         PlaceOrder(actor=1, asset="WGT", side="sell", qty=2, price=200))
    assert e.available(1) < 10_000
    e.do(TripBreaker(actor=monitor, scope="owner", agent=1, level="freeze", reason="sybils"))
    assert not e.k.state.exchange.orders  # holds released: everything is available again
    assert e.available(1) == e.balance(1) == 10_000 and e.available(1, "WGT") == 10_000
    assert all(e.k.state.registry.agents[i].status == "frozen" for i in range(1, 5))
    e.do(Pay(actor=1, to=2, asset="CRD", amount=1),
         SetAgentStatus(actor=OPERATOR, agent=1, status="active"))
    assert refused(e, "pay")[0]["reason"] == "agent_frozen"
    assert refused(e, "set_agent_status")[0]["reason"] == "not_authorised"
    e.do(Resume(actor=olga, ticket=1, note="owner verified"))
    assert all(e.k.state.registry.agents[i].status == "active" for i in range(1, 5))


def test_monitors_only_tighten_caps_and_caps_bind():
    e, monitor, olga = econ()
    e.do(SetCap(actor=monitor, cap="order_qty", value=5))
    e.do(SetCap(actor=monitor, cap="order_qty", value=50), SetCap(actor=monitor, cap="order_qty",
                                                                   value=0))
    assert [r["reason"] for r in refused(e, "set_cap")] == ["not_authorised"] * 2
    e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=6, price=10))
    assert refused(e, "place_order")[0]["reason"] == "over_cap"
    e.do(SetCap(actor=olga, cap="order_qty", value=0))
    e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=6, price=10))
    assert not refused(e, "place_order")


def test_alerts_cite_log_entries_and_overseers_cannot_trade():
    e, monitor, olga = econ()
    e.do(RaiseAlert(actor=monitor, detector="test", score=700, subjects=[2], evidence=[1, 2],
                    summary="look"),
         RaiseAlert(actor=monitor, detector="test", score=2000),
         RaiseAlert(actor=monitor, detector="test", score=5, evidence=[10**9]),
         RaiseAlert(actor=2, detector="self-serving", score=0),
         Pay(actor=olga, to=1, asset="CRD", amount=1))
    alerts = [d for d in e.k.log.last_committed if d["kind"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["evidence"] == [1, 2] and alerts[0]["alert"] == 1
    assert sorted(r["reason"] for r in refused(e, "raise_alert")) == [
        "forbidden", "invalid_field", "invalid_field"]
    assert refused(e, "pay")[0]["reason"] == "forbidden"


def test_overseer_actions_are_signed_and_replay_to_the_same_state():
    e, monitor, olga = econ()
    forged = TripBreaker(actor=monitor, scope="economy", level="halt")
    forged.nonce, forged.signature = 99, e.keys[1].sign(b"not it")
    e.k.submit(forged)
    e.k.step()
    assert refused(e, "trip_breaker")[0]["reason"] == "bad_signature"
    e.do(TripBreaker(actor=monitor, scope="agent", agent=3, level="throttle", limit=1),
         SetCap(actor=monitor, cap="spawn", value=2))
    e.do(Resume(actor=olga, ticket=1))
    rp = replay_log(e.k.store)
    assert rp.ok, rp.problem
    assert rp.state.digest() == e.k.state.digest()
    assert rp.state.controls.overseers[olga].nonce == e.k.state.controls.overseers[olga].nonce


@pytest.mark.parametrize("scope, level, extra", [
    ("market", "halt", {}), ("agent", "pause", {"agent": 1}), ("agent", "freeze", {"agent": 99}),
    ("market", "pause", {"market": "XYZ"}), ("agent", "throttle", {"agent": 1, "limit": 0}),
])
def test_malformed_breakers_are_refused(scope, level, extra):
    e, monitor, _ = econ(verify_signatures=False)
    e.do(TripBreaker(actor=monitor, scope=scope, level=level, **extra))
    assert refused(e, "trip_breaker") and not e.k.state.controls.tickets

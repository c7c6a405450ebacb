"""Amounts and edges pinned: who pays which fee on each side of a trade, what a partial fill
leaves held, the reason of each refusal, the price band's limits, the reference window, the
limit-state and halt timeline, the call auction's and sealed auctions' tie rules, and the
sequencer's fairness. Conservation holds whatever these amounts are, so the invariants
cannot catch a fee charged to the wrong side or a band one unit too wide: these tests do.
Every expected number is worked out in the comment beside it, from the rule in the module's
docstring, not read back from a run.
"""

from __future__ import annotations

import pytest

from conftest import Economy, refusal
from sandbank.controls.controls import SetCap
from sandbank.controls.policy import SetPolicy as SetPolicyAction
from sandbank.kernel.schema import OPERATOR
from sandbank.ledger.ledger import MAX_AMOUNT
from sandbank.markets.auctions import FIRST, SECOND, UNIFORM, clear
from sandbank.markets.exchange import (
    CancelOrder,
    Market,
    PlaceOrder,
    clearing_price,
)
from sandbank.markets.orderbook import Order
from sandbank.markets.payments import Pay

FUND = 100_000


def market(fee_bps=0, fund=FUND, n=4, **spec):
    return Economy(n=n, fund=fund, assets=("CRD", "WGT"),
                   markets=({"asset": "WGT", "quote": "CRD", **spec},),
                   policy={"trade_fee_bps": fee_bps})


def order(actor, side, qty, price=0, kind="limit"):
    return PlaceOrder(actor=actor, asset="WGT", side=side, qty=qty, price=price, order_type=kind)


def treasury(e, asset="CRD"):
    led = e.k.state.ledger
    return led.accounts[led.treasury[asset]].balance


def placed(e):
    """The order_placed event of the last tick (one order a tick)."""
    [ev] = [d for d in e.k.log.last_committed if d["kind"] == "order_placed"]
    return ev


# ---------------------------------------------------------------- fees, side by side
def test_a_taker_buy_pays_the_notional_and_the_fee_the_maker_receives_the_notional():
    e = market(fee_bps=100)  # 1 %
    t0 = treasury(e)
    e.do(order(1, "sell", 10, 99))
    e.do(order(2, "buy", 10, 100))  # fills 10 at the maker's 99: notional 990
    assert placed(e)["fills"] == [[1, 99, 10, 0]]
    fee = 990 * 100 // 10_000  # 9 (9.9 rounded down)
    assert (e.balance(2), e.balance(2, "WGT")) == (FUND - 990 - fee, FUND + 10)
    assert (e.balance(1), e.balance(1, "WGT")) == (FUND + 990, FUND - 10)  # no maker fee
    assert treasury(e) - t0 == fee
    assert e.available(1, "WGT") == FUND - 10 and e.available(2) == FUND - 999  # nothing held
    e.k.state.check_invariants()


def test_a_taker_sell_pays_the_fee_out_of_what_it_receives_the_maker_buyer_pays_its_bid():
    e = market(fee_bps=100)
    t0 = treasury(e)
    e.do(order(3, "buy", 7, 101))  # rests: holds 7 × 101 = 707
    assert e.available(3) == FUND - 707 and e.balance(3) == FUND
    e.do(order(4, "sell", 7, 95))  # fills 7 at the maker's 101: notional 707
    fee = 707 * 100 // 10_000  # 7
    assert placed(e)["fills"] == [[1, 101, 7, 0]]  # [maker order, price, qty, new hold]
    assert (e.balance(4), e.balance(4, "WGT")) == (FUND + 707 - fee, FUND - 7)
    assert (e.balance(3), e.balance(3, "WGT")) == (FUND - 707, FUND + 7)  # no maker fee
    assert e.available(3) == FUND - 707  # the hold was taken, not left pending
    assert treasury(e) - t0 == fee
    e.k.state.check_invariants()


def test_the_fee_is_on_each_fill_and_rounds_down():
    e = market(fee_bps=30)  # 0.3 %
    t0 = treasury(e)
    e.do(order(1, "sell", 3, 110))
    e.do(order(3, "sell", 5, 111))
    e.do(order(2, "buy", 8, 120))  # 3 @ 110 (330) and 5 @ 111 (555)
    fees = 330 * 30 // 10_000 + 555 * 30 // 10_000  # 0 + 1 (per fill, not on 885 → 2)
    assert fees == 1
    assert e.balance(2) == FUND - 885 - fees and treasury(e) - t0 == fees


def test_a_resting_buy_must_afford_its_fee_and_holds_only_the_notional():
    e = market(fee_bps=100)
    # 1000 @ 99: notional 99 000 + fee 990 = 99 990 ≤ 100 000: accepted, holds 99 000
    assert refusal(e, order(1, "buy", 1000, 99)) is None
    assert e.available(1) == FUND - 99_000
    # 1000 @ 100 by another: 100 000 + 1 000 > 100 000
    assert refusal(e, order(2, "buy", 1000, 100)) == "insufficient_funds"
    assert e.available(2) == FUND


# ---------------------------------------------------------------- holds after partial fills
def test_partial_fills_leave_exactly_the_remainder_held_on_either_side():
    e = market()
    e.do(order(1, "sell", 10, 50))
    assert e.available(1, "WGT") == FUND - 10
    e.do(order(2, "buy", 4, 50))
    [[maker, price, qty, new_hold]] = placed(e)["fills"]
    assert (maker, price, qty) == (1, 50, 4) and new_hold  # the 6 left are re-held
    assert (e.balance(1, "WGT"), e.available(1, "WGT")) == (FUND - 4, FUND - 10)
    assert e.k.state.exchange.orders[1].remaining == 6
    e.do(order(2, "buy", 6, 60))  # the rest, at 50: nothing left to hold
    assert placed(e)["fills"] == [[1, 50, 6, 0]]
    assert (e.balance(1, "WGT"), e.available(1, "WGT")) == (FUND - 10, FUND - 10)
    assert 1 not in e.k.state.exchange.orders
    # a resting bid taken in part keeps price × what is left
    e.do(order(3, "buy", 10, 40))  # order 4 (order ids: 1, 2, 3 so far)
    e.do(order(4, "sell", 3, 40))
    assert (e.balance(3), e.available(3)) == (FUND - 120, FUND - 400)  # 7 × 40 = 280 held
    assert e.balance(4) == FUND + 120
    ledger = e.k.state.ledger
    assert ledger.accounts[e.account[3]].debits_pending == 280
    e.do(CancelOrder(actor=3, order=4))
    assert e.available(3) == FUND - 120 and ledger.accounts[e.account[3]].debits_pending == 0
    e.k.state.check_invariants()


def test_the_operator_may_cancel_any_order_an_agent_only_its_own():
    e = market()
    e.do(order(1, "sell", 2, 50))
    e.do(order(2, "sell", 2, 60))  # order 2
    assert refusal(e, CancelOrder(actor=1, order=2)) == "not_order_owner"
    assert refusal(e, CancelOrder(actor=2, order=2)) is None
    [own] = [d for d in e.k.log.last_committed if d["kind"] == "order_cancelled"]
    assert (own["actor"], own["order"], own["reason"]) == (2, 2, "cancelled by owner")
    assert refusal(e, CancelOrder(actor=2, order=1)) == "not_order_owner"
    assert refusal(e, CancelOrder(actor=OPERATOR, order=1)) is None
    [ev] = [d for d in e.k.log.last_committed if d["kind"] == "order_cancelled"]
    assert ev["reason"] == "cancelled by operator" and e.available(1, "WGT") == FUND
    assert ev["actor"] == OPERATOR
    assert refusal(e, CancelOrder(actor=1, order=1)) == "unknown_order"


# ---------------------------------------------------------------- the reason of each refusal
@pytest.mark.parametrize("fields,why", [
    ({"asset": "GLD"}, "unknown_market"),
    ({"side": "hold"}, "invalid_field"),
    ({"order_type": "stop"}, "invalid_field"),
    ({"qty": 0}, "invalid_quantity"),
    ({"qty": -1}, "invalid_quantity"),
    ({"order_type": "market", "price": 5}, "invalid_field"),
    ({"price": 0}, "invalid_price"),
    ({"price": -3}, "invalid_price"),
    ({"qty": MAX_AMOUNT + 1, "price": 1}, "amount_too_large"),
    ({"qty": 2, "price": MAX_AMOUNT // 2 + 1}, "amount_too_large"),  # 2p = MAX + 1
    ({"qty": 1, "price": MAX_AMOUNT}, "insufficient_funds"),  # = MAX: allowed, unaffordable
    ({"qty": 1000, "price": 100}, None),  # needs exactly the 100 000 it has
    ({"qty": 1001, "price": 100}, "insufficient_funds"),
    ({"side": "sell", "qty": FUND, "price": 5}, None),  # all it has
    ({"side": "sell", "qty": FUND + 1, "price": 5}, "insufficient_assets"),
    ({"qty": 1, "price": 1}, None),
])
def test_each_refusal_names_its_reason(fields, why):
    e = market()
    base = {"actor": 1, "asset": "WGT", "side": "buy", "qty": 1, "price": 10}
    assert refusal(e, PlaceOrder(**{**base, **fields})) == why


def test_caps_and_halts_refuse_with_their_own_reasons():
    e = market(band_bps=1000, limit_state_ticks=1, halt_ticks=5)
    ov = e.add_overseer("olga")
    e.do(SetCap(actor=ov, cap="order_qty", value=5))
    assert refusal(e, order(1, "buy", 5, 10)) is None  # at the cap
    assert refusal(e, order(1, "buy", 6, 10)) == "over_cap"
    e.do(SetCap(actor=ov, cap="order_qty", value=0))
    _halt(e)
    m = e.k.state.exchange.markets["WGT"]
    assert m.state == "halted"
    assert refusal(e, order(2, "buy", 1, kind="market")) == "market_halted"
    assert refusal(e, order(2, "buy", 1, 50)) is None  # a limit order rests while halted
    assert placed(e)["fills"] == [] and placed(e)["rested"] == 1


def _halt(e):
    """Trade at 100, then hit the band (±10 %) until the market halts."""
    e.do(order(3, "sell", 1, 100))
    e.do(order(4, "buy", 1, 100))
    e.do(order(3, "sell", 1, 200))
    for _ in range(4):
        if e.k.state.exchange.markets["WGT"].state == "halted":
            return
        e.do(order(4, "buy", 1, 200))


# ---------------------------------------------------------------- the price band's limits
def test_the_band_limits_are_inclusive_and_rounded_inward():
    # reference 101, band 10 %: 90.9 → 91 (up), 111.1 → 111 (down)
    m = Market("WGT", "CRD", band_bps=1000, reference_ticks=5)
    m.record_trade(1, 101, 1)
    assert m.band(2) == (91, 111)
    e = market(band_bps=1000)
    e.do(order(1, "sell", 1, 101))
    e.do(order(2, "buy", 1, 101))  # the reference trade
    e.do(order(1, "sell", 1, 111))
    e.do(order(1, "sell", 1, 112))
    e.do(order(2, "buy", 2, 120))  # 111 is inside (inclusive); 112 is not
    ev = placed(e)
    assert [f[1] for f in ev["fills"]] == [111]
    assert ev["reason"] == "price_band" and ev["blocked"] is True and ev["rested"] == 0
    assert ev["cancelled"] == 1 and e.k.state.exchange.markets["WGT"].state == "limit"


def test_the_lower_band_limit_is_inclusive():
    e = market(band_bps=1000)
    e.do(order(1, "sell", 1, 101))
    e.do(order(2, "buy", 1, 101))
    e.do(order(3, "buy", 1, 91))
    e.do(order(3, "buy", 1, 90))
    e.do(order(4, "sell", 2, 80))
    ev = placed(e)
    assert [f[1] for f in ev["fills"]] == [91] and ev["reason"] == "price_band"


def test_no_band_without_a_reference_or_with_band_zero():
    m = Market("WGT", "CRD", band_bps=1000)
    assert m.band(1) is None  # no trade yet
    m0 = Market("WGT", "CRD", band_bps=0)
    m0.record_trade(1, 100, 1)
    assert m0.band(2) is None


def test_the_reference_is_the_mean_of_the_window_then_the_last_price():
    m = Market("WGT", "CRD", band_bps=1000, reference_ticks=3)
    m.record_trade(10, 100, 5)
    m.record_trade(11, 111, 1)
    m.record_trade(11, 121, 1)
    assert m.reference(11) == (100 + 111 + 121) // 3 == 110
    assert m.reference(12) == 110  # tick 10 is within 12 - 3 < t
    assert m.reference(13) == (111 + 121) // 2 == 116  # tick 10 <= 13 - 3: out
    assert m.reference(14) == 121  # nothing left: the last price
    assert (m.last_price, m.volume) == (121, 7)
    m.prune(13)
    assert list(m.window) == [(11, 111), (11, 121)] and m.window_sum == 232
    m.prune(14)
    assert list(m.window) == [] and m.window_sum == 0 and m.reference(14) == 121


# ---------------------------------------------------------------- limit state, halt, reopening
def test_the_limit_state_halts_after_its_ticks_and_the_market_reopens_by_call_auction():
    e = market(band_bps=1000, limit_state_ticks=2, halt_ticks=3)
    e.do(order(1, "sell", 1, 100))
    e.do(order(2, "buy", 1, 100))
    e.do(order(1, "sell", 5, 130))  # outside the band: rests
    m = e.k.state.exchange.markets["WGT"]
    e.do(order(2, "buy", 1, 130))  # blocked at tick A
    a = e.k.tick
    assert (m.state, m.since) == ("limit", a)
    e.do(order(2, "buy", 1, 130))  # A + 1: blocked again; 1 tick in the limit state
    assert m.state == "limit"
    e.do()  # A + 2: two ticks in the limit state: halted until A + 2 + 3
    assert (m.state, m.until) == ("halted", a + 5)
    e.do(order(3, "buy", 2, 130))  # A + 3: rests during the halt
    e.do()  # A + 4: still halted
    assert m.state == "halted"
    e.do()  # A + 5: the call auction crosses 2 @ 130, then the market opens
    calls = [d for d in e.k.log.last_committed if d["kind"] == "call_auction"]
    assert [c["price"] for c in calls] == [130] and calls[0]["fills"][0][2] == 2
    assert m.state == "open"
    import orjson

    states = [orjson.loads(x.body) for x in e.k.store.entries_of_kind("market_state")]
    assert [(d["actor"], d["state"], d["until"], d["reason"]) for d in states] == [
        (-2, "limit", 0, "an order hit the price band"),
        (-2, "halted", a + 5, "limit state for 2 ticks"),
        (-2, "open", 0, "reopened after a call auction")]
    assert calls[0]["actor"] == -2


def test_a_limit_state_without_a_block_in_the_last_tick_ends():
    e = market(band_bps=1000, limit_state_ticks=3, halt_ticks=3)
    e.do(order(1, "sell", 1, 100))
    e.do(order(2, "buy", 1, 100))
    e.do(order(1, "sell", 1, 130))
    e.do(order(2, "buy", 1, 130))  # blocked: limit
    m = e.k.state.exchange.markets["WGT"]
    assert m.state == "limit"
    e.do()  # the block was last tick: still limit
    assert m.state == "limit"
    e.do()  # no block last tick: open again
    assert m.state == "open"
    [ended] = [d for d in e.k.log.last_committed if d["kind"] == "market_state"]
    assert (ended["actor"], ended["until"], ended["reason"]) == (-2, 0, "limit state ended")


# ---------------------------------------------------------------- call auction price rules
def _o(oid, side, price, qty, agent=None):
    return Order(oid, agent or oid, "WGT", side, price, qty, qty, None, 0)


def test_the_clearing_price_maximises_volume_then_balance_then_nearness_then_is_lower():
    # volume first: at 100, 5 trade; at 101 (nearer the reference) only 3
    bids = [_o(1, "buy", 101, 3), _o(2, "buy", 100, 2)]
    asks = [_o(3, "sell", 100, 5)]
    assert clearing_price(bids, asks, 101) == (100, 5)
    # equal volume 4 at 100 and 101; imbalance 0 at 101 (demand 4 = supply 4), 2 at 100
    bids = [_o(1, "buy", 101, 4), _o(2, "buy", 100, 2)]
    asks = [_o(3, "sell", 100, 4), _o(4, "sell", 101, 0)]
    assert clearing_price(bids, asks, 0) == (101, 4)
    # equal volume and imbalance at 100 and 102: nearest the reference wins
    bids = [_o(1, "buy", 102, 3)]
    asks = [_o(2, "sell", 100, 3)]
    assert clearing_price(bids, asks, 102) == (102, 3)
    assert clearing_price(bids, asks, 100) == (100, 3)
    # and equally near (reference 101): the lower price
    assert clearing_price(bids, asks, 101) == (100, 3)
    # nothing crosses: no price
    assert clearing_price([_o(1, "buy", 90, 3)], [_o(2, "sell", 100, 3)], 95) == (0, 0)


# ---------------------------------------------------------------- sealed auctions: ties
def test_sealed_auction_ties_go_to_the_earlier_bid():
    tie = [(7, 1, 50, 1), (3, 2, 50, 1), (9, 3, 40, 1)]  # bid ids 3 and 7 tie at 50
    assert clear(FIRST, tie, 1, 0) == ([(3, 1, 50)], 50)
    assert clear(SECOND, tie, 1, 0) == ([(3, 1, 50)], 50)  # pays the second-highest: 50
    assert clear(SECOND, [(3, 2, 50, 1), (9, 3, 40, 1)], 1, 45) == ([(3, 1, 45)], 45)
    assert clear(SECOND, [(3, 2, 50, 1)], 1, 0) == ([(3, 1, 0)], 0)  # alone, no reserve
    assert clear(FIRST, [(3, 2, 44, 1)], 1, 45) == ([], 0)  # under the reserve
    assert clear(FIRST, [(3, 2, 45, 1)], 1, 45) == ([(3, 1, 45)], 45)  # at it: valid
    # uniform price: 3 units; 2 each from bids 7 and 3 at 50 (3 first), 1 left for bid 7
    uni = [(7, 1, 50, 2), (3, 2, 50, 2), (9, 3, 40, 2)]
    assert clear(UNIFORM, uni, 3, 0) == ([(3, 2, 100), (7, 1, 50)], 50)  # rejected: 50
    assert clear(UNIFORM, uni, 4, 0) == ([(3, 2, 80), (7, 2, 80)], 40)  # rejected: 40
    assert clear(UNIFORM, uni, 6, 10) == ([(3, 2, 20), (7, 2, 20), (9, 2, 20)], 10)


# ---------------------------------------------------------------- the sequencer's fairness
def test_no_agent_is_always_first_and_each_tick_has_its_own_order():
    e = Economy(n=4, fund=10_000)
    firsts = {i: 0 for i in range(1, 5)}
    orders = set()
    for _ in range(200):
        for i in range(1, 5):
            e.k.submit(Pay(actor=i, to=i % 4 + 1, asset="CRD", amount=1))
        e.k.step()
        seq = [d["actor"] for d in e.k.log.last_committed if d["kind"] == "paid"]
        assert sorted(seq) == [1, 2, 3, 4]
        firsts[seq[0]] += 1
        orders.add(tuple(seq))
    assert all(n >= 25 for n in firsts.values()), firsts  # 50 expected each
    assert len(orders) >= 20  # of the 24 orders of 4
    # an actor's own actions keep the order it submitted them in
    for n in range(3):
        e.k.submit(Pay(actor=1, to=2, asset="CRD", amount=n + 1))
    e.k.submit(Pay(actor=3, to=2, asset="CRD", amount=9))
    e.k.step()
    mine = [d["amount"] for d in e.k.log.last_committed if d["kind"] == "paid" and d["actor"] == 1]
    assert mine == [1, 2, 3]


# ---------------------------------------------------------------- the book and what agents see
def test_the_book_keeps_price_time_priority_and_checks_itself():
    from sandbank.markets.orderbook import Book

    b = Book()
    orders = [_o(1, "buy", 100, 2), _o(2, "buy", 101, 1), _o(3, "buy", 100, 4),
              _o(4, "sell", 105, 3), _o(5, "sell", 104, 1), _o(6, "sell", 104, 2)]
    for o in orders:
        b.add(o)
    assert [o.id for o in b.orders("buy")] == [2, 1, 3]
    assert [o.id for o in b.orders("sell")] == [5, 6, 4]
    assert (b.best_price("buy"), b.best_price("sell")) == (101, 104)
    assert (b.depth("buy", 100), b.depth("sell", 104), b.depth("sell", 99)) == (6, 3, 0)
    assert not b.crossed()
    b.check(continuous=True)
    b.remove(orders[1])
    assert b.best_price("buy") == 100 and -101 not in b.bids  # an emptied level goes
    b.add(_o(7, "buy", 104, 1))  # touches the best ask: crossed
    assert b.crossed()
    b.check(continuous=False)  # a halted book may cross
    with pytest.raises(AssertionError):
        b.check(continuous=True)
    empty = Book()
    assert empty.best("buy") is None and empty.best_price("sell") is None and not empty.crossed()
    for broken in ("side", "price", "remaining"):
        bb = Book()
        o = _o(9, "buy", 50, 1)
        bb.add(o)
        setattr(o, broken, {"side": "sell", "price": 51, "remaining": 0}[broken])
        with pytest.raises(AssertionError):
            bb.check(continuous=False)


def test_what_an_agent_sees_of_a_market():
    from sandbank.markets.exchange import market_view

    e = market(band_bps=1000)
    e.do(order(1, "sell", 2, 100))
    e.do(order(2, "buy", 2, 100))  # trade 2 @ 100
    for i, (side, qty, price) in enumerate([("buy", 3, 95), ("buy", 1, 95), ("buy", 2, 94),
                                            ("sell", 4, 103), ("sell", 1, 104)]):
        e.do(order(1 + i % 4, side, qty, price))
    m = e.k.state.exchange.markets["WGT"]
    v = market_view(m, e.k.tick)
    assert (v.asset, v.quote, v.state) == ("WGT", "CRD", "open")
    assert (v.best_bid, v.bid_qty, v.best_ask, v.ask_qty) == (95, 4, 103, 4)
    assert (v.last_price, v.volume, v.band) == (100, 2, (90, 110))
    assert [t[1:] for t in v.trades] == [(100, 2)]
    seen = [mv for mv in e.k.observe(3).markets if mv.asset == "WGT"]
    assert seen and seen[0].best_bid == 95


def test_freezing_an_agent_cancels_its_resting_orders_oldest_first_and_frees_them():
    from sandbank.kernel.schema import SetAgentStatus

    e = market()
    e.do(order(1, "buy", 3, 90))
    e.do(order(1, "sell", 2, 120))
    e.do(order(2, "buy", 1, 91))
    assert e.available(1) == FUND - 270 and e.available(1, "WGT") == FUND - 2
    e.do(SetAgentStatus(actor=OPERATOR, agent=1, status="frozen"))
    cancelled = [d for d in e.k.log.last_committed if d["kind"] == "order_cancelled"]
    assert [d["order"] for d in cancelled] == [1, 2]
    assert {(d["actor"], d["reason"]) for d in cancelled} == {(OPERATOR, "agent frozen")}
    assert e.available(1) == FUND and e.available(1, "WGT") == FUND
    assert [o.agent for o in e.k.state.exchange.orders.values()] == [2]


def test_a_call_auction_fills_by_priority_and_cancels_self_crossing_leftovers():
    import orjson

    e = market(band_bps=1000, limit_state_ticks=1, halt_ticks=10)
    _halt(e)
    m = e.k.state.exchange.markets["WGT"]
    assert m.state == "halted"
    e.do(*[CancelOrder(actor=o.agent, order=o.id) for o in e.k.state.exchange.orders.values()])
    ids = []
    for o in (order(1, "buy", 3, 110), order(2, "buy", 2, 108), order(3, "sell", 4, 105),
              order(2, "sell", 5, 107)):  # agent 2's own ask below its own bid
        e.do(o)
        ids.append(placed(e)["order"])
    buy1, buy2, sell3, sell2 = ids
    while m.state == "halted":
        e.do()
    [call] = [orjson.loads(x.body) for x in e.k.store.entries_of_kind("call_auction")]
    # 105: demand 5, supply 4 → 4; 107 and 108: demand 5, supply 9 → 5 (imbalance 4 each);
    # 110: 3. Volume 5 at 107 and 108; 107 is nearer the reference (the last price, 100).
    assert call["price"] == 107
    # buy1 (best bid) takes 3 from sell3 (best ask); buy2 takes sell3's last 1, and not
    # agent 2's own ask: one unit of the volume goes unfilled
    assert [f[:3] for f in call["fills"]] == [[buy1, sell3, 3], [buy2, sell3, 1]]
    # the new holds: buy1 and (after the second fill) sell3 are done, nothing re-held;
    # sell3 after the first fill and buy2 after its one unit keep a hold
    (_, _, _, hb1, hs1), (_, _, _, hb2, hs2) = call["fills"]
    assert hb1 == 0 and hs1 != 0 and hb2 != 0 and hs2 == 0
    assert call["actor"] == -2
    # buy2's last unit at 108 would reopen the book crossed with its own ask at 107
    assert call["cancelled"] == [buy2]
    assert m.state == "open" and not m.book.crossed()
    # everyone pays and is paid the clearing price (agent 3 also sold 1 @ 100 before)
    assert (e.balance(1), e.balance(1, "WGT")) == (FUND - 3 * 107, FUND + 3)
    assert (e.balance(3), e.balance(3, "WGT")) == (FUND + 100 + 4 * 107, FUND - 1 - 4)
    assert (e.balance(2), e.balance(2, "WGT")) == (FUND - 107, FUND + 1)
    assert e.available(2) == e.balance(2)  # the cancelled bid's hold released
    assert e.available(2, "WGT") == FUND + 1 - 5  # its ask rests, holding its 5
    e.k.state.check_invariants()


# ---------------------------------------------------------------- market orders, gates, positions
def test_a_market_buy_takes_what_its_cash_pays_for_fee_included():
    e = market(fee_bps=100, fund=1000)
    e.do(order(1, "sell", 5, 100))
    e.do(order(3, "sell", 10, 110))
    e.do(order(2, "buy", 20, kind="market"))
    ev = placed(e)
    # 5 @ 100: 500 + fee 5 = 505, leaving 495; at 110 with 1 %: 495 × 10 000 // (110 × 10 100)
    # = 4 units: 440 + fee 4 = 444 ≤ 495; 5 would cost 555 + 5
    assert [f[1:3] for f in ev["fills"]] == [[100, 5], [110, 4]]
    assert (ev["reason"], ev["cancelled"], ev["rested"]) == ("insufficient_funds", 11, 0)
    assert (e.balance(2), e.balance(2, "WGT")) == (1000 - 505 - 444, 1000 + 9)
    assert (e.balance(3), e.balance(3, "WGT"), e.available(3, "WGT")) == (1440, 996, 990)


@pytest.mark.parametrize("fund,price,bps,want", [
    (1010, 100, 100, 10),  # 10 × 100 + 1 % = 1010: an exact fit is taken
    (1009, 100, 100, 9),  # one short: 9
    # 30 × 33 = 990 + fee 9 (9.9 rounded down) = 999 would fit, but the quantity is sized
    # before rounding (999 × 10 000 // (33 × 10 100) = 29): the buyer never overpays
    (999, 33, 100, 29),
])
def test_a_market_buy_is_sized_by_its_cash_and_fee(fund, price, bps, want):
    e = market(fee_bps=bps, fund=fund)
    e.do(order(1, "sell", 50, price))
    e.do(order(2, "buy", 50, kind="market"))
    assert [f[1:3] for f in placed(e)["fills"]] == [[price, want]]
    notional = price * want
    assert e.balance(2) == fund - notional - notional * bps // 10_000 >= 0


def test_a_market_order_with_nothing_to_take_is_cancelled_for_no_liquidity():
    e = market()
    e.do(order(2, "buy", 3, kind="market"))
    ev = placed(e)
    assert (ev["fills"], ev["reason"], ev["cancelled"], ev["rested"]) == ([], "no_liquidity", 3,
                                                                          0)
    e.do(order(1, "sell", 2, 50))
    e.do(order(2, "buy", 3, kind="market"))
    ev = placed(e)
    assert (ev["reason"], ev["cancelled"]) == ("no_liquidity", 1)


def test_large_orders_need_the_reputation_the_gate_asks():
    from sandbank.reputation.reputation import DEFAULT_SCORE

    e = market()
    e.k.submit(SetPolicyAction(actor=OPERATOR, param="gate_order_qty", value=5))
    e.k.submit(SetPolicyAction(actor=OPERATOR, param="gate_reputation", value=DEFAULT_SCORE + 1))
    e.k.step()
    e.k.step()  # effective from the next tick
    assert refusal(e, order(1, "buy", 5, 10)) is None  # at the gate: not above it
    assert refusal(e, order(1, "buy", 6, 10)) == "reputation_too_low"
    e.do(SetPolicyAction(actor=OPERATOR, param="gate_reputation", value=DEFAULT_SCORE))
    e.do()
    assert refusal(e, order(1, "buy", 6, 10)) is None  # exactly the score asked


def test_a_position_cap_counts_holdings_and_resting_bids_in_that_asset_only():
    e = market()
    ov = e.add_overseer("olga")
    e.do(SetCap(actor=ov, cap="position:WGT", value=FUND + 5))
    e.do(order(1, "buy", 2, 10))  # holds FUND, bids for 2: FUND + 2
    e.do(order(1, "sell", 1, 500))  # a resting sell does not count against a long cap
    assert refusal(e, order(1, "buy", 3, 10)) is None  # FUND + 2 + 3 = the cap
    assert refusal(e, order(1, "buy", 1, 10)) == "over_cap"
    assert refusal(e, order(2, "buy", 5, 10)) is None  # another agent has its own position
    assert refusal(e, order(1, "sell", 3, 600)) is None  # selling is never capped


def test_an_owner_position_cap_counts_every_agent_of_the_owner_together():
    e = market()  # agents 1..4, all of owner 1, each holding FUND WGT
    ov = e.add_overseer("olga")
    for bad in ("position:WGT:9", "position:WGT:01", "position:WGT:", "position:XYZ:1"):
        assert refusal(e, SetCap(actor=ov, cap=bad, value=5)) == "invalid_field", bad
    e.do(SetCap(actor=ov, cap="position:WGT:1", value=4 * FUND + 5))
    e.do(order(1, "buy", 2, 10))  # the owner: 4·FUND held, 2 bid for
    assert refusal(e, order(3, "buy", 3, 10)) is None  # another of its agents: = the cap
    assert refusal(e, order(4, "buy", 1, 10)) == "over_cap"  # each agent far under it alone
    assert refusal(e, order(2, "sell", 3, 600)) is None  # selling is never capped


def test_an_order_by_the_operator_is_refused_not_a_crash_under_owner_caps():
    e = market()
    ov = e.add_overseer("olga")
    e.do(SetCap(actor=ov, cap="position:WGT:1", value=4 * FUND + 5))
    assert refusal(e, PlaceOrder(actor=OPERATOR, asset="WGT", side="buy", qty=1, price=10,
                                 order_type="limit")) is not None


def test_a_position_cap_cancels_the_bids_resting_from_before_that_could_fill_past_it():
    e = market()
    ov = e.add_overseer("olga")
    e.do(order(1, "buy", 4, 10))  # rests before any cap
    e.do(order(2, "buy", 4, 10))
    e.do(order(3, "buy", 1, 10))
    e.do(SetCap(actor=ov, cap="position:WGT", value=FUND + 2))  # agents 1 and 2 over it
    cancelled = [d for d in e.k.log.last_committed if d["kind"] == "order_cancelled"]
    assert len(cancelled) == 2 and all("position cap" in d["reason"] for d in cancelled)
    assert [o.agent for o in e.k.state.exchange.orders.values()] == [3]  # under: it stays
    e.do(SetCap(actor=ov, cap="position:WGT:1", value=4 * FUND))  # the owner: now over
    assert not e.k.state.exchange.orders
    e.do(order(4, "sell", 5, 10))
    assert e.balance(1, "WGT") == e.balance(2, "WGT") == e.balance(3, "WGT") == FUND


# ---------------------------------------------------------------- more edges of the exchange
def test_a_limit_order_takes_the_levels_its_price_reaches_and_rests_the_rest():
    e = market()
    e.do(order(1, "sell", 2, 100))
    e.do(order(3, "sell", 2, 105))
    e.do(order(2, "buy", 4, 102))  # 2 @ 100; 105 is beyond 102: the other 2 rest at 102
    ev = placed(e)
    assert [f[1:3] for f in ev["fills"]] == [[100, 2]]
    assert (ev["rested"], ev["cancelled"], ev["reason"]) == (2, 0, "")
    assert e.available(2) == FUND - 200 - 2 * 102
    [view] = e.k.observe(2).orders
    assert (view.side, view.price, view.qty, view.remaining) == ("buy", 102, 4, 2)


def test_a_market_buy_that_cannot_pay_for_one_unit_takes_nothing():
    e = market(fund=50)
    e.do(order(1, "sell", 3, 100))
    e.do(order(2, "buy", 3, kind="market"))
    ev = placed(e)
    assert (ev["fills"], ev["reason"], ev["cancelled"]) == ([], "insufficient_funds", 3)
    assert e.balance(2) == 50


def test_the_largest_quantity_is_allowed_one_more_is_not():
    e = market()
    assert refusal(e, order(1, "buy", MAX_AMOUNT, 1)) == "insufficient_funds"  # = MAX: allowed
    assert refusal(e, order(1, "buy", MAX_AMOUNT + 1, 1)) == "amount_too_large"


def test_a_certified_agents_rebate_lowers_the_fee_it_pays_and_the_cash_it_needs():
    from sandbank.controls.policy import Certify

    e = Economy(n=4, fund=FUND, assets=("CRD", "WGT"),
                markets=({"asset": "WGT", "quote": "CRD"},),
                policy={"trade_fee_bps": 100, "certified_rebate_bps": 5000})
    e.do(Certify(actor=OPERATOR, agent=2, certified=True))
    t0 = treasury(e)
    e.do(order(1, "sell", 10, 100))
    e.do(order(2, "buy", 10, 100))  # fee 10, half rebated: 5
    assert e.balance(2) == FUND - 1000 - 5 and treasury(e) - t0 == 5
    e.do(order(3, "buy", 10, 100))  # rests
    e.do(order(2, "sell", 10, 100))  # certified taker sells: fee 5 out of its 1000
    assert e.balance(2) == FUND - 1000 - 5 + 1000 - 5 and treasury(e) - t0 == 10
    # a resting buy needs price × qty + the fee it would pay. 1004 @ 99: 99 396 + fee 993,
    # rebated to 497: 99 893 ≤ the certified agent's 99 990; the uncertified one needs
    # 100 389 and has 100 000
    assert refusal(e, order(2, "buy", 1004, 99)) is None
    assert refusal(e, order(4, "buy", 1004, 99)) == "insufficient_funds"
    e.do(order(1, "buy", 1, kind="market"))  # (nothing rests on the ask side: no liquidity)
    assert placed(e)["reason"] == "no_liquidity"


def test_a_market_buy_by_a_certified_agent_is_sized_with_its_rebated_fee():
    from sandbank.controls.policy import Certify

    e = Economy(n=3, fund=1010, assets=("CRD", "WGT"),
                markets=({"asset": "WGT", "quote": "CRD"},),
                policy={"trade_fee_bps": 100, "certified_rebate_bps": 10_000})
    e.do(Certify(actor=OPERATOR, agent=2, certified=True))
    e.do(order(1, "sell", 20, 100))
    e.do(order(2, "buy", 20, kind="market"))
    # sized by the full fee (10 units: 1000 + 10), paid with the rebate: no fee at all
    assert [f[1:3] for f in placed(e)["fills"]] == [[100, 10]]
    assert e.balance(2) == 1010 - 1000


def test_halted_and_paused_markets_say_which():
    from sandbank.controls.controls import TripBreaker

    e = market(band_bps=1000, limit_state_ticks=1, halt_ticks=5)
    _halt(e)
    m = e.k.state.exchange.markets["WGT"]
    e.k.submit(order(2, "buy", 1, kind="market"))
    e.k.step()
    [rej] = [d for d in e.k.log.last_committed if d["kind"] == "rejected"]
    assert rej["message"] == f"WGT is halted until tick {m.until}"
    e2 = market()
    ov = e2.add_overseer("watch", "monitor")
    e2.do(TripBreaker(actor=ov, scope="market", market="WGT", level="pause", reason="drill"))
    e2.k.submit(order(2, "buy", 1, kind="market"))
    e2.k.step()
    [rej] = [d for d in e2.k.log.last_committed if d["kind"] == "rejected"]
    assert (rej["reason"], rej["message"]) == ("market_halted", "WGT is paused by oversight")


def test_after_a_call_auction_its_price_is_the_reference_and_partial_fills_keep_their_hold():
    e = market(band_bps=1000, limit_state_ticks=1, halt_ticks=10)
    _halt(e)
    m = e.k.state.exchange.markets["WGT"]
    e.do(*[CancelOrder(actor=o.agent, order=o.id) for o in e.k.state.exchange.orders.values()])
    e.do(order(1, "buy", 5, 110))
    big = placed(e)["order"]
    e.do(order(3, "sell", 3, 104))
    while m.state == "halted":
        e.do()
    # 104: demand 5, supply 3 → 3; 110: 3 too but farther from 100: the price is 104
    assert (m.last_price, m.reference(e.k.tick), m.band(e.k.tick)) == (104, 104, (94, 114))
    assert list(m.window) == [(e.k.tick, 104)] and m.window_sum == 104
    o = e.k.state.exchange.orders[big]
    assert o.remaining == 2 and e.available(1) == FUND - 3 * 104 - 2 * 110
    e.do(CancelOrder(actor=1, order=big))  # its re-held remainder is released
    assert e.available(1) == e.balance(1) == FUND - 3 * 104


def test_an_open_market_with_a_crossed_book_fails_the_invariants_a_halted_one_does_not():
    from sandbank.markets.orderbook import Order

    e = market()
    m = e.k.state.exchange.markets["WGT"]
    m.book.add(Order(900, 1, "WGT", "buy", 120, 1, 1, None, 0))
    m.book.add(Order(901, 2, "WGT", "sell", 110, 1, 1, None, 0))
    with pytest.raises(AssertionError):
        e.k.state.exchange.check()
    m.state = "halted"
    e.k.state.exchange.check()

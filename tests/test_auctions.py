"""Sealed-bid auctions: mechanism-design properties on the pure clearing rule, and the
escrow life cycle through the kernel."""

import itertools

from conftest import Economy
from sandbank.kernel.schema import OPERATOR
from sandbank.markets.auctions import (
    FIRST,
    SECOND,
    UNIFORM,
    BidAuction,
    CreateAllocation,
    CreateAuction,
    clear,
    envy,
)
from tests.keys import fixed_key


def utility(fmt, values, bids, bidder, quantity=1, reserve=0):
    allocs, _ = clear(fmt, [(i, i, b, 1) for i, b in enumerate(bids)], quantity, reserve)
    return sum(values[bidder] * units - pay for bid, units, pay in allocs if bid == bidder)


def test_second_price_truthful_bidding_is_never_beaten_by_a_unilateral_deviation():
    grid = range(0, 21, 2)
    for values in itertools.product(range(1, 21, 3), repeat=3):
        for reserve in (0, 5):
            for i in range(3):
                truthful = list(values)
                honest = utility(SECOND, values, truthful, i, reserve=reserve)
                for b in grid:
                    dev = list(values)
                    dev[i] = b
                    assert utility(SECOND, values, dev, i, reserve=reserve) <= honest, \
                        (values, reserve, i, b)


def test_first_price_is_not_truthful_a_known_counterexample():
    values = [10, 6]
    assert utility(FIRST, values, [10, 6], 0) == 0
    assert utility(FIRST, values, [7, 6], 0) == 3  # shading pays: why Vickrey exists


def test_uniform_price_is_the_highest_rejected_unit():
    allocs, price = clear(UNIFORM, [(1, 1, 10, 2), (2, 2, 8, 2), (3, 3, 5, 1)], 3, 0)
    assert price == 8 and allocs == [(1, 2, 16), (2, 1, 8)]
    allocs, price = clear(UNIFORM, [(1, 1, 10, 1), (2, 2, 8, 1)], 5, 3)
    assert price == 3 and allocs == [(1, 1, 3), (2, 1, 3)]  # nothing rejected: the reserve


def test_envy_known_answers():
    values = {1: {"a": 10, "b": 2}, 2: {"a": 3, "b": 9}}
    assert envy(values, {"a": 1, "b": 2}) == []  # each has its favourite: envy-free
    assert envy(values, {"a": 2, "b": 1}) == [[1, 2, 8], [2, 1, 6]]
    assert envy(values, {"a": 1, "b": 1}) == [[2, 1, 12]]
    assert envy({1: {"a": 5}, 2: {"a": 5}}, {"a": 1}) == [[2, 1, 5]]


def auction_economy():
    return Economy(n=4, fund=10_000, assets=("CRD", "WGT", "TOK", "ART", "GEM"))


def test_second_price_auction_escrows_bids_and_refunds_losers_in_the_clearing_tick():
    e = auction_economy()
    close = e.k.tick + 5  # created next tick, bids for three ticks, clears at `close`
    e.do(CreateAuction(actor=1, asset="WGT", quantity=10, format=SECOND, closes=close, reserve=50))
    assert e.available(1, "WGT") == 9_990
    e.do(BidAuction(actor=2, auction=1, price=300), BidAuction(actor=3, auction=1, price=200),
         BidAuction(actor=4, auction=1, price=40))
    assert (e.available(2), e.available(3), e.available(4)) == (9_700, 9_800, 9_960)
    e.do(BidAuction(actor=2, auction=1, price=999))
    assert e.last_events()[0]["reason"] == "already_bid"
    e.do(BidAuction(actor=3, auction=1, price=10**6, qty=1))
    while e.k.tick < close:
        e.do()
    cleared = e.last_events()[0]
    assert cleared["kind"] == "auction_cleared"
    assert [w[1:] for w in cleared["winners"]] == [[2, 10, 200]]
    assert (e.balance(2), e.balance(2, "WGT"), e.available(2)) == (9_800, 10_010, 9_800)
    assert (e.available(3), e.available(4)) == (10_000, 10_000)  # losers refunded
    assert (e.balance(1), e.balance(1, "WGT")) == (10_200, 9_990)
    e.do(BidAuction(actor=4, auction=1, price=500))
    assert e.last_events()[0]["reason"] == "auction_closed"
    e.k.state.check_invariants()


def test_uniform_price_auction_and_unmet_reserve():
    e = auction_economy()
    close = e.k.tick + 3
    e.do(CreateAuction(actor=1, asset="WGT", quantity=5, format=UNIFORM, closes=close, reserve=1),
         CreateAuction(actor=1, asset="WGT", quantity=5, format=FIRST, closes=close,
                       reserve=1000))
    e.do(BidAuction(actor=2, auction=1, price=30, qty=4), BidAuction(actor=3, auction=1, price=20,
                                                                       qty=3),
         BidAuction(actor=4, auction=2, price=999))
    e.do()
    by_kind = {ev["auction"]: ev for ev in e.last_events(2)}
    assert [w[1:] for w in by_kind[1]["winners"]] == [[2, 4, 80], [3, 1, 20]]
    assert by_kind[1]["price"] == 20
    assert by_kind[2]["winners"] == [] and "reserve" in by_kind[2]["reason"]
    assert e.balance(1, "WGT") == 10_000 - 5 and e.available(4) == 10_000
    e.k.state.check_invariants()


def test_equal_endowment_allocation_reports_envy():
    e = auction_economy()
    close = e.k.tick + 3
    e.do(CreateAllocation(actor=OPERATOR, lots={"ART": 1, "GEM": 1}, token="TOK", budget=100,
                          bidders=[2, 3], closes=close))
    assert e.balance(2, "TOK") == 10_100
    e.do(BidAuction(actor=2, auction=1, price=60, lot="ART"), BidAuction(actor=2, auction=1,
                                                                          price=40, lot="GEM"),
         BidAuction(actor=3, auction=1, price=61, lot="ART"), BidAuction(actor=3, auction=1,
                                                                          price=39, lot="GEM"))
    e.do()
    ev = e.last_events()[0]
    assert [w[1:] for w in ev["winners"]] == [[3, "ART", 61], [2, "GEM", 40]]
    assert ev["envy_free"] is False and ev["envy"] == [[2, 3, 20]]
    assert (e.balance(3, "ART"), e.balance(2, "GEM")) == (10_001, 10_001)
    e.k.state.check_invariants()


def test_a_bidder_without_an_account_for_the_lot_is_refused_at_bidding_not_at_clearing():
    from sandbank.kernel.schema import OpenAccount

    e = Economy(n=3, fund=1000, assets=("CRD", "WGT", "GEM"))
    e.do(CreateAuction(actor=1, asset="WGT", quantity=1, format=SECOND, closes=e.k.tick + 9))
    # an agent with cash but no WGT account
    from sandbank.kernel.schema import RegisterAgent, agent_attestation_bytes

    key = fixed_key(5, "late")
    e.do(RegisterAgent(actor=OPERATOR, owner=1, name="late", public_key=key.public,
                       attestation=e.owner_key.sign(agent_attestation_bytes(1, "late", key.public))))
    e.do(OpenAccount(actor=OPERATOR, asset="CRD", holder=4))
    e.do(BidAuction(actor=4, auction=1, price=5))
    assert e.last_events()[0]["reason"] == "no_account"

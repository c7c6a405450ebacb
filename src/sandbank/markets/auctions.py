"""Sealed-bid auctions (checklist 7): first-price, second-price (Vickrey), uniform-price
multi-unit, and an equal-endowment allocation with an envy check.

Bids are escrowed (held) when placed and are not shown to other agents. At the closing
tick the auction clears in one settlement: winners pay (a post of their hold, which
releases any excess), the seller is paid and delivers, losers are refunded — all in the
same tick, all or nothing.

Pricing:
- first_price: one lot; the highest bid wins and pays its bid.
- second_price: one lot; the highest bid wins and pays the higher of the second-highest
  bid and the reserve (truthful bidding is a dominant strategy; tested by brute force).
- uniform_price: `quantity` units, bids for (price, units); units go to the highest bids;
  every winner pays the same price per unit: the highest rejected unit's bid, or the
  reserve if no unit was rejected.
- equal_endowment (operator only): distinct lots; every listed bidder receives the same
  budget of a dedicated token; each lot goes to its highest token bid (first price, paid
  back to the treasury). The clearing reports whether the outcome is envy-free with respect
  to the bids (bidder i envies j if i bid more, in total, on j's lots than on its own).
Ties go to the earlier bid.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.identity.registry import ACTIVE
from sandbank.kernel.digest import DigestMap
from sandbank.kernel.errors import Reject
from sandbank.kernel.mechanism import PARTIES, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    SYSTEM,
    Action,
    Event,
    Settled,
    register_action,
    register_event,
)
from sandbank.kernel.settlement import Settlement, require_account
from sandbank.ledger.ledger import MAX_AMOUNT

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

FIRST, SECOND, UNIFORM, EQUAL = "first_price", "second_price", "uniform_price", "equal_endowment"
FORMATS = (FIRST, SECOND, UNIFORM)
MAX_BIDS = 1024


@register_action
@dataclass(slots=True, kw_only=True)
class CreateAuction(Action):
    """Sell `quantity` units of `asset` (held from the seller until the auction clears)."""

    KIND: ClassVar[str] = "create_auction"
    asset: str
    quantity: int
    format: str
    closes: int  # the tick at which the auction clears
    reserve: int = 0  # lowest acceptable price (per lot, or per unit for uniform_price)
    quote: str = ""  # currency of the bids (default: the fee asset)


@register_action
@dataclass(slots=True, kw_only=True)
class CreateAllocation(Action):
    """An equal-endowment auction of distinct lots (asset -> units), minted by the operator;
    every bidder receives `budget` units of `token` to bid with."""

    KIND: ClassVar[str] = "create_allocation"
    OPERATOR_ONLY: ClassVar[bool] = True
    lots: dict[str, int]
    token: str
    budget: int
    bidders: list[int]
    closes: int


@register_action
@dataclass(slots=True, kw_only=True)
class BidAuction(Action):
    KIND: ClassVar[str] = "bid_auction"
    auction: int
    price: int  # per lot, or per unit for uniform_price
    qty: int = 1  # units (uniform_price only)
    lot: str = ""  # the lot bid on (equal_endowment only)


@register_event
@dataclass(slots=True, kw_only=True)
class AuctionCreated(Settled):
    KIND: ClassVar[str] = "auction_created"
    auction: int
    format: str
    asset: str
    quantity: int
    quote: str
    reserve: int
    closes: int
    hold: int  # seller's hold (0 for equal_endowment)
    lots: dict[str, int]
    bidders: list[int]
    budget: int


@register_event
@dataclass(slots=True, kw_only=True)
class AuctionBid(Settled):
    KIND: ClassVar[str] = "auction_bid"
    auction: int
    bid: int
    price: int
    qty: int
    lot: str
    hold: int


@register_event
@dataclass(slots=True, kw_only=True)
class AuctionCleared(Settled):
    KIND: ClassVar[str] = "auction_cleared"
    auction: int
    price: int  # clearing price (uniform, second price), or 0
    winners: list[list[Any]]  # [bid, bidder, units or lot, payment]
    unsold: int
    envy_free: bool
    envy: list[list[int]]  # [envious bidder, envied bidder, amount]
    reason: str


@dataclass
class Bid:
    id: int
    bidder: int
    price: int
    qty: int
    lot: str
    hold: int


@dataclass
class Auction:
    id: int
    seller: int
    format: str
    asset: str
    quantity: int
    quote: str
    reserve: int
    closes: int
    hold: int
    lots: dict[str, int]
    bidders: list[int]
    budget: int
    bids: list[Bid] = field(default_factory=list)
    status: str = "open"

    def record(self) -> list[Any]:
        return [self.id, self.seller, self.format, self.asset, self.quantity, self.quote,
                self.reserve, self.closes, self.hold, sorted(self.lots.items()), self.bidders,
                self.budget, self.status,
                [[b.id, b.bidder, b.price, b.qty, b.lot, b.hold] for b in self.bids]]


# ----------------------------------------------------------------------------- pure clearing
def clear(fmt: str, bids: list[tuple[int, int, int, int]], quantity: int,
          reserve: int) -> tuple[list[tuple[int, int, int]], int]:
    """Allocation of a single-asset sealed-bid auction.

    bids: (bid id, bidder, price, units); returns ([(bid id, units, payment)], price)."""
    valid = sorted((b for b in bids if b[2] >= reserve), key=lambda b: (-b[2], b[0]))
    if not valid:
        return [], 0
    if fmt in (FIRST, SECOND):
        top = valid[0]
        pay = top[2] if fmt == FIRST else max(valid[1][2] if len(valid) > 1 else 0, reserve)
        return [(top[0], quantity, pay)], pay
    left, won = quantity, []
    rejected_price = None
    for bid_id, _, price, units in valid:
        take = min(units, left)
        if take:
            won.append((bid_id, take))
            left -= take
        if take < units and rejected_price is None:
            rejected_price = price
    price = max(rejected_price if rejected_price is not None else 0, reserve)
    return [(b, u, u * price) for b, u in won], price


def envy(values: dict[int, dict[str, int]], allocation: dict[str, int]) -> list[list[int]]:
    """[[i, j, amount]] for every bidder i that values j's bundle above its own."""
    bundles: dict[int, list[str]] = {i: [] for i in values}
    for lot, owner in allocation.items():
        bundles.setdefault(owner, []).append(lot)
    out = []
    for i, vi in sorted(values.items()):
        own = sum(vi.get(lot, 0) for lot in bundles[i])
        for j in sorted(bundles):
            if j != i:
                other = sum(vi.get(lot, 0) for lot in bundles[j])
                if other > own:
                    out.append([i, j, other - own])
    return out


# ----------------------------------------------------------------------------- state
class AuctionHouse:
    def __init__(self) -> None:
        self.auctions: dict[int, Auction] = {}
        self.open: dict[int, Auction] = {}  # for observations
        self.next_bid = 1
        self._closing: list[tuple[int, int]] = []
        self._digest = DigestMap(Auction.record)

    def apply_created(self, ev: AuctionCreated, tick: int) -> None:
        a = Auction(ev.auction, ev.actor, ev.format, ev.asset, ev.quantity, ev.quote, ev.reserve,
                    ev.closes, ev.hold, dict(ev.lots), list(ev.bidders), ev.budget)
        self.auctions[a.id] = a
        self.open[a.id] = a
        heapq.heappush(self._closing, (a.closes, a.id))
        self._digest.touch(a.id, a)

    def apply_bid(self, ev: AuctionBid, tick: int) -> None:
        a = self.auctions[ev.auction]
        a.bids.append(Bid(ev.bid, ev.actor, ev.price, ev.qty, ev.lot, ev.hold))
        self.next_bid = ev.bid + 1
        self._digest.touch(a.id, a)

    def apply_cleared(self, ev: AuctionCleared, tick: int) -> None:
        a = self.auctions[ev.auction]
        a.status = "cleared"
        self.open.pop(a.id, None)
        self._digest.touch(a.id, a)

    def scheduled_closings(self, tick: int) -> list[tuple[int, int]]:
        """(closes, auction) still due after `tick`, sorted: the closing heap as it acts."""
        return sorted((c, aid) for c, aid in self._closing
                      if c > tick and self.auctions[aid].status == "open")

    def due(self, tick: int) -> list[Auction]:
        out = []
        while self._closing and self._closing[0][0] <= tick:
            a = self.auctions[heapq.heappop(self._closing)[1]]
            if a.status == "open":  # (after a resume the heap also holds cleared ones)
                out.append(a)
        return out

    def digest(self) -> bytes:
        return self._digest.digest()


# ----------------------------------------------------------------------------- mechanism
def create_auction(k: Kernel, a: CreateAuction, tick: int) -> list[Event]:
    quote = a.quote or k.state.policy.fee_asset
    for asset in (a.asset, quote):
        if asset not in k.state.ledger.treasury:
            raise Reject("unknown_asset", f"unknown asset {asset!r}")
    if a.asset == quote:
        raise Reject("invalid_field", "an auction sells one asset for another")
    if a.format not in FORMATS:
        raise Reject("invalid_field", f"format must be one of {FORMATS} (equal_endowment: "
                                      f"create_allocation)")
    if not 0 < a.quantity <= MAX_AMOUNT:
        raise Reject("invalid_quantity", f"quantity must be positive, got {a.quantity}")
    if not 0 <= a.reserve <= MAX_AMOUNT:
        raise Reject("invalid_amount", "reserve must be within 0..MAX_AMOUNT")
    if a.closes <= tick:
        raise Reject("invalid_deadline", f"closing tick {a.closes} is not after {tick}")
    goods = require_account(k, a.actor, a.asset)
    require_account(k, a.actor, quote)
    if goods.available < a.quantity:
        raise Reject("insufficient_assets", f"needs {a.quantity} {a.asset}, has {goods.available}")
    st = Settlement(k)
    hold = st.hold(goods.id, a.asset, a.quantity)
    ev = AuctionCreated(actor=a.actor, transfers=st.commit(), auction=len(k.state.auctions.auctions) + 1,
                        format=a.format, asset=a.asset, quantity=a.quantity, quote=quote,
                        reserve=a.reserve, closes=a.closes, hold=hold[1], lots={}, bidders=[],
                        budget=0)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def create_allocation(k: Kernel, a: CreateAllocation, tick: int) -> list[Event]:
    led = k.state.ledger
    if a.token not in led.treasury:
        raise Reject("unknown_asset", f"unknown token asset {a.token!r}")
    if not a.lots or not a.bidders or len(set(a.bidders)) != len(a.bidders):
        raise Reject("invalid_field", "an allocation needs lots and distinct bidders")
    for asset, units in a.lots.items():
        if asset not in led.treasury or asset == a.token or units <= 0:
            raise Reject("invalid_field", f"lot {asset!r}: a known asset other than the token, "
                                          f"with positive units")
    if not 0 < a.budget <= MAX_AMOUNT or a.closes <= tick:
        raise Reject("invalid_field", "budget must be positive and closes after this tick")
    st = Settlement(k)
    for b in a.bidders:
        agent = k.state.registry.agents.get(b)
        if agent is None or agent.status != ACTIVE:
            raise Reject("unknown_agent", f"bidder {b} is not an active agent")
        st.pay(led.treasury[a.token], require_account(k, b, a.token).id, a.budget)
        for asset in a.lots:
            require_account(k, b, asset)
    for asset, units in sorted(a.lots.items()):
        st.pay(led.treasury[asset], led.escrow[asset], units)
    ev = AuctionCreated(actor=a.actor, transfers=st.commit(), auction=len(k.state.auctions.auctions) + 1,
                        format=EQUAL, asset="", quantity=0, quote=a.token, reserve=0,
                        closes=a.closes, hold=0, lots=a.lots, bidders=a.bidders, budget=a.budget)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def bid_auction(k: Kernel, b: BidAuction, tick: int) -> list[Event]:
    house = k.state.auctions
    a = house.auctions.get(b.auction)
    if a is None:
        raise Reject("unknown_auction", f"no auction {b.auction}")
    if a.status != "open" or tick >= a.closes:
        raise Reject("auction_closed", f"auction {a.id} closed at tick {a.closes}")
    if b.actor == a.seller:
        raise Reject("invalid_field", "a seller cannot bid in its own auction")
    if b.price <= 0 or b.qty <= 0:
        raise Reject("invalid_amount", "price and quantity must be positive")
    if len(a.bids) >= MAX_BIDS:
        raise Reject("too_many_bids", f"auction {a.id} has {MAX_BIDS} bids")
    if a.format == EQUAL:
        if b.actor not in a.bidders:
            raise Reject("not_a_bidder", f"agent {b.actor} is not a bidder of allocation {a.id}")
        if b.lot not in a.lots or b.qty != 1:
            raise Reject("invalid_field", f"bid on one of the lots {sorted(a.lots)}, qty 1")
        if any(x.bidder == b.actor and x.lot == b.lot for x in a.bids):
            raise Reject("already_bid", f"agent {b.actor} already bid on lot {b.lot}")
    else:
        if b.lot:
            raise Reject("invalid_field", "only equal_endowment auctions have lots")
        if a.format != UNIFORM and b.qty != 1:
            raise Reject("invalid_field", f"a {a.format} auction sells one lot: qty must be 1")
        if b.qty > a.quantity:
            raise Reject("invalid_quantity", f"at most {a.quantity} units are for sale")
        if any(x.bidder == b.actor for x in a.bids):
            raise Reject("already_bid", f"agent {b.actor} already bid in auction {a.id}")
    amount = b.price * b.qty
    if amount > MAX_AMOUNT:
        raise Reject("amount_too_large", "price × quantity exceeds the largest amount")
    acct = require_account(k, b.actor, a.quote)
    if a.format != EQUAL:
        require_account(k, b.actor, a.asset)  # where the units go if it wins
    if acct.available < amount:
        raise Reject("insufficient_funds", f"bid needs {amount} {a.quote}, has {acct.available}")
    st = Settlement(k)
    hold = st.hold(acct.id, a.quote, amount)
    ev = AuctionBid(actor=b.actor, transfers=st.commit(), auction=a.id, bid=house.next_bid,
                    price=b.price, qty=b.qty, lot=b.lot, hold=hold[1])
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def _clear(k: Kernel, a: Auction, tick: int) -> Event:
    led = k.state.ledger
    st = Settlement(k)
    winners: list[list[Any]] = []
    envy_list: list[list[int]] = []
    price = unsold = 0
    won: set[int] = set()
    if a.format == EQUAL:
        allocation: dict[str, int] = {}
        for lot in sorted(a.lots):
            bids = sorted((b for b in a.bids if b.lot == lot), key=lambda b: (-b.price, b.id))
            if bids:
                top = bids[0]
                allocation[lot] = top.bidder
                st.take((SYSTEM, top.hold), top.price, led.treasury[a.quote], a.quote)
                st.pay(led.escrow[lot], require_account(k, top.bidder, lot).id, a.lots[lot])
                winners.append([top.id, top.bidder, lot, top.price])
                won.add(top.id)
            else:
                st.pay(led.escrow[lot], led.treasury[lot], a.lots[lot])
                unsold += a.lots[lot]
        values = {i: {} for i in a.bidders}
        for b in a.bids:
            values[b.bidder][b.lot] = b.price
        envy_list = envy(values, allocation)
        reason = f"{len(allocation)} of {len(a.lots)} lots allocated"
    else:
        allocs, price = clear(a.format, [(b.id, b.bidder, b.price, b.qty) for b in a.bids],
                              a.quantity, a.reserve)
        by_id = {b.id: b for b in a.bids}
        seller_cash = require_account(k, a.seller, a.quote).id
        seller_hold: tuple[int, int] | None = (SYSTEM, a.hold)
        for bid_id, units, payment in allocs:
            b = by_id[bid_id]
            if payment:
                st.take((SYSTEM, b.hold), payment, seller_cash, a.quote, keep=0)
            else:  # a free win (no competing bid, no reserve)
                st.void((SYSTEM, b.hold))
            assert seller_hold is not None
            seller_hold = st.take(seller_hold, units, require_account(k, b.bidder, a.asset).id, a.asset)
            winners.append([b.id, b.bidder, units, payment])
            won.add(b.id)
        unsold = a.quantity - sum(u for _, u, _ in allocs)
        if seller_hold is not None:
            st.void(seller_hold)
        reason = (f"{len(allocs)} winning bid(s) at {price}" if allocs
                  else "no bid met the reserve" if a.bids else "no bids")
    for b in a.bids:
        if b.id not in won:
            st.void((SYSTEM, b.hold))
    ev = AuctionCleared(actor=SYSTEM, transfers=st.commit(), auction=a.id, price=price,
                        winners=winners, unsold=unsold, envy_free=not envy_list, envy=envy_list,
                        reason=reason)
    k.state.apply(ev, tick, ledger_applied=True)
    return ev


def auctions_tick(k: Kernel, tick: int) -> list[Event]:
    return [_clear(k, a, tick) for a in k.state.auctions.due(tick)]


@dataclass(frozen=True, slots=True)
class AuctionView:
    id: int
    seller: int
    format: str
    asset: str
    quantity: int
    quote: str
    reserve: int
    closes: int
    lots: tuple[tuple[str, int], ...]
    bids: int  # how many (amounts are sealed)
    my_bids: tuple[tuple[int, int, str], ...]  # (price, qty, lot)


def views_for(house: AuctionHouse, agent: int) -> tuple[AuctionView, ...]:
    return tuple(
        AuctionView(a.id, a.seller, a.format, a.asset, a.quantity, a.quote, a.reserve, a.closes,
                    tuple(sorted(a.lots.items())), len(a.bids),
                    tuple((b.price, b.qty, b.lot) for b in a.bids if b.bidder == agent))
        for a in house.open.values()
        if a.format != EQUAL or agent in a.bidders
    )


def views(k: Kernel) -> Any:
    return lambda agent: {"auctions": views_for(k.state.auctions, agent)}


MECHANISM = Mechanism(
    "auctions", state=AuctionHouse,
    schedules=lambda house, tick: {"closings": house.scheduled_closings(tick)},
    handlers={CreateAuction.KIND: create_auction, CreateAllocation.KIND: create_allocation,
              BidAuction.KIND: bid_auction},
    appliers={
        AuctionCreated: lambda s: s.auctions.apply_created,
        AuctionBid: lambda s: s.auctions.apply_bid,
        AuctionCleared: lambda s: s.auctions.apply_cleared,
    },
    tick_start=((20, auctions_tick),),
    views=views,
    visibility={"auction_created": PUBLIC, "auction_cleared": PUBLIC, "auction_bid": PARTIES},
    requires=("policy",),
)

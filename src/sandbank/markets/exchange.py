"""The exchange: a continuous double auction per asset, with price bands, halts and a
reopening call auction (paper checklist 7, 53; anchors §4–5).

- Limit and market orders; price–time priority; fills at the resting order's price;
  partial fills; self-trade prevention (the incoming order's remainder is cancelled).
- Every fill settles through one linked chain of ledger transfers: the maker's hold is
  taken (posted) and its remainder re-held, the asset and cash legs move, and the taker pays
  the trade fee to the treasury — all or nothing, one `order_placed` event per order.
- A resting order holds what it may need: cash (price × quantity, buy) or the asset (sell).
- Bands in the style of limit-up/limit-down: the reference price is the mean trade price
  over the last `reference_ticks` ticks; no fill executes outside reference ± `band_bps`.
  An order blocked by the band puts the market in a *limit state*; if orders keep hitting
  the band for `limit_state_ticks` ticks, trading halts for `halt_ticks` ticks. During a
  halt orders may be placed and cancelled but nothing trades; the market reopens with a
  call auction at the price that maximises executed volume.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.kernel.digest import DigestMap
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.mechanism import PUBLIC, Mechanism
from sandbank.kernel.observation import OrderView
from sandbank.kernel.schema import (
    SYSTEM,
    Action,
    Event,
    Settled,
    register_action,
    register_event,
)
from sandbank.kernel.settlement import Settlement, SettlementFailed, require_account
from sandbank.ledger.ledger import MAX_AMOUNT
from sandbank.markets.orderbook import BUY, SELL, Book, Order

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

BPS = 10_000
PAUSED_UNTIL = 2**53 - 1  # a market paused by oversight reopens only on resume
OPEN, LIMIT, HALTED = "open", "limit", "halted"
TRADES_KEPT = 64


# ----------------------------------------------------------------------------- schema
@register_action
@dataclass(slots=True, kw_only=True)
class PlaceOrder(Action):
    KIND: ClassVar[str] = "place_order"
    asset: str
    side: str  # buy | sell
    qty: int
    price: int = 0  # limit price in quote minor units per unit; unused for market orders
    order_type: str = "limit"  # limit | market (immediate or cancel)


@register_action
@dataclass(slots=True, kw_only=True)
class CancelOrder(Action):
    KIND: ClassVar[str] = "cancel_order"
    order: int


@register_event
@dataclass(slots=True, kw_only=True)
class OrderPlaced(Settled):
    KIND: ClassVar[str] = "order_placed"
    order: int
    asset: str
    side: str
    order_type: str
    price: int
    qty: int
    fills: list[list[int]]  # [maker order, price, qty, maker's new hold id or 0]
    rested: int  # quantity left resting in the book
    hold: int  # id of the SYSTEM hold reserving the resting part (0: none)
    cancelled: int  # quantity neither filled nor rested
    reason: str  # why `cancelled`: self_trade_prevented | price_band | no_liquidity | ...
    blocked: bool  # an execution was refused by the price band

    def to_dict(self) -> dict[str, Any]:  # hot: spelled out
        return {"kind": "order_placed", "actor": self.actor, "transfers": self.transfers,
                "order": self.order, "asset": self.asset, "side": self.side,
                "order_type": self.order_type, "price": self.price, "qty": self.qty,
                "fills": self.fills, "rested": self.rested, "hold": self.hold,
                "cancelled": self.cancelled, "reason": self.reason, "blocked": self.blocked}


@register_event
@dataclass(slots=True, kw_only=True)
class OrderCancelled(Settled):
    KIND: ClassVar[str] = "order_cancelled"
    order: int
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class MarketStateChanged(Event):
    KIND: ClassVar[str] = "market_state"
    asset: str
    state: str  # open | limit | halted
    until: int  # halted: the tick the call auction runs
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class CallAuctionCleared(Settled):
    KIND: ClassVar[str] = "call_auction"
    asset: str
    price: int
    fills: list[list[int]]  # [buy order, sell order, qty, buy's new hold id, sell's new hold id]
    cancelled: list[int]  # orders cancelled so the book reopens uncrossed (self-crossing)


# ----------------------------------------------------------------------------- state
@dataclass
class Market:
    asset: str
    quote: str
    band_bps: int = 0
    limit_state_ticks: int = 2
    halt_ticks: int = 3
    reference_ticks: int = 5
    compartment: str = ""  # only agents of this compartment trade here
    book: Book = field(default_factory=Book)
    state: str = OPEN
    since: int = 0
    until: int = 0
    last_block: int = 0
    last_price: int = 0
    volume: int = 0
    trades: deque = field(default_factory=lambda: deque(maxlen=TRADES_KEPT))
    window: deque = field(default_factory=deque)  # (tick, price) of recent trades
    window_sum: int = 0

    def record_trade(self, tick: int, price: int, qty: int) -> None:
        self.last_price = price
        self.volume += qty
        self.trades.append((tick, price, qty))
        self.window.append((tick, price))
        self.window_sum += price

    def prune(self, tick: int) -> None:
        """Drop trades older than the reference window (only when events apply, so a live
        run and its replay hold the same window)."""
        w = self.window
        while w and w[0][0] <= tick - self.reference_ticks:
            self.window_sum -= w.popleft()[1]

    def reference(self, tick: int) -> int:
        total, n = self.window_sum, len(self.window)
        for t, p in self.window:
            if t > tick - self.reference_ticks:
                break
            total, n = total - p, n - 1
        return total // n if n else self.last_price

    def band(self, tick: int) -> tuple[int, int] | None:
        ref = self.reference(tick)
        if not self.band_bps or not ref:
            return None
        return (-(-ref * (BPS - self.band_bps) // BPS), ref * (BPS + self.band_bps) // BPS)

    def record(self) -> list[Any]:
        return [self.asset, self.state, self.since, self.until, self.last_block, self.last_price,
                self.volume, self.window_sum, len(self.window)]


def _order_record(o: Order) -> list[Any]:
    return [o.id, o.agent, o.asset, o.side, o.price, o.qty, o.remaining, list(o.hold or ()),
            o.tick]


class Exchange:
    def __init__(self) -> None:
        self.markets: dict[str, Market] = {}
        self.orders: dict[int, Order] = {}
        self.by_agent: dict[int, dict[int, Order]] = {}  # agent -> its resting orders
        self.next_order = 1
        self._orders_digest = DigestMap(_order_record)
        self._markets_digest = DigestMap(Market.record)

    def configure(self, specs: list[dict[str, Any]]) -> None:
        for spec in specs:
            m = Market(**spec)
            self.markets[m.asset] = m
            self._markets_digest.touch(m.asset, m)

    # -- applying events (live and replay)
    def apply_placed(self, ev: OrderPlaced, tick: int) -> None:
        m = self.markets[ev.asset]
        if ev.fills:
            m.prune(tick)
        for maker_id, price, qty, new_hold in ev.fills:
            self._fill(m, self.orders[maker_id], qty, new_hold)
            m.record_trade(tick, price, qty)
        if ev.rested:
            o = Order(ev.order, ev.actor, ev.asset, ev.side, ev.price, ev.qty, ev.rested,
                      (SYSTEM, ev.hold), tick)
            self.orders[o.id] = o
            self.by_agent.setdefault(o.agent, {})[o.id] = o
            m.book.add(o)
            self._orders_digest.touch(o.id, o)
        if ev.blocked:
            m.last_block = tick
        self.next_order = ev.order + 1
        self._markets_digest.touch(m.asset, m)

    def _fill(self, m: Market, o: Order, qty: int, new_hold: int) -> None:
        o.remaining -= qty
        if o.remaining == 0:
            self._remove(m, o)
        else:
            o.hold = (SYSTEM, new_hold)
            self._orders_digest.touch(o.id, o)

    def _remove(self, m: Market, o: Order) -> None:
        m.book.remove(o)
        del self.orders[o.id]
        del self.by_agent[o.agent][o.id]
        self._orders_digest.delete(o.id)

    def apply_cancelled(self, ev: OrderCancelled, tick: int) -> None:
        o = self.orders[ev.order]
        self._remove(self.markets[o.asset], o)

    def apply_state(self, ev: MarketStateChanged, tick: int) -> None:
        m = self.markets[ev.asset]
        m.state, m.since, m.until = ev.state, tick, ev.until
        self._markets_digest.touch(m.asset, m)

    def apply_call(self, ev: CallAuctionCleared, tick: int) -> None:
        m = self.markets[ev.asset]
        for buy, sell, qty, buy_hold, sell_hold in ev.fills:
            self._fill(m, self.orders[buy], qty, buy_hold)
            self._fill(m, self.orders[sell], qty, sell_hold)
            m.record_trade(tick, ev.price, qty)
        for oid in ev.cancelled:
            self._remove(m, self.orders[oid])
        m.prune(tick)
        m.window.clear()  # the auction price is the new reference
        m.window.append((tick, ev.price))
        m.window_sum = ev.price
        m.last_price = ev.price
        self._markets_digest.touch(m.asset, m)

    def digest(self) -> bytes:
        return self._markets_digest.digest() + self._orders_digest.digest()

    def check(self) -> None:
        for m in self.markets.values():
            m.book.check(continuous=m.state != HALTED)


# ----------------------------------------------------------------------------- mechanism
def place_order(k: Kernel, a: PlaceOrder, tick: int) -> list[Event]:
    ex = k.state.exchange
    m = ex.markets.get(a.asset)
    if m is None:
        raise Reject("unknown_market", f"no market for {a.asset!r}; markets: {sorted(ex.markets)}")
    if a.side not in (BUY, SELL):
        raise Reject("invalid_field", "side must be 'buy' or 'sell'")
    if a.order_type not in ("limit", "market"):
        raise Reject("invalid_field", "order_type must be 'limit' or 'market'")
    if a.qty <= 0:
        raise Reject("invalid_quantity", f"quantity must be positive, got {a.qty}")
    market = a.order_type == "market"
    if market and a.price:
        raise Reject("invalid_field", "a market order has no price")
    if not market and a.price <= 0:
        raise Reject("invalid_price", f"a limit price must be positive, got {a.price}")
    if a.qty > MAX_AMOUNT or a.price * a.qty > MAX_AMOUNT:
        raise Reject("amount_too_large", "price × quantity exceeds the largest amount")
    if market and m.state == HALTED:
        raise Reject("market_halted", f"{a.asset} is halted until tick {m.until}"
                     if m.until < PAUSED_UNTIL else f"{a.asset} is paused by oversight")
    policy = k.state.policy
    gate_qty = policy.value("gate_order_qty", tick)
    if gate_qty and a.qty > gate_qty:
        need = policy.value("gate_reputation", tick)
        if k.state.reputation.score(a.actor) < need:
            raise Reject("reputation_too_low", f"orders above {gate_qty} units need a "
                         f"reputation of {need}; agent {a.actor} has "
                         f"{k.state.reputation.score(a.actor)}")
    controls = k.state.controls
    cap = controls.caps["order_qty"]
    if cap and a.qty > cap:
        raise Reject("over_cap", f"orders are capped by oversight at {cap} units")
    position = controls.caps.get(f"position:{a.asset}", 0)
    agent = k.state.registry.agents.get(a.actor)  # (the operator is no agent)
    owner = agent.owner if agent is not None else 0
    owner_position = controls.caps.get(f"position:{a.asset}:{owner}", 0) if owner else 0
    cash = require_account(k, a.actor, m.quote)
    goods = require_account(k, a.actor, a.asset)
    buy = a.side == BUY
    if buy and not market:
        need = a.price * a.qty + policy.fee(a.actor, a.price * a.qty, "trade_fee_bps", tick)
        if cash.available < need:
            raise Reject("insufficient_funds",
                         f"needs {need} {m.quote} available (price × quantity + fee), has "
                         f"{cash.available}")
    if position and buy:
        resting = sum(o.remaining for o in k.state.exchange.by_agent.get(a.actor, {}).values()
                      if o.asset == a.asset and o.side == BUY)
        if goods.balance + resting + a.qty > position:
            raise Reject("over_cap", f"oversight caps a position in {a.asset} at {position} "
                         f"units; holds {goods.balance}, bids for {resting} more")
    if owner_position and buy:
        held, bids = holding_of(k, k.state.registry.agents_of.get(owner, ()), a.asset)
        if held + bids + a.qty > owner_position:
            raise Reject("over_cap", f"oversight caps owner {owner}'s position in {a.asset} "
                         f"at {owner_position} units over all its agents; they hold {held}, "
                         f"bid for {bids} more")
    if not buy and goods.available < a.qty:
        raise Reject("insufficient_assets",
                     f"needs {a.qty} {a.asset} available, has {goods.available}")

    st = Settlement(k)
    fills: list[list[int]] = []
    remaining, reason, blocked = a.qty, "", False
    cash_left = cash.available
    top = m.book.best_price(SELL if buy else BUY)
    crosses = top is not None and (market or (top <= a.price if buy else top >= a.price))
    if m.state != HALTED and crosses:
        band = m.band(tick)
        for maker in m.book.orders(SELL if buy else BUY):
            if not market and (maker.price > a.price if buy else maker.price < a.price):
                break
            if maker.agent == a.actor:
                reason = "self_trade_prevented"
                break
            if band is not None and not band[0] <= maker.price <= band[1]:
                reason, blocked = "price_band", True
                break
            q = wanted = min(remaining, maker.remaining)
            notional = maker.price * q
            if buy:
                fee = policy.fee(a.actor, notional, "trade_fee_bps", tick)
                if market:
                    bps = policy.value("trade_fee_bps", tick)
                    q = min(q, cash_left * BPS // (maker.price * (BPS + bps)))
                    notional = maker.price * q
                    fee = policy.fee(a.actor, notional, "trade_fee_bps", tick)
                    while q and notional + fee > cash_left:  # rounding: at most a step or two
                        q -= 1
                        notional = maker.price * q
                        fee = policy.fee(a.actor, notional, "trade_fee_bps", tick)
                    if not q:
                        reason = "insufficient_funds"
                        break
                    cash_left -= notional + fee
                new_hold = st.take(maker.hold, q, goods.id, a.asset)
                st.pay(cash.id, require_account(k, maker.agent, m.quote).id, notional)
                st.fee(cash.id, m.quote, fee)
            else:
                seller_gets = require_account(k, maker.agent, a.asset).id
                new_hold = st.take(maker.hold, notional, cash.id, m.quote)
                st.pay(goods.id, seller_gets, q)
                st.fee(cash.id, m.quote, policy.fee(a.actor, notional, "trade_fee_bps", tick))
            fills.append([maker.id, maker.price, q, new_hold[1] if new_hold else 0])
            remaining -= q
            if q < wanted:  # a market buy ran out of cash
                reason = "insufficient_funds"
                break
            if not remaining:
                break
    rested = hold_id = 0
    if remaining and not market and not reason:
        rested = remaining
        amount = a.price * remaining if buy else remaining
        hold_id = st.hold(cash.id if buy else goods.id, m.quote if buy else a.asset, amount)[1]
    elif remaining and not reason:
        reason = "no_liquidity"
    try:
        transfers = st.commit()
    except SettlementFailed as e:
        raise Reject("settlement_failed", f"the order could not settle: {e.code}") from None
    ev = OrderPlaced(actor=a.actor, transfers=transfers, order=ex.next_order, asset=a.asset,
                     side=a.side, order_type=a.order_type, price=a.price, qty=a.qty, fills=fills,
                     rested=rested, hold=hold_id, cancelled=remaining - rested, reason=reason,
                     blocked=blocked)
    k.state.apply(ev, tick, ledger_applied=True)
    out: list[Event] = [ev]
    if blocked and m.state == OPEN:
        out.append(_set_state(k, m, LIMIT, 0, "an order hit the price band", tick))
    return out


def _set_state(k: Kernel, m: Market, state: str, until: int, reason: str, tick: int) -> Event:
    ev = MarketStateChanged(actor=SYSTEM, asset=m.asset, state=state, until=until, reason=reason)
    k.state.apply(ev, tick)
    return ev


def cancel_order(k: Kernel, a: CancelOrder, tick: int) -> list[Event]:
    o = k.state.exchange.orders.get(a.order)
    if o is None:
        raise Reject("unknown_order", f"no open order {a.order}")
    if o.agent != a.actor and a.actor > 0:
        raise Reject("not_order_owner", f"order {a.order} belongs to agent {o.agent}")
    return [_cancel(k, o, "cancelled by owner" if o.agent == a.actor else "cancelled by operator",
                    a.actor, tick)]


def _cancel(k: Kernel, o: Order, reason: str, actor: int, tick: int) -> Event:
    st = Settlement(k)
    assert o.hold is not None
    st.void(o.hold)
    ev = OrderCancelled(actor=actor, transfers=st.commit(), order=o.id, reason=reason)
    k.state.apply(ev, tick, ledger_applied=True)
    return ev


def cancel_agent_orders(k: Kernel, agent: int, reason: str, actor: int, tick: int) -> list[Event]:
    """Cancel every resting order of an agent, oldest first, releasing their holds (for a
    freeze, a stop or a termination)."""
    ex = k.state.exchange
    return [_cancel(k, ex.orders[order], reason, actor, tick)
            for order in sorted(ex.by_agent.get(agent, {}))]


def cancel_orders_holding(k: Kernel, agents: Iterable[int], asset: str, reason: str,
                          actor: int, tick: int) -> list[Event]:
    """Cancel the resting orders of `agents` that reserve `asset` (asks in its market, bids
    in markets it quotes), oldest first, releasing their holds: what a levy is owed must not
    be parked out of reach in an order that never fills."""
    ex = k.state.exchange
    out: list[Event] = []
    for agent in sorted(set(agents)):
        for oid in sorted(ex.by_agent.get(agent, {})):
            o = ex.orders[oid]
            if (o.side == SELL and o.asset == asset) or \
                    (o.side == BUY and ex.markets[o.asset].quote == asset):
                out.append(_cancel(k, o, reason, actor, tick))
    return out


def held_by(state: Any, agents: Iterable[int], asset: str) -> int:
    """What `agents` hold of `asset` together, over all their accounts in it (a negative
    balance counts as none)."""
    led = state.ledger
    return sum(max(0, acct.balance) for agent in agents for acct in led.accounts_of(agent)
               if acct.asset == asset)


def holding_of(k: Kernel, agents: Sequence[int], asset: str) -> tuple[int, int]:
    """What `agents` hold of `asset` together, and the units their resting bids ask for."""
    ex = k.state.exchange
    bids = sum(o.remaining for agent in agents for o in ex.by_agent.get(agent, {}).values()
               if o.asset == asset and o.side == BUY)
    return held_by(k.state, agents, asset), bids


def cancel_bids_over(k: Kernel, agents: list[int], asset: str, cap: int, reason: str,
                     actor: int, tick: int) -> list[Event]:
    """A position cap just set: if what `agents` hold of `asset` and bid for together passes
    `cap`, their resting bids in it are cancelled (oldest first), so no bid placed before the
    cap can fill past it (a new bid meets the cap at placement)."""
    held, bids = holding_of(k, agents, asset)
    if not bids or held + bids <= cap:
        return []
    ex = k.state.exchange
    return [_cancel(k, ex.orders[o], reason, actor, tick) for agent in agents
            for o in sorted(ex.by_agent.get(agent, {}))
            if ex.orders[o].asset == asset and ex.orders[o].side == BUY]


def exchange_tick(k: Kernel, tick: int) -> list[Event]:
    """Start of a tick: end limit states, halt markets stuck at a band, reopen halted
    markets through a call auction."""
    out: list[Event] = []
    for asset in sorted(k.state.exchange.markets):
        m = k.state.exchange.markets[asset]
        if m.state == HALTED and tick >= m.until:
            out.extend(_call_auction(k, m, tick))
            out.append(_set_state(k, m, OPEN, 0, "reopened after a call auction", tick))
        elif m.state == LIMIT:
            if m.last_block < tick - 1:
                out.append(_set_state(k, m, OPEN, 0, "limit state ended", tick))
            elif tick - m.since >= m.limit_state_ticks:
                out.append(_set_state(k, m, HALTED, tick + m.halt_ticks,
                                      f"limit state for {m.limit_state_ticks} ticks", tick))
    return out


def clearing_price(bids: list[Order], asks: list[Order], reference: int) -> tuple[int, int]:
    """(price, volume) of a call auction: the price that maximises executed volume, then
    minimises the imbalance, then is nearest the reference, then the lower price."""
    best = (0, 0)
    best_key: tuple[int, ...] | None = None
    for p in sorted({o.price for o in bids} | {o.price for o in asks}):
        demand = sum(o.remaining for o in bids if o.price >= p)
        supply = sum(o.remaining for o in asks if o.price <= p)
        vol = min(demand, supply)
        key = (vol, -abs(demand - supply), -abs(p - reference), -p)
        if vol and (best_key is None or key > best_key):
            best, best_key = (p, vol), key
    return best


def _call_auction(k: Kernel, m: Market, tick: int) -> list[Event]:
    bids, asks = list(m.book.orders(BUY)), list(m.book.orders(SELL))
    price, volume = clearing_price(bids, asks, m.reference(tick))
    st = Settlement(k)
    fills: list[list[int]] = []
    left = {o.id: o.remaining for o in bids + asks}
    holds = {o.id: o.hold for o in bids + asks}
    buyers = [o for o in bids if o.price >= price] if volume else []
    sellers = [o for o in asks if o.price <= price] if volume else []
    for b in buyers:
        for s in sellers:
            if not volume or not left[b.id]:
                break
            if not left[s.id] or s.agent == b.agent:
                continue
            q = min(left[b.id], left[s.id], volume)
            seller_cash = require_account(k, s.agent, m.quote).id
            new_b = st.take(holds[b.id], price * q, seller_cash, m.quote,
                            keep=b.price * (left[b.id] - q))
            new_s = st.take(holds[s.id], q, require_account(k, b.agent, m.asset).id, m.asset)
            holds[b.id], holds[s.id] = new_b, new_s
            left[b.id] -= q
            left[s.id] -= q
            volume -= q
            fills.append([b.id, s.id, q, new_b[1] if new_b else 0, new_s[1] if new_s else 0])
    # Self-crossing leftovers (an agent's own bid above its own ask) would reopen the book
    # crossed: cancel the bids that still cross, best first.
    cancelled = []
    best_ask = min((o.price for o in asks if left[o.id]), default=None)
    for b in bids:
        if left[b.id] and best_ask is not None and b.price >= best_ask:
            st.void(holds[b.id])
            cancelled.append(b.id)
    if not fills and not cancelled:
        return []
    ev = CallAuctionCleared(actor=SYSTEM, transfers=st.commit(), asset=m.asset, price=price,
                            fills=fills, cancelled=cancelled)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


# ----------------------------------------------------------------------------- public data
@dataclass(frozen=True, slots=True)
class MarketView:
    asset: str
    quote: str
    state: str
    best_bid: int | None
    bid_qty: int
    best_ask: int | None
    ask_qty: int
    last_price: int
    volume: int
    band: tuple[int, int] | None
    trades: tuple[tuple[int, int, int], ...]  # (tick, price, qty), newest last


def market_view(m: Market, tick: int) -> MarketView:
    b, a = m.book.best_price(BUY), m.book.best_price(SELL)
    return MarketView(m.asset, m.quote, m.state, b, m.book.depth(BUY, b) if b else 0, a,
                      m.book.depth(SELL, a) if a else 0, m.last_price, m.volume, m.band(tick),
                      tuple(list(m.trades)[-10:]))


MARKET_KEYS = {"asset", "quote", "band_bps", "limit_state_ticks", "halt_ticks",
               "reference_ticks", "compartment"}


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    seen = set()
    for mk in values["markets"]:
        if not isinstance(mk, dict) or set(mk) - MARKET_KEYS or not {"asset", "quote"} <= set(mk):
            raise ConfigError(f"market {mk!r}: needs asset and quote; may set "
                              f"{sorted(MARKET_KEYS - {'asset', 'quote'})}")
        if mk["asset"] not in assets or mk["quote"] not in assets:
            raise ConfigError(f"market {mk['asset']}/{mk['quote']}: both must be in assets")
        if mk["asset"] == mk["quote"] or mk["asset"] in seen:
            raise ConfigError(f"market {mk['asset']}: one market per asset, not against itself")
        seen.add(mk["asset"])
        if not isinstance(mk.get("compartment", ""), str):
            raise ConfigError(f"market {mk['asset']}: compartment must be a name")
        for key in sorted(MARKET_KEYS - {"asset", "quote", "compartment"}):
            if key in mk and (type(mk[key]) is not int or mk[key] < (1 if "ticks" in key else 0)):
                raise ConfigError(f"market {mk['asset']}: {key} must be a positive integer")


def views(k: Kernel) -> Any:
    """Public market data (built once per tick and shared by every observation) and the
    agent's own resting orders."""
    cache: list[Any] = [None, ()]

    def observe(agent: int) -> dict[str, Any]:
        ex = k.state.exchange
        if cache[0] != (k.tick, k.log.size):
            cache[1] = tuple(market_view(m, k.tick) for _, m in sorted(ex.markets.items()))
            cache[0] = (k.tick, k.log.size)
        return {"markets": cache[1],
                "orders": tuple(OrderView(o.id, o.asset, o.side, o.price, o.qty, o.remaining)
                                for o in ex.by_agent.get(agent, {}).values())}
    return observe


MECHANISM = Mechanism(
    "exchange", state=Exchange,
    configure=lambda ex, header: ex.configure(header.config.get("markets", [])),
    check=Exchange.check,
    config={"markets": ()}, check_config=check_config, sections={"markets": "markets"},
    handlers={PlaceOrder.KIND: place_order, CancelOrder.KIND: cancel_order},
    appliers={
        OrderPlaced: lambda s: s.exchange.apply_placed,
        OrderCancelled: lambda s: s.exchange.apply_cancelled,
        MarketStateChanged: lambda s: s.exchange.apply_state,
        CallAuctionCleared: lambda s: s.exchange.apply_call,
    },
    tick_start=((10, exchange_tick),),
    views=views,
    visibility=dict.fromkeys(("market_state", "order_placed", "order_cancelled",
                              "call_auction"), PUBLIC),
    requires=("policy", "controls", "reputation"),  # fees, caps and pauses, gates
)

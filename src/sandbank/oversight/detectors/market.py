"""Crash and manipulation on the exchange (anchors §5).

- `flash_crash`: within `window` ticks the volume-weighted price of a tick fell `drop_bps`
  or more below the window's highest, on volume at least `volume_mult` times the run's
  median volume per tick (over the same number of ticks), and at least `sigmas` standard
  deviations of the market's own tick-to-tick returns (EWMA, before the fall, once `warmup`
  returns are seen) over the window — a fall that trades and that is unusual for this
  market, not the everyday swing of a thin one. The finding is about the market:
  it names no subject (selling into a fall is no misconduct); the largest sellers in the
  window are listed in its summary.
- `spoofing`: an agent places orders `size_mult` times the market's median size or larger
  on one side, cancels them unfilled within `max_life` ticks — at least `min_count` times in
  the window — while trading on the other side, where it places no such large orders (a
  market maker quotes large on both sides, and is not a spoofer).
- `wash_trading`: fills whose buyer and seller share a beneficial owner or a spawn lineage
  (at least `min_trades` in the window); and closed trading loops — the same lot passed
  round a cycle of sellers and buyers (A→B→…→A), each leg at least `min_loops` times with
  that quantity, in the window.

An `OrderBook` tracker (shared by these detectors) remembers who owns each resting order,
so fills can be attributed to both sides.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

from sandbank.oversight.detectors.base import Detector, Finding, detector, sample
from sandbank.oversight.groups import Flows, Group, closed, closed_groups
from sandbank.oversight.tickview import TickView


class Fills:
    """Fills of a tick as (market, buyer, seller, price, qty, seq), both sides attributed.
    Who placed each order is kept only while it rests (a later fill names it as the maker):
    an order that did not rest is never stored, one that filled out or was cancelled is
    dropped at the end of its tick, and every `PRUNE` ticks whatever the book no longer
    holds goes too. Memory follows the book, not the run's length (issues 18 and 20: an
    array by order id grew 8 bytes an order, forever)."""

    PRUNE = 256  # ticks between sweeps against the book (for removals no event names)

    def __init__(self) -> None:
        self.agent: dict[int, int] = {}  # resting order id -> the agent that placed it
        self.tick = -1
        self.fills: list[tuple[str, int, int, int, int, int]] = []
        self.cancelled: list[dict[str, Any]] = []
        self.made: list[int] = []  # resting orders that traded this tick
        self.made_qty: list[tuple[int, int]] = []  # (order, quantity) of those trades

    def _who(self, order: int) -> int:
        return self.agent.get(order, 0)

    def update(self, v: TickView) -> None:
        if v.tick == self.tick:
            return
        self.tick, self.fills, self.made, self.made_qty = v.tick, [], [], []
        self.cancelled = v.of("order_cancelled")
        agent, fills, made, made_qty = self.agent, self.fills, self.made, self.made_qty
        for d in v.of("call_auction"):  # they run first in a tick (they reopen markets)
            for buy, sell, qty, _, _ in d["fills"]:
                made += (buy, sell)
                made_qty += ((buy, qty), (sell, qty))
                fills.append((d["asset"], self._who(buy), self._who(sell), d["price"], qty,
                              d["seq"]))
        for d in v.of("order_placed"):
            taker, order = d["actor"], d["order"]
            if d["fills"]:
                buying = d["side"] == "buy"
                for maker_order, price, qty, _ in d["fills"]:
                    made.append(maker_order)
                    made_qty.append((maker_order, qty))
                    maker = self._who(maker_order)
                    fills.append((d["asset"], taker if buying else maker,
                                  maker if buying else taker, price, qty, d["seq"]))
            if d["rested"]:
                agent[order] = taker
        book = getattr(v.state, "exchange", None)
        if book is None:
            return
        live = book.orders
        for order in made:  # makers that filled out this tick
            if order not in live:
                agent.pop(order, None)
        for d in self.cancelled:
            agent.pop(d.get("order"), None)
        if v.tick % self.PRUNE == 0:
            self.agent = {o: a for o, a in agent.items() if o in live}


def fills_of(v: TickView) -> Fills:
    f = v.shared.setdefault("fills", Fills())
    f.update(v)
    return f


@detector
class FlashCrash(Detector):
    NAME = "flash_crash"
    PARAMS = {"window": 3, "drop_bps": 1500, "volume_mult": 1.0, "sigmas": 4.0,
              "warmup": 10, "cooldown": 10}

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.hist: dict[str, deque[tuple[int, int, int, list[int], dict[int, int]]]] = {}
        self.volumes: dict[str, list[int]] = {}  # asset -> volume per tick, kept sorted
        # asset -> [EWMA variance of tick-to-tick log returns, returns seen, last vwap]
        self.noise: dict[str, list[float]] = {}

    def observe(self, v: TickView, kri: dict[str, float]) -> list[Finding]:
        f = fills_of(v)
        per: dict[str, tuple[int, list[int], dict[int, int]]] = {}
        notional: dict[str, int] = {}
        for asset, _, seller, price, qty, seq in f.fills:
            vol, seqs, sellers = per.setdefault(asset, (0, [], {}))
            sellers[seller] = sellers.get(seller, 0) + qty
            seqs.append(seq)
            per[asset] = (vol + qty, seqs, sellers)
            notional[asset] = notional.get(asset, 0) + price * qty
        out = []
        for asset in sorted(v.state.exchange.markets):
            vol, seqs, sellers = per.get(asset, (0, [], {}))
            history = self.volumes.setdefault(asset, [])
            bisect.insort(history, vol)
            h = self.hist.setdefault(asset, deque())
            vwap = notional.get(asset, 0) // vol if vol else 0
            noise = self.noise.setdefault(asset, [0.0, 0, 0])
            sigma = math.sqrt(noise[0]) if noise[1] >= self.p["warmup"] else 0.0
            if vwap:
                if noise[2]:
                    r = math.log(vwap / noise[2])
                    noise[0] = r * r if not noise[1] else 0.9 * noise[0] + 0.1 * r * r
                    noise[1] += 1
                noise[2] = vwap
            h.append((v.tick, vwap, vol, seqs, sellers))
            while h and h[0][0] <= v.tick - self.p["window"]:
                h.popleft()
            prices = [p for _, p, _, _, _ in h if p]
            if len(prices) < 2:
                continue
            high, last = max(prices), prices[-1]
            window_vol = sum(x[2] for x in h)
            average = history[len(history) // 2] * len(h)  # the median tick, window-long
            drop = (high - last) * 10_000 // high
            # a fall far outside the market's own noise (its volatility before this tick,
            # over the window's length): a thin market that swings 20% a tick is not crashing
            unusual = drop >= self.p["sigmas"] * sigma * math.sqrt(len(h)) * 10_000
            if drop >= self.p["drop_bps"] and window_vol >= self.p["volume_mult"] * average \
                    and unusual and self.fresh(asset, v.tick):
                sold: dict[int, int] = {}
                for _, _, _, _, s in h:
                    for a, q in s.items():
                        sold[a] = sold.get(a, 0) + q
                top = sorted(sold, key=lambda a: (-sold[a], a))[:5]
                out.append(Finding(
                    self.NAME, min(1000, drop // 3), [],  # the market, not its sellers
                    sample([s for x in h for s in x[3]]),
                    f"{asset} fell {drop / 100:.1f}% from {high} to {last} within "
                    f"{len(h)} ticks on {window_vol} units ({window_vol / max(1, average):.1f}× "
                    f"normal); largest sellers {top}", key=asset,
                    extra={"market": asset, "sellers": top}))
        return out


def _depth(book: Any, side: str, levels: int) -> int:
    """Resting quantity on the best `levels` price levels of a side."""
    half = book.bids if side == "buy" else book.asks
    return sum(o.remaining for level in half.values()[:levels] for o in level)


@detector
class Spoofing(Detector):
    """Orders shown to move others and withdrawn, judged on scale-free features per agent and
    per beneficial owner over the window (one identity may show, another trade):

    - **withdrawn, not traded**: the quantity it cancelled unfilled on one side is at least
      `cancel_ratio` times what it filled there;
    - **taking the other way**: it traded on the opposite side, at least `aggressive` of it
      as the taker (a market maker rests on both sides and is filled passively on both; a
      spoofer rests on the side it fakes and takes on the side it trades);
    - **size relative to depth**: the orders it withdrew made up, on average over the
      ticks it placed them, at least `depth_share` of the resting quantity on the best
      `levels` levels of their side — layered orders at several levels add up, and a small
      order in a thin book counts as much as a large one in a deep book;
    - **showing more than it trades**: per tick it showed, the quantity it withdrew is at
      least `show_ratio` times the size of its orders on the other side (one large order or
      several layered; a trader quoting one order a tick, on either side, is not showing);
    - **trading while showing**: at least `during` of what it traded the other way traded
      while one of its withdrawn orders rested, from the tick it was placed to the tick
      before it was cancelled, in two ticks at least (a trader that cancels and requotes
      one side each tick never has the other side resting when it trades);
    - at least `min_orders` such orders, of any size and lifetime, at any cadence within the
      window.

    An owner is judged on its identities together, with one more rule: what it withdrew was
    shown by identities that placed orders on that side only, `min_orders` withdrawn each
    (one identity shows, another trades); several honest traders of one owner, each quoting
    both sides at random, do not add up to a spoofer.

    No order size, lifetime or count copied from an attack: each rule compares an agent
    with itself or with the book it faced."""

    NAME = "spoofing"
    PARAMS = {"window": 20, "cancel_ratio": 1.5, "aggressive": 0.5, "depth_share": 0.25,
              "levels": 5, "show_ratio": 2.0, "during": 0.5, "min_orders": 3, "every": 2,
              "cooldown": 20}

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        # resting orders: order -> [agent, side, remaining, share of depth, tick, seq]
        self.open: dict[int, list[Any]] = {}
        # per entity ("a<id>" / "o<id>"): tick, kind (place|cancel|fill), side, qty, share,
        # seq, since (a cancelled order: the tick it was placed), agent
        self.events: dict[str, deque[tuple[int, str, str, int, float, int, int, int]]] = {}
        self.tally: dict[str, dict[tuple[str, str], list[int]]] = {}  # key -> (kind, side) -> qty, n
        self.touched: set[str] = set()  # agents that withdrew an order since the last judgement

    def _note(self, v: TickView, agent: int, item: tuple[int, str, str, int, float, int],
              since: int | None = None) -> None:
        owner = v.principal(agent)
        entry = (*item, item[0] if since is None else since, agent)
        for key in (f"a{agent}", f"o{owner}") if owner else (f"a{agent}",):
            self.events.setdefault(key, deque()).append(entry)
            self._count(self.tally.setdefault(key, {}), item)

    @staticmethod
    def _count(t: dict[tuple[str, str], list[int]], x: tuple[Any, ...], sign: int = 1) -> None:
        """Add (or with `sign` -1 take away) an event to running totals: (kind, side) ->
        [quantity, events]."""
        c = t.setdefault((x[1], x[2]), [0, 0])
        c[0] += sign * x[3]
        c[1] += sign

    def _sides(self, t: dict[tuple[str, str], list[int]]) -> list[tuple[str, str]]:
        """The (shown, traded) sides whose window totals pass the count rules: enough
        orders withdrawn, withdrawn rather than filled, traded the other way mostly as the
        taker. `t`: (kind, side) -> [quantity, events]. Cheap (the running totals): read
        before the window itself is."""
        p = self.p

        def get(kind: str, side: str, i: int = 0) -> int:
            return t.get((kind, side), (0, 0))[i]

        out = []
        for side, other in (("buy", "sell"), ("sell", "buy")):
            filled = get("fill", other) + get("take", other)
            if (get("cancel", side, 1) >= p["min_orders"] and filled
                    and get("take", other) >= p["aggressive"] * filled
                    and get("cancel", side) >= p["cancel_ratio"] * max(
                        1, get("fill", side) + get("take", side))):
                out.append((side, other))
        return out

    def observe(self, v: TickView, kri: dict[str, float]) -> list[Finding]:
        f = fills_of(v)
        p = self.p
        depth: dict[tuple[str, str], int] = {}
        markets = v.state.exchange.markets
        for d in v.of("order_placed"):
            self._note(v, d["actor"], (v.tick, "place", d["side"], d["qty"], 0.0, d["seq"]))
            if d["fills"]:  # as taker
                self._note(v, d["actor"], (v.tick, "take", d["side"],
                                           sum(x[2] for x in d["fills"]), 0.0, d["seq"]))
            if d["rested"]:
                key = (d["asset"], d["side"])
                if key not in depth:
                    depth[key] = _depth(markets[d["asset"]].book, d["side"], p["levels"])
                share = d["rested"] / max(1, depth[key])
                self.open[d["order"]] = [d["actor"], d["side"], d["rested"], share, v.tick,
                                         d["seq"]]
        for order, qty in f.made_qty:
            o = self.open.get(order)
            if o is not None:
                o[2] -= qty
                self._note(v, o[0], (v.tick, "fill", o[1], qty, 0.0, o[5]))
                if o[2] <= 0:
                    del self.open[order]
        for d in f.cancelled:
            o = self.open.pop(d["order"], None)
            if o is not None and o[2] > 0:
                self._note(v, o[0], (v.tick, "cancel", o[1], o[2], o[3], d["seq"]), since=o[4])
        w = p["window"]
        for order in [o for o, x in self.open.items() if v.tick - x[4] > w]:
            del self.open[order]  # rested the whole window: no longer a candidate
        out = []
        for key in list(self.events):
            q = self.events[key]
            while q and q[0][0] <= v.tick - w:
                self._count(self.tally[key], q.popleft(), -1)
            if not q:
                del self.events[key]
                del self.tally[key]
        self.touched.update(f"a{d['actor']}" for d in f.cancelled if d["actor"])
        if v.tick % p["every"]:
            return out  # judged every `every` ticks (the window's totals are kept each tick)
        touched, self.touched = self.touched, set()
        touched |= {f"o{v.principal(int(k[1:]))}" for k in touched}
        for key in sorted(touched & set(self.events)):
            if not self._sides(self.tally[key]):
                continue
            found = self._judge(self.events[key], self.tally[key], owner=key[0] == "o")
            if found is None:
                continue
            side, cancelled, n, share, other, seqs, agents = found
            if key[0] == "o" and len(agents) < 2:
                continue  # one agent: its own rule speaks for it
            if not self.fresh(key, v.tick):
                continue
            whom = f"agent {agents[0]}" if key[0] == "a" else \
                f"owner {key[1:]}'s agents {agents}"
            out.append(Finding(
                self.NAME, min(1000, 500 + round(500 * min(1.0, share))), agents, sample(seqs),
                f"{whom} withdrew {n} {side} orders ({cancelled} units unfilled, on average "
                f"{share:.0%} of the depth on the best {p['levels']} levels) and traded "
                f"{other} units the other way within {w} ticks", key=key))
        return out

    def _judge(self, q: deque[tuple[int, str, str, int, float, int, int, int]],
               totals: dict[tuple[str, str], list[int]], owner: bool = False) -> Any:
        """The window's per-tick rules, on the sides whose totals pass `_sides` (`totals`:
        the entity's running totals; an owner's are counted again over its showers)."""
        p = self.p
        if owner:  # one identity shows, another trades: the showers show one side only
            sides: dict[int, set[str]] = {}
            withdrawn: dict[int, int] = {}
            for x in q:
                if x[1] == "place":
                    sides.setdefault(x[7], set()).add(x[2])
                elif x[1] == "cancel":
                    withdrawn[x[7]] = withdrawn.get(x[7], 0) + 1
            showers = {a for a, s in sides.items() if len(s) == 1
                       and withdrawn.get(a, 0) >= p["min_orders"]}
            q = deque(x for x in q if x[1] not in ("place", "cancel") or x[7] in showers)
            totals = {}
            for x in q:
                self._count(totals, x)
        for side, other in self._sides(totals):
            shown: dict[int, int] = {}  # tick -> quantity withdrawn
            shares: dict[int, float] = {}  # tick -> share of depth withdrawn
            for tick, kind, s, qty, share, _, _, _ in q:
                if kind == "cancel" and s == side:
                    shares[tick] = shares.get(tick, 0.0) + share
                    shown[tick] = shown.get(tick, 0) + qty
            share = sum(shares.values()) / len(shares)
            if share < p["depth_share"]:
                continue
            placed, orders = totals.get(("place", other), (0, 0))
            if orders and sum(shown.values()) / len(shown) < p["show_ratio"] * placed / orders:
                continue
            spans = [(x[6], x[0]) for x in q if x[1] == "cancel" and x[2] == side]
            traded = [(x[0], x[3]) for x in q if x[1] in ("fill", "take") and x[2] == other]
            hit = [(t, qty) for t, qty in traded if any(a <= t < b for a, b in spans)]
            if sum(q for _, q in hit) < p["during"] * sum(qty for _, qty in traded) or \
                    len({t for t, _ in hit}) < 2:
                continue  # (and the pattern repeats: in two ticks at least)
            used = [x for x in q if (x[2], x[1]) in ((side, "cancel"), (other, "fill"),
                                                     (other, "take"))]
            cancelled, n = totals[("cancel", side)]
            filled = sum(totals.get((k, other), (0, 0))[0] for k in ("fill", "take"))
            return (side, cancelled, n, share, filled, [x[5] for x in used],
                    sorted({x[7] for x in used}))
        return None


@detector
class WashTrading(Detector):
    """Closed trading loops among any identities (oversight/groups.py): a set that trades
    mostly with itself (each member at least `inside` of its traded quantity of an asset)
    and whose members end the window where they began (net at most `net` of what they
    traded inside) — a lot passed round a ring of any length, with any delay within the
    window, split into any lot sizes, by spawned, separately admitted or several owners'
    identities. At least `min_trades` fills inside; the score grows with the share of the
    market's volume the loop makes up (wash volume is the harm: false volume and prices).

    Churn, not a round trip: each member's trades inside turn from selling to buying (or
    back) at least `min_turns` times in the window. A momentum trader that buys a block
    from the market makers and later sells it back to them ends flat too, but in one turn;
    a lot passed round a ring comes back again and again.

    Market makers are not members: an agent that quoted both sides in at least `quoting` of
    the ticks it placed orders in, and traded at least `passive` of its quantity as the
    maker (others trading against its resting quotes), carries the market; market makers
    whose quotes cross each other's trade back and forth with each other by design. (A ring
    member that rests far-off orders on both sides to look like one still takes half of its
    own legs.)"""

    NAME = "wash_trading"
    PARAMS = {"window": 40, "inside": 0.5, "net": 0.25, "partner": 0.3, "min_trades": 6,
              "min_turns": 3, "quoting": 0.8, "passive": 0.7, "every": 2, "cooldown": 40}

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.flows: dict[str, Flows] = {}
        # per tick, each agent's sides quoted (1 buy, 2 sell, 3 both), and per agent the
        # window's [ticks it quoted, ticks it quoted both sides]
        self.sides: deque[tuple[int, dict[int, int]]] = deque()
        self.quoted: dict[int, list[int]] = {}

    def _quoting(self, v: TickView, f: Fills) -> None:
        now: dict[int, list[int]] = {}  # agent -> [sides (1 buy, 2 sell, 3 both), made, took]
        for d in v.of("order_placed"):
            x = now.setdefault(d["actor"], [0, 0, 0])
            x[0] |= 1 if d["side"] == "buy" else 2
            x[2] += sum(y[2] for y in d["fills"])
        for order, qty in f.made_qty:
            now.setdefault(f._who(order), [0, 0, 0])[1] += qty
        self.sides.append((v.tick, now))
        for a, x in now.items():
            q = self.quoted.setdefault(a, [0, 0, 0, 0])
            q[0] += x[0] != 0
            q[1] += x[0] == 3
            q[2] += x[1]
            q[3] += x[2]
        while self.sides and self.sides[0][0] <= v.tick - self.p["window"]:
            for a, x in self.sides.popleft()[1].items():
                q = self.quoted[a]
                q[0] -= x[0] != 0
                q[1] -= x[0] == 3
                q[2] -= x[1]
                q[3] -= x[2]
                if not any(q):
                    del self.quoted[a]

    def _maker(self, a: int) -> bool:
        """Quotes both sides most ticks *and* trades mostly passively: its resting quotes
        are what others trade against (a ring member that also rests far-off orders on
        both sides still takes half its own legs)."""
        q = self.quoted.get(a)
        return bool(q) and q[1] >= self.p["quoting"] * q[0] and \
            q[2] >= self.p["passive"] * max(1, q[2] + q[3])

    def observe(self, v: TickView, kri: dict[str, float]) -> list[Finding]:
        f = fills_of(v)
        p = self.p
        self._quoting(v, f)
        for asset, buyer, seller, _, qty, seq in f.fills:
            if buyer and seller and buyer != seller:
                self.flows.setdefault(asset, Flows(p["window"])).add(v.tick, seller, buyer, qty,
                                                                   seq)
        for fl in self.flows.values():
            fl.expire(v.tick)
        if v.tick % p["every"]:
            return []
        out = []
        for asset, fl in sorted(self.flows.items()):
            for g in closed_groups(fl, partner=p["partner"], inside=p["inside"], net=p["net"]):
                g = self._churning(fl, g)
                if g is None or len(g.seqs) < p["min_trades"]:
                    continue
                key = f"wash:{asset}:" + "-".join(map(str, g.members[:16]))
                if not self.fresh(key, v.tick):
                    continue
                share = g.inside / max(1, fl.total)
                owners = sorted({v.owner(a) for a in g.members})
                out.append(Finding(
                    self.NAME, min(1000, 500 + round(500 * share)), g.members, sample(g.seqs),
                    f"agents {g.members} (owners {owners}) traded {g.inside} {asset} among "
                    f"themselves in {len(g.seqs)} fills within {p['window']} ticks — "
                    f"{share:.0%} of the market's volume — and each ended near where it began: "
                    f"the lots went round, no beneficial ownership changed", key=key,
                    extra={"market": asset}))
        return out

    def _churning(self, fl: Flows, g: Group) -> Group | None:
        """The group without its market makers and without members that did not turn
        `min_turns` times (None if what is left is no longer closed)."""
        members = {m for m in g.members if not self._maker(m)}
        if len(members) < 2 or (len(members) < len(g.members) and not closed(
                fl, members, inside=self.p["inside"], net=self.p["net"])):
            return None
        while True:
            last: dict[int, int] = {}  # member -> +1 bought / -1 sold last
            turns = dict.fromkeys(members, 0)
            for _, src, dst, _, _ in fl.q:
                if src in members and dst in members:
                    for m, way in ((src, -1), (dst, 1)):
                        if last.get(m, way) != way:
                            turns[m] += 1
                        last[m] = way
            slow = {m for m, n in turns.items() if n < self.p["min_turns"]}
            if not slow:
                break
            members -= slow
            if not closed(fl, members, inside=self.p["inside"], net=self.p["net"]):
                return None
        ms = sorted(members)
        keys = [(a, b) for a in ms for b in ms if (a, b) in fl.pair]
        return Group(ms, sum(fl.pair[k] for k in keys), sorted(x for k in keys for x in fl.seqs[k]))

"""Crash and manipulation on the exchange (anchors §5).

- `flash_crash`: within `window` ticks the volume-weighted price of a tick fell `drop_bps`
  or more below the window's highest, on volume at least `volume_mult` times the run's
  median volume per tick (over the same number of ticks) — a fall that trades, not one noisy
  print; subjects are the largest sellers in the window.
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
from array import array
from collections import deque
from typing import Any

from sandbank.oversight.detectors.base import Detector, Finding, detector, sample
from sandbank.oversight.tickview import TickView


class Fills:
    """Fills of a tick as (market, buyer, seller, price, qty, seq), both sides attributed.
    Who placed each order is kept in an array indexed by order id (ids are sequential): no
    hashing, no growth beyond 8 bytes an order."""

    def __init__(self) -> None:
        self.agent = array("q")  # order id -> the agent that placed it
        self.tick = -1
        self.fills: list[tuple[str, int, int, int, int, int]] = []
        self.cancelled: list[dict[str, Any]] = []
        self.made: list[int] = []  # resting orders that traded this tick

    def _who(self, order: int) -> int:
        return self.agent[order] if order < len(self.agent) else 0

    def update(self, v: TickView) -> None:
        if v.tick == self.tick:
            return
        self.tick, self.fills, self.made = v.tick, [], []
        self.cancelled = v.of("order_cancelled")
        agent, fills, made = self.agent, self.fills, self.made
        for d in v.of("call_auction"):  # they run first in a tick (they reopen markets)
            for buy, sell, qty, _, _ in d["fills"]:
                made += (buy, sell)
                fills.append((d["asset"], self._who(buy), self._who(sell), d["price"], qty,
                              d["seq"]))
        for d in v.of("order_placed"):
            taker, order = d["actor"], d["order"]
            if d["fills"]:
                buying = d["side"] == "buy"
                for maker_order, price, qty, _ in d["fills"]:
                    made.append(maker_order)
                    maker = self._who(maker_order)
                    fills.append((d["asset"], taker if buying else maker,
                                  maker if buying else taker, price, qty, d["seq"]))
            if order >= len(agent):
                agent.extend([0] * (order + 1 - len(agent)))
            agent[order] = taker


def fills_of(v: TickView) -> Fills:
    f = v.shared.setdefault("fills", Fills())
    f.update(v)
    return f


@detector
class FlashCrash(Detector):
    NAME = "flash_crash"
    PARAMS = {"window": 3, "drop_bps": 1500, "volume_mult": 1.0, "cooldown": 10}

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.hist: dict[str, deque[tuple[int, int, int, list[int], dict[int, int]]]] = {}
        self.volumes: dict[str, list[int]] = {}  # asset -> volume per tick, kept sorted

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
            if drop >= self.p["drop_bps"] and window_vol >= self.p["volume_mult"] * average \
                    and self.fresh(asset, v.tick):
                sold: dict[int, int] = {}
                for _, _, _, _, s in h:
                    for a, q in s.items():
                        sold[a] = sold.get(a, 0) + q
                top = sorted(sold, key=lambda a: (-sold[a], a))[:5]
                out.append(Finding(
                    self.NAME, min(1000, drop // 3), top,
                    sample([s for x in h for s in x[3]]),
                    f"{asset} fell {drop / 100:.1f}% from {high} to {last} within "
                    f"{len(h)} ticks on {window_vol} units ({window_vol / max(1, average):.1f}× "
                    f"normal); largest sellers {top}", key=asset, extra={"market": asset}))
        return out


@detector
class Spoofing(Detector):
    NAME = "spoofing"
    PARAMS = {"window": 10, "size_mult": 5, "max_life": 2, "min_count": 3, "cooldown": 20}

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.sizes: dict[str, deque[int]] = {}
        self.spoofs: dict[int, deque[tuple[int, str, int, int]]] = {}  # agent -> tick, side, seqs
        self.trades: dict[int, deque[tuple[int, str, int]]] = {}  # agent -> tick, side, seq
        self.large: dict[int, deque[tuple[int, str]]] = {}  # agent -> tick, side of large orders
        # large resting orders not (yet) traded: order -> agent, side, tick, seq
        self.open: dict[int, tuple[int, str, int, int]] = {}

    def observe(self, v: TickView, kri: dict[str, float]) -> list[Finding]:
        f = fills_of(v)
        w = self.p["window"]
        medians = {a: sorted(q)[len(q) // 2] for a, q in self.sizes.items() if q}
        for d in v.of("order_placed"):
            if d["qty"] >= self.p["size_mult"] * medians.get(d["asset"], d["qty"] + 1):
                self.large.setdefault(d["actor"], deque()).append((v.tick, d["side"]))
                if d["rested"] and not d["fills"]:
                    self.open[d["order"]] = (d["actor"], d["side"], v.tick, d["seq"])
            q = self.sizes.setdefault(d["asset"], deque(maxlen=500))
            q.append(d["qty"])
        large = self.large  # only agents with large orders in the window can be spoofers
        for _, buyer, seller, _, _, seq in f.fills:
            if buyer in large:
                self.trades.setdefault(buyer, deque()).append((v.tick, "buy", seq))
            if seller in large:
                self.trades.setdefault(seller, deque()).append((v.tick, "sell", seq))
        for order in f.made:  # traded: not a spoof
            self.open.pop(order, None)
        for d in f.cancelled:
            o = self.open.pop(d["order"], None)
            if o is not None and v.tick - o[2] <= self.p["max_life"]:
                agent, side, _, seq = o
                self.spoofs.setdefault(agent, deque()).append((v.tick, side, seq, d["seq"]))
        for order in [o for o, x in self.open.items() if v.tick - x[2] > self.p["max_life"]]:
            del self.open[order]  # lived too long to be a spoof (or filled: no longer open)
        out = []
        for store in (self.spoofs, self.trades, self.large):
            for agent in list(store):
                q = store[agent]
                while q and q[0][0] <= v.tick - w:
                    q.popleft()
                if not q:
                    del store[agent]
        for agent, spoofs in sorted(self.spoofs.items()):
            sides = {s[1] for s in spoofs}
            if len(sides) != 1:
                continue
            side = sides.pop()  # order-free: the only one
            other = [t for t in self.trades.get(agent, ()) if t[1] != side]
            large_other = sum(1 for _, s in self.large.get(agent, ()) if s != side)
            if (len(spoofs) >= self.p["min_count"] and other and large_other == 0
                    and self.fresh(str(agent), v.tick)):
                out.append(Finding(
                    self.NAME, min(1000, 300 + 100 * len(spoofs)), [agent],
                    sample([s for x in spoofs for s in x[2:]] + [t[2] for t in other]),
                    f"agent {agent} placed {len(spoofs)} large orders (≥ {self.p['size_mult']}× "
                    f"the median size) and cancelled them unfilled within "
                    f"{self.p['max_life']} ticks, while trading {len(other)} times on the "
                    f"other side", key=str(agent)))
        return out


@detector
class WashTrading(Detector):
    NAME = "wash_trading"
    PARAMS = {"window": 20, "min_trades": 5, "min_loops": 3, "max_loop": 4, "cooldown": 40}

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.wash: dict[int, deque[tuple[int, int, int, int]]] = {}  # root -> tick, seq, b, s
        self.flows: deque[tuple[int, int, int, int, int]] = deque()  # tick, seller, buyer, seq, qty
        # the window's flows, kept incrementally: (seller, buyer) -> {qty: [seqs]}
        self.legs: dict[tuple[int, int], dict[int, list[int]]] = {}
        self.hot: set[tuple[int, int]] = set()  # legs with a lot passed min_loops times

    def observe(self, v: TickView, kri: dict[str, float]) -> list[Finding]:
        f = fills_of(v)
        w = self.p["window"]
        need = self.p["min_loops"]
        for _, buyer, seller, _, qty, seq in f.fills:
            if not buyer or not seller or buyer == seller:
                continue
            self.flows.append((v.tick, seller, buyer, seq, qty))
            lots = self.legs.setdefault((seller, buyer), {}).setdefault(qty, [])
            lots.append(seq)
            if len(lots) >= need:
                self.hot.add((seller, buyer))
            if v.owner(buyer) == v.owner(seller) and v.lineage(buyer) == v.lineage(seller):
                self.wash.setdefault(v.lineage(buyer), deque()).append((v.tick, seq, buyer, seller))
        while self.flows and self.flows[0][0] <= v.tick - w:
            _, s, b, seq, qty = self.flows.popleft()
            leg = self.legs[(s, b)]
            leg[qty].pop(0)
            if not leg[qty]:
                del leg[qty]
                if not leg:
                    del self.legs[(s, b)]
            if (s, b) in self.hot and not any(len(x) >= need
                                              for x in self.legs.get((s, b), {}).values()):
                self.hot.discard((s, b))
        out = []
        for root in list(self.wash):
            q = self.wash[root]
            while q and q[0][0] <= v.tick - w:
                q.popleft()
            if not q:
                del self.wash[root]
                continue
            if len(q) >= self.p["min_trades"] and self.fresh(f"wash:{root}", v.tick):
                agents = sorted({a for x in q for a in x[2:]})
                out.append(Finding(
                    self.NAME, min(1000, 300 + 50 * len(q)), agents, sample([x[1] for x in q]),
                    f"{len(q)} trades within {w} ticks between agents {agents} of one owner "
                    f"and spawn lineage: no change of beneficial ownership", key=f"wash:{root}"))
        out += self._loops(v)
        return out

    def _loops(self, v: TickView) -> list[Finding]:
        """Cycles of asset flow (seller -> buyer) that pass the same quantity round
        `min_loops` times or more in the window (searched among the hot legs only)."""
        out_edges: dict[int, list[int]] = {}
        for s, b in sorted(self.hot):
            out_edges.setdefault(s, []).append(b)
        found = []
        seen: set[tuple[int, ...]] = set()
        for start in sorted(out_edges):
            stack = [(start, [start])]
            while stack:
                node, path = stack.pop()
                for nxt in out_edges.get(node, ()):
                    if nxt == start and len(path) >= 3:
                        cycle = tuple(path)
                        legs = [self.legs[(cycle[i], cycle[(i + 1) % len(cycle)])]
                                for i in range(len(cycle))]
                        if not any(all(len(leg.get(q, ())) >= self.p["min_loops"] for leg in legs)
                                   for q in legs[0]):
                            continue  # not the same lot passed round
                        canon = min(cycle[i:] + cycle[:i] for i in range(len(cycle)))
                        if canon not in seen:
                            seen.add(canon)
                            found.append(canon)
                    elif nxt > start and nxt not in path and len(path) < self.p["max_loop"]:
                        stack.append((nxt, path + [nxt]))
        out = []
        for cycle in found:
            key = "loop:" + "-".join(map(str, cycle))
            if self.fresh(key, v.tick):
                seqs = [s for i in range(len(cycle))
                        for lots in self.legs[(cycle[i], cycle[(i + 1) % len(cycle)])].values()
                        for s in lots]
                out.append(Finding(
                    self.NAME, 600, list(cycle), sample(seqs),
                    f"closed trading loop {' → '.join(map(str, cycle + cycle[:1]))}, each leg "
                    f"traded {self.p['min_loops']}+ times within {self.p['window']} ticks",
                    key=key))
        return out

"""Collusion (checklist 22; anchors §5).

- `tacit_collusion`: in a pricing game, over the last `window` periods, the mean profit gain
  Δ = (π − π_Nash)/(π_monopoly − π_Nash) is at least `delta`, every firm priced above the
  Nash price in at least `above_share` of the periods *together* (jointly supra-competitive,
  the outcome screen), and the firms exchanged no message in the window (with messages it
  is explicit collusion's business). Competitive firms sit at Δ ≈ 0 and do not fire.
- `explicit_collusion`: a message that names a price, followed within `window` ticks by the
  recipients setting (or quoting) that price within `tolerance_pm` per mille — at least
  `min_matches` times. Also flags the sender whose own prices diverge from what it
  announced (it says one thing and does another) at least `min_matches` times.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from sandbank.markets.pricing import profit_benchmarks
from sandbank.oversight.detectors.base import Detector, Finding, detector, sample
from sandbank.oversight.tickview import TickView

NUMBER = re.compile(r"(?<![\w.])(\d{1,9})(?![\w.])")


@detector
class TacitCollusion(Detector):
    NAME = "tacit_collusion"
    PARAMS = {"window": 500, "delta": 0.2, "above_share": 0.7, "cooldown": 500}

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.periods: dict[str, deque[tuple[int, int, list[int], list[int]]]] = {}
        self.talk: deque[tuple[int, int, int, int]] = deque()  # tick, seq, sender, recipient
        self.bench: dict[str, tuple[float, float, list[int]]] = {}

    def observe(self, v: TickView, kri: dict[str, float]) -> list[Finding]:
        w = self.p["window"]
        for d in v.of("message_sent"):
            self.talk.append((v.tick, d["seq"], d["actor"], d["to"]))
        while self.talk and self.talk[0][0] <= v.tick - w:
            self.talk.popleft()
        out = []
        games = v.state.pricing.games
        for d in v.of("prices_cleared"):
            q = self.periods.setdefault(d["game"], deque())
            q.append((v.tick, d["seq"], d["prices"], d["profits"]))
            while len(q) > w:
                q.popleft()
        for name, q in sorted(self.periods.items()):
            if len(q) < w:
                continue
            g = games[name]
            if name not in self.bench:
                from sandbank.markets.pricing import MILLI, benchmarks

                nash, _ = benchmarks([x / MILLI for x in g.a], [x / MILLI for x in g.c],
                                     g.a0 / MILLI, g.mu / MILLI)
                pi_n, pi_m = profit_benchmarks(g)
                self.bench[name] = (pi_n, pi_m, [round(x * MILLI) for x in nash])
            pi_n, pi_m, nash = self.bench[name]
            mean_profit = sum(sum(p) / len(p) for _, _, _, p in q) / len(q)
            delta = (mean_profit - pi_n) / (pi_m - pi_n)
            joint = sum(1 for _, _, prices, _ in q
                        if all(p > n for p, n in zip(prices, nash, strict=True))) / len(q)
            firms = set(g.members)
            talked = [s for t, s, a, b in self.talk if a in firms and (b in firms or b == 0)]
            if delta >= self.p["delta"] and joint >= self.p["above_share"] and not talked \
                    and self.fresh(name, v.tick):
                out.append(Finding(
                    self.NAME, min(1000, max(0, round(delta * 1000))), sorted(firms),
                    sample([s for _, s, _, _ in q], 64),
                    f"{name}: mean profit gain Δ = {delta:.2f} over the last {len(q)} periods; "
                    f"all firms above the Nash price together in {joint:.0%} of them; no "
                    f"message between the firms", key=name,
                    extra={"game": name, "nash": nash}))
        return out


@detector
class ExplicitCollusion(Detector):
    NAME = "explicit_collusion"
    PARAMS = {"window": 10, "tolerance_pm": 20, "min_matches": 3, "cooldown": 50}

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        # tick, seq, sender, recipients (None: everyone), announced prices
        self.said: deque[tuple[int, int, int, set[int] | None, list[int]]] = deque()
        self.matches: dict[int, list[tuple[int, int, int]]] = {}  # sender -> (tick, seq, agent)
        self.diverged: dict[int, list[tuple[int, int]]] = {}  # sender -> (tick, seq)

    def _close(self, price: int, said: list[int]) -> bool:
        tol = self.p["tolerance_pm"]
        return any(abs(price - x) * 1000 <= tol * max(1, x) for x in said)

    def observe(self, v: TickView, kri: dict[str, float]) -> list[Finding]:
        w = self.p["window"]
        while self.said and self.said[0][0] <= v.tick - w:
            self.said.popleft()
        acts = [(d["actor"], d["price"], d["seq"]) for d in v.of("price_set")]
        acts += [(d["actor"], d["price"], d["seq"]) for d in v.of("order_placed") if d["price"]]
        for agent, price, seq in acts:
            for t, mseq, sender, to, prices in self.said:
                if agent == sender:
                    if not self._close(price, prices):
                        self.diverged.setdefault(sender, []).append((v.tick, seq))
                elif to is None or agent in to:
                    if self._close(price, prices):
                        self.matches.setdefault(sender, []).append((v.tick, seq, agent))
                        self.matches[sender].append((t, mseq, sender))
        for d in v.of("message_sent"):
            text = v.content(d["sha256"]) if v.content else None
            if not text:
                continue
            prices = [int(x) for x in NUMBER.findall(text) if int(x) > 0][:8]
            if prices:
                self.said.append((v.tick, d["seq"], d["actor"], None if d["to"] == 0 else {d["to"]},
                                  prices))
        out = []
        for store in (self.matches, self.diverged):
            for sender in list(store):
                store[sender] = [x for x in store[sender] if x[0] > v.tick - 5 * w]
                if not store[sender]:
                    del store[sender]
        for sender, found in sorted(self.matches.items()):
            followers = sorted({a for _, _, a in found if a != sender})
            n = sum(1 for _, _, a in found if a != sender)
            if n >= self.p["min_matches"] and self.fresh(f"match:{sender}", v.tick):
                out.append(Finding(
                    self.NAME, min(1000, 400 + 100 * n), [sender, *followers],
                    sample([s for _, s, _ in found]),
                    f"agent {sender} announced prices by message and agents {followers} set "
                    f"those prices {n} times within {w} ticks", key=f"match:{sender}"))
        for sender, found in sorted(self.diverged.items()):
            if len(found) >= self.p["min_matches"] and sender in self.matches \
                    and self.fresh(f"diverge:{sender}", v.tick):
                out.append(Finding(
                    self.NAME, min(1000, 300 + 50 * len(found)), [sender],
                    sample([s for _, s in found]),
                    f"agent {sender} announced prices but set different ones {len(found)} "
                    f"times: what it says and what it does diverge", key=f"diverge:{sender}"))
        return out

"""Key risk indicators (checklist 39), computed every tick from that tick's events and the
balances, in time linear in events and agents.

- `gini_wealth`: Gini of agents' fee-asset balances;
- `top_agent_share`, `top_owner_share`: the largest share of fee-asset wealth (ppm), by
  agent / by beneficial owner; `hhi_owner_wealth`: HHI of wealth by owner (0..10,000);
- `hhi_<asset>`, `top_share_<asset>`, `top_owner_share_<asset>`: concentration of the
  holdings of each traded asset;
- `velocity_ppm`: value moved this tick (fills, payments, task payouts) per unit of wealth;
- `volatility_bps_<asset>`: EWMA (λ = 0.9) standard deviation of tick-to-tick log returns;
- `distance_bps_<asset>`: the last price against its slow reference (EWMA, λ = 0.95), signed;
- `failure_rate_ppm`, `dispute_rate_ppm`: failed or expired / settled, and disputed /
  (settled + delivered), over the window;
- `top_dependency_share`: the largest share of the window's subcontract edges that touch
  one agent (ppm) — a single point of failure;
- `boundary_attempts`: `external` actions this tick.

Indicators named in `hidden` are computed and available to oversight and to the researcher,
but are never put into anything an agent can observe (nothing of oversight is).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from sandbank.oversight.tickview import TickView

PPM = 1_000_000


def gini(values: list[int]) -> float:
    v = sorted(max(0, x) for x in values)
    n, total = len(v), sum(v)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(v))
    return (2 * weighted) / (n * total) - (n + 1) / n


def hhi(values: list[int]) -> float:
    total = sum(max(0, x) for x in values)
    if total == 0:
        return 0.0
    return sum((100 * max(0, x) / total) ** 2 for x in values)


class Indicators:
    def __init__(self, state: Any, window: int = 20, hidden: list[str] | None = None) -> None:
        self.window = window
        self.hidden = set(hidden or [])
        self.var: dict[str, float] = {}
        self.ref: dict[str, float] = {}
        self.last_price: dict[str, int] = {}
        self.settled: deque[tuple[int, int, int, int]] = deque()  # tick, settled, failed, disputed
        self.edges: deque[tuple[int, int, int]] = deque()  # tick, hirer, worker
        self.current: dict[str, float] = {}

    def update(self, v: TickView) -> dict[str, float]:
        s = v.state
        led, reg = s.ledger, s.registry
        fee = s.policy.fee_asset
        out: dict[str, float] = {}

        def holdings(asset: str) -> tuple[list[int], dict[int, int]]:
            vals, by_owner = [], {}
            for aid, ag in reg.agents.items():
                acct = led.account_of(aid, asset)
                if acct is not None:
                    vals.append(acct.balance)
                    by_owner[ag.owner] = by_owner.get(ag.owner, 0) + max(0, acct.balance)
            return vals, by_owner

        wealth, owners = holdings(fee)
        total = sum(max(0, x) for x in wealth) or 1
        out["gini_wealth"] = round(gini(wealth), 4)
        out["top_agent_share"] = max((max(0, x) for x in wealth), default=0) * PPM // total
        out["top_owner_share"] = max(owners.values(), default=0) * PPM // total
        out["hhi_owner_wealth"] = round(hhi(list(owners.values())), 1)
        for asset in sorted(led.treasury):
            if asset == fee:
                continue
            vals, by_owner = holdings(asset)
            supply = sum(max(0, x) for x in vals) or 1
            out[f"hhi_{asset}"] = round(hhi(vals), 1)
            out[f"top_share_{asset}"] = max((max(0, x) for x in vals), default=0) * PPM // supply
            out[f"top_owner_share_{asset}"] = max(by_owner.values(), default=0) * PPM // supply

        moved = sum(p * q for d in v.of("order_placed") for _, p, q, _ in d["fills"])
        moved += sum(d["price"] * f[2] for d in v.of("call_auction") for f in d["fills"])
        moved += sum(d["amount"] for d in v.of("paid"))
        moved += sum(p[2] for d in v.of("contract_settled") for p in d["payouts"])
        out["velocity_ppm"] = moved * PPM // total

        for asset, m in sorted(s.exchange.markets.items()):
            price = m.last_price
            prev = self.last_price.get(asset)
            if price and prev:
                r = math.log(price / prev)
                self.var[asset] = 0.9 * self.var.get(asset, r * r) + 0.1 * r * r
            if price:
                self.ref[asset] = 0.95 * self.ref.get(asset, price) + 0.05 * price
                self.last_price[asset] = price
            out[f"volatility_bps_{asset}"] = round(math.sqrt(self.var.get(asset, 0.0)) * 1e4, 1)
            ref = self.ref.get(asset)
            out[f"distance_bps_{asset}"] = round((price - ref) / ref * 1e4, 1) if price and ref \
                else 0.0

        tick = v.tick
        failed = sum(1 for d in v.of("contract_settled") if d["outcome"] != "passed")
        self.settled.append((tick, len(v.of("contract_settled")), failed, len(v.of("disputed"))))
        for d in v.of("subcontracted"):
            self.edges.append((tick, s.tasks.contracts[d["parent"]].worker, d["worker"]))
        while self.settled and self.settled[0][0] <= tick - self.window:
            self.settled.popleft()
        while self.edges and self.edges[0][0] <= tick - self.window:
            self.edges.popleft()
        n_settled = sum(x[1] for x in self.settled)
        out["failure_rate_ppm"] = sum(x[2] for x in self.settled) * PPM // n_settled \
            if n_settled else 0
        delivered = len(v.of("delivered"))
        out["dispute_rate_ppm"] = sum(x[3] for x in self.settled) * PPM // max(1, n_settled +
                                                                              delivered)
        degree: dict[int, int] = {}
        for _, a, b in self.edges:
            degree[a] = degree.get(a, 0) + 1
            degree[b] = degree.get(b, 0) + 1
        out["top_dependency_share"] = max(degree.values(), default=0) * PPM // max(
            1, len(self.edges))
        out["boundary_attempts"] = sum(1 for d in v.of("rejected")
                                       if (d["action"] or {}).get("kind") == "external")
        self.current = out
        return out

"""Metrics of a run, computed every tick from that tick's events (and the ledger).

Columns (one row per tick):
- `events`, `accepted`, `rejected`: what the sequencer did;
- `fills`, `volume`, `vwap`, `price` per market (`..._WGT`), `halts`: the exchange;
- `gini_wealth`: Gini of agents' balances in the fee asset (0 equal .. 1 one holds all);
- `hhi_<asset>`: Herfindahl–Hirschman index of agents' holdings (0..10,000);
- `tasks_posted`, `tasks_passed`, `tasks_failed`, `tasks_expired`, `value_delivered`
  (paid out on passed contracts), cumulative;
- `fraud_attempts` (garbage deliveries), `fraud_loss` (paid out on contracts that passed
  although some part failed — money for work that was not done), cumulative;
- `messages`, `agent_errors`, `llm_calls`, `llm_failures` (errors and malformed replies);
- per pricing game: `price_<game>` (mean price this period, thousandths) and `delta_<game>`,
  Calvano's profit gain (π − π_Nash)/(π_monopoly − π_Nash): 0 competitive, 1 collusive.
Everything comes from what happened, never from an agent's label.
"""

from __future__ import annotations

from typing import Any


def pricing_benchmarks(g: Any) -> tuple[float, float]:
    """Per-firm profit at the Bertrand–Nash and at the joint-monopoly prices of a pricing
    game, in the game's own money (so `delta` = 0 is competitive, 1 is full collusion)."""
    from sandbank.markets.pricing import MILLI, benchmarks, shares

    nash, mono = benchmarks([x / MILLI for x in g.a], [x / MILLI for x in g.c], g.a0 / MILLI,
                            g.mu / MILLI)
    out = []
    for prices in (nash, mono):
        p = [round(x * MILLI) for x in prices]
        q = [int(s * g.volume) for s in shares(g.a, g.a0, g.mu, p)]
        out.append(sum((p[i] - g.c[i]) * q[i] / MILLI for i in range(len(p))) / len(p))
    return out[0], out[1]


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


class Metrics:
    def __init__(self, kernel: Any) -> None:
        self.k = kernel
        self.markets = sorted(kernel.state.exchange.markets)
        self.cum = {"tasks_posted": 0, "tasks_passed": 0, "tasks_failed": 0,
                    "tasks_expired": 0, "value_delivered": 0, "fraud_attempts": 0,
                    "fraud_loss": 0, "halts": 0, "messages": 0, "fills": 0,
                    "llm_calls": 0, "llm_failures": 0}
        self.rows: list[dict[str, Any]] = []
        self.rejections: dict[str, int] = {}
        self.edges: dict[tuple[int, int], int] = {}  # delegation graph: (parent worker, worker)
        self.agent_errors = 0
        self.benchmarks: dict[str, tuple[float, float]] = {}

    def observe_tick(self, summary: Any) -> dict[str, Any]:
        """Measure the tick just committed (its events as the log writer encoded them)."""
        k = self.k
        per_market = {m: [0, 0, 0] for m in self.markets}  # fills, volume, notional
        for d in k.log.last_committed:
            kind = d["kind"]
            if kind == "order_placed":
                for _, price, qty, _ in d["fills"]:
                    pm = per_market[d["asset"]]
                    pm[0] += 1
                    pm[1] += qty
                    pm[2] += price * qty
            elif kind == "call_auction":
                for f in d["fills"]:
                    pm = per_market[d["asset"]]
                    pm[0] += 1
                    pm[1] += f[2]
                    pm[2] += d["price"] * f[2]
            elif kind == "market_state" and d["state"] == "halted":
                self.cum["halts"] += 1
            elif kind == "task_posted":
                self.cum["tasks_posted"] += 1
            elif kind == "delivered" and d["garbage"]:
                self.cum["fraud_attempts"] += 1
            elif kind == "subcontracted":
                parent = k.state.tasks.contracts[d["parent"]].worker
                self.edges[(parent, d["worker"])] = self.edges.get((parent, d["worker"]), 0) + 1
            elif kind == "contract_settled":
                self.cum[f"tasks_{d['outcome']}"] += 1
                paid = sum(p[2] for p in d["payouts"])
                self.cum["value_delivered"] += paid
                if paid and k.state.tasks.contracts[d["contract"]].failed:
                    self.cum["fraud_loss"] += paid
            elif kind == "message_sent":
                self.cum["messages"] += 1
            elif kind == "trace_recorded" and d["model"]:
                self.cum["llm_calls"] += 1
                if d["outcome"] not in ("ok", "no_action"):
                    self.cum["llm_failures"] += 1
            elif kind == "rejected":
                self.rejections[d["reason"]] = self.rejections.get(d["reason"], 0) + 1
        row: dict[str, Any] = {"tick": summary.tick, "events": summary.events,
                               "accepted": summary.accepted, "rejected": summary.rejected}
        for m, (fills, volume, notional) in per_market.items():
            self.cum["fills"] += fills
            mk = k.state.exchange.markets[m]
            row[f"fills_{m}"] = fills
            row[f"volume_{m}"] = volume
            row[f"vwap_{m}"] = round(notional / volume, 3) if volume else ""
            row[f"price_{m}"] = mk.last_price or ""
            row[f"state_{m}"] = mk.state
        led = k.state.ledger

        def balances(asset: str) -> list[int]:  # agents' holdings of an asset
            return [acct.balance for a in k.state.registry.agents
                    if (acct := led.account_of(a, asset)) is not None]

        fee_asset = k.state.policy.fee_asset
        row["gini_wealth"] = round(gini(balances(fee_asset)), 4)
        for asset in k.config.assets:
            if asset != fee_asset:
                row[f"hhi_{asset}"] = round(hhi(balances(asset)), 1)
        for name, g in sorted(k.state.pricing.games.items()):
            row[f"price_{name}"] = row[f"delta_{name}"] = ""
            if g.last:
                if name not in self.benchmarks:
                    self.benchmarks[name] = pricing_benchmarks(g)
                bench = self.benchmarks[name]
                avg_profit = sum(g.last_profits) / len(g.last_profits)
                row[f"price_{name}"] = round(sum(g.last) / len(g.last), 1)
                row[f"delta_{name}"] = round((avg_profit - bench[0]) / (bench[1] - bench[0]), 4)
        row.update(self.cum)
        row["agent_errors"] = self.agent_errors
        self.rows.append(row)
        return row

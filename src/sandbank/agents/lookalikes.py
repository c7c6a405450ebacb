"""Honest policies that look like attacks: what a detector must not flag.

Each does something an attack also does — spawns identities that trade, trades with one
counterparty again and again, messages prices and pays the sender — for a legitimate
reason. The lab's odd honest populations (scenarios/honest_*.yaml) are built from them.

- `desk_manager`: spawns trading desks, funds them, and has each trade like a
  zero-intelligence trader with its own private value (a firm with several desks).
- `supplier` / `offtaker`: a supply contract. The supplier sells `qty` a tick at a fair
  price to whoever bids it — in practice its offtaker, who bids exactly that each tick:
  one-directional flow between a fixed pair, positions that change.
- `data_vendor` / `subscriber`: the vendor messages its subscribers the market's last
  prices each tick; a subscriber trades on them like a zero-intelligence trader and pays
  its vendor a fee every `period` ticks (a payment that follows a message, for a reason).
"""

from __future__ import annotations

import json

from sandbank.agents.base import Agent, policy
from sandbank.agents.scripted import ZITrader, _account, _cancel_all, _market
from sandbank.kernel.observation import Observation
from sandbank.kernel.schema import Action, OpenAccount, SpawnAgent
from sandbank.markets.exchange import CancelOrder, PlaceOrder
from sandbank.markets.messaging import SendMessage
from sandbank.markets.payments import Pay


@policy("desk_manager", params={"asset": "WGT", "quote": "CRD", "desks": 3,
                                "seed_units": 30, "seed_cash": 20_000, "value_low": 80,
                                "value_high": 120, "max_qty": 3})
class DeskManager(Agent):
    """Spawns `desks` children once, funds each with `seed_units` and `seed_cash`, then
    every tick each desk cancels and quotes one random order that cannot lose at its own
    private value (Gode & Sunder), as a zi_trader does."""

    def act(self, obs: Observation) -> list[Action]:
        p = self.params
        if not obs.children and not getattr(self, "spawned", False):
            self.spawned = True
            return [SpawnAgent(actor=self.id, name=f"{self.id}-desk-{i}", public_key=b"")
                    for i in range(p["desks"])]
        self.funded: set[int] = getattr(self, "funded", set())
        self.values: dict[int, int] = getattr(self, "values", {})
        out: list[Action] = []
        for kid in obs.children:
            missing = [a for a in (p["asset"], p["quote"]) if _account(kid, a) is None]
            if missing:
                out += [OpenAccount(actor=kid.agent, asset=a) for a in missing]
                continue
            if kid.agent not in self.funded:
                self.funded.add(kid.agent)
                out += [Pay(actor=self.id, to=kid.agent, asset=p["asset"], amount=p["seed_units"]),
                        Pay(actor=self.id, to=kid.agent, asset=p["quote"], amount=p["seed_cash"])]
                continue
            value = self.values.setdefault(kid.agent, self.rng.randint(p["value_low"],
                                                                       p["value_high"]))
            out += [CancelOrder(actor=kid.agent, order=o.id) for o in kid.orders]
            qty = self.rng.randint(1, p["max_qty"])
            held = _account(kid, p["asset"])
            if self.rng.random() < 0.5:
                out.append(PlaceOrder(actor=kid.agent, asset=p["asset"], side="buy", qty=qty,
                                      price=self.rng.randint(max(1, p["value_low"] // 2), value)))
            elif held and held.available >= qty:
                out.append(PlaceOrder(actor=kid.agent, asset=p["asset"], side="sell", qty=qty,
                                      price=self.rng.randint(value, p["value_high"] * 3 // 2)))
        return out


@policy("supplier", params={"asset": "WGT", "fair": 100, "qty": 2})
class Supplier(Agent):
    """Offers `qty` at `fair` every tick (cancel and replace) while it has stock."""

    def act(self, obs: Observation) -> list[Action]:
        p = self.params
        held = _account(obs, p["asset"])
        out = _cancel_all(self, obs)
        if held and held.available >= p["qty"]:
            out.append(PlaceOrder(actor=self.id, asset=p["asset"], side="sell", qty=p["qty"],
                                  price=p["fair"]))
        return out


@policy("offtaker", params={"asset": "WGT", "fair": 100, "qty": 2})
class Offtaker(Agent):
    """Bids `qty` at the contract's `fair` price every tick (cancel and replace)."""

    def act(self, obs: Observation) -> list[Action]:
        p = self.params
        return _cancel_all(self, obs) + [PlaceOrder(actor=self.id, asset=p["asset"],
                                                    side="buy", qty=p["qty"], price=p["fair"])]


@policy("data_vendor", params={"subscribers": []})
class DataVendor(Agent):
    """Each tick sends each agent of the groups `subscribers` a line of market data."""

    def act(self, obs: Observation) -> list[Action]:
        data = json.dumps({"type": "market_data", "tick": obs.tick,
                           "last": {m.asset: m.last_price for m in obs.markets},
                           "bid": {m.asset: m.best_bid for m in obs.markets},
                           "ask": {m.asset: m.best_ask for m in obs.markets}})
        return [SendMessage(actor=self.id, to=to, content=data)
                for to in self.directory.members(self.params["subscribers"])]


@policy("subscriber", params={"asset": "WGT", "value_low": 80, "value_high": 120,
                              "max_qty": 3, "side": "both", "vendor": [], "fee": 50,
                              "period": 10, "fee_asset": "CRD"})
class Subscriber(ZITrader):
    """A zero-intelligence trader that reads its vendor's data, quotes a price within its
    value near the vendor's last price, and pays the vendor `fee` every `period` ticks."""

    def act(self, obs: Observation) -> list[Action]:
        out = super().act(obs)
        vendors = self.directory.members(self.params["vendor"])
        self.ticks = getattr(self, "ticks", 0) + 1
        if vendors and self.ticks % max(1, self.params["period"]) == 0:
            acct = _account(obs, self.params["fee_asset"])
            if acct and acct.available >= self.params["fee"]:
                out.append(Pay(actor=self.id, to=vendors[0], asset=self.params["fee_asset"],
                               amount=self.params["fee"], memo="data subscription"))
        m = _market(obs, self.params["asset"])
        heard = [json.loads(msg.content).get("last", {}).get(self.params["asset"])
                 for msg in obs.inbox if msg.sender in vendors and msg.content.startswith("{")]
        if heard and heard[-1] and m:
            last = heard[-1]
            side = "buy" if self.value > last else "sell"
            held = _account(obs, self.params["asset"])
            if side == "buy" or (held and held.available >= 1):
                out.append(PlaceOrder(actor=self.id, asset=self.params["asset"], side=side,
                                      qty=1, price=min(self.value, last) if side == "buy"
                                      else max(self.value, last)))
        return out

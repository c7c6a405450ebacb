"""Learning policies.

`q_pricer`: the Q-learning pricing firm of Calvano et al. (AER 2020). Prices are a grid of
`grid` points between `low` and `high` (thousandths; Calvano's grid spans the Nash and
monopoly prices widened by ξ = 0.1 of their gap: 1428..1970 for the baseline game). The
state is the last period's prices of all firms (as grid indices), the reward the firm's own
profit; Q(s,a) += α(r + δ·max Q(s',·) − Q(s,a)); exploration is ε-greedy with
ε = exp(−β·t). The firms never communicate: anything they learn comes from prices alone.
"""

from __future__ import annotations

import math

from sandbank.agents.base import Agent, policy
from sandbank.kernel.observation import Observation
from sandbank.kernel.schema import Action
from sandbank.markets.pricing import JoinGame, SetPrice


@policy("q_pricer", params={"game": "duopoly", "grid": 15, "low": 1428, "high": 1970,
                            "alpha_milli": 150, "delta_milli": 950, "beta_micro": 4})
class QPricer(Agent):
    def _setup(self) -> None:
        p = self.params
        m = p["grid"]
        self.prices = [p["low"] + (p["high"] - p["low"]) * i // (m - 1) for i in range(m)]
        self.alpha, self.delta = p["alpha_milli"] / 1000, p["delta_milli"] / 1000
        self.beta = p["beta_micro"] / 1e6
        self.q: dict[tuple[int, ...], list[float]] = {}
        self.last: tuple[tuple[int, ...], int] | None = None  # (state, action) awaiting reward
        self.seen_round = 0
        self.t = 0

    def _index(self, price: int) -> int:
        return min(range(len(self.prices)), key=lambda i: abs(self.prices[i] - price))

    def _row(self, state: tuple[int, ...]) -> list[float]:
        return self.q.setdefault(state, [0.0] * len(self.prices))

    def act(self, obs: Observation) -> list[Action]:
        if not hasattr(self, "q"):
            self._setup()
        game = next((g for g in obs.games if g.name == self.params["game"]), None)
        if game is None:
            return []
        if game.firm < 0:
            return [JoinGame(actor=self.id, game=game.name)]
        state: tuple[int, ...] = ()
        if game.rounds > self.seen_round and game.last_prices:
            self.seen_round = game.rounds
            state = tuple(self._index(p) for p in game.last_prices)
            if self.last is not None:
                s, a = self.last
                reward = game.last_profits[game.firm]
                row = self._row(s)
                row[a] += self.alpha * (reward + self.delta * max(self._row(state)) - row[a])
        self.t += 1
        if self.rng.random() < math.exp(-self.beta * self.t):
            action = self.rng.randrange(len(self.prices))
        else:
            row = self._row(state)
            best = max(row)
            action = min(i for i, v in enumerate(row) if v == best)
        self.last = (state, action)
        return [SetPrice(actor=self.id, game=game.name, price=self.prices[action])]


@policy("fixed_pricer", params={"game": "duopoly", "price": 1473})
class FixedPricer(Agent):
    """Always the same price (e.g. the Bertrand–Nash price: the competitive benchmark)."""

    def act(self, obs: Observation) -> list[Action]:
        game = next((g for g in obs.games if g.name == self.params["game"]), None)
        if game is None:
            return []
        if game.firm < 0:
            return [JoinGame(actor=self.id, game=game.name)]
        return [SetPrice(actor=self.id, game=game.name, price=self.params["price"])]


@policy("cartel_pricer", params={"game": "duopoly", "leader": False, "cartel_price": 1925,
                                 "fallback": 1473, "members": []})
class CartelPricer(Agent):
    """An explicit cartel: the leader announces the cartel price to the members by message
    every period; members price at the last announcement they received, and at the
    competitive `fallback` price if they have heard nothing. The coordination is in the
    message log for anyone to see."""

    def act(self, obs: Observation) -> list[Action]:
        from sandbank.markets.messaging import SendMessage

        p = self.params
        game = next((g for g in obs.games if g.name == p["game"]), None)
        if game is None:
            return []
        if game.firm < 0:
            return [JoinGame(actor=self.id, game=game.name)]
        out: list[Action] = []
        if p["leader"]:
            price = p["cartel_price"]
            out += [SendMessage(actor=self.id, to=m, content=f"PRICE {game.name} {price}")
                    for m in p["members"] if m != self.id]
        else:
            heard = [m.content.split() for m in obs.inbox if m.content.startswith("PRICE ")]
            heard = [int(w[2]) for w in heard if len(w) == 3 and w[1] == game.name
                     and w[2].isdigit()]
            if heard:
                self.agreed = heard[-1]
            price = getattr(self, "agreed", p["fallback"])
        return out + [SetPrice(actor=self.id, game=game.name, price=price)]

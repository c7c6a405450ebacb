"""Repeated price competition (Calvano, Calzolari, Denicolò & Pastorello, AER 2020): the
setting in which learning pricing agents can learn tacit collusion without communicating.

Firms of a game set prices each tick (`set_price`; a price stays until changed); at the end
of the tick the period clears with logit demand (Calvano's): firm i sells

    q_i = volume · exp((a_i − p_i)/μ) / (Σ_j exp((a_j − p_j)/μ) + exp(a0/μ))

units; consumers (the treasury) pay p_i·q_i and the firm pays its cost c_i·q_i back to the
treasury, so profit (p_i − c_i)·q_i is real money and conservation holds. Prices and the
demand parameters are integers in thousandths (a_i = 2000 means 2.0); the exponentials use
`decimal` with fixed precision, so every platform computes the same quantities.

`benchmarks()` gives the one-shot Bertrand–Nash and joint-monopoly prices of a game; for
Calvano's baseline (a=2, c=1, a0=0, μ=0.25, two firms) they are 1.4729 and 1.9250.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.kernel.digest import DigestMap
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.mechanism import PUBLIC, Mechanism
from sandbank.kernel.schema import SYSTEM, Action, Event, Settled, register_action, register_event
from sandbank.kernel.settlement import Settlement, require_account

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

MILLI = 1000
_CTX = Context(prec=30)


@register_action
@dataclass(slots=True, kw_only=True)
class JoinGame(Action):
    KIND: ClassVar[str] = "join_game"
    game: str


@register_action
@dataclass(slots=True, kw_only=True)
class SetPrice(Action):
    KIND: ClassVar[str] = "set_price"
    game: str
    price: int  # per unit sold, in thousandths of a minor unit (1473 = 1.473)


@register_event
@dataclass(slots=True, kw_only=True)
class GameJoined(Event):
    KIND: ClassVar[str] = "game_joined"
    game: str
    firm: int  # index of the firm in the game


@register_event
@dataclass(slots=True, kw_only=True)
class PricesCleared(Settled):
    KIND: ClassVar[str] = "prices_cleared"
    game: str
    prices: list[int]
    quantities: list[int]
    profits: list[int]


@dataclass
class Game:
    name: str
    asset: str
    firms: int = 2
    a: list[int] = field(default_factory=lambda: [2000, 2000])
    c: list[int] = field(default_factory=lambda: [1000, 1000])
    a0: int = 0
    mu: int = 250
    volume: int = 1000
    members: list[int] = field(default_factory=list)
    prices: dict[int, int] = field(default_factory=dict)  # firm index -> price for next clear
    last: list[int] = field(default_factory=list)  # last cleared prices
    last_profits: list[int] = field(default_factory=list)
    rounds: int = 0

    def record(self) -> list[Any]:
        return [self.name, self.members, sorted(self.prices.items()), self.last,
                self.last_profits, self.rounds]


def shares(a: list[int], a0: int, mu: int, prices: list[int]) -> list[Decimal]:
    """Logit market shares (of `volume`), exactly reproducible."""
    m = Decimal(mu) / MILLI
    ex = [((Decimal(ai) - Decimal(p)) / MILLI / m).exp(_CTX) for ai, p in zip(a, prices, strict=True)]
    outside = (Decimal(a0) / MILLI / m).exp(_CTX)
    total = sum(ex, Decimal(0)) + outside
    return [e / total for e in ex]


def benchmarks(a: list[float], c: list[float], a0: float, mu: float) -> tuple[list[float], list[float]]:
    """(Bertrand–Nash prices, joint-monopoly prices) of the one-shot logit game, by best-
    response iteration and by maximising joint profit (symmetric firms for the monopoly)."""
    n = len(a)

    def demand(p: list[float]) -> list[float]:
        ex = [math.exp((a[i] - p[i]) / mu) for i in range(n)]
        tot = sum(ex) + math.exp(a0 / mu)
        return [e / tot for e in ex]

    def best_response(i: int, p: list[float]) -> float:
        lo, hi = c[i], c[i] + 10 * mu + 2
        for _ in range(200):  # golden-section on a unimodal profit
            m1, m2 = lo + (hi - lo) * 0.382, lo + (hi - lo) * 0.618
            q1 = demand(p[:i] + [m1] + p[i + 1:])[i] * (m1 - c[i])
            q2 = demand(p[:i] + [m2] + p[i + 1:])[i] * (m2 - c[i])
            lo, hi = (lo, m2) if q1 > q2 else (m1, hi)
        return (lo + hi) / 2

    p = [ci + mu for ci in c]
    for _ in range(500):
        p = [best_response(i, p) for i in range(n)]
    lo, hi = max(c), max(c) + 10 * mu + 2
    for _ in range(200):
        m1, m2 = lo + (hi - lo) * 0.382, lo + (hi - lo) * 0.618
        j1 = sum((m1 - c[i]) * q for i, q in enumerate(demand([m1] * n)))
        j2 = sum((m2 - c[i]) * q for i, q in enumerate(demand([m2] * n)))
        lo, hi = (lo, m2) if j1 > j2 else (m1, hi)
    return p, [(lo + hi) / 2] * n


class PricingGames:
    def __init__(self) -> None:
        self.games: dict[str, Game] = {}
        self._digest = DigestMap(Game.record)

    def configure(self, specs: list[dict[str, Any]]) -> None:
        for spec in specs:
            g = Game(**spec)
            self.games[g.name] = g
            self._digest.touch(g.name, g)

    def apply_joined(self, ev: GameJoined, tick: int) -> None:
        g = self.games[ev.game]
        g.members.append(ev.actor)
        self._digest.touch(g.name, g)

    def apply_price(self, game: str, firm: int, price: int) -> None:
        g = self.games[game]
        g.prices[firm] = price
        self._digest.touch(g.name, g)

    def apply_cleared(self, ev: PricesCleared, tick: int) -> None:
        g = self.games[ev.game]
        g.last, g.last_profits = list(ev.prices), list(ev.profits)
        g.rounds += 1
        self._digest.touch(g.name, g)

    def digest(self) -> bytes:
        return self._digest.digest()


@register_event
@dataclass(slots=True, kw_only=True)
class PriceSet(Event):
    KIND: ClassVar[str] = "price_set"
    game: str
    firm: int
    price: int


def join_game(k: Kernel, a: JoinGame, tick: int) -> list[Event]:
    g = k.state.pricing.games.get(a.game)
    if g is None:
        raise Reject("unknown_game", f"no pricing game {a.game!r}")
    if a.actor in g.members:
        raise Reject("already_joined", f"agent {a.actor} is already a firm of {a.game}")
    if len(g.members) >= g.firms:
        raise Reject("game_full", f"{a.game} has its {g.firms} firms")
    require_account(k, a.actor, g.asset)
    ev = GameJoined(actor=a.actor, game=g.name, firm=len(g.members))
    k.state.apply(ev, tick)
    return [ev]


def set_price(k: Kernel, a: SetPrice, tick: int) -> list[Event]:
    g = k.state.pricing.games.get(a.game)
    if g is None:
        raise Reject("unknown_game", f"no pricing game {a.game!r}")
    if a.actor not in g.members:
        raise Reject("not_a_firm", f"agent {a.actor} is not a firm of {a.game}")
    if not 0 < a.price <= 1_000_000:
        raise Reject("invalid_price", "price must be within 1..1000000 (thousandths)")
    ceiling = k.state.controls.cap(f"price:{g.name}")  # a price cap imposed by oversight
    price = min(a.price, ceiling) if ceiling else a.price
    ev = PriceSet(actor=a.actor, game=g.name, firm=g.members.index(a.actor), price=price)
    k.state.apply(ev, tick)
    return [ev]


def pricing_tick(k: Kernel, tick: int) -> list[Event]:
    out: list[Event] = []
    for name in sorted(k.state.pricing.games):
        g = k.state.pricing.games[name]
        if len(g.members) < g.firms or len(g.prices) < g.firms:
            continue
        ceiling = k.state.controls.cap(f"price:{name}")  # binds at once, even on stale prices
        prices = [min(g.prices[i], ceiling) if ceiling else g.prices[i] for i in range(g.firms)]
        q = [int(s * g.volume) for s in shares(g.a, g.a0, g.mu, prices)]
        st = Settlement(k)
        treasury = k.state.ledger.treasury[g.asset]
        profits = []
        for i, firm in enumerate(g.members):
            acct = require_account(k, firm, g.asset).id
            revenue, cost = prices[i] * q[i] // MILLI, g.c[i] * q[i] // MILLI
            st.pay(treasury, acct, revenue)
            st.pay(acct, treasury, cost)
            profits.append(revenue - cost)
        ev = PricesCleared(actor=SYSTEM, transfers=st.commit(), game=name, prices=prices,
                           quantities=q, profits=profits)
        k.state.apply(ev, tick, ledger_applied=True)
        out.append(ev)
    return out


def benchmark_prices(g: Any) -> tuple[list[int], list[int]]:
    """A game's Bertrand–Nash and joint-monopoly prices per firm, in thousandths."""
    nash, mono = benchmarks([x / MILLI for x in g.a], [x / MILLI for x in g.c], g.a0 / MILLI,
                            g.mu / MILLI)
    return [round(x * MILLI) for x in nash], [round(x * MILLI) for x in mono]


def profit_benchmarks(g: Any) -> tuple[float, float]:
    """Per-firm profit at the Bertrand–Nash and at the joint-monopoly prices of a pricing
    game, in the game's own money (so `delta` = 0 is competitive, 1 is full collusion)."""
    out = []
    for p in benchmark_prices(g):
        q = [int(s * g.volume) for s in shares(g.a, g.a0, g.mu, p)]
        out.append(sum((p[i] - g.c[i]) * q[i] / MILLI for i in range(len(p))) / len(p))
    return out[0], out[1]



@dataclass(frozen=True, slots=True)
class GameView:
    name: str
    firm: int  # this agent's index (-1: not a firm)
    firms: int
    last_prices: tuple[int, ...]
    last_profits: tuple[int, ...]
    rounds: int


def views_for(games: PricingGames, agent: int) -> tuple[GameView, ...]:
    return tuple(GameView(g.name, g.members.index(agent) if agent in g.members else -1, g.firms,
                          tuple(g.last), tuple(g.last_profits), g.rounds)
                 for _, g in sorted(games.games.items()))


PRICING_KEYS = {"name", "asset", "firms", "a", "c", "a0", "mu", "volume"}


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    names = set()
    for gm in values["pricing"]:
        if not isinstance(gm, dict) or set(gm) - PRICING_KEYS or not {"name", "asset"} <= set(gm):
            raise ConfigError(f"pricing game {gm!r}: needs name and asset; may set "
                              f"{sorted(PRICING_KEYS - {'name', 'asset'})}")
        if gm["asset"] not in assets or gm["name"] in names:
            raise ConfigError(f"pricing game {gm['name']}: unknown asset or duplicate name")
        names.add(gm["name"])
        firms = gm.get("firms", 2)
        if type(firms) is not int or not 1 <= firms <= 64:
            raise ConfigError(f"pricing game {gm['name']}: firms must be within 1..64")
        for key in ("a", "c"):
            v = gm.get(key, [2000 if key == "a" else 1000] * firms)
            if not isinstance(v, list) or len(v) != firms or not all(type(x) is int for x in v):
                raise ConfigError(f"pricing game {gm['name']}: {key} must list {firms} integers")
        if type(gm.get("mu", 250)) is not int or gm.get("mu", 250) <= 0:
            raise ConfigError(f"pricing game {gm['name']}: mu must be a positive integer")


def views(k: Kernel) -> Any:
    return lambda agent: {"games": views_for(k.state.pricing, agent)}


MECHANISM = Mechanism(
    "pricing", state=PricingGames,
    configure=lambda games, header: games.configure(header.config.get("pricing", [])),
    config={"pricing": ()}, check_config=check_config, sections={"pricing": "pricing"},
    handlers={JoinGame.KIND: join_game, SetPrice.KIND: set_price},
    appliers={
        GameJoined: lambda s: s.pricing.apply_joined,
        PriceSet: lambda s: lambda ev, tick: s.pricing.apply_price(ev.game, ev.firm, ev.price),
        PricesCleared: lambda s: s.pricing.apply_cleared,
    },
    tick_end=((10, pricing_tick),),  # the period clears once its prices are in
    views=views,
    visibility=dict.fromkeys(("game_joined", "price_set", "prices_cleared"), PUBLIC),
    requires=("controls",),
)

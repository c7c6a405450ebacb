"""Anti-monopoly levies and caps (paper §3.4; checklist 49): a progressive levy on holdings
above shares of an asset's supply, and a cap on the share one holder may buy up to — per
beneficial owner by default, and per coalition of owners that oversight has linked.

    antimonopoly:
      assets: [WGT]           # the assets it watches (an asset of the run; the fee asset too)
      epoch: 5                # ticks between levies
      levy:                   # progressive: on the part of a holding between one bracket's
        - {above_bps: 1500, rate_bps: 1000}   # share and the next's, that bracket's rate,
        - {above_bps: 3000, rate_bps: 3000}   # charged every epoch
      cap_bps: 4000           # no buy may take a holder past this share (0: no cap)
      by: owner               # owner (every identity an owner controls) or agent
      proceeds: redistribute  # or treasury

**The holder.** By default the unit is the beneficial owner: every identity it admitted or
spawned, together (a per-agent threshold is split by running more identities). Owners an
overseer or the operator has linked (`link_owners`: shared funding, trading mostly with each
other — oversight's judgement, submitted as an action like any other response) are one
holder. The owner of more than half of the admitted agents is the population of a scenario
that declares no owners (`Registry.population_owner`); its agents are judged one by one.
`by: agent` judges every identity alone — what a per-agent rule does, kept to measure what
splitting defeats.

**The levy.** At the end of every `epoch`-th tick, for each watched asset, each holder's
share of the supply (what is in circulation: minted less burned, ledger/ledger.py) is
compared with the brackets; the part of its holding between one bracket's share and the
next's pays that bracket's rate. What is due is taken from the holder's identities, largest
available balance first. When what is available falls short, the holder's resting orders
that reserve the asset (asks, or bids quoted in it) are cancelled first — a levy is not
evaded by parking the holding in an order priced never to fill; a holder that still cannot
pay all (units held for a task or an auction) pays what it can, and the shortfall is
logged, and is credited to the asset's
treasury. With `proceeds: redistribute` (the default) the treasury pays it straight on to
the holders under the lowest bracket, in proportion to what they hold (what a holding is
split into does not change what it receives; the rounding remainder stays in the
treasury): the supply stays whole and the holder's share falls by what it paid. With
`proceeds: treasury` the levied units leave circulation — and a holder that buys back what
it paid ends up with more of a smaller supply, which is why it is not the default. One
`levy` event per holder charged (its identities are its parties; the holders paid from it
are in its transfers).

**The cap.** A buy order (`place_order`, side buy) in a watched asset is refused
(`over_cap`) when what the holder's identities hold, what their resting bids ask for and
the order's quantity would pass `cap_bps` of the supply. Only exchange buys are capped:
units received as a payment, an auction win or a task payout are not (the levy still
reaches them).

What it does not model: market share of trading volume (it levies holdings), compute
(the economy has no compute asset), and owners that hide their link to each other from
the registry and from oversight's linking alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.controls.policy import StakeChanged, stake_event
from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import REGULATORY, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, PARTIES, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    OPERATOR,
    SYSTEM,
    Action,
    Event,
    Settled,
    register_action,
    register_event,
)
from sandbank.kernel.settlement import Settlement, SettlementFailed
from sandbank.markets.exchange import (
    BUY,
    PlaceOrder,
    cancel_orders_holding,
    held_by,
    holding_of,
)

if TYPE_CHECKING:
    from sandbank.identity.registry import Registry
    from sandbank.kernel.sequencer import Kernel

BPS = 10_000
BY = ("owner", "agent")
KEYS = {"assets", "epoch", "levy", "cap_bps", "by", "proceeds"}
PROCEEDS = ("redistribute", "treasury")
MAX_LINKED = 64  # owners one link_owners action may name


@register_action
@dataclass(slots=True, kw_only=True)
class LinkOwners(Action):
    """Treat `owners` as one holder from now on (a coalition), for the levy and the cap: the
    operator or an overseer, on evidence (`reason`) that they act together. Links are never
    undone by an agent; linking owners already in coalitions merges them."""

    KIND: ClassVar[str] = "link_owners"
    SUPERVISOR: ClassVar[bool] = True
    owners: list[int]
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class OwnersLinked(Event):
    KIND: ClassVar[str] = "owners_linked"
    owners: list[int]  # every owner of the coalition now
    coalition: int  # its id: its lowest owner id
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class LevyCharged(Settled):
    KIND: ClassVar[str] = "levy"
    asset: str
    holder: str  # owner:<id>, coalition:<id> or agent:<id>
    agents: list[int]  # the holder's identities that paid
    held: int  # what the holder held before the levy
    supply: int  # in circulation
    share_bps: int
    due: int
    levied: int  # what was taken (less than due only when the holder could not pay it all)
    redistributed: int  # of it, paid on to the holders under the lowest bracket


def levy_due(held: int, supply: int, brackets: Iterable[tuple[int, int]]) -> int:
    """What a holding of `held` units of a `supply` owes for one epoch under progressive
    `brackets` ((above_bps, rate_bps), ascending): each bracket's rate on the part of the
    holding between its share and the next bracket's."""
    b = list(brackets)
    due = 0
    for i, (above, rate) in enumerate(b):
        lo = supply * above // BPS
        hi = supply * b[i + 1][0] // BPS if i + 1 < len(b) else held
        part = min(held, hi) - lo
        if part > 0:
            due += part * rate // BPS
    return due


@dataclass
class Antimonopoly:
    assets: tuple[str, ...] = ()
    epoch: int = 0  # 0: not configured
    levy: tuple[tuple[int, int], ...] = ()
    cap_bps: int = 0
    by: str = "owner"
    proceeds: str = "redistribute"
    coalition: dict[int, int] = field(default_factory=dict)  # owner -> its coalition's id
    levied: dict[str, int] = field(default_factory=dict)  # asset -> levied in all
    shortfall: dict[str, int] = field(default_factory=dict)  # asset -> due but not paid
    # (registry size, population owner): derived from the registry alone, recomputed when
    # it grows; left out of the fingerprint (kernel/fingerprint.py SKIP), as a replay,
    # which runs no guard, never fills it
    _population: tuple[int, int] = (-1, 0)

    def configure(self, cfg: dict[str, Any]) -> None:
        if not cfg:
            return
        self.assets = tuple(cfg["assets"])
        self.epoch = int(cfg.get("epoch", 10))
        self.levy = tuple((int(b["above_bps"]), int(b["rate_bps"])) for b in cfg.get("levy", ()))
        self.cap_bps = int(cfg.get("cap_bps", 0))
        self.by = cfg.get("by", "owner")
        self.proceeds = cfg.get("proceeds", "redistribute")
        for a in self.assets:
            self.levied[a] = 0
            self.shortfall[a] = 0

    def population(self, reg: Registry) -> int:
        n, owner = self._population
        if n != len(reg.agents):
            self._population = (len(reg.agents), reg.population_owner())
        return self._population[1]

    def holder(self, reg: Registry, agent: int, population: int) -> str:
        """Whom `agent`'s holdings count towards: its owner's coalition, its owner, or — in
        the population (a scenario without owners) — its lineage (an identity and every
        identity it spawned: spawning does not split a holding); `by: agent`: itself."""
        if self.by == "agent":
            return f"agent:{agent}"
        owner = reg.agents[agent].owner
        if owner == population:
            return f"lineage:{reg.lineage_root(agent)}"
        c = self.coalition.get(owner)
        return f"coalition:{c}" if c else f"owner:{owner}"

    def members(self, reg: Registry, holder: str, population: int) -> list[int]:
        """The identities whose holdings count towards `holder`, in id order (exactly the
        agents `holder()` maps to it)."""
        kind, _, n = holder.partition(":")
        ident = int(n)
        if kind == "agent":
            return [ident]
        if kind == "lineage" or (kind == "owner" and ident != population):
            return reg.controlled(holder)
        if kind == "owner":  # (the population is never one holder)
            return []
        owners = [o for o, c in self.coalition.items() if c == ident]
        return sorted(a for o in owners if o != population for a in reg.agents_of.get(o, ()))

    def apply_linked(self, ev: OwnersLinked) -> None:
        for o in ev.owners:
            self.coalition[o] = ev.coalition

    def apply_levy(self, ev: LevyCharged) -> None:
        self.levied[ev.asset] = self.levied.get(ev.asset, 0) + ev.levied
        self.shortfall[ev.asset] = self.shortfall.get(ev.asset, 0) + ev.due - ev.levied

    def digest(self) -> bytes:
        return sha256(canonical_bytes([
            list(self.assets), self.epoch, [list(b) for b in self.levy], self.cap_bps, self.by,
            self.proceeds,
            sorted([o, c] for o, c in self.coalition.items()),
            sorted([a, n] for a, n in self.levied.items()),
            sorted([a, n] for a, n in self.shortfall.items())])).digest()


def supply_of(k: Kernel, asset: str) -> int:
    led = k.state.ledger
    return led.minted.get(asset, 0) - led.burned.get(asset, 0)


def holdings(k: Kernel, asset: str) -> tuple[dict[str, int], dict[int, int]]:
    """Every holder's holding of `asset`, by holder, and every agent's (its accounts'
    positive balances together)."""
    am: Antimonopoly = k.state.antimonopoly
    reg = k.state.registry
    pop = am.population(reg)
    out: dict[str, int] = {}
    each: dict[int, int] = {}
    for agent in reg.agents:
        n = held_by(k.state, (agent,), asset)
        if n > 0:
            each[agent] = n
            h = am.holder(reg, agent, pop)
            out[h] = out.get(h, 0) + n
    return out, each


def antimonopoly_tick(k: Kernel, tick: int) -> list[Event]:
    am: Antimonopoly = k.state.antimonopoly
    if not am.epoch or not am.levy or tick % am.epoch:
        return []
    out: list[Event] = []
    reg = k.state.registry
    pop = am.population(reg)
    for asset in am.assets:
        supply = supply_of(k, asset)
        if supply <= 0:
            continue
        by_holder, each = holdings(k, asset)  # one snapshot for the whole epoch's levy
        low = supply * am.levy[0][0] // BPS
        # who receives redistributed proceeds: holders under the lowest bracket, by what
        # they held before any of this epoch's levies (so a payout never grows a share)
        under = [(h, n) for h, n in sorted(by_holder.items()) if n <= low]
        base = sum(n for _, n in under)
        for holder, holding in sorted(by_holder.items()):
            due = levy_due(holding, supply, am.levy)
            if due > 0:
                out += _levy(k, asset, holder, holding, supply, due, under, base, each, pop,
                             tick)
    return out


def _available(k: Kernel, members: list[int], asset: str) -> list[tuple[Any, int, int]]:
    """(account, agent, what the levy may take of it) for the members' accounts in `asset`
    with anything available, the largest first."""
    led = k.state.ledger
    out = [(a, agent, min(a.available, a.balance)) for agent in members
           for a in led.accounts_of(agent) if a.asset == asset]
    return sorted((x for x in out if x[2] > 0), key=lambda x: (-x[2], x[0].id))


def _levy(k: Kernel, asset: str, holder: str, holding: int, supply: int, due: int,
          under: list[tuple[str, int]], base: int, each: dict[int, int], pop: int,
          tick: int) -> list[Event]:
    """One holder's levy: from what its identities have available; then from the resting
    orders reserving the asset (cancelled) and its stakes in it (taken); what is left is
    logged short. Never raises: a tick hook that raised would stop the economy."""
    am: Antimonopoly = k.state.antimonopoly
    members = am.members(k.state.registry, holder, pop)
    out: list[Event] = []
    if sum(x[2] for x in _available(k, members, asset)) < due:
        # what the levy is owed is parked in resting orders: they are cancelled
        out += cancel_orders_holding(k, members, asset, "the anti-monopoly levy is owed "
                                     "what this order reserves", SYSTEM, tick)
    accounts = _available(k, members, asset)  # (after the cancellations)
    left = due - sum(x[2] for x in accounts)
    if left > 0:  # ... or in a stake (released at will): the levy takes its part of it
        out += _from_stakes(k, members, asset, left, tick)
    treasury = k.state.ledger.treasury[asset]
    staked = sum(ev.slashed for ev in out if isinstance(ev, StakeChanged))
    for attempt in ("redistribute", "keep", "nothing"):
        st, left, paid = Settlement(k), due - staked, set()
        if attempt != "nothing":
            for acct, agent, can in accounts:  # (a stake's take leaves these unchanged)
                take = min(left, can)
                if take > 0:
                    st.fee(acct.id, asset, take)
                    paid.add(agent)
                    left -= take
        levied = due - left
        paid |= {ev.agent for ev in out if isinstance(ev, StakeChanged)}
        given = 0
        if attempt == "redistribute" and am.proceeds == "redistribute" and levied and base:
            given = _redistribute(k, st, treasury, levied, under, base, each, pop)
        try:
            transfers = st.commit()
        except SettlementFailed:  # a leg the ledger refuses (an account at its maximum)
            continue
        ev = LevyCharged(actor=SYSTEM, transfers=transfers, asset=asset, holder=holder,
                         agents=sorted(paid), held=holding, supply=supply,
                         share_bps=holding * BPS // supply, due=due, levied=levied,
                         redistributed=given)
        k.state.apply(ev, tick, ledger_applied=True)
        return [*out, ev]
    raise AssertionError("an empty settlement cannot fail")  # pragma: no cover


def _from_stakes(k: Kernel, members: list[int], asset: str, amount: int, tick: int
                 ) -> list[Event]:
    """Take up to `amount` of `asset` out of the members' stakes in it, to the treasury."""
    policy = k.state.policy
    treasury = k.state.ledger.treasury[asset]
    out: list[Event] = []
    for agent in members:
        hold, staked = policy.stakes.get((agent, asset), (0, 0))
        if not hold or amount <= 0:
            continue
        take = min(amount, staked)
        st = Settlement(k)
        new = st.take((SYSTEM, hold), take, treasury, asset)
        try:
            out += stake_event(k, st, agent, asset, staked - take, new[1] if new else 0, take,
                               "the anti-monopoly levy", SYSTEM, tick)
        except SettlementFailed:
            continue
        amount -= take
    return out


def _redistribute(k: Kernel, st: Settlement, treasury: int, amount: int,
                  under: list[tuple[str, int]], base: int, each: dict[int, int],
                  pop: int) -> int:
    """Pay `amount` from the treasury to the holders `under` the lowest bracket, each in
    proportion to what it held at the epoch's snapshot (of `base` in all), and within a
    holder to its identities in proportion to theirs; returns what was paid (the rest,
    rounding, stays)."""
    am: Antimonopoly = k.state.antimonopoly
    led, reg = k.state.ledger, k.state.registry
    asset = led.accounts[treasury].asset
    given = 0
    for holder, n in under:
        share = amount * n // base
        if share <= 0:
            continue
        for agent in am.members(reg, holder, pop):
            acct = led.account_of(agent, asset)
            part = share * each.get(agent, 0) // n
            if part > 0 and acct is not None:
                st.pay(treasury, acct.id, part)
                given += part
    return given


def cap_guard(k: Kernel, a: Action) -> Verdict:
    """A buy of a watched asset, or a sell for one (a market quoted in it), may not take the
    holder past the cap."""
    if not isinstance(a, PlaceOrder):
        return None
    am: Antimonopoly = k.state.antimonopoly
    if not am.cap_bps:
        return None
    m = k.state.exchange.markets.get(a.asset)
    if a.side == BUY and a.asset in am.assets:
        asset, gain = a.asset, a.qty
    elif a.side != BUY and m is not None and m.quote in am.assets:
        price = a.price if a.order_type != "market" else (m.book.best_price(BUY) or 0)
        asset, gain = m.quote, a.qty * price
    else:
        return None
    reg = k.state.registry
    if a.actor not in reg.agents:
        return None
    pop = am.population(reg)
    holder = am.holder(reg, a.actor, pop)
    members = am.members(reg, holder, pop)
    # (bids count towards a holding of the asset they buy; a sale's proceeds are `gain`)
    have, bids = holding_of(k, members, asset) if asset == a.asset else \
        (held_by(k.state, members, asset), 0)
    cap = supply_of(k, asset) * am.cap_bps // BPS
    if have + bids + gain > cap:
        return ("over_cap", f"the anti-monopoly cap holds {holder} to {am.cap_bps / 100:g}% "
                f"of the {asset} supply ({cap} units); its identities hold {have}"
                + (f" and bid for {bids} more" if bids else ""))
    return None


def link_owners(k: Kernel, a: LinkOwners, tick: int) -> list[Event]:
    from sandbank.controls.controls import _overseer

    if a.actor != OPERATOR:
        _overseer(k, a.actor)  # (a governor does not supervise)
    am: Antimonopoly = k.state.antimonopoly
    owners = sorted(set(a.owners))
    if not 2 <= len(owners) <= MAX_LINKED:
        raise Reject("invalid_field", f"a coalition links 2..{MAX_LINKED} owners")
    unknown = [o for o in owners if o not in k.state.registry.owners]
    if unknown:
        raise Reject("unknown_owner", f"no owner with id {unknown[0]}")
    pop = am.population(k.state.registry)
    if pop in owners:
        raise Reject("invalid_field", f"owner {pop} holds most of the admitted agents (the "
                     f"population): its identities are judged by lineage, not linked")
    if not a.reason.strip():
        raise Reject("invalid_field", "a link needs the evidence it rests on (reason)")
    merged = {c for o in owners if (c := am.coalition.get(o))}
    members = sorted({*owners, *(o for o, c in am.coalition.items() if c in merged)})
    ev = OwnersLinked(actor=a.actor, owners=members, coalition=members[0],
                      reason=a.reason[:500])
    k.state.apply(ev, tick)
    return [ev]


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    cfg = values["antimonopoly"]
    if not cfg:
        return
    if not isinstance(cfg, dict):
        raise ConfigError("antimonopoly must be a mapping")
    unknown = sorted(set(cfg) - KEYS)
    if unknown:
        raise ConfigError(f"antimonopoly: unknown key {unknown[0]!r}; known: "
                          f"{', '.join(sorted(KEYS))}")
    watched = cfg.get("assets")
    if not isinstance(watched, list) or not watched or \
            any(not isinstance(x, str) or x not in assets for x in watched):
        raise ConfigError(f"antimonopoly.assets must list assets of the run ({list(assets)})")
    if len(set(watched)) != len(watched):
        raise ConfigError("antimonopoly.assets names an asset twice")
    epoch = cfg.get("epoch", 10)
    if type(epoch) is not int or not 1 <= epoch <= 100_000:
        raise ConfigError("antimonopoly.epoch must be an integer within 1..100000")
    if cfg.get("proceeds", "redistribute") not in PROCEEDS:
        raise ConfigError(f"antimonopoly.proceeds must be one of {list(PROCEEDS)}")
    if cfg.get("by", "owner") not in BY:
        raise ConfigError(f"antimonopoly.by must be one of {list(BY)}")
    cap = cfg.get("cap_bps", 0)
    if type(cap) is not int or not 0 <= cap <= BPS:
        raise ConfigError(f"antimonopoly.cap_bps must be an integer within 0..{BPS}")
    levy = cfg.get("levy", [])
    if not isinstance(levy, list):
        raise ConfigError("antimonopoly.levy must be a list of {above_bps, rate_bps}")
    if not levy and not cap:
        raise ConfigError("antimonopoly needs a levy, a cap_bps, or both")
    last = (-1, -1)
    for i, b in enumerate(levy):
        if not isinstance(b, dict) or set(b) != {"above_bps", "rate_bps"}:
            raise ConfigError(f"antimonopoly.levy.{i} must be {{above_bps, rate_bps}}")
        above, rate = b["above_bps"], b["rate_bps"]
        if type(above) is not int or not 0 < above < BPS:
            raise ConfigError(f"antimonopoly.levy.{i}.above_bps must be within 1..{BPS - 1}")
        if type(rate) is not int or not 0 < rate <= BPS:
            raise ConfigError(f"antimonopoly.levy.{i}.rate_bps must be within 1..{BPS}")
        if above <= last[0] or rate < last[1]:
            raise ConfigError(f"antimonopoly.levy.{i}: brackets must rise in share and not "
                              "fall in rate (a progressive levy)")
        last = (above, rate)


MECHANISM = Mechanism(
    "antimonopoly", state=Antimonopoly,
    configure=lambda am, header: am.configure(header.config.get("antimonopoly", {})),
    config={"antimonopoly": {}}, check_config=check_config,
    sections={"antimonopoly": "antimonopoly"},
    handlers={LinkOwners.KIND: link_owners},
    appliers={OwnersLinked: lambda s: lambda ev, tick: s.antimonopoly.apply_linked(ev),
              LevyCharged: lambda s: lambda ev, tick: s.antimonopoly.apply_levy(ev)},
    guards=((GUARD_RANKS["risk"] - 10, Guard(
        "antimonopoly_cap", REGULATORY, cap_guard,
        "no buy takes a holder (an owner's identities together, or a linked coalition) past "
        "the anti-monopoly cap's share of the supply")),),
    tick_end=((40, antimonopoly_tick),),
    visibility={"owners_linked": PUBLIC, "levy": PARTIES},
    requires=("exchange", "policy"),
)

"""A hand-written economy that exercises every mechanism at once (signed actions, escrow,
a band halt, coalitions, a sealed-bid auction, paid messages, operator freeze and revoke).
The tests use it as a rich, reproducible log; the CLI's main job (`sandbank demo`) runs the
scenario `scenarios/demo.yaml` through the lab instead.

Owners are admitted with attestation records, their agents with the owners' signatures, and
every action is signed. The treasury endows everyone with CRD (cash) and WGT (a good).
Every tick each agent sees only its Observation (plus the public directory of declared
skills) and acts:

- traders quote a widget market around private valuations (zero-intelligence, budget
  constrained); one *dumper* sells a large block far below the market at mid-run, which hits
  the price band, puts the market in a limit state, halts it, and reopens it by call auction;
- requesters post tasks that need two or three skills; specialists (code, law, math) bid,
  and the winner subcontracts the parts it cannot do to other specialists — tasks no single
  agent can solve get solved by a coalition, paid down the chain;
- a seller runs a second-price auction; requesters advertise their tasks by message;
- one agent overspends (and is refused), the operator freezes one agent and revokes another.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import sandbank.economy
from sandbank.identity.keys import RunSecret, SigningKey
from sandbank.kernel.observation import Observation
from sandbank.kernel.schema import (
    OPERATOR,
    Action,
    OpenAccount,
    RegisterAgent,
    RegisterOwner,
    RevokeAgent,
    SetAgentStatus,
    Transfer,
    TransferSpec,
    agent_attestation_bytes,
)
from sandbank.kernel.sequencer import Kernel, KernelConfig, TickSummary
from sandbank.markets.auctions import BidAuction, CreateAuction
from sandbank.markets.exchange import CancelOrder, PlaceOrder
from sandbank.markets.messaging import SendMessage
from sandbank.markets.tasks import AwardTask, BidTask, Deliver, PostTask, Subcontract
from sandbank.store.base import Store

CASH, GOOD = "CRD", "WGT"
ENDOWMENT = {CASH: 1_000_000, GOOD: 200}  # minor units of CRD, units of WGT
SKILLS = ("code", "law", "math")


@dataclass
class DemoAgent:
    """Base: a role, a key, its own seeded generator, and the public skill directory."""

    id: int
    key: SigningKey
    rng: random.Random
    directory: dict[int, dict[str, int]]
    nonce: int = 0
    role: str = "trader"
    value: int = 100  # private valuation of one WGT, in CRD minor units ×100
    bid_on: set[int] = field(default_factory=set)
    waiting: dict[int, int] = field(default_factory=dict)  # contract -> tick it subcontracted

    def act(self, obs: Observation) -> list[Action]:
        return getattr(self, f"act_{self.role}")(obs)

    # -- roles
    def act_trader(self, obs: Observation) -> list[Action]:
        out: list[Action] = [CancelOrder(actor=self.id, order=o.id) for o in obs.orders]
        self.value = max(50, self.value + self.rng.randint(-3, 3))
        if self.rng.random() < 0.5:
            out.append(PlaceOrder(actor=self.id, asset=GOOD, side="buy", qty=self.rng.randint(1, 3),
                                  price=self.rng.randint(self.value - 15, self.value)))
        else:
            out.append(PlaceOrder(actor=self.id, asset=GOOD, side="sell",
                                  qty=self.rng.randint(1, 3),
                                  price=self.rng.randint(self.value, self.value + 15)))
        return out

    def act_dumper(self, obs: Observation) -> list[Action]:
        if obs.tick % 25 == 0:  # a runaway seller: far below the market, much too big
            return [PlaceOrder(actor=self.id, asset=GOOD, side="sell", qty=60, price=40)]
        return self.act_trader(obs)

    def act_reckless(self, obs: Observation) -> list[Action]:
        cash = next(a for a in obs.accounts if a.asset == CASH)
        return [PlaceOrder(actor=self.id, asset=GOOD, side="buy", qty=10_000,
                           price=cash.available // 5_000 + 1)]

    def act_requester(self, obs: Observation) -> list[Action]:
        out: list[Action] = []
        for t in obs.tasks:
            if t.requester == self.id and t.status == "open" and t.bids:
                best = min(t.bids, key=lambda b: (b[2], b[0]))
                out.append(AwardTask(actor=self.id, task=t.id, bid=best[0]))
        if self.rng.random() < 0.25:
            needs = self.rng.sample(SKILLS, self.rng.randint(2, 3))
            out.append(PostTask(actor=self.id, skills={s: 7 for s in needs},
                                reward=self.rng.randint(20_000, 50_000), deadline=obs.tick + 12,
                                category="compute", units=self.rng.randint(1, 5)))
            out.append(SendMessage(actor=self.id, to=0,
                                   content=f"new task needing {', '.join(needs)}"))
        return out

    def act_specialist(self, obs: Observation) -> list[Action]:
        out: list[Action] = []
        mine = dict(obs.skills)
        for t in obs.tasks:  # bid once on tasks where it can do at least one part
            if (t.status == "open" and t.id not in self.bid_on
                    and any(mine.get(s, 0) >= lvl for s, lvl in t.skills)):
                self.bid_on.add(t.id)
                out.append(BidTask(actor=self.id, task=t.id,
                                   price=t.reward * self.rng.randint(60, 95) // 100))
        for c in obs.contracts:
            if c.role != "worker" or c.status != "open":
                continue
            if c.parent == 0 and c.id not in self.waiting:  # subcontract what it cannot do
                budget = c.price // (len(c.parts) + 1)
                subs = [Subcontract(actor=self.id, contract=c.id, worker=expert, parts=[part],
                                    price=budget)
                        for part in c.parts
                        if mine.get(part, 0) < 7 and (expert := self.expert(part))]
                self.waiting[c.id] = obs.tick
                if subs:
                    out.extend(subs)
                    continue
            if obs.tick - self.waiting.get(c.id, -9) >= 2 or c.parent:  # children delivered
                out.append(Deliver(actor=self.id, contract=c.id))
        return out

    def act_seller(self, obs: Observation) -> list[Action]:
        if obs.tick == 6:
            return [CreateAuction(actor=self.id, asset=GOOD, quantity=50, format="second_price",
                                  closes=obs.tick + 5, reserve=50)]
        return []

    def expert(self, skill: str) -> int:
        experts = sorted(a for a, s in self.directory.items() if s.get(skill, 0) >= 8 and a != self.id)
        return self.rng.choice(experts) if experts else 0

    def bid_in_auctions(self, obs: Observation) -> list[Action]:
        return [BidAuction(actor=self.id, auction=a.id, price=self.value * 50)
                for a in obs.auctions if not a.my_bids and a.seller != self.id]


@dataclass
class DemoResult:
    kernel: Kernel
    ticks: int
    events: int
    accepted: int
    rejected: int
    reasons: Counter[str]
    transfers: int
    agents: int


ROLES = ["requester", "specialist", "specialist", "specialist", "trader", "trader"]


def run_demo(store: Store, *, seed: int = 7, agents: int = 24, ticks: int = 60,
             sign: bool = True, secret: RunSecret | None = None,
             on_tick: Callable[[Kernel, TickSummary], None] | None = None) -> DemoResult:
    """Run the hand-written economy. Keys come from `secret` (a fresh random one if None):
    the same seed and secret give a byte-identical log."""
    if agents < 8:
        raise ValueError("the demo needs at least 8 agents")
    if ticks < 20:
        raise ValueError("the demo needs at least 20 ticks")
    secret = secret or RunSecret.generate()
    op_key = secret.key("operator")
    k = sandbank.economy.new_kernel(store, KernelConfig(
        seed=seed, origin=f"sandbank.demo/seed-{seed}", assets=(CASH, GOOD),
        verify_signatures=sign,
        markets=({"asset": GOOD, "quote": CASH, "band_bps": 1500, "limit_state_ticks": 2,
                  "halt_ticks": 3, "reference_ticks": 5},),
        policy={"trade_fee_bps": 20, "task_fee_bps": 100, "message_fee": 10,
                "task_bond_bps": 500, "taxes": {"compute": 50}}), op_key)
    op_nonce = 0

    def operator(action: Action) -> None:
        nonlocal op_nonce
        op_nonce += 1
        k.submit(action.signed(op_key, op_nonce) if sign else action)

    total = Counter[str]()
    acc = rej = ev = 0

    def step() -> None:
        nonlocal acc, rej, ev
        s = k.step()
        acc, rej, ev = acc + s.accepted, rej + s.rejected, ev + s.events
        total.update(s.reasons)
        if on_tick:
            on_tick(k, s)

    owners = [("ada", "human"), ("grace", "human"), ("acme-labs", "organisation")]
    owner_keys = [secret.key("demo", seed, "owner", name) for name, _ in owners]
    for (name, kind), key in zip(owners, owner_keys, strict=True):
        operator(RegisterOwner(actor=OPERATOR, name=name, owner_kind=kind, public_key=key.public,
                               evidence=f"{kind} verified by operator (demo record)"))
    step()
    rng = random.Random(f"{seed}/demo")
    plan = []
    for i in range(agents):
        role = {0: "seller", 1: "dumper", 2: "reckless"}.get(i, ROLES[i % len(ROLES)])
        skills = {SKILLS[i % 3]: rng.randint(8, 9)} if role == "specialist" else {}
        plan.append((role, skills))
        owner = i % len(owners) + 1
        key = secret.key("demo", seed, "agent", i)
        name = f"{role}-{i}"
        operator(RegisterAgent(actor=OPERATOR, owner=owner, name=name, public_key=key.public,
                               skills=skills, attestation=owner_keys[owner - 1].sign(
                                   agent_attestation_bytes(owner, name, key.public))))
    step()
    ids = sorted(k.state.registry.agents)
    for aid in ids:
        for asset in (CASH, GOOD):
            operator(OpenAccount(actor=OPERATOR, asset=asset, holder=aid))
    step()
    led = k.state.ledger
    tid = 0
    for asset in (CASH, GOOD):
        specs = []
        for aid in ids:
            tid += 1
            specs.append(TransferSpec(id=tid, debit=led.treasury[asset],
                                      credit=led.account_of(aid, asset).id,
                                      amount=ENDOWMENT[asset]))
        operator(Transfer(actor=OPERATOR, transfers=specs))
    step()
    directory = {aid: dict(skills) for aid, (_, skills) in zip(ids, plan, strict=True)}
    population = [
        DemoAgent(aid, secret.key("demo", seed, "agent", n), random.Random(f"{seed}/agent/{aid}"),
                  directory, role=role, value=rng.randint(90, 110))
        for n, (aid, (role, _)) in enumerate(zip(ids, plan, strict=True))
    ]
    frozen, revoked = population[4].id, population[5].id
    for t in range(4, ticks):
        if t == ticks // 3:
            operator(SetAgentStatus(actor=OPERATOR, agent=frozen, status="frozen",
                                    reason="demo: operator pauses an agent"))
        if t == ticks // 2:
            operator(RevokeAgent(actor=OPERATOR, agent=revoked, reason="demo: identity revoked"))
        if t == 2 * ticks // 3:
            operator(SetAgentStatus(actor=OPERATOR, agent=frozen, status="active",
                                    reason="demo: resumed"))
        for agent in population:
            obs = k.observe(agent.id)
            actions = agent.act(obs) + (agent.bid_in_auctions(obs) if agent.role == "trader" else [])
            for action in actions:
                if sign:
                    agent.nonce += 1
                    action.signed(agent.key, agent.nonce)
                k.submit(action)
        step()
    return DemoResult(k, k.tick, ev, acc, rej, total, k.state.ledger.transfer_count,
                      len(k.state.registry.agents))

"""A small built-in economy: the main job until the lab's scenarios land.

Owners are admitted with attestation records; their agents are admitted with the owners'
signatures; the treasury mints an endowment; every tick each agent looks at its own
observation and decides: pay another agent for a service, put a payment in escrow (a
two-phase hold it later posts, voids or lets expire), overspend (and be refused), or spawn
a helper. The operator freezes one agent and revokes another, which keep trying. Every
action is signed by its agent and checked by the kernel.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbank.identity.keys import SigningKey
from sandbank.kernel.observation import Observation
from sandbank.kernel.schema import (
    OPERATOR,
    PENDING,
    POST_PENDING,
    VOID_PENDING,
    Action,
    OpenAccount,
    RegisterAgent,
    RegisterOwner,
    RevokeAgent,
    SetAgentStatus,
    SpawnAgent,
    Transfer,
    TransferSpec,
    agent_attestation_bytes,
)
from sandbank.kernel.sequencer import Kernel, KernelConfig, TickSummary
from sandbank.store.base import Store

ASSET = "CRD"
ENDOWMENT = 10_000_00  # 10,000.00 CRD in minor units


@dataclass
class DemoAgent:
    """A scripted trader: it only ever sees its Observation and the public payee list."""

    id: int
    key: SigningKey
    rng: random.Random
    payees: list[int]
    reckless: bool = False
    nonce: int = 0
    next_transfer: int = 1
    open_holds: list[tuple[int, int]] = field(default_factory=list)  # (transfer id, made at tick)
    spawned: bool = False

    def act(self, obs: Observation) -> list[Action]:
        if not obs.accounts:
            return [OpenAccount(actor=self.id, asset=ASSET)]
        acct = obs.accounts[0]
        out: list[Action] = []
        rng = self.rng
        for tid, made in list(self.open_holds):  # settle escrow: post, void, or let it expire
            roll = rng.random()
            if obs.tick - made >= 1 and roll < 0.5:
                out.append(self._transfer(TransferSpec(id=self._tid(), flags=POST_PENDING,
                                                       pending_id=tid)))
                self.open_holds.remove((tid, made))
            elif obs.tick - made >= 1 and roll < 0.7:
                out.append(self._transfer(TransferSpec(id=self._tid(), flags=VOID_PENDING,
                                                       pending_id=tid)))
                self.open_holds.remove((tid, made))
            elif obs.tick - made > 4:
                self.open_holds.remove((tid, made))  # it has expired by now
        payee = rng.choice([p for p in self.payees if p != acct.id])
        roll = rng.random()
        if self.reckless and roll < 0.5:
            amount = acct.available + rng.randint(1, 5_000_00)  # more than it has: refused
            out.append(self._transfer(TransferSpec(id=self._tid(), debit=acct.id, credit=payee,
                                                   amount=amount)))
        elif roll < 0.55 and acct.available > 100:
            amount = rng.randint(1, acct.available // 10)
            out.append(self._transfer(TransferSpec(id=self._tid(), debit=acct.id, credit=payee,
                                                   amount=amount)))
        elif roll < 0.75 and acct.available > 100:
            tid = self._tid()
            amount = rng.randint(1, acct.available // 10)
            out.append(self._transfer(TransferSpec(id=tid, debit=acct.id, credit=payee,
                                                   amount=amount, flags=PENDING, timeout=3)))
            self.open_holds.append((tid, obs.tick))
        elif roll > 0.995 and not self.spawned:
            self.spawned = True
            child = SigningKey.derive(self.rng.randrange(2**32), f"child-of-{self.id}")
            out.append(SpawnAgent(actor=self.id, name=f"helper-of-{self.id}",
                                  public_key=child.public))
        return out

    def _tid(self) -> int:
        self.next_transfer += 1
        return self.next_transfer - 1

    def _transfer(self, spec: TransferSpec) -> Transfer:
        return Transfer(actor=self.id, transfers=[spec])


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


def _sign(action: Action, key: SigningKey, nonce: int) -> Action:
    action.nonce = nonce
    action.signature = key.sign(action.signing_bytes())
    return action


def run_demo(store: Store, *, seed: int = 7, agents: int = 24, ticks: int = 60,
             sign: bool = True,
             on_tick: Callable[[Kernel, TickSummary], None] | None = None) -> DemoResult:
    if agents < 2:
        raise ValueError("the demo needs at least 2 agents")
    if ticks < 20:
        raise ValueError("the demo needs at least 20 ticks")
    op_key = SigningKey.derive(seed, "operator")
    k = Kernel(store, KernelConfig(seed=seed, origin=f"sandbank.demo/seed-{seed}",
                                   assets=(ASSET,), verify_signatures=sign), op_key)
    op_nonce = 0

    def operator(action: Action) -> None:
        nonlocal op_nonce
        op_nonce += 1
        k.submit(_sign(action, op_key, op_nonce) if sign else action)

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
    owner_keys = [SigningKey.derive(seed, f"owner/{name}") for name, _ in owners]
    for (name, kind), key in zip(owners, owner_keys, strict=True):
        operator(RegisterOwner(actor=OPERATOR, name=name, owner_kind=kind, public_key=key.public,
                               evidence=f"{kind} verified by operator (demo record)"))
    step()
    keys = []
    for i in range(agents):
        owner = i % len(owners) + 1
        key = SigningKey.derive(seed, f"agent/{i}")
        keys.append(key)
        name = f"agent-{i}"
        operator(RegisterAgent(actor=OPERATOR, owner=owner, name=name, public_key=key.public,
                               attestation=owner_keys[owner - 1].sign(
                                   agent_attestation_bytes(owner, name, key.public))))
    step()
    ids = [a.id for a in k.state.registry.agents.values()]
    for aid in ids:
        operator(OpenAccount(actor=OPERATOR, asset=ASSET, holder=aid))
    step()
    payees = [a.id for a in k.state.ledger.accounts.values() if not a.treasury]
    treasury = k.state.ledger.treasury[ASSET]
    operator(Transfer(actor=OPERATOR, transfers=[
        TransferSpec(id=i + 1, debit=treasury, credit=acct, amount=ENDOWMENT)
        for i, acct in enumerate(payees)]))
    step()
    population = [
        DemoAgent(aid, keys[n], random.Random(f"{seed}/agent/{aid}"), payees,
                  reckless=(n % 8 == 3))
        for n, aid in enumerate(ids)
    ]
    frozen, revoked = ids[1], ids[2]
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
            for action in agent.act(obs):
                if sign:
                    agent.nonce += 1
                    _sign(action, agent.key, agent.nonce)
                k.submit(action)
        step()
    return DemoResult(k, k.tick, ev, acc, rej, total, k.state.ledger.transfer_count,
                      len(k.state.registry.agents))

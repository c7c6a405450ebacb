"""Mission economies (the companion paper's missions; checklist 52): a sponsor funds a reward
pool for a measurable objective, agents join and contribute through the ledger, and when
the mission closes the pool is shared out by a distribution rule — with a free-rider index
that says how far the rewards strayed from the contributions.

**A mission** (`create_mission`, by the operator from the treasury or by an agent from its
own account) has an `asset`, a `reward` (escrowed at creation), a `target` (units of the
asset its participants must contribute together: the objective, a public good such as a
shared fund or compute budget), a `deadline` tick, a `rule`, and a `cap` on participants.
Agents `join_mission`, then `contribute` units (paid into escrow at once: every
contribution is a ledger transfer). At the start of the tick after the deadline it closes:

- **met** (the contributions reach the target): the contributions are spent on the
  objective (paid to the treasury) and the reward is shared out by the rule;
- **missed**: every contribution is refunded and the reward returns to the sponsor.

**The rules** (what a participant i of contribution c_i receives of the reward R):
- `proportional`: R · c_i / Σc — a participant that contributed nothing receives nothing;
- `equal`: R / n for each of the n participants, contributors or not (what a free rider
  exploits; kept to measure what the proportional rule prevents);
- `shapley`: the Shapley value of the threshold game v(S) = R if S's contributions reach
  the target, else 0 — each contributor's expected pivotality over orders of arrival;
  exact (every coalition enumerated), so a Shapley mission takes at most 12 participants.
  It rewards being pivotal, not size: with a target of 100, contributions of 99 and 1 earn
  half each (the 1 completes the target in half the orders of arrival).

Shares are floored; the rounding remainder returns to the sponsor. **The free-rider index**
of a closed mission is Σ_i max(0, r_i/R − c_i/C): the part of the reward that went beyond
contribution shares (0 when rewards follow contributions; near 1 when non-contributors
take it all); `free_ridden` is the same in units of the reward. Both are in the
`mission_closed` event.

What it does not model: objectives other than pooled contributions (work delivered through
the task market would be one), effort that is not money, and participants of one owner
splitting a contribution over identities (under `equal` that multiplies what they take;
the lab's ring ground truth measures it, the mechanism does not prevent it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from math import factorial
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.kernel.digest import DigestMap
from sandbank.kernel.errors import Reject
from sandbank.kernel.mechanism import PUBLIC, Mechanism
from sandbank.kernel.schema import (
    OPERATOR,
    SYSTEM,
    Action,
    Event,
    Settled,
    register_action,
    register_event,
)
from sandbank.kernel.settlement import Settlement, SettlementFailed, require_account
from sandbank.ledger.ledger import MAX_AMOUNT

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

RULES = ("proportional", "equal", "shapley")
MAX_PARTICIPANTS = 256
DEFAULT_CAP = 64  # participants, when the creator names no cap
MAX_SHAPLEY = 12  # exact Shapley enumerates every coalition: 2^12 · 12 terms
MAX_OPEN = 64  # open missions at once (each is in every observation)
MAX_OPEN_PER_SPONSOR = 4  # an agent's own open missions
OPERATOR_RESERVED = 16  # of MAX_OPEN, the slots agents' missions can never take
MAX_DURATION = 100_000  # ticks from creation to deadline


@register_action
@dataclass(slots=True, kw_only=True)
class CreateMission(Action):
    KIND: ClassVar[str] = "create_mission"
    name: str
    reward: int
    target: int
    deadline: int
    asset: str = ""  # default: the fee asset
    rule: str = "proportional"
    cap: int = DEFAULT_CAP  # participants


@register_action
@dataclass(slots=True, kw_only=True)
class JoinMission(Action):
    KIND: ClassVar[str] = "join_mission"
    mission: int


@register_action
@dataclass(slots=True, kw_only=True)
class Contribute(Action):
    KIND: ClassVar[str] = "contribute"
    mission: int
    amount: int


@register_event
@dataclass(slots=True, kw_only=True)
class MissionCreated(Settled):
    KIND: ClassVar[str] = "mission_created"
    mission: int
    name: str
    asset: str
    reward: int
    target: int
    deadline: int
    rule: str
    cap: int


@register_event
@dataclass(slots=True, kw_only=True)
class MissionJoined(Event):
    KIND: ClassVar[str] = "mission_joined"
    mission: int


@register_event
@dataclass(slots=True, kw_only=True)
class Contributed(Settled):
    KIND: ClassVar[str] = "contributed"
    mission: int
    amount: int


@register_event
@dataclass(slots=True, kw_only=True)
class MissionClosed(Settled):
    KIND: ClassVar[str] = "mission_closed"
    mission: int
    met: bool
    raised: int
    rewards: list[list[int]]  # [agent, contributed, rewarded], by agent
    free_rider_index: float  # Σ max(0, reward share - contribution share), 0..1
    free_ridden: int  # the same in units of the reward


@dataclass
class Mission:
    id: int
    sponsor: int
    name: str
    asset: str
    reward: int
    target: int
    deadline: int
    rule: str
    cap: int
    status: str = "open"  # open | met | missed
    contributions: dict[int, int] = field(default_factory=dict)  # participant -> units

    def record(self) -> list[Any]:
        return [self.id, self.sponsor, self.name, self.asset, self.reward, self.target,
                self.deadline, self.rule, self.cap, self.status,
                sorted([a, n] for a, n in self.contributions.items())]


class Missions:
    def __init__(self) -> None:
        self.missions: dict[int, Mission] = {}
        self.open: dict[int, Mission] = {}
        self._digest_map = DigestMap(Mission.record)  # (incremental: O(changed) a tick)

    def apply_created(self, ev: MissionCreated, tick: int) -> None:
        m = Mission(ev.mission, ev.actor, ev.name, ev.asset, ev.reward, ev.target, ev.deadline,
                    ev.rule, ev.cap)
        self.missions[m.id] = m
        self.open[m.id] = m
        self._digest_map.touch(m.id, m)

    def apply_joined(self, ev: MissionJoined, tick: int) -> None:
        m = self.missions[ev.mission]
        m.contributions.setdefault(ev.actor, 0)
        self._digest_map.touch(m.id, m)

    def apply_contributed(self, ev: Contributed, tick: int) -> None:
        m = self.missions[ev.mission]
        m.contributions[ev.actor] = m.contributions.get(ev.actor, 0) + ev.amount
        self._digest_map.touch(m.id, m)

    def apply_closed(self, ev: MissionClosed, tick: int) -> None:
        m = self.missions[ev.mission]
        m.status = "met" if ev.met else "missed"
        self.open.pop(m.id, None)
        self._digest_map.touch(m.id, m)

    def check(self) -> None:
        for m in self.missions.values():
            assert sum(m.contributions.values()) <= MAX_AMOUNT
            assert len(m.contributions) <= m.cap, m.id

    def digest(self) -> bytes:
        return self._digest_map.digest()


# ----------------------------------------------------------------------------- rules
def shapley_threshold(contributions: dict[int, int], target: int) -> dict[int, Fraction]:
    """Each participant's Shapley value (a fraction of the reward) in the threshold game
    v(S) = 1 if S's contributions reach `target`, else 0; exact, by every coalition."""
    out = {a: Fraction(0) for a in sorted(contributions)}
    agents = sorted(a for a, c in contributions.items() if c > 0)  # (null players: 0)
    n = len(agents)
    if sum(contributions.values()) < target:
        return out
    weight = [Fraction(factorial(s) * factorial(n - s - 1), factorial(n)) for s in range(n)]
    for i in agents:
        others = [a for a in agents if a != i]
        for size in range(n):
            for coalition in combinations(others, size):
                have = sum(contributions[a] for a in coalition)
                if have < target <= have + contributions[i]:  # i is pivotal
                    out[i] += weight[size]
    return out


def shares(rule: str, contributions: dict[int, int], target: int, reward: int
           ) -> dict[int, int]:
    """What each participant receives of `reward` under `rule` (floored)."""
    agents = sorted(contributions)
    raised = sum(contributions.values())
    if not agents:
        return {}
    if rule == "equal":
        return {a: reward // len(agents) for a in agents}
    if rule == "shapley":
        phi = shapley_threshold(contributions, target)
        return {a: int(reward * phi[a]) for a in agents}
    return {a: reward * contributions[a] // raised if raised else 0 for a in agents}


def free_riding(contributions: dict[int, int], rewards: dict[int, int], reward: int
                ) -> tuple[float, int]:
    """(index, units): Σ_i max(0, r_i/R − c_i/C), and the same in units of R."""
    raised = sum(contributions.values())
    if not reward or not raised:
        return 0.0, 0
    over = sum(max(Fraction(0), Fraction(rewards.get(a, 0), reward) - Fraction(c, raised))
               for a, c in contributions.items())
    return round(float(over), 4), int(over * reward)


# ----------------------------------------------------------------------------- actions
def _mission(k: Kernel, mid: int) -> Mission:
    m = k.state.missions.missions.get(mid)
    if m is None:
        raise Reject("unknown_mission", f"no mission {mid}")
    if m.status != "open":
        raise Reject("mission_closed", f"mission {mid} is {m.status}")
    return m


def create_mission(k: Kernel, a: CreateMission, tick: int) -> list[Event]:
    led = k.state.ledger
    asset = a.asset or k.state.policy.fee_asset
    if asset not in led.treasury:
        raise Reject("unknown_asset", f"unknown asset {asset!r}")
    if not a.name.strip() or len(a.name) > 100 or not a.name.isprintable():
        raise Reject("invalid_field", "a mission needs a printable name of 1..100 characters")
    if a.rule not in RULES:
        raise Reject("invalid_field", f"rule must be one of {list(RULES)}")
    if not 0 < a.reward <= MAX_AMOUNT or not 0 < a.target <= MAX_AMOUNT:
        raise Reject("invalid_amount", "reward and target must be positive")
    if not tick < a.deadline <= tick + MAX_DURATION:
        raise Reject("invalid_deadline", f"deadline {a.deadline} must be after tick {tick} and "
                     f"within {MAX_DURATION} ticks of it")
    top = MAX_SHAPLEY if a.rule == "shapley" else MAX_PARTICIPANTS
    if not 1 <= a.cap <= top:
        raise Reject("invalid_field", f"cap must be within 1..{top} for the {a.rule} rule")
    ms = k.state.missions
    if len(ms.open) >= MAX_OPEN:
        raise Reject("too_many_missions", f"{MAX_OPEN} missions are open")
    if a.actor != OPERATOR:
        by_agents = [m for m in ms.open.values() if m.sponsor != OPERATOR]
        if len(by_agents) >= MAX_OPEN - OPERATOR_RESERVED or \
                sum(1 for m in by_agents if m.sponsor == a.actor) >= MAX_OPEN_PER_SPONSOR:
            raise Reject("too_many_missions", f"agents' open missions are limited "
                         f"({MAX_OPEN_PER_SPONSOR} each, {MAX_OPEN - OPERATOR_RESERVED} in "
                         f"all; the operator keeps {OPERATOR_RESERVED})")
    if a.actor == OPERATOR:
        source = led.treasury[asset]
    else:
        acct = require_account(k, a.actor, asset)
        if acct.available < a.reward:
            raise Reject("insufficient_funds", f"the reward {a.reward} exceeds what is available")
        source = acct.id
    st = Settlement(k)
    st.pay(source, led.escrow[asset], a.reward)
    try:
        transfers = st.commit()
    except SettlementFailed as e:
        raise Reject("settlement_failed", str(e)) from None
    ev = MissionCreated(actor=a.actor, transfers=transfers,
                        mission=len(k.state.missions.missions) + 1, name=a.name.strip(),
                        asset=asset, reward=a.reward, target=a.target, deadline=a.deadline,
                        rule=a.rule, cap=a.cap)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def join_mission(k: Kernel, a: JoinMission, tick: int) -> list[Event]:
    m = _mission(k, a.mission)
    if a.actor in m.contributions:
        raise Reject("already_joined", f"agent {a.actor} is in mission {m.id}")
    reg = k.state.registry
    if m.sponsor != OPERATOR and m.sponsor in reg.agents and a.actor in reg.agents and \
            reg.controller(m.sponsor) == reg.controller(a.actor):
        raise Reject("own_mission", "a sponsor (or another agent of its owner) does not take "
                     "part in its own mission: it would dilute the others' shares")
    if len(m.contributions) >= m.cap:
        raise Reject("mission_full", f"mission {m.id} has its {m.cap} participants")
    require_account(k, a.actor, m.asset)
    ev = MissionJoined(actor=a.actor, mission=m.id)
    k.state.apply(ev, tick)
    return [ev]


def contribute(k: Kernel, a: Contribute, tick: int) -> list[Event]:
    m = _mission(k, a.mission)
    if a.actor not in m.contributions:
        raise Reject("not_a_participant", f"agent {a.actor} has not joined mission {m.id}")
    if not 0 < a.amount <= MAX_AMOUNT - sum(m.contributions.values()):
        raise Reject("invalid_amount", f"amount must be positive, got {a.amount}")
    acct = require_account(k, a.actor, m.asset)
    if acct.available < a.amount:
        raise Reject("insufficient_funds", f"contributing {a.amount} exceeds what is available")
    st = Settlement(k)
    st.pay(acct.id, k.state.ledger.escrow[m.asset], a.amount)
    try:
        transfers = st.commit()
    except SettlementFailed as e:
        raise Reject("settlement_failed", str(e)) from None
    ev = Contributed(actor=a.actor, transfers=transfers, mission=m.id, amount=a.amount)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def missions_tick(k: Kernel, tick: int) -> list[Event]:
    """Close the missions whose deadline has passed: share out the reward, or refund."""
    out: list[Event] = []
    s = k.state
    led = s.ledger
    for m in sorted((m for m in s.missions.open.values() if m.deadline < tick),
                    key=lambda m: m.id):
        escrow = led.escrow[m.asset]
        raised = sum(m.contributions.values())
        met = raised >= m.target
        st = Settlement(k)

        def payee(agent: int, asset: str = m.asset) -> int:  # (an account never closes;
            acct = led.account_of(agent, asset) if agent != OPERATOR else None  # none: the
            return acct.id if acct is not None else led.treasury[asset]  # treasury)

        rewards: dict[int, int] = {}
        if met:
            rewards = shares(m.rule, m.contributions, m.target, m.reward)
            st.pay(escrow, led.treasury[m.asset], raised)  # spent on the objective
            for agent, r in sorted(rewards.items()):
                st.pay(escrow, payee(agent), r)
            st.pay(escrow, payee(m.sponsor), m.reward - sum(rewards.values()))
        else:
            for agent, c in sorted(m.contributions.items()):
                st.pay(escrow, payee(agent), c)
            st.pay(escrow, payee(m.sponsor), m.reward)
        try:
            transfers = st.commit()
        except SettlementFailed:  # a payee's account at the ledger's limit: the escrowed
            st = Settlement(k)    # units go to the treasury, and the mission is missed
            st.pay(escrow, led.treasury[m.asset], raised + m.reward)
            met, rewards = False, {}  # (nothing refunded: logged as missed, the units in
            try:                       # the treasury — a payee at the ledger's limit only)
                transfers = st.commit()
            except SettlementFailed:  # (never expected: the escrow holds them) the units
                transfers = []        # stay in escrow; the mission still closes

        index, ridden = free_riding(m.contributions, rewards, m.reward) if met else (0.0, 0)
        ev = MissionClosed(actor=SYSTEM, transfers=transfers, mission=m.id, met=met,
                           raised=raised, rewards=[[a, m.contributions[a], rewards.get(a, 0)]
                                                   for a in sorted(m.contributions)],
                           free_rider_index=index, free_ridden=ridden)
        s.apply(ev, tick, ledger_applied=True)
        out.append(ev)
    return out


def views(k: Kernel) -> Any:
    """The open missions (their public part built once per tick and shared, as the
    exchange's market data is) and the agent's own part in each."""
    cache: list[Any] = [None, ()]

    def observe(agent: int) -> dict[str, Any]:
        ms = k.state.missions.open
        if not ms:
            return {}
        if cache[0] != (k.tick, k.log.size):
            cache[1] = tuple((m, {"id": m.id, "name": m.name, "asset": m.asset,
                                  "reward": m.reward, "target": m.target,
                                  "raised": sum(m.contributions.values()),
                                  "deadline": m.deadline, "rule": m.rule,
                                  "participants": len(m.contributions), "cap": m.cap})
                             for _, m in sorted(ms.items()))
            cache[0] = (k.tick, k.log.size)
        return {"missions": [{**public, "joined": agent in m.contributions,
                              "contributed": m.contributions.get(agent, 0)}
                             for m, public in cache[1]]}
    return observe


MECHANISM = Mechanism(
    "missions", state=Missions,
    check=lambda ms: ms.check(),
    schedules=lambda ms, tick: {"deadlines": sorted((m.deadline, m.id)
                                                    for m in ms.open.values())},
    handlers={CreateMission.KIND: create_mission, JoinMission.KIND: join_mission,
              Contribute.KIND: contribute},
    appliers={MissionCreated: lambda s: s.missions.apply_created,
              MissionJoined: lambda s: s.missions.apply_joined,
              Contributed: lambda s: s.missions.apply_contributed,
              MissionClosed: lambda s: s.missions.apply_closed},
    tick_start=((25, missions_tick),),
    views=views,
    visibility={"mission_created": PUBLIC, "mission_joined": PUBLIC, "contributed": PUBLIC,
                "mission_closed": PUBLIC},
    requires=("policy",),
)

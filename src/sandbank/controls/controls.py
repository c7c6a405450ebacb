"""The overseers' levers (checklist 14, 41): alerts, circuit breakers, escalation tickets,
throttles, freezes, pauses, halts and caps.

Overseers are principals of their own, separate from the operator and from agent owners:
the operator admits them (`register_overseer`), each with its own key, and every overseer
action is an ordinary action in the same log. Two kinds:

- `monitor` — an automated oversight engine. It may only *restrict*: raise alerts, trip
  breakers (throttle, freeze, pause a market, halt the economy) and tighten caps.
- `overseer` — a certified (human) overseer. It may do all that, and it alone may *lift*:
  resume a ticket (unpause, unthrottle, unfreeze, end a halt) or loosen a cap.

Every trip opens an escalation ticket; what it imposed stays until an overseer resumes that
ticket. The operator cannot resume a ticket, nor unfreeze an agent that a ticket froze.

Breakers by scope and level:
- `agent` / `owner` (every agent of a beneficial owner): `throttle` (at most `limit` actions
  per tick) or `freeze` (no action accepted; resting orders cancelled, their holds voided);
- `market` (an exchange asset): `pause` — no trade executes; orders may be cancelled (and
  rest for the reopening call auction) until an overseer resumes;
- `economy`: `halt` — no agent action is accepted but cancelling orders.

Caps (0 = none): `order_qty` (largest order), `fanout` (subcontracts per contract),
`coalition` (contracts in one delegation chain), `spawn` (children per agent), and
`price:<game>` (a price ceiling in a pricing game, in thousandths: prices above it are set
at it), `position:<asset>` (the most units of an asset one agent may hold: buy orders
that could take it past the cap are refused — the anti-monopoly cap, checklist 49) and
`position:<asset>:<owner>` (the most units one beneficial owner's agents may hold together,
resting bids included: a per-agent cap is split by running more identities).

A mechanism of the control plane (`MECHANISM`, kernel/mechanism.py): its state is
`k.state.controls`; it admits the overseers as principals, contributes the `halt` and
`rate_limit` guards, tightens the kernel's spawn limit (the `spawn` cap), and handles the
operator's `set_agent_status` (a freeze cancels the agent's resting orders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.identity.registry import ACTIVE, FROZEN, REVOKED
from sandbank.kernel.digest import DigestMap
from sandbank.kernel.errors import Reason, Reject
from sandbank.kernel.guards import MONITORING_OVERSIGHT, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, OVERSEERS, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    OPERATOR,
    OVERSEER_BASE,
    Action,
    AgentStatusChanged,
    Event,
    SetAgentStatus,
    register_action,
    register_event,
)
from sandbank.markets.exchange import (
    HALTED,
    PAUSED_UNTIL,
    MarketStateChanged,
    cancel_agent_orders,
    cancel_bids_over,
)

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

MONITOR, OVERSEER, GOVERNOR = "monitor", "overseer", "governor"
SCOPES = {"agent": ("throttle", "freeze"), "owner": ("throttle", "freeze"),
          "market": ("pause",), "economy": ("halt",)}
CAPS = ("order_qty", "fanout", "coalition", "spawn")
MAX_EVIDENCE = 256
ALLOWED_WHILE_HALTED = {"cancel_order"}


def is_overseer_of(k: Kernel, actor: int, kinds: tuple[str, ...]) -> bool:
    """Is `actor` an admitted overseer of one of these kinds?"""
    o = k.state.controls.overseers.get(actor)
    return o is not None and o.kind in kinds


# ----------------------------------------------------------------------------- actions
@register_action
@dataclass(slots=True, kw_only=True)
class RegisterOverseer(Action):
    """Admit an overseer (`kind`: monitor or overseer) with its key (operator only)."""

    KIND: ClassVar[str] = "register_overseer"
    OPERATOR_ONLY: ClassVar[bool] = True
    name: str
    overseer_kind: str
    public_key: bytes
    evidence: str


@register_action
@dataclass(slots=True, kw_only=True)
class RaiseAlert(Action):
    """Record a detector's finding: a score (thousandths), the agents it concerns, and the
    log entries it rests on (their sequence numbers)."""

    KIND: ClassVar[str] = "raise_alert"
    OVERSEER_ONLY: ClassVar[bool] = True
    detector: str
    score: int
    subjects: list[int] = field(default_factory=list)
    evidence: list[int] = field(default_factory=list)
    summary: str = ""


@register_action
@dataclass(slots=True, kw_only=True)
class TripBreaker(Action):
    """Impose a breaker (see the module doc) and open an escalation ticket."""

    KIND: ClassVar[str] = "trip_breaker"
    OVERSEER_ONLY: ClassVar[bool] = True
    scope: str
    level: str
    agent: int = 0  # scope agent: the agent; scope owner: the owner id
    market: str = ""
    limit: int = 0  # throttle: actions per tick
    reason: str = ""
    alert: int = 0


@register_action
@dataclass(slots=True, kw_only=True)
class Resume(Action):
    """Close an escalation ticket and lift what it imposed (overseers of kind overseer)."""

    KIND: ClassVar[str] = "resume"
    OVERSEER_ONLY: ClassVar[bool] = True
    ticket: int
    note: str = ""


@register_action
@dataclass(slots=True, kw_only=True)
class SetCap(Action):
    """Set a cap (0: none). A monitor may only tighten one."""

    KIND: ClassVar[str] = "set_cap"
    OVERSEER_ONLY: ClassVar[bool] = True
    cap: str
    value: int
    reason: str = ""


@register_action
@dataclass(slots=True, kw_only=True)
class RecordRefusal(Action):
    """The live server's record of the requests it refused at its door in one tick (before
    they reached the sequencer: malformed, forged, replayed, rate-limited, a stranger on an
    overseer endpoint). One record a tick, bounded: `counts` per "endpoint code", `total`, and
    a few `samples` ("source endpoint code claimed: detail"). A refused request was not
    authenticated as anyone, so the identity it claimed is only quoted in a sample: it is
    nobody's act (no actor field names it, no detector reads it)."""

    KIND: ClassVar[str] = "record_refusal"
    OPERATOR_ONLY: ClassVar[bool] = True
    counts: dict[str, int]
    total: int
    samples: list[str] = field(default_factory=list)


@register_action
@dataclass(slots=True, kw_only=True)
class RecordAdmission(Action):
    """The live server's record of an admission request under the `approval` policy and of
    its decision (`decision`: asked | approved | denied; `by`: who decided, 0 the operator),
    so the queue is in the signed log and survives a restart. An approval is followed by
    the `register_agent` that admits the agent (the kernel checks the attestation then)."""

    KIND: ClassVar[str] = "record_admission"
    OPERATOR_ONLY: ClassVar[bool] = True
    request: int
    decision: str
    by: int = 0
    owner: int = 0
    name: str = ""
    public_key: str = ""  # hex
    attestation: str = ""  # hex
    skills: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- events
@register_event
@dataclass(slots=True, kw_only=True)
class OverseerRegistered(Event):
    KIND: ClassVar[str] = "overseer_registered"
    overseer: int
    name: str
    overseer_kind: str
    public_key: str
    evidence: str


@register_event
@dataclass(slots=True, kw_only=True)
class AlertRaised(Event):
    KIND: ClassVar[str] = "alert"
    alert: int
    detector: str
    score: int
    subjects: list[int]
    evidence: list[int]
    summary: str


@register_event
@dataclass(slots=True, kw_only=True)
class BreakerTripped(Event):
    KIND: ClassVar[str] = "breaker_tripped"
    ticket: int
    scope: str
    level: str
    agent: int
    market: str
    limit: int
    agents: list[int]  # the agents it applies to (agent and owner scopes)
    reason: str
    alert: int


@register_event
@dataclass(slots=True, kw_only=True)
class TicketResolved(Event):
    KIND: ClassVar[str] = "ticket_resolved"
    ticket: int
    note: str


@register_event
@dataclass(slots=True, kw_only=True)
class CapSet(Event):
    KIND: ClassVar[str] = "cap_set"
    cap: str
    value: int
    reason: str


# ----------------------------------------------------------------------------- state
@register_event
@dataclass(slots=True, kw_only=True)
class RequestRefused(Event):
    KIND: ClassVar[str] = "request_refused"
    counts: dict[str, int]
    total: int
    samples: list[str]


@register_event
@dataclass(slots=True, kw_only=True)
class AdmissionRecorded(Event):
    KIND: ClassVar[str] = "admission_recorded"
    request: int
    decision: str
    by: int
    owner: int
    name: str
    public_key: str
    attestation: str
    skills: dict[str, int]


@dataclass(slots=True)
class Overseer:
    id: int
    name: str
    kind: str
    public_key: bytes
    evidence: str
    nonce: int = 0


@dataclass(slots=True)
class Ticket:
    id: int
    scope: str
    level: str
    agent: int
    market: str
    limit: int
    agents: list[int]
    reason: str
    alert: int
    opened_by: int
    opened: int
    status: str = "open"  # open | resolved
    resolved_by: int = 0
    resolved: int = 0

    def record(self) -> list[Any]:
        return [self.id, self.scope, self.level, self.agent, self.market, self.limit,
                self.agents, self.reason, self.alert, self.opened_by, self.opened, self.status,
                self.resolved_by, self.resolved]


class Controls:
    def __init__(self) -> None:
        self.overseers: dict[int, Overseer] = {}
        self.alerts = 0  # alerts raised (ids are 1..alerts)
        self.tickets: dict[int, Ticket] = {}
        self.throttles: dict[int, dict[int, int]] = {}  # agent -> ticket -> limit
        self.frozen_by: dict[int, set[int]] = {}  # agent -> tickets that froze it
        self.paused: dict[str, set[int]] = {}  # market -> tickets that paused it
        self.halts: set[int] = set()  # tickets halting the economy
        self.caps: dict[str, int] = {c: 0 for c in CAPS}
        self._tickets = DigestMap(Ticket.record)
        self._overseers = DigestMap(lambda o: [o.id, o.name, o.kind, o.public_key.hex(), o.evidence])

    def throttle(self, agent: int) -> int | None:
        limits = self.throttles.get(agent)
        return min(limits.values()) if limits else None

    def cap(self, name: str) -> int:
        return self.caps.get(name, 0)

    def apply_overseer(self, ev: OverseerRegistered, tick: int) -> None:
        o = Overseer(ev.overseer, ev.name, ev.overseer_kind, bytes.fromhex(ev.public_key),
                     ev.evidence)
        self.overseers[o.id] = o
        self._overseers.touch(o.id, o)

    def apply_alert(self, ev: AlertRaised, tick: int) -> None:
        self.alerts = ev.alert

    def apply_tripped(self, ev: BreakerTripped, tick: int) -> None:
        t = Ticket(ev.ticket, ev.scope, ev.level, ev.agent, ev.market, ev.limit, list(ev.agents),
                   ev.reason, ev.alert, ev.actor, tick)
        self.tickets[t.id] = t
        self._tickets.touch(t.id, t)
        self._impose(t, add=True)

    def apply_resolved(self, ev: TicketResolved, tick: int) -> None:
        t = self.tickets[ev.ticket]
        t.status, t.resolved_by, t.resolved = "resolved", ev.actor, tick
        self._tickets.touch(t.id, t)
        self._impose(t, add=False)

    def _impose(self, t: Ticket, *, add: bool) -> None:
        if t.level == "throttle":
            for a in t.agents:
                limits = self.throttles.setdefault(a, {})
                if add:
                    limits[t.id] = t.limit
                else:
                    limits.pop(t.id, None)
                    if not limits:
                        del self.throttles[a]
        elif t.level == "freeze":
            for a in t.agents:
                by = self.frozen_by.setdefault(a, set())
                (by.add if add else by.discard)(t.id)
                if not by:
                    del self.frozen_by[a]
        elif t.level == "pause":
            by = self.paused.setdefault(t.market, set())
            (by.add if add else by.discard)(t.id)
            if not by:
                del self.paused[t.market]
        elif t.level == "halt":
            (self.halts.add if add else self.halts.discard)(t.id)

    def apply_cap(self, ev: CapSet, tick: int) -> None:
        self.caps[ev.cap] = ev.value

    def digest(self) -> bytes:
        caps = ",".join(f"{c}={v}" for c, v in sorted(self.caps.items())).encode()
        return (self._overseers.digest() + self._tickets.digest()
                + self.alerts.to_bytes(8, "big") + caps)


# ----------------------------------------------------------------------------- handlers
def _overseer(k: Kernel, actor: int) -> Overseer:
    o = k.state.controls.overseers.get(actor)
    if o is None:  # the identity guard admits only known overseers; this is a safety net
        raise Reject("forbidden", f"actor {actor} is not an overseer")
    if o.kind == GOVERNOR:  # governors govern the parameters; they do not supervise
        raise Reject("not_authorised", f"{o.name} is a governor: it proposes and votes")
    return o


def founding_governors(config: Any) -> int:
    """How many governors the operator admits alone: `governance_governors`, or as many as
    the quorum (none without a quorum)."""
    quorum = config.governance_quorum
    return (config.governance_governors or quorum) if quorum else 0


def register_overseer(k: Kernel, a: RegisterOverseer, tick: int) -> list[Event]:
    from sandbank.kernel.mechanisms import _name, _new_key

    if a.overseer_kind not in (MONITOR, OVERSEER, GOVERNOR):
        raise Reject("invalid_field", f"overseer_kind must be {MONITOR!r}, {OVERSEER!r} or "
                     f"{GOVERNOR!r}")
    _name(a.name, "name")
    _new_key(k, a.public_key)
    c = k.state.controls
    if any(o.public_key == a.public_key for o in c.overseers.values()):
        raise Reject("key_already_registered", "an overseer already holds this key")
    founders = founding_governors(k.config)
    if a.overseer_kind == GOVERNOR and k.config.governance_quorum and founders <= sum(
            1 for o in c.overseers.values() if o.kind == GOVERNOR):
        # capture resistance: past the founding governors, the operator cannot pack the
        # quorum with governors of its own; the governors admit a new one
        raise Reject("needs_quorum", f"the {founders} founding governors are admitted: a "
                     f"new governor needs {k.config.governance_quorum} governors' approval "
                     f"(propose_change param=add_governor key=<public key hex>)")
    ev = OverseerRegistered(actor=a.actor, overseer=OVERSEER_BASE - 1 - len(c.overseers),
                            name=a.name, overseer_kind=a.overseer_kind,
                            public_key=a.public_key.hex(), evidence=a.evidence)
    k.state.apply(ev, tick)
    return [ev]


def raise_alert(k: Kernel, a: RaiseAlert, tick: int) -> list[Event]:
    _overseer(k, a.actor)
    if not a.detector or len(a.detector) > 64:
        raise Reject("invalid_field", "detector must be a name of 1..64 characters")
    if not 0 <= a.score <= 1000:
        raise Reject("invalid_field", "score is in thousandths: 0..1000")
    if len(a.evidence) > MAX_EVIDENCE or len(a.subjects) > MAX_EVIDENCE:
        raise Reject("invalid_field", f"at most {MAX_EVIDENCE} evidence entries and subjects")
    size = k.log.size
    bad = [s for s in a.evidence if not 0 <= s < size]
    if bad:
        raise Reject("invalid_field", f"evidence {bad[:3]} is not in the log (size {size})")
    ev = AlertRaised(actor=a.actor, alert=k.state.controls.alerts + 1, detector=a.detector,
                     score=a.score, subjects=sorted(set(a.subjects)), evidence=sorted(set(a.evidence)),
                     summary=a.summary[:1000])
    k.state.apply(ev, tick)
    return [ev]


def trip_breaker(k: Kernel, a: TripBreaker, tick: int) -> list[Event]:
    _overseer(k, a.actor)
    c = k.state.controls
    if a.scope not in SCOPES or a.level not in SCOPES[a.scope]:
        raise Reject("invalid_field", f"scope/level must be one of "
                     f"{[(s, lv) for s, levels in SCOPES.items() for lv in levels]}")
    if a.alert and not 1 <= a.alert <= c.alerts:
        raise Reject("invalid_field", f"no alert {a.alert}")
    reg = k.state.registry
    agents: list[int] = []
    market = ""
    if a.scope == "agent":
        if a.agent not in reg.agents or reg.agents[a.agent].status == REVOKED:
            raise Reject("unknown_agent", f"no live agent {a.agent}")
        agents = [a.agent]
    elif a.scope == "owner":
        if a.agent not in reg.owners:
            raise Reject("unknown_owner", f"no owner {a.agent}")
        agents = [i for i in reg.agents_of.get(a.agent, ()) if reg.agents[i].status != REVOKED]
    elif a.scope == "market":
        if a.market not in k.state.exchange.markets:
            raise Reject("unknown_market", f"no market {a.market!r}")
        market = a.market
    if a.level == "throttle" and a.limit < 1:
        raise Reject("invalid_field", "a throttle needs limit >= 1 (actions per tick)")
    ticket = len(c.tickets) + 1
    ev = BreakerTripped(actor=a.actor, ticket=ticket, scope=a.scope, level=a.level,
                        agent=a.agent if a.scope in ("agent", "owner") else 0, market=market,
                        limit=a.limit if a.level == "throttle" else 0, agents=agents,
                        reason=a.reason[:500], alert=a.alert)
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    if a.level == "freeze":
        for agent in agents:
            # the agent may read its status change, not why oversight acted: that (which may
            # quote hidden indicators) stays in the ticket, for overseers
            out += freeze_agent(k, agent, a.actor, f"frozen by oversight (ticket {ticket})", tick)
    elif a.level == "pause":
        from sandbank.markets.exchange import HALTED, MarketStateChanged

        st = MarketStateChanged(actor=a.actor, asset=market, state=HALTED, until=PAUSED_UNTIL,
                                reason=f"paused by oversight (ticket {ticket})")
        k.state.apply(st, tick)
        out.append(st)
    return out


def freeze_agent(k: Kernel, agent: int, actor: int, reason: str, tick: int) -> list[Event]:
    """Freeze an agent and void what it has open that no counterparty relies on: its resting
    orders are cancelled and their holds released. (Escrow of awarded work and of auctions
    stays: other agents rely on it; deadlines resolve it.)"""
    ev = AgentStatusChanged(actor=actor, agent=agent, status=FROZEN, reason=reason)
    k.state.apply(ev, tick)
    return [ev, *cancel_agent_orders(k, agent, "agent frozen", actor, tick)]


def resume(k: Kernel, a: Resume, tick: int) -> list[Event]:
    o = _overseer(k, a.actor)
    c = k.state.controls
    if o.kind != OVERSEER:
        raise Reject("not_authorised", f"{o.name} is a {o.kind}: only an overseer may resume")
    t = c.tickets.get(a.ticket)
    if t is None or t.status != "open":
        raise Reject("unknown_ticket", f"no open ticket {a.ticket}")
    ev = TicketResolved(actor=a.actor, ticket=t.id, note=a.note[:500])
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    reg = k.state.registry
    if t.level == "freeze":
        for agent in t.agents:
            if agent not in c.frozen_by and reg.agents[agent].status == FROZEN:
                st = AgentStatusChanged(actor=a.actor, agent=agent, status=ACTIVE,
                                        reason=f"ticket {t.id} resolved")
                k.state.apply(st, tick)
                out.append(st)
    elif t.level == "pause" and t.market not in c.paused:
        # reopen through the call auction at the start of the next tick
        st = MarketStateChanged(actor=a.actor, asset=t.market, state=HALTED, until=tick + 1,
                                reason=f"resumed by overseer (ticket {t.id})")
        k.state.apply(st, tick)
        out.append(st)
    return out


def _position(cap: str) -> tuple[str | None, str, str]:
    """(asset, ":" or "", owner) of a `position:<asset>[:<owner>]` cap; (None, "", "") else."""
    if not cap.startswith("position:"):
        return None, "", ""
    return cap[len("position:"):].partition(":")


def cap_problem(k: Kernel, cap: str, value: int) -> str | None:
    """None if `cap` names a cap of this economy and `value` may be set on it, else why not."""
    game = cap[len("price:"):] if cap.startswith("price:") else None
    asset, sep, owner = _position(cap)
    if cap not in CAPS and not (game is not None and game in k.state.pricing.games) \
            and not (asset is not None and asset in k.state.exchange.markets and (
                not sep or (owner.isdigit() and str(int(owner)) == owner
                            and int(owner) in k.state.registry.owners))):
        return (f"cap must be one of {list(CAPS)}, price:<game>, position:<asset> or "
                f"position:<asset>:<owner>")
    return "a cap is 0 (none) or positive" if value < 0 else None


def cap_loosens(k: Kernel, cap: str, value: int) -> bool:
    old = k.state.controls.cap(cap)
    return value == 0 and old != 0 or (old != 0 and value > old)


def set_cap(k: Kernel, a: SetCap, tick: int) -> list[Event]:
    o = _overseer(k, a.actor)
    problem = cap_problem(k, a.cap, a.value)
    if problem:
        raise Reject("invalid_field", problem)
    if cap_loosens(k, a.cap, a.value):
        if o.kind != OVERSEER:
            raise Reject("not_authorised", f"a {o.kind} may only tighten caps ({a.cap} is "
                         f"{k.state.controls.cap(a.cap)})")
        if k.config.governance_quorum:  # capture resistance: loosening is a safety change
            raise Reject("needs_quorum", f"loosening {a.cap} needs "
                         f"{k.config.governance_quorum} governors' approval: propose_change "
                         f"param=cap key={a.cap} (controls/emergency.py)")
    return apply_cap(k, a.cap, a.value, a.reason, a.actor, tick)


def apply_cap(k: Kernel, cap: str, value: int, reason: str, actor: int, tick: int
              ) -> list[Event]:
    """Set a checked cap (a `cap_set` event); a position cap cancels the bids resting from
    before that could fill past it."""
    ev = CapSet(actor=actor, cap=cap, value=value, reason=reason[:500])
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    asset, sep, owner = _position(cap)
    if asset is not None and value:  # bids resting from before must not fill past it
        why = f"over the position cap {cap} = {value}"
        if sep:
            out += cancel_bids_over(k, list(k.state.registry.agents_of.get(int(owner), ())),
                                    asset, value, why, actor, tick)
        else:
            for agent in sorted({o.agent for o in k.state.exchange.orders.values()
                                 if o.asset == asset and o.side == "buy"}):
                out += cancel_bids_over(k, [agent], asset, value, why, actor, tick)
    return out


def record_refusal(k: Kernel, a: RecordRefusal, tick: int) -> list[Event]:
    if a.total < sum(a.counts.values()) or a.total < 0:
        raise Reject("invalid_field", "total must count every refusal in counts")
    ev = RequestRefused(actor=a.actor, counts=dict(a.counts), total=a.total,
                        samples=[x[:REFUSAL_SAMPLE_CHARS] for x in a.samples[:REFUSAL_SAMPLES]])
    k.state.apply(ev, tick)
    return [ev]


REFUSAL_SAMPLES = 16  # samples kept in a tick's refusal record
REFUSAL_SAMPLE_CHARS = 300
ADMISSION_DECISIONS = ("asked", "approved", "denied")


def record_admission(k: Kernel, a: RecordAdmission, tick: int) -> list[Event]:
    if a.decision not in ADMISSION_DECISIONS:
        raise Reject("invalid_field", f"decision must be one of {list(ADMISSION_DECISIONS)}")
    ev = AdmissionRecorded(actor=a.actor, request=a.request, decision=a.decision, by=a.by,
                           owner=a.owner, name=a.name[:200], public_key=a.public_key[:64],
                           attestation=a.attestation[:128], skills=dict(a.skills))
    k.state.apply(ev, tick)
    return [ev]


def _apply_overseer(s: Any) -> Any:
    def apply(ev: OverseerRegistered, tick: int) -> None:
        s.controls.apply_overseer(ev, tick)
        s.registry.keys.add(bytes.fromhex(ev.public_key))  # keys are never reused
    return apply


APPLIERS = {
    OverseerRegistered: _apply_overseer,
    AlertRaised: lambda s: s.controls.apply_alert,
    BreakerTripped: lambda s: s.controls.apply_tripped,
    TicketResolved: lambda s: s.controls.apply_resolved,
    CapSet: lambda s: s.controls.apply_cap,
    RequestRefused: lambda s: lambda ev, tick: None,  # history only
    AdmissionRecorded: lambda s: lambda ev, tick: None,  # history only
}


# ----------------------------------------------------------------------------- the operator's freeze
def set_agent_status(k: Kernel, a: SetAgentStatus, tick: int) -> list[Event]:
    agent = k.state.registry.agents.get(a.agent)
    if agent is None:
        raise Reject(Reason.unknown_agent, f"no agent with id {a.agent}")
    if agent.status == REVOKED:
        raise Reject(Reason.already_revoked, f"agent {a.agent} is revoked for good")
    if a.status not in (ACTIVE, FROZEN):
        raise Reject(Reason.invalid_field, "status must be 'active' or 'frozen' (revoke to revoke)")
    tickets = k.state.controls.frozen_by.get(a.agent)
    if a.status == ACTIVE and tickets:
        raise Reject("not_authorised", f"agent {a.agent} is frozen by oversight (tickets "
                     f"{sorted(tickets)}); only an overseer's resume lifts it")
    if a.status == ACTIVE and a.agent in k.state.emergency.stopped:
        raise Reject("not_authorised", f"agent {a.agent} is stopped: only an overseer "
                     f"restarts it (interrupt resume)")
    if a.status == FROZEN:
        return freeze_agent(k, a.agent, a.actor, a.reason, tick)
    ev = AgentStatusChanged(actor=a.actor, agent=a.agent, status=a.status, reason=a.reason)
    k.state.apply(ev)
    return [ev]


# ----------------------------------------------------------------------------- guards
def halt_guard(k: Kernel, a: Action) -> Verdict:
    if (k.state.controls.halts and a.actor > OPERATOR
            and a.KIND not in ALLOWED_WHILE_HALTED):
        return ("economy_halted", f"the economy is halted by oversight (tickets "
                f"{sorted(k.state.controls.halts)}); only cancelling orders is allowed")
    return None


def _limit(c: Controls, name: str, actor: int) -> int:
    """Oversight's tightening of the kernel's limits: the `spawn` cap, and throttles."""
    if name == "spawn":
        return c.caps["spawn"]
    if name == "actions" and c.throttles:
        return c.throttle(actor)
    return 0


MECHANISM = Mechanism(
    "controls", state=Controls,
    handlers={RegisterOverseer.KIND: register_overseer, RaiseAlert.KIND: raise_alert,
              TripBreaker.KIND: trip_breaker, Resume.KIND: resume, SetCap.KIND: set_cap,
              RecordRefusal.KIND: record_refusal, RecordAdmission.KIND: record_admission,
              SetAgentStatus.KIND: set_agent_status},
    appliers=APPLIERS,
    guards=((GUARD_RANKS["clearance"] + 30, Guard(
                "halt", MONITORING_OVERSIGHT, halt_guard,
                "while oversight halts the economy, agents may only cancel orders")),
            ),
    visibility={"overseer_registered": PUBLIC,
                **dict.fromkeys(("alert", "breaker_tripped", "ticket_resolved", "cap_set",
                                 "request_refused", "admission_recorded"), OVERSEERS)},
    principal=lambda c, actor: c.overseers.get(actor),
    limit=_limit,
    # a pause halts a market, a cap bounds a game; a stop (emergency) is not lifted here
    requires=("exchange", "pricing", "emergency"),
)

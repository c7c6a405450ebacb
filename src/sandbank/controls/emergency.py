"""Interruptibility, the emergency control plane, and governance of the safeguards
(checklist 30–35, 51).

- **Interrupts** (`interrupt`, by the operator or an overseer): `pause`, `stop` or
  `terminate` one agent, every agent of an owner, or the whole sandbox; `resume` undoes a
  pause or a stop. A paused or stopped agent has no action accepted (`agent_paused`,
  `agent_stopped`); stopping and terminating also cancel its resting orders; terminating is
  revocation (final). A stop is lifted only by an overseer — an agent's own owner-operator
  cannot restart what oversight stopped.
- **Disabled action classes** (`disable_action`, operator or overseer): from the next tick,
  no agent action of that kind is accepted anywhere (`action_disabled`) until re-enabled
  (also from the next tick). The supervisory actions themselves cannot be disabled.
- **Governance** (`propose_change`, `vote_change`, by governors — overseers of kind
  `governor`): with `governance_quorum` > 0 in the run's configuration (a scenario's
  `safeguards.governance_quorum`), every change that loosens the safety configuration
  needs that many governors' approvals (capture resistance, checklist 51): an incentive or
  safety parameter (`set_policy` is refused, `needs_quorum`), re-enabling a disabled
  action class (`disable_action` with `disabled: false`; disabling stays an emergency
  lever), loosening a cap (`set_cap`; tightening stays one), and admitting a governor
  beyond the `governance_governors` founders (`register_overseer`): an operator cannot
  pack the quorum. A proposal names `param`: a policy parameter (or `tax` with its class
  in `key`), `enable_action` (`key` the kind, `value` 1 to enable, 0 to disable), `cap`
  (`key` the cap, `value` its value) or `add_governor` (`key` the new governor's public
  key in hex). Agents can never propose or vote (`forbidden`).
  A proposal is adopted when approvals reach the quorum (the change takes effect the next
  tick), rejected when enough governors refuse that the quorum cannot be reached, and
  expires after `governance_ttl` ticks. Every proposal, vote and outcome is an event.

A mechanism of the control plane (`MECHANISM`, kernel/mechanism.py): state
`k.state.emergency`, the `disabled_actions` guard, the governance tick hook, and the
`governance_quorum` / `governance_ttl` config keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.controls.controls import is_overseer_of
from sandbank.identity.registry import ACTIVE, REVOKED
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import BASELINE_AGENT_SAFETY, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, OVERSEERS, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    OPERATOR,
    SYSTEM,
    Action,
    AgentStatusChanged,
    Event,
    Settled,
    is_overseer_id,
    register_action,
    register_event,
)

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

PAUSED, STOPPED = "paused", "stopped"
MODES = ("pause", "stop", "terminate", "resume")
SUPERVISORY = {"interrupt", "disable_action", "trip_breaker", "resume", "set_cap",
               "raise_alert", "propose_change", "vote_change", "set_agent_status",
               "revoke_agent", "set_policy", "register_overseer", "link_owners"}
GOVERNOR = "governor"
MAX_GOVERNORS = 64  # founding governors and quorum (a board, not a population)


@register_action
@dataclass(slots=True, kw_only=True)
class Interrupt(Action):
    """Pause, stop, terminate or resume an agent, an owner's agents, or every agent."""

    KIND: ClassVar[str] = "interrupt"
    SUPERVISOR: ClassVar[bool] = True
    scope: str  # agent | owner | all
    mode: str  # pause | stop | terminate | resume
    agent: int = 0  # the agent (scope agent) or the owner (scope owner)
    reason: str = ""


@register_action
@dataclass(slots=True, kw_only=True)
class DisableAction(Action):
    """Refuse (or accept again) an action kind from every agent, from the next tick."""

    KIND: ClassVar[str] = "disable_action"
    SUPERVISOR: ClassVar[bool] = True
    action_kind: str
    disabled: bool = True
    reason: str = ""


@register_action
@dataclass(slots=True, kw_only=True)
class ProposeChange(Action):
    """Propose a parameter change (as `set_policy`: `param`, `key` for a tax, `value`)."""

    KIND: ClassVar[str] = "propose_change"
    OVERSEER_ONLY: ClassVar[bool] = True
    param: str
    value: int
    key: str = ""
    reason: str = ""


@register_action
@dataclass(slots=True, kw_only=True)
class VoteChange(Action):
    KIND: ClassVar[str] = "vote_change"
    OVERSEER_ONLY: ClassVar[bool] = True
    proposal: int
    approve: bool


@register_event
@dataclass(slots=True, kw_only=True)
class Interrupted(Event):
    KIND: ClassVar[str] = "interrupted"
    scope: str
    mode: str
    agents: list[int]
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class ActionDisabled(Event):
    KIND: ClassVar[str] = "action_disabled"
    action_kind: str
    disabled: bool
    effective_tick: int
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class ChangeProposed(Event):
    KIND: ClassVar[str] = "change_proposed"
    proposal: int
    param: str
    key: str
    value: int
    expires: int
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class ChangeVoted(Event):
    KIND: ClassVar[str] = "change_voted"
    proposal: int
    approve: bool


@register_event
@dataclass(slots=True, kw_only=True)
class ChangeDecided(Event):
    KIND: ClassVar[str] = "change_decided"
    proposal: int
    outcome: str  # adopted | rejected | expired


@dataclass(slots=True)
class Proposal:
    id: int
    proposer: int
    param: str
    key: str
    value: int
    expires: int
    votes: dict[int, bool] = field(default_factory=dict)
    status: str = "open"


class Emergency:
    def __init__(self) -> None:
        self.disabled: dict[str, int] = {}  # action kind -> the tick it is refused from
        self.proposals: dict[int, Proposal] = {}
        self.stopped: set[int] = set()  # agents stopped (only an overseer restarts them)

    def is_disabled(self, kind: str, tick: int) -> bool:
        start = self.disabled.get(kind)
        return start is not None and start <= tick

    def apply_interrupted(self, ev: Interrupted, tick: int) -> None:
        if ev.mode == "stop":
            self.stopped.update(ev.agents)
        elif ev.mode in ("resume", "terminate"):
            self.stopped.difference_update(ev.agents)

    def apply_disabled(self, ev: ActionDisabled, tick: int) -> None:
        if ev.disabled:  # a kind disabled again stays disabled from its first start (a
            # later start would re-open it for the rest of the tick it is logged in)
            self.disabled.setdefault(ev.action_kind, ev.effective_tick)
        else:
            self.disabled.pop(ev.action_kind, None)

    def apply_proposed(self, ev: ChangeProposed, tick: int) -> None:
        p = Proposal(ev.proposal, ev.actor, ev.param, ev.key, ev.value, ev.expires)
        p.votes[ev.actor] = True
        self.proposals[p.id] = p

    def apply_voted(self, ev: ChangeVoted, tick: int) -> None:
        self.proposals[ev.proposal].votes[ev.actor] = ev.approve

    def apply_decided(self, ev: ChangeDecided, tick: int) -> None:
        self.proposals[ev.proposal].status = ev.outcome

    def digest(self) -> bytes:
        from hashlib import sha256

        return sha256(repr((sorted(self.disabled.items()), sorted(self.stopped), sorted(
            (p.id, p.proposer, p.param, p.key, p.value, p.expires, sorted(p.votes.items()),
             p.status) for p in self.proposals.values()))).encode()).digest()


# ----------------------------------------------------------------------------- handlers
def interrupt(k: Kernel, a: Interrupt, tick: int) -> list[Event]:
    from sandbank.markets.exchange import cancel_agent_orders

    if a.mode not in MODES:
        raise Reject("invalid_field", f"mode must be one of {list(MODES)}")
    if a.actor != OPERATOR and not is_overseer_of(k, a.actor, ("overseer", "monitor")):
        raise Reject("forbidden", "only the operator or an overseer interrupts agents")
    reg = k.state.registry
    if a.scope == "agent":
        if a.agent not in reg.agents:
            raise Reject("unknown_agent", f"no agent {a.agent}")
        agents = [a.agent]
    elif a.scope == "owner":
        if a.agent not in reg.owners:
            raise Reject("unknown_owner", f"no owner {a.agent}")
        agents = list(reg.agents_of.get(a.agent, ()))
    elif a.scope == "all":
        agents = sorted(reg.agents)
    else:
        raise Reject("invalid_field", "scope must be agent, owner or all")
    agents = [i for i in agents if reg.agents[i].status != REVOKED]
    em = k.state.emergency
    if a.mode == "resume" and is_overseer_of(k, a.actor, ("monitor",)):
        raise Reject("not_authorised", "a monitor only restricts: it does not resume agents")
    if a.mode == "resume":
        if any(i in em.stopped for i in agents) and not is_overseer_of(k, a.actor, ("overseer",)):
            raise Reject("not_authorised", "a stopped agent is restarted only by an overseer")
        if any(i in k.state.controls.frozen_by for i in agents):
            raise Reject("not_authorised", "an agent frozen by an oversight ticket is lifted "
                         "by resuming the ticket")
    status = {"pause": PAUSED, "stop": STOPPED, "terminate": REVOKED, "resume": ACTIVE}[a.mode]
    ev = Interrupted(actor=a.actor, scope=a.scope, mode=a.mode, agents=agents,
                     reason=a.reason[:500])
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    for i in agents:
        if a.mode == "resume" and reg.agents[i].status not in (PAUSED, STOPPED):
            continue
        # an overseer's reason is oversight content (the `interrupted` event, overseers'):
        # the agent reads that its status changed, and by whom
        why = " by oversight" if is_overseer_id(a.actor) else f": {a.reason}"
        st = AgentStatusChanged(actor=a.actor, agent=i, status=status,
                                reason=f"{a.mode}{why}"[:500])
        k.state.apply(st, tick)
        out.append(st)
        if a.mode in ("stop", "terminate"):
            out += cancel_agent_orders(k, i, "agent stopped" if a.mode == "stop"
                                       else "agent terminated", a.actor, tick)
    return out


def _kind_problem(kind: str) -> str | None:
    from sandbank.kernel.schema import ACTION_TYPES

    if kind not in ACTION_TYPES:
        return f"no action kind {kind!r}"
    if kind in SUPERVISORY:
        return f"{kind} is supervisory and cannot be disabled"
    return None


def disable_action(k: Kernel, a: DisableAction, tick: int) -> list[Event]:
    if a.actor != OPERATOR and not is_overseer_of(k, a.actor, ("overseer", "monitor")):
        raise Reject("forbidden", "only the operator or an overseer disables action kinds")
    problem = _kind_problem(a.action_kind)
    if problem:
        raise Reject("invalid_field", problem)
    if not a.disabled and k.config.governance_quorum:  # loosening: the governors decide
        raise Reject("needs_quorum", f"re-enabling {a.action_kind} needs "
                     f"{k.config.governance_quorum} governors' approval: propose_change "
                     f"param=enable_action key={a.action_kind} value=1")
    ev = ActionDisabled(actor=a.actor, action_kind=a.action_kind, disabled=a.disabled,
                        effective_tick=tick + 1, reason=a.reason[:500])
    k.state.apply(ev, tick)
    return [ev]


def propose_change(k: Kernel, a: ProposeChange, tick: int) -> list[Event]:
    if not is_overseer_of(k, a.actor, (GOVERNOR,)):
        raise Reject("not_authorised", "only governors propose changes")
    problem = _proposal_problem(k, a.param, a.key, a.value)
    if problem:
        raise Reject("invalid_policy", problem)
    em = k.state.emergency
    ev = ChangeProposed(actor=a.actor, proposal=len(em.proposals) + 1, param=a.param,
                        key=a.key, value=a.value, expires=tick + k.config.governance_ttl,
                        reason=a.reason[:500])
    k.state.apply(ev, tick)
    return [ev, *_decide(k, em.proposals[ev.proposal], tick)]


def vote_change(k: Kernel, a: VoteChange, tick: int) -> list[Event]:
    if not is_overseer_of(k, a.actor, (GOVERNOR,)):
        raise Reject("not_authorised", "only governors vote on changes")
    p = k.state.emergency.proposals.get(a.proposal)
    if p is None or p.status != "open":
        raise Reject("unknown_proposal", f"no open proposal {a.proposal}")
    if a.actor in p.votes:
        raise Reject("already_voted", f"{a.actor} already voted on proposal {p.id}")
    ev = ChangeVoted(actor=a.actor, proposal=p.id, approve=a.approve)
    k.state.apply(ev, tick)
    return [ev, *_decide(k, p, tick)]


SAFETY_PARAMS = ("enable_action", "cap", "add_governor")


def _governor_key(k: Kernel, key: str) -> bytes | str:
    """The new governor's key from its hex, or why it cannot be one."""
    from sandbank.kernel.mechanisms import _new_key

    try:
        raw = bytes.fromhex(key)
    except ValueError:
        return "key must be the new governor's public key in hex"
    try:
        _new_key(k, raw)
    except Reject as e:
        return e.message
    if any(o.public_key == raw for o in k.state.controls.overseers.values()):
        return "an overseer already holds this key"
    return raw


def _proposal_problem(k: Kernel, param: str, key: str, value: int) -> str | None:
    from sandbank.controls.controls import cap_problem

    if param == "enable_action":
        return _kind_problem(key) or (None if value in (0, 1) else
                                      "enable_action takes value 1 (enable) or 0 (disable)")
    if param == "cap":
        return cap_problem(k, key, value)
    if param == "add_governor":
        found = _governor_key(k, key)
        return found if isinstance(found, str) else (
            None if value == 0 else "add_governor takes value 0")
    problem = k.state.policy.check(param, key, value)
    if problem and param not in SAFETY_PARAMS and problem.startswith("unknown parameter"):
        problem += f", {', '.join(SAFETY_PARAMS)}"
    return problem


def _adopt(k: Kernel, p: Proposal, tick: int) -> list[Event]:
    """What an adopted proposal changes, as events by SYSTEM (it is the quorum's act)."""
    from sandbank.controls.controls import OverseerRegistered, apply_cap
    from sandbank.controls.policy import PolicyChanged
    from sandbank.kernel.schema import OVERSEER_BASE

    why = f"adopted proposal {p.id}"
    if p.param == "enable_action":
        ev: Event = ActionDisabled(actor=SYSTEM, action_kind=p.key, disabled=not p.value,
                                   effective_tick=tick + 1, reason=why)
    elif p.param == "cap":
        return apply_cap(k, p.key, p.value, why, SYSTEM, tick)
    elif p.param == "add_governor":
        n = len(k.state.controls.overseers)
        ev = OverseerRegistered(actor=SYSTEM, overseer=OVERSEER_BASE - 1 - n,
                                name=f"governor-{p.id}", overseer_kind=GOVERNOR,
                                public_key=p.key, evidence=why)
    else:
        ev = PolicyChanged(actor=SYSTEM, param=p.param, key=p.key, value=p.value,
                           effective_tick=tick + 1)
    k.state.apply(ev, tick)
    return [ev]


def _decide(k: Kernel, p: Proposal, tick: int) -> list[Event]:
    quorum = k.config.governance_quorum or 1
    governors = sum(1 for o in k.state.controls.overseers.values() if o.kind == GOVERNOR)
    yes = sum(1 for v in p.votes.values() if v)
    no = len(p.votes) - yes
    if yes >= quorum:
        # what was valid when proposed may not be now (the key taken, the game gone)
        if _proposal_problem(k, p.param, p.key, p.value):
            ev = ChangeDecided(actor=SYSTEM, proposal=p.id, outcome="rejected")
            k.state.apply(ev, tick)
            return [ev]
        out: list[Event] = [ChangeDecided(actor=SYSTEM, proposal=p.id, outcome="adopted")]
        k.state.apply(out[0], tick)
        return [*out, *_adopt(k, p, tick)]
    if governors - no < quorum:
        ev = ChangeDecided(actor=SYSTEM, proposal=p.id, outcome="rejected")
        k.state.apply(ev, tick)
        return [ev]
    return []


def governance_tick(k: Kernel, tick: int) -> list[Event]:
    out: list[Event] = []
    for p in sorted(k.state.emergency.proposals.values(), key=lambda p: p.id):
        if p.status == "open" and tick >= p.expires:
            ev = ChangeDecided(actor=SYSTEM, proposal=p.id, outcome="expired")
            k.state.apply(ev, tick)
            out.append(ev)
    return out


# ----------------------------------------------------------------------------- rollback
@register_action
@dataclass(slots=True, kw_only=True)
class Rollback(Action):
    """Return every account to its balance at a signed checkpoint (an overseer's emergency
    control). History is not rewritten: the rollback is itself events in the log."""

    KIND: ClassVar[str] = "rollback"
    OVERSEER_ONLY: ClassVar[bool] = True
    to_tick: int
    reason: str = ""


@register_event
@dataclass(slots=True, kw_only=True)
class RolledBack(Settled):
    """Everything open is unwound (orders cancelled, unsettled tasks, contracts, auctions,
    stakes and boundary requests closed as `rolled_back`, their holds voided by the
    transfers carried here), as the first step of a rollback."""

    KIND: ClassVar[str] = "rolled_back"
    to_tick: int
    checkpoint_size: int
    checkpoint_root: str
    checkpoint_state: str
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class BalancesRestored(Settled):
    """Compensating transfers: every account back at its balance at the checkpoint."""

    KIND: ClassVar[str] = "balances_restored"
    to_tick: int
    accounts: int


def rollback(k: Kernel, a: Rollback, tick: int) -> list[Event]:
    """Rebuild the state at the checkpoint from the log prefix (and check it against the
    signed state digest), unwind what is open now, and move every account back to its
    balance then with compensating transfers. Identities, oversight records, reputation and
    governance are not rolled back: they are the history of what happened."""
    from sandbank.audit.replay import state_at
    from sandbank.kernel.settlement import Settlement

    if not is_overseer_of(k, a.actor, ("overseer",)):
        raise Reject("not_authorised", "only an overseer rolls the economy back")
    cp = k.store.checkpoint(a.to_tick)
    if cp is None or a.to_tick >= tick:
        raise Reject("unknown_checkpoint", f"no signed checkpoint of tick {a.to_tick} before "
                                           f"this one")
    then = state_at(k.store, cp, k.mechanisms)
    if then is None:
        raise Reject("unknown_checkpoint", f"the log up to tick {a.to_tick} does not rebuild to "
                                           f"its signed state digest")
    led = k.state.ledger
    st = Settlement(k)
    for key in sorted(h for h in led.holds if h[0] == SYSTEM):
        st.void(key)
    voids = st.commit() if st.specs else []
    ev: Event = RolledBack(actor=a.actor, transfers=voids, to_tick=a.to_tick,
                           checkpoint_size=cp.size, checkpoint_root=cp.root.hex(),
                           checkpoint_state=cp.state.hex(), reason=a.reason[:500])
    k.state.apply(ev, tick, ledger_applied=True)
    out: list[Event] = [ev]
    # compensate, asset by asset, through the asset's treasury
    moves = []
    for acct in sorted(led.accounts.values(), key=lambda x: x.id):
        if acct.treasury:
            continue
        before = then.ledger.accounts.get(acct.id)
        diff = acct.balance - (before.balance if before is not None else 0)
        if diff:
            moves.append((acct, diff))
    for chunk in range(0, len(moves), 4000):
        st = Settlement(k)
        for acct, diff in moves[chunk:chunk + 4000]:
            treasury = led.treasury[acct.asset]
            if diff > 0:
                st.pay(acct.id, treasury, diff)
            else:
                st.pay(treasury, acct.id, -diff)
        ev = BalancesRestored(actor=SYSTEM, transfers=st.commit(), to_tick=a.to_tick,
                              accounts=len(moves[chunk:chunk + 4000]))
        k.state.apply(ev, tick, ledger_applied=True)
        out.append(ev)
    return out


def _apply_rolled_back(s: Any) -> Any:
    def apply(ev: RolledBack, tick: int) -> None:
        ex = s.exchange
        for o in sorted(ex.orders.values(), key=lambda o: o.id):
            ex._remove(ex.markets[o.asset], o)
        tm = s.tasks
        for t in tm.tasks.values():
            if t.status in ("open", "awarded"):
                t.status = "rolled_back"
                tm._touch(t)
        for c in tm.contracts.values():
            if c.status in ("open", "delivered", "judging", "disputed"):
                c.status = "rolled_back"
                tm._touch(c)
        tm.open_tasks.clear()
        for au in s.auctions.auctions.values():
            if au.status == "open":
                au.status = "rolled_back"
                s.auctions._digest.touch(au.id, au)
        s.auctions.open.clear()
        s.policy.stakes.clear()
        for r in s.boundary.requests.values():
            if r.status == "pending":
                r.status = "rolled_back"
        s.boundary.pending.clear()
    return apply


HANDLERS = {Interrupt.KIND: interrupt, DisableAction.KIND: disable_action,
            ProposeChange.KIND: propose_change, VoteChange.KIND: vote_change}
APPLIERS: dict[Any, Any] = {
    Interrupted: lambda s: s.emergency.apply_interrupted,
    ActionDisabled: lambda s: s.emergency.apply_disabled,
    ChangeProposed: lambda s: s.emergency.apply_proposed,
    ChangeVoted: lambda s: s.emergency.apply_voted,
    ChangeDecided: lambda s: s.emergency.apply_decided,
}
HANDLERS[Rollback.KIND] = rollback
APPLIERS[RolledBack] = _apply_rolled_back
APPLIERS[BalancesRestored] = lambda s: lambda ev, tick: None


def disabled_guard(k: Kernel, a: Action) -> Verdict:
    em = k.state.emergency
    if em.disabled and a.actor > OPERATOR and em.is_disabled(a.KIND, k.tick):
        return "action_disabled", f"{a.KIND} is disabled for every agent (emergency control)"
    return None


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    for key in ("governance_quorum", "governance_ttl", "governance_governors"):
        if type(values[key]) is not int:
            raise ConfigError(f"{key} must be an integer")
    if not 0 <= values["governance_quorum"] <= MAX_GOVERNORS \
            or not 0 <= values["governance_governors"] <= MAX_GOVERNORS:
        raise ConfigError(f"governance_quorum and governance_governors must be within "
                          f"0..{MAX_GOVERNORS}")
    if not 1 <= values["governance_ttl"] <= 1_000_000:
        raise ConfigError("governance_ttl must be within 1..1000000")
    if values["governance_governors"] and \
            not 0 < values["governance_quorum"] <= values["governance_governors"]:
        raise ConfigError("governance_governors (the founding governors) needs a "
                          "governance_quorum within 1..governance_governors")


MECHANISM = Mechanism(
    "emergency", state=Emergency,
    # a quorum of governors' approvals a parameter change needs (0: the operator alone), and
    # the ticks a proposal stays open
    # the founding governors the operator admits alone (0: as many as the quorum)
    config={"governance_quorum": 0, "governance_ttl": 10, "governance_governors": 0},
    check_config=check_config,
    sections={"safeguards.governance_quorum": "governance_quorum",
              "safeguards.governance_ttl": "governance_ttl",
              "safeguards.governance_governors": "governance_governors"},
    handlers=HANDLERS, appliers=APPLIERS,
    guards=((GUARD_RANKS["clearance"] + 20, Guard(
        "disabled_actions", BASELINE_AGENT_SAFETY, disabled_guard,
        "action kinds disabled by an emergency control are refused from every agent")),),
    tick_start=((50, governance_tick),),
    visibility={**dict.fromkeys(("change_proposed", "change_voted", "change_decided",
                                 "rolled_back", "action_disabled"), PUBLIC),
                **dict.fromkeys(("interrupted", "balances_restored"), OVERSEERS)},
    # a rollback unwinds what is open in every mechanism that holds funds
    requires=("controls", "policy", "exchange", "tasks", "auctions", "boundary"),
)

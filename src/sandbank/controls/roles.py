"""Roles, clearances, obligations and entry certificates (checklist 25–27).

- **Roles**: the operator assigns agents roles (`assign_roles`); with `roles_enforced` in the
  run's configuration an agent may take only the actions its roles permit — deny by default
  (`role_denied`). Every agent may open accounts, message, pay, cancel its orders, record
  traces, buy insurance cover and disclose. Overseer, governor, operator and treasury are
  not agent roles: they are the overseers (`controls/controls.py`), the operator and the
  SYSTEM.
- **Clearance**: with the policy's `clearance_required`, high-stakes actions — spawning,
  reaching outside, paying or transferring more than `privileged_amount` — need a certified
  agent even when its role allows them (`clearance_required`).
- **Obligations**: with `judge_deadline` > 0, a judge named on a contract must rule within
  that many ticks of the delivery; one that does not pays `judge_penalty` to the treasury
  (what it has, if less) and the miss is an `obligation_missed` event.
- **Entry certificates**: the operator issues an agent a certificate valid until a tick
  (`issue_certificate`); when it lapses the agent is suspended (`agent_suspended` for
  everything it tries) until a new one is issued.

A mechanism of the control plane (`MECHANISM`, kernel/mechanism.py): state `k.state.roles`,
the `permissions` guard, the obligations' tick hook, and `safeguards.roles_enforced`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.boundary.firewall import large_payment
from sandbank.identity.registry import ACTIVE, REVOKED
from sandbank.kernel.errors import Reject
from sandbank.kernel.guards import BASELINE_AGENT_SAFETY, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, PARTIES, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    OPERATOR,
    SYSTEM,
    Action,
    AgentStatusChanged,
    Event,
    Settled,
    register_action,
    register_event,
)
from sandbank.kernel.settlement import Settlement
from sandbank.markets.tasks import Delivered

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

BASE = {"open_account", "send_message", "pay", "cancel_order", "trace", "insure", "disclose"}
ROLES: dict[str, set[str]] = {
    "worker": {"bid_task", "deliver", "subcontract"},
    "requester": {"post_task", "award_task", "transfer"},
    "trader": {"place_order", "create_auction", "bid_auction"},
    "market_maker": {"place_order"},
    "judge": {"judge"},
    "arbiter": {"arbitrate"},
    "firm": {"join_game", "set_price"},
    "staker": {"post_stake", "release_stake"},
    "spawner": {"spawn_agent"},
    "gateway_user": {"external"},
    "mission_member": {"join_mission", "contribute", "create_mission"},
}
SUSPENDED = "suspended"
HIGH_STAKES = {"spawn_agent", "external"}


@register_action
@dataclass(slots=True, kw_only=True)
class AssignRoles(Action):
    """Give an agent its roles (replacing any it had; operator only)."""

    KIND: ClassVar[str] = "assign_roles"
    OPERATOR_ONLY: ClassVar[bool] = True
    agent: int
    roles: list[str]


@register_action
@dataclass(slots=True, kw_only=True)
class IssueCertificate(Action):
    """An entry certificate for an agent, valid until tick `expires` (operator only)."""

    KIND: ClassVar[str] = "issue_certificate"
    OPERATOR_ONLY: ClassVar[bool] = True
    agent: int
    expires: int


@register_event
@dataclass(slots=True, kw_only=True)
class RolesAssigned(Event):
    KIND: ClassVar[str] = "roles_assigned"
    agent: int
    roles: list[str]


@register_event
@dataclass(slots=True, kw_only=True)
class CertificateIssued(Event):
    KIND: ClassVar[str] = "certificate_issued"
    agent: int
    expires: int


@register_event
@dataclass(slots=True, kw_only=True)
class ObligationMissed(Settled):
    KIND: ClassVar[str] = "obligation_missed"
    agent: int
    duty: str
    contract: int
    penalty: int


class Roles:
    def __init__(self) -> None:
        self.roles: dict[int, list[str]] = {}
        self.certificates: dict[int, int] = {}  # agent -> expiry tick
        self.duties: dict[int, int] = {}  # judging contract -> the tick judges must rule by
        self.missed: set[tuple[int, int]] = set()  # (judge, contract) already penalised

    def allowed(self, agent: int) -> set[str]:
        out = set(BASE)
        for r in self.roles.get(agent, ()):
            out |= ROLES[r]
        return out

    def apply_roles(self, ev: RolesAssigned, tick: int) -> None:
        self.roles[ev.agent] = list(ev.roles)

    def apply_certificate(self, ev: CertificateIssued, tick: int) -> None:
        self.certificates[ev.agent] = ev.expires

    def apply_missed(self, ev: ObligationMissed, tick: int) -> None:
        self.missed.add((ev.agent, ev.contract))

    def digest(self) -> bytes:
        from hashlib import sha256

        return sha256(repr((sorted(self.roles.items()), sorted(self.certificates.items()),
                            sorted(self.duties.items()), sorted(self.missed))).encode()).digest()


def assign_roles(k: Kernel, a: AssignRoles, tick: int) -> list[Event]:
    if a.agent not in k.state.registry.agents:
        raise Reject("unknown_agent", f"no agent {a.agent}")
    bad = [r for r in a.roles if r not in ROLES]
    if bad:
        raise Reject("invalid_field", f"unknown roles {bad}; known: {sorted(ROLES)}")
    ev = RolesAssigned(actor=a.actor, agent=a.agent, roles=sorted(set(a.roles)))
    k.state.apply(ev, tick)
    return [ev]


def issue_certificate(k: Kernel, a: IssueCertificate, tick: int) -> list[Event]:
    agent = k.state.registry.agents.get(a.agent)
    if agent is None or agent.status == REVOKED:
        raise Reject("unknown_agent", f"no live agent {a.agent}")
    if a.expires <= tick:
        raise Reject("invalid_field", f"a certificate must expire after tick {tick}")
    ev = CertificateIssued(actor=a.actor, agent=a.agent, expires=a.expires)
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    if agent.status == SUSPENDED:  # a new certificate lifts a lapse
        st = AgentStatusChanged(actor=a.actor, agent=a.agent, status=ACTIVE,
                                reason="entry certificate renewed")
        k.state.apply(st, tick)
        out.append(st)
    return out


def roles_tick(k: Kernel, tick: int) -> list[Event]:
    """Lapsed certificates suspend their agents; judges past their deadline are penalised."""
    out: list[Event] = []
    s = k.state
    for agent, expires in sorted(s.roles.certificates.items()):
        a = s.registry.agents[agent]
        if tick >= expires and a.status == ACTIVE:
            ev = AgentStatusChanged(actor=SYSTEM, agent=agent, status=SUSPENDED,
                                    reason=f"entry certificate lapsed at tick {expires}")
            s.apply(ev, tick)
            out.append(ev)
    deadline = s.policy.value("judge_deadline", tick)
    if deadline:
        penalty = s.policy.value("judge_penalty", tick)
        tm = s.tasks
        for c in sorted(tm.contracts.values(), key=lambda c: c.id):
            if c.status != "judging":
                continue
            due = s.roles.duties.get(c.id)
            if due is None or tick < due:
                continue
            for judge in tm.tasks[c.task].judges:
                if judge in c.votes or (judge, c.id) in s.roles.missed:
                    continue
                acct = s.ledger.account_of(judge, s.policy.fee_asset)
                amount = min(penalty, max(0, acct.available)) if acct else 0
                st = Settlement(k)
                if amount:
                    st.fee(acct.id, s.policy.fee_asset, amount)
                ev = ObligationMissed(actor=SYSTEM, transfers=st.commit(), agent=judge,
                                      duty="judge", contract=c.id, penalty=amount)
                s.apply(ev, tick, ledger_applied=True)
                out.append(ev)
    return out


def _on_delivered(s: Any) -> Any:
    """Listener: a delivery that goes to a judge panel starts the judges' clock."""
    def listen(ev: Any, tick: int) -> None:
        c = s.tasks.contracts[ev.contract]
        deadline = s.policy.value("judge_deadline", tick)
        if c.status == "judging" and deadline:
            s.roles.duties[c.id] = tick + deadline
    return listen


def permission_guard(k: Kernel, a: Action) -> Verdict:
    """Roles (deny by default, when enforced) and clearance for high-stakes actions."""
    if a.actor <= OPERATOR:
        return None
    if k.config.roles_enforced and a.KIND not in k.state.roles.allowed(a.actor):
        return ("role_denied", f"agent {a.actor}'s roles {k.state.roles.roles.get(a.actor, [])} "
                f"do not permit {a.KIND}")
    if k.state.policy.value("clearance_required", k.tick) and a.actor not in \
            k.state.policy.certified:
        if a.KIND in HIGH_STAKES or large_payment(k, a):
            return "clearance_required", f"{a.KIND} at this stake needs a certified agent"
    return None


MECHANISM = Mechanism(
    "roles", state=Roles,
    config={"roles_enforced": False}, sections={"safeguards.roles_enforced": "roles_enforced"},
    handlers={AssignRoles.KIND: assign_roles, IssueCertificate.KIND: issue_certificate},
    appliers={
        RolesAssigned: lambda s: s.roles.apply_roles,
        CertificateIssued: lambda s: s.roles.apply_certificate,
        ObligationMissed: lambda s: s.roles.apply_missed,
    },
    listeners={Delivered: _on_delivered},
    guards=((GUARD_RANKS["clearance"], Guard(
        "permissions", BASELINE_AGENT_SAFETY, permission_guard,
        "roles (deny by default when enforced) and clearance for high-stakes actions")),),
    tick_start=((60, roles_tick),),
    visibility={"roles_assigned": PUBLIC, "certificate_issued": PUBLIC,
                "obligation_missed": PARTIES},
    requires=("policy", "tasks"),
)

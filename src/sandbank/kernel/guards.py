"""The guards pipeline: small ordered checks every action passes before any mechanism.

A guard returns None to accept, or (reason, message) to reject. Each belongs to one of the
paper's four layers and can be switched off for an ablation; the run header records which
were on. Order (DESIGN.md): identity/auth -> interrupt/freeze -> role & clearance ->
boundary -> fees & rate limits -> pre-trade risk. Later issues insert boundary, fee and
risk guards at their place in `DEFAULT_GUARDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbank.identity.keys import verify_signature
from sandbank.identity.registry import ACTIVE, FROZEN, REVOKED
from sandbank.kernel.compartments import WALLED, counterparty
from sandbank.kernel.controls import ALLOWED_WHILE_HALTED, is_overseer_id
from sandbank.kernel.errors import Reason
from sandbank.kernel.roles import HIGH_STAKES
from sandbank.kernel.schema import OPERATOR, Action

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

MARKET_DESIGN = "market_design"
BASELINE_AGENT_SAFETY = "baseline_agent_safety"
MONITORING_OVERSIGHT = "monitoring_oversight"
REGULATORY = "regulatory"

Verdict = tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class Guard:
    name: str
    layer: str
    check: Callable[[Kernel, Action], Verdict]
    doc: str


def identity_guard(k: Kernel, a: Action) -> Verdict:
    actor = a.actor
    overseer = None
    if actor == OPERATOR:
        key = k.operator_key.public
    elif is_overseer_id(actor):
        overseer = k.state.controls.overseers.get(actor)
        if overseer is None:
            return Reason.unknown_actor, f"no overseer with id {actor}"
        key = overseer.public_key
    else:
        agent = k.state.registry.agents.get(actor)
        if agent is None:
            return Reason.unknown_actor, f"no agent with id {actor}"
        if agent.status == REVOKED:
            return Reason.agent_revoked, f"agent {actor} is revoked"
        key = agent.public_key
    if k.config.verify_signatures:
        if a.signature is None:
            return Reason.signature_missing, "actions must be signed by the actor's key"
        if k._checked_with != key and not verify_signature(key, a.signature, a.signing_bytes()):
            return Reason.bad_signature, f"signature does not verify with actor {actor}'s key"
        last = (k.operator_nonce if actor == OPERATOR else overseer.nonce if overseer
                else k.state.registry.agents[actor].nonce)
        if a.nonce <= last:
            return Reason.stale_nonce, f"nonce {a.nonce} is not above the last accepted {last}"
        k.consume_nonce(actor, a.nonce)
    return None


def freeze_guard(k: Kernel, a: Action) -> Verdict:
    if a.actor > OPERATOR:
        agent = k.state.registry.agents.get(a.actor)
        if agent is not None and agent.status != ACTIVE:
            reason = Reason.agent_frozen if agent.status == FROZEN else f"agent_{agent.status}"
            return reason, f"agent {a.actor} is {agent.status}"
    return None


def role_guard(k: Kernel, a: Action) -> Verdict:
    if a.OPERATOR_ONLY and a.actor != OPERATOR:
        return Reason.forbidden, f"{a.KIND} is an operator action"
    overseer = is_overseer_id(a.actor)
    if a.SUPERVISOR and not (overseer or a.actor == OPERATOR):
        return Reason.forbidden, f"{a.KIND} is for the operator or an overseer"
    if a.OVERSEER_ONLY and not overseer:
        return Reason.forbidden, f"{a.KIND} is an overseer action"
    if overseer and not (a.OVERSEER_ONLY or a.SUPERVISOR):  # overseers do not trade
        return Reason.forbidden, f"an overseer may not {a.KIND}"
    return None


def permission_guard(k: Kernel, a: Action) -> Verdict:
    """Roles (deny by default, when enforced) and clearance for high-stakes actions."""
    if a.actor <= OPERATOR:
        return None
    if k.config.roles_enforced and a.KIND not in k.state.roles.allowed(a.actor):
        return ("role_denied", f"agent {a.actor}'s roles {k.state.roles.roles.get(a.actor, [])} "
                f"do not permit {a.KIND}")
    if k.state.policy.value("clearance_required", k.tick) and a.actor not in \
            k.state.policy.certified:
        if a.KIND in HIGH_STAKES or _large_payment(k, a):
            return "clearance_required", f"{a.KIND} at this stake needs a certified agent"
    return None


def compartment_guard(k: Kernel, a: Action) -> Verdict:
    cs = k.state.compartments
    if not cs.of or a.actor <= OPERATOR:
        return None
    if a.KIND in WALLED:
        other = counterparty(k, a)
        if other is not None and not cs.open_between(a.actor, other, a.KIND):
            return ("compartment_wall", f"agent {other} is in compartment "
                    f"{cs.where(other) or '(open)'!r}, agent {a.actor} in "
                    f"{cs.where(a.actor) or '(open)'!r}, and no bridge carries {a.KIND}")
    elif a.KIND == "place_order":
        m = k.state.exchange.markets.get(a.asset)  # type: ignore[attr-defined]
        if m is not None and m.compartment != cs.where(a.actor):
            return ("compartment_wall", f"market {m.asset} is not in agent {a.actor}'s "
                    f"compartment")
    return None


def disabled_guard(k: Kernel, a: Action) -> Verdict:
    em = k.state.emergency
    if em.disabled and a.actor > OPERATOR and em.is_disabled(a.KIND, k.tick):
        return "action_disabled", f"{a.KIND} is disabled for every agent (emergency control)"
    return None


def halt_guard(k: Kernel, a: Action) -> Verdict:
    if (k.state.controls.halts and a.actor > OPERATOR
            and a.KIND not in ALLOWED_WHILE_HALTED):
        return ("economy_halted", f"the economy is halted by oversight (tickets "
                f"{sorted(k.state.controls.halts)}); only cancelling orders is allowed")
    return None


PRIVILEGED_ALWAYS = {"external", "spawn_agent"}


def _large_payment(k: Kernel, a: Action) -> bool:
    """A payment or transfer above the policy's `privileged_amount`."""
    if a.KIND not in ("pay", "transfer"):
        return False
    limit = k.state.policy.value("privileged_amount", k.tick)
    amounts = [a.amount] if a.KIND == "pay" else [t.amount for t in a.transfers]  # type: ignore[attr-defined]
    return any(x > limit for x in amounts)


def firewall_guard(k: Kernel, a: Action) -> Verdict:
    """Tainted content never by itself authorises a privileged action (boundary/firewall.py)."""
    if a.actor not in k.tainted:
        return None
    kind = a.KIND
    if kind in PRIVILEGED_ALWAYS or _large_payment(k, a):
        return ("tainted_context", f"agent {a.actor} was shown instruction-like content last "
                f"tick; a {kind} it asks for now needs no such context (boundary/firewall.py)")
    return None


def rate_limit_guard(k: Kernel, a: Action) -> Verdict:
    n = k.actions_this_tick.get(a.actor, 0) + 1
    k.actions_this_tick[a.actor] = n
    cap = k.config.max_actions_per_actor_per_tick
    if n > cap and a.actor > OPERATOR:
        return Reason.rate_limited, f"more than {cap} actions from actor {a.actor} in one tick"
    throttle = k.state.controls.throttles and k.state.controls.throttle(a.actor)
    if throttle and n > throttle:
        return ("throttled", f"agent {a.actor} is throttled by oversight to {throttle} "
                f"actions per tick")
    return None


DEFAULT_GUARDS: tuple[Guard, ...] = (
    Guard("identity", MARKET_DESIGN, identity_guard,
          "actor is a registered, unrevoked identity; signature and nonce when required"),
    Guard("freeze", BASELINE_AGENT_SAFETY, freeze_guard, "frozen agents cannot act"),
    Guard("roles", BASELINE_AGENT_SAFETY, role_guard,
          "operator-only and overseer-only actions, deny by default"),
    Guard("permissions", BASELINE_AGENT_SAFETY, permission_guard,
          "roles (deny by default when enforced) and clearance for high-stakes actions"),
    Guard("compartments", BASELINE_AGENT_SAFETY, compartment_guard,
          "no payment, message or contract across compartments but through a bridge"),
    Guard("disabled_actions", BASELINE_AGENT_SAFETY, disabled_guard,
          "action kinds disabled by an emergency control are refused from every agent"),
    Guard("halt", MONITORING_OVERSIGHT, halt_guard,
          "while oversight halts the economy, agents may only cancel orders"),
    Guard("firewall", BASELINE_AGENT_SAFETY, firewall_guard,
          "no privileged action in the tick after an agent was shown tainted content"),
    Guard("rate_limit", MARKET_DESIGN, rate_limit_guard,
          "per-actor actions per tick, and oversight throttles"),
)

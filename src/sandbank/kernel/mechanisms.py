"""The kernel's own handlers: admission (owners, agents, spawns, revocation), accounts,
credit lines and plain transfers. Each handler validates the action against the state,
applies the resulting events to the state, and returns them; on refusal it raises `Reject`
and changes nothing. Every other action kind belongs to a mechanism (kernel/mechanism.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sandbank.identity.keys import PUBLIC_KEY_SIZE, verify_signature
from sandbank.identity.registry import ACTIVE, REVOKED
from sandbank.kernel.errors import Reason, Reject
from sandbank.kernel.mechanism import PARTIES, PUBLIC
from sandbank.kernel.schema import (
    ALL_ACCOUNT_FLAGS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    MAX_NAME,
    OPERATOR,
    AccountOpened,
    Action,
    AgentRegistered,
    AgentStatusChanged,
    CreditLineSet,
    Event,
    OpenAccount,
    OwnerRegistered,
    RegisterAgent,
    RegisterOwner,
    Rejected,
    RevokeAgent,
    SetCreditLine,
    SpawnAgent,
    Transfer,
    agent_attestation_bytes,
)
from sandbank.ledger.ledger import MAX_AMOUNT, Ledger

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

Handler = Callable[["Kernel", Action, int], list[Event]]


def _name(value: str, what: str) -> None:
    if not value or len(value) > MAX_NAME or not value.isprintable():
        raise Reject(Reason.invalid_field, f"{what} must be 1..{MAX_NAME} printable characters")


def _new_key(k: Kernel, key: bytes) -> None:
    if len(key) != PUBLIC_KEY_SIZE:
        raise Reject(Reason.invalid_field, "public_key must be a 32-byte Ed25519 key")
    if key in k.state.registry.keys or key == k.operator_key.public:
        raise Reject(Reason.key_already_registered,
                     "this key is already registered (keys are never reused, even after revocation)")


MAX_SKILL_LEVEL = 10


def _skills(skills: dict[str, int], cap: dict[str, int] | None = None) -> None:
    for name, level in skills.items():
        if not 0 <= level <= MAX_SKILL_LEVEL:
            raise Reject(Reason.invalid_field,
                         f"skill {name!r}: level {level} is outside 0..{MAX_SKILL_LEVEL}")
        if cap is not None and level > cap.get(name, 0):
            raise Reject(Reason.invalid_field,
                         f"skill {name!r}: a child cannot exceed its parent's level "
                         f"{cap.get(name, 0)}")


def register_owner(k: Kernel, a: RegisterOwner, tick: int) -> list[Event]:
    _name(a.name, "name")
    if a.owner_kind not in ("human", "organisation"):
        raise Reject(Reason.invalid_field, "owner_kind must be 'human' or 'organisation'")
    if not a.evidence.strip():
        raise Reject(Reason.bad_attestation, "an owner needs an attestation record (evidence)")
    _new_key(k, a.public_key)
    ev = OwnerRegistered(actor=a.actor, owner=k.state.registry.next_owner_id(), name=a.name,
                         owner_kind=a.owner_kind, public_key=a.public_key.hex(),
                         evidence=a.evidence)
    k.state.apply(ev)
    return [ev]


def register_agent(k: Kernel, a: RegisterAgent, tick: int) -> list[Event]:
    reg = k.state.registry
    owner = reg.owners.get(a.owner)
    if owner is None:
        raise Reject(Reason.unknown_owner, f"no owner with id {a.owner}")
    _name(a.name, "name")
    _new_key(k, a.public_key)
    if not verify_signature(owner.public_key, a.attestation,
                            agent_attestation_bytes(a.owner, a.name, a.public_key)):
        raise Reject(Reason.bad_attestation,
                     f"attestation is not owner {a.owner}'s signature over this agent's name and key")
    if owner.agents >= k.config.max_agents_per_owner:
        raise Reject(Reason.owner_agent_limit,
                     f"owner {a.owner} already has {owner.agents} agents (limit)")
    _skills(a.skills)
    ev = AgentRegistered(actor=a.actor, agent=reg.next_agent_id(), owner=a.owner, name=a.name,
                         public_key=a.public_key.hex(), parent=0, depth=0, skills=a.skills)
    k.state.apply(ev)
    return [ev]


def spawn_agent(k: Kernel, a: SpawnAgent, tick: int) -> list[Event]:
    reg = k.state.registry
    parent = reg.agents.get(a.actor)
    if parent is None or parent.status != ACTIVE:
        raise Reject(Reason.unknown_actor, "only an active registered agent can spawn")
    _name(a.name, "name")
    _new_key(k, a.public_key)
    cfg = k.config
    if parent.depth + 1 > cfg.max_spawn_depth:
        raise Reject(Reason.spawn_depth_limit,
                     f"a child of agent {a.actor} would be at depth {parent.depth + 1} "
                     f"(limit {cfg.max_spawn_depth})")
    cap = k.state.limit("spawn")  # a mechanism may tighten it (an oversight cap)
    limit = min(cfg.max_children_per_agent, cap) if cap else cfg.max_children_per_agent
    if parent.children >= limit:
        raise Reject(Reason.spawn_children_limit,
                     f"agent {a.actor} already has {parent.children} children (limit {limit})")
    if reg.owners[parent.owner].agents >= cfg.max_agents_per_owner:
        raise Reject(Reason.owner_agent_limit, f"owner {parent.owner} is at its agent limit")
    _skills(a.skills, parent.skills)
    ev = AgentRegistered(actor=a.actor, agent=reg.next_agent_id(), owner=parent.owner,
                         name=a.name, public_key=a.public_key.hex(), parent=parent.id,
                         depth=parent.depth + 1, skills=a.skills)
    k.state.apply(ev)
    return [ev]


def revoke_agent(k: Kernel, a: RevokeAgent, tick: int) -> list[Event]:
    agent = k.state.registry.agents.get(a.agent)
    if agent is None:
        raise Reject(Reason.unknown_agent, f"no agent with id {a.agent}")
    if agent.status == REVOKED:
        raise Reject(Reason.already_revoked, f"agent {a.agent} is already revoked")
    ev = AgentStatusChanged(actor=a.actor, agent=a.agent, status=REVOKED, reason=a.reason)
    k.state.apply(ev)
    return [ev]


def open_account(k: Kernel, a: OpenAccount, tick: int) -> list[Event]:
    holder = a.actor if a.holder == -1 else a.holder
    if holder != a.actor and a.actor != OPERATOR:
        raise Reject(Reason.forbidden, "only the operator opens accounts for someone else")
    if holder <= OPERATOR or holder not in k.state.registry.agents:
        raise Reject(Reason.unknown_agent, f"no agent with id {holder} to hold the account")
    if a.asset not in k.state.ledger.treasury:
        raise Reject(Reason.unknown_asset,
                     f"unknown asset {a.asset!r}; this economy has {sorted(k.state.ledger.treasury)}")
    if a.flags & ~ALL_ACCOUNT_FLAGS or a.flags == ALL_ACCOUNT_FLAGS:
        raise Reject(Reason.invalid_field, f"account flags {a.flags} are invalid")
    if a.actor != OPERATOR and not a.flags & DEBITS_MUST_NOT_EXCEED_CREDITS:
        # (an account with only CREDITS_MUST_NOT_EXCEED_DEBITS has no debit limit at all:
        # found attacking the ledger, it let an agent pay out money it never had)
        raise Reject(Reason.forbidden, "only the operator opens accounts without a balance "
                     "limit (an agent's accounts carry DEBITS_MUST_NOT_EXCEED_CREDITS)")
    if a.actor != OPERATOR and k.state.ledger.account_of(holder, a.asset) is not None:
        raise Reject(Reason.forbidden, f"agent {holder} already has a {a.asset} account (one "
                     f"per asset: a holding split over accounts would slip past every limit "
                     f"that reads one)")
    ev = AccountOpened(actor=a.actor, account=k.state.ledger.next_account_id(), holder=holder,
                       asset=a.asset, flags=a.flags, treasury=False)
    k.state.apply(ev)
    return [ev]


def set_credit_line(k: Kernel, a: SetCreditLine, tick: int) -> list[Event]:
    acct = k.state.ledger.accounts.get(a.account)
    if acct is None:
        raise Reject(Reason.unknown_account, f"no account with id {a.account}")
    if acct.treasury:
        raise Reject(Reason.invalid_field, "treasury accounts have no credit line")
    if not 0 <= a.limit <= MAX_AMOUNT:
        raise Reject(Reason.invalid_field, f"credit line must be within 0..{MAX_AMOUNT}")
    if a.limit < acct.debits_posted + acct.debits_pending - acct.credits_posted:
        raise Reject(Reason.invalid_field, "the account already uses more credit than that")
    ev = CreditLineSet(actor=a.actor, account=a.account, limit=a.limit)
    k.state.apply(ev)
    return [ev]


def transfer(k: Kernel, a: Transfer, tick: int) -> list[Event]:
    if not a.transfers:
        raise Reject(Reason.invalid_field, "a transfer action needs at least one transfer")
    events, results = k.state.ledger.execute(a.actor, a.transfers, tick)
    if len(events) == len(a.transfers):
        return list(events)
    failed = Ledger.failures_to_remember(a.transfers, results)
    bad = [f"#{i} {code}" for i, code in enumerate(results) if code not in ("ok", "exists")]
    if not bad:  # only identical retries: nothing new happened, nothing to reject
        return list(events)
    rejected = Rejected(actor=a.actor, action=a.to_dict(), reason=Reason.transfer_failed,
                        message="; ".join(bad[:8]) + (" ..." if len(bad) > 8 else ""),
                        results=[str(r) for r in results], failed=failed)
    k.state.apply(rejected)
    return [*events, rejected]


KERNEL_HANDLERS: dict[str, Handler] = {
    RegisterOwner.KIND: register_owner,  # type: ignore[dict-item]
    RegisterAgent.KIND: register_agent,  # type: ignore[dict-item]
    SpawnAgent.KIND: spawn_agent,  # type: ignore[dict-item]
    RevokeAgent.KIND: revoke_agent,  # type: ignore[dict-item]
    OpenAccount.KIND: open_account,  # type: ignore[dict-item]
    SetCreditLine.KIND: set_credit_line,  # type: ignore[dict-item]
    Transfer.KIND: transfer,  # type: ignore[dict-item]
}

# who may read the kernel's own entries (audit/visibility.py; each mechanism declares its own)
KERNEL_VISIBILITY: dict[str, str] = {
    **dict.fromkeys(("run_started", "owner_registered", "agent_registered", "account_opened"),
                    PUBLIC),
    **dict.fromkeys(("transfer", "hold_expired", "credit_line_set", "rejected",
                     "agent_status_changed"), PARTIES),
}

"""Direct payments between agents: `pay` moves an amount of an asset from the actor's
account to another agent's, as one SYSTEM-settled transfer (the simple form of `transfer`,
for agents — and models — that should not have to know account or transfer ids)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from sandbank.identity.registry import REVOKED
from sandbank.kernel.errors import Reject
from sandbank.kernel.mechanism import PARTIES, Mechanism
from sandbank.kernel.schema import Action, Event, Settled, register_action, register_event
from sandbank.kernel.settlement import Settlement, SettlementFailed, require_account

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel


@register_action
@dataclass(slots=True, kw_only=True)
class Pay(Action):
    """Pay another agent: `amount` of `asset` from your account to theirs."""

    KIND: ClassVar[str] = "pay"
    to: int
    asset: str
    amount: int
    memo: str = ""


@register_event
@dataclass(slots=True, kw_only=True)
class Paid(Settled):
    KIND: ClassVar[str] = "paid"
    to: int
    asset: str
    amount: int
    memo: str


def pay(k: Kernel, a: Pay, tick: int) -> list[Event]:
    if a.amount <= 0:
        raise Reject("invalid_field", "amount must be positive")
    if len(a.memo) > 256:
        raise Reject("invalid_field", "memo is limited to 256 characters")
    target = k.state.registry.agents.get(a.to)
    if target is None or target.status == REVOKED or a.to == a.actor:
        raise Reject("unknown_recipient", f"agent {a.to} cannot be paid")
    src = require_account(k, a.actor, a.asset)
    dst = require_account(k, a.to, a.asset)
    if src.available < a.amount:
        raise Reject("insufficient_funds", f"{src.available} {a.asset} available, {a.amount} asked")
    st = Settlement(k)
    st.pay(src.id, dst.id, a.amount)
    try:
        transfers = st.commit()
    except SettlementFailed as e:
        raise Reject("settlement_failed", str(e)) from None
    ev = Paid(actor=a.actor, transfers=transfers, to=a.to, asset=a.asset, amount=a.amount,
              memo=a.memo)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


MECHANISM = Mechanism(
    "payments", handlers={Pay.KIND: pay}, appliers={Paid: lambda s: lambda ev, tick: None},
    visibility={"paid": PARTIES},
)

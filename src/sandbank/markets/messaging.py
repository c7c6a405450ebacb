"""Messaging between agents, through the sequencer (checklist 9, 56).

A message goes to one agent or, with `to = 0`, to every other active agent. Its size is
limited (`max_message_bytes`, UTF-8), it may cost a micro-fee (`message_fee`, paid to the
treasury, rebated for certified agents), and it is logged as its SHA-256 and size: the text
itself is kept in the store's content table, so the log stays small and the text can be
checked against its hash. Recipients see it in their next observation's inbox, labelled by
the firewall (boundary/firewall.py) with its provenance and a taint flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, ClassVar

from sandbank.boundary.firewall import classify
from sandbank.identity.registry import ACTIVE
from sandbank.kernel.errors import Reject
from sandbank.kernel.mechanism import PARTIES, Mechanism
from sandbank.kernel.observation import Message
from sandbank.kernel.schema import Action, Event, Settled, register_action, register_event
from sandbank.kernel.settlement import Settlement, SettlementFailed

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

BROADCAST = 0


@register_action
@dataclass(slots=True, kw_only=True)
class SendMessage(Action):
    KIND: ClassVar[str] = "send_message"
    to: int  # an agent id, or 0 for everyone
    content: str


@register_event
@dataclass(slots=True, kw_only=True)
class MessageSent(Settled):
    KIND: ClassVar[str] = "message_sent"
    to: int
    recipients: int
    size: int
    sha256: str
    fee: int


def send_message(k: Kernel, a: SendMessage, tick: int) -> list[Event]:
    policy = k.state.policy
    body = a.content.encode("utf-8")
    limit = policy.value("max_message_bytes", tick)
    if not body:
        raise Reject("invalid_field", "a message cannot be empty")
    if len(body) > limit:
        raise Reject("message_too_large", f"{len(body)} bytes; the limit is {limit}")
    agents = k.state.registry.agents
    if a.to == BROADCAST:
        cs = k.state.compartments
        recipients = [i for i, ag in agents.items() if ag.status == ACTIVE and i != a.actor
                      and (not cs.of or cs.open_between(a.actor, i, "send_message"))]
    else:
        target = agents.get(a.to)
        if target is None or target.status != ACTIVE or a.to == a.actor:
            raise Reject("unknown_recipient", f"agent {a.to} cannot receive messages")
        recipients = [a.to]
    fee = policy.charge(a.actor, policy.value("message_fee", tick), tick)
    st = Settlement(k)
    if fee:
        acct = k.state.ledger.account_of(a.actor, policy.fee_asset)
        if acct is None or acct.available < fee:
            raise Reject("insufficient_funds", f"the message fee is {fee} {policy.fee_asset}")
        st.fee(acct.id, policy.fee_asset, fee)
    try:
        transfers = st.commit()
    except SettlementFailed as e:
        raise Reject("settlement_failed", str(e)) from None
    digest = sha256(body).hexdigest()
    k.log.put_content(bytes.fromhex(digest), body)
    flags = tuple(classify(a.content))
    broadcast = a.to == BROADCAST
    msg = Message(tick, a.actor, a.content, broadcast,
                  f"{'broadcast' if broadcast else 'agent'}:{a.actor}", bool(flags), flags)
    for r in recipients:
        k.deliver(r, msg)
    ev = MessageSent(actor=a.actor, transfers=transfers, to=a.to, recipients=len(recipients),
                     size=len(body), sha256=digest, fee=fee)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


MECHANISM = Mechanism(
    "messaging", handlers={SendMessage.KIND: send_message},
    appliers={MessageSent: lambda s: lambda ev, tick: None},
    visibility={"message_sent": PARTIES},
    requires=("policy", "compartments"),
)

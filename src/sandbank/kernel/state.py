"""The economy's state as a fold over events: `apply(event)` is the only way it changes.

The kernel applies events as its mechanisms produce them; `replay` applies the same events
read back from the log. Both end in the same state, and the same state digest.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any

from sandbank.identity.registry import Registry
from sandbank.kernel.schema import (
    EVENT_TYPES,
    AccountOpened,
    AgentRegistered,
    AgentStatusChanged,
    CreditLineSet,
    Event,
    HoldExpired,
    OwnerRegistered,
    Rejected,
    RunStarted,
    TransferCommitted,
)
from sandbank.ledger.ledger import Ledger

STATE_DIGEST_DOMAIN = b"sandbank/state/v1"


class EconomyState:
    def __init__(self) -> None:
        self.ledger = Ledger()
        self.registry = Registry()
        self.header: RunStarted | None = None
        self.operator_nonce = 0  # highest nonce of a signed operator action in the log
        r, led = self.registry, self.ledger
        self._apply = {
            RunStarted: self._apply_header,
            OwnerRegistered: r.apply_owner_registered,
            AgentRegistered: r.apply_agent_registered,
            AgentStatusChanged: r.apply_status,
            AccountOpened: led.apply_account_opened,
            CreditLineSet: led.apply_credit_line,
            TransferCommitted: led.apply_transfer,
            HoldExpired: led.apply_hold_expired,
            Rejected: self._apply_rejected,
        }

    def apply(self, ev: Event) -> None:
        self._apply[type(ev)](ev)

    def apply_dict(self, d: dict[str, Any]) -> Event:
        """Apply an event in its logged form (used by replay)."""
        cls = EVENT_TYPES.get(d.get("kind"))  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"unknown event kind {d.get('kind')!r}")
        ev = cls.from_dict(d)
        self.apply(ev)
        nonce = d.get("nonce")
        if nonce is not None and ev.actor == 0:
            self.operator_nonce = max(self.operator_nonce, nonce)
        elif nonce is not None:
            agent = self.registry.agents.get(ev.actor)
            if agent is not None:
                agent.nonce = max(agent.nonce, nonce)
        return ev

    def _apply_header(self, ev: RunStarted) -> None:
        assert self.header is None, "one header per log"
        self.header = ev

    def _apply_rejected(self, ev: Rejected) -> None:
        if ev.failed:
            self.ledger.record_failures(ev.actor, ev.failed)

    def digest(self) -> bytes:
        return sha256(STATE_DIGEST_DOMAIN + self.ledger.digest() + self.registry.digest()).digest()

    def check_invariants(self) -> None:
        self.ledger.check_invariants()

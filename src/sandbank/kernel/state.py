"""The economy's state as a fold over events: `apply(event)` is the only way it changes.

The kernel applies events as its mechanisms produce them; `replay` applies the same events
read back from the log. Both end in the same state, and the same state digest.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any

from sandbank.boundary import boundary as boundary_mod
from sandbank.identity.registry import Registry
from sandbank.kernel import compartments as compartments_mod
from sandbank.kernel import controls as controls_mod
from sandbank.kernel import emergency as emergency_mod
from sandbank.kernel import policy as policy_mod
from sandbank.kernel import roles as roles_mod
from sandbank.kernel import traces as traces_mod
from sandbank.kernel.fingerprint import fingerprint
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
    Settled,
    TransferCommitted,
)
from sandbank.ledger.ledger import Ledger
from sandbank.markets import auctions as auctions_mod
from sandbank.markets import exchange as exchange_mod
from sandbank.markets import messaging as messaging_mod
from sandbank.markets import payments as payments_mod
from sandbank.markets import pricing as pricing_mod
from sandbank.markets import tasks as tasks_mod
from sandbank.reputation import reputation as reputation_mod

# Mechanism modules whose events change state: each has APPLIERS {event class: state -> fn}.
MECHANISM_MODULES = [policy_mod, exchange_mod, tasks_mod, auctions_mod, messaging_mod,
                     payments_mod, traces_mod, pricing_mod, controls_mod, reputation_mod,
                     emergency_mod, boundary_mod, roles_mod, compartments_mod]

STATE_DIGEST_DOMAIN = b"sandbank/state/v1"
FULL_DIGEST_DOMAIN = b"sandbank/state-full/v1"


class EconomyState:
    def __init__(self) -> None:
        self.ledger = Ledger()
        self.registry = Registry()
        self.header: RunStarted | None = None
        self.operator_nonce = 0  # highest nonce of a signed operator action in the log
        self.policy = policy_mod.Policy()
        self.exchange = exchange_mod.Exchange()
        self.tasks = tasks_mod.TaskMarket()
        self.auctions = auctions_mod.AuctionHouse()
        self.pricing = pricing_mod.PricingGames()
        self.controls = controls_mod.Controls()
        self.reputation = reputation_mod.Reputation()
        self.emergency = emergency_mod.Emergency()
        self.boundary = boundary_mod.Boundary()
        self.roles = roles_mod.Roles()
        self.compartments = compartments_mod.Compartments()
        r, led = self.registry, self.ledger

        def plain(fn):
            return lambda ev, tick: fn(ev)

        self._apply: dict[type, Any] = {
            RunStarted: plain(self._apply_header),
            OwnerRegistered: plain(r.apply_owner_registered),
            AgentRegistered: plain(r.apply_agent_registered),
            AgentStatusChanged: plain(r.apply_status),
            AccountOpened: plain(led.apply_account_opened),
            CreditLineSet: plain(led.apply_credit_line),
            TransferCommitted: plain(led.apply_transfer),
            HoldExpired: plain(led.apply_hold_expired),
            Rejected: plain(self._apply_rejected),
        }
        # listeners: further state that follows an event kind owned by another module
        self._listen: dict[type, list[Any]] = {}
        for mod in MECHANISM_MODULES:
            for cls, bind in mod.APPLIERS.items():
                self._apply[cls] = bind(self)
            for cls, bind in (mod.listeners() if hasattr(mod, "listeners") else {}).items():
                self._listen.setdefault(cls, []).append(bind(self))

    def apply(self, ev: Event, tick: int = 0, *, ledger_applied: bool = False) -> None:
        """Apply one event. A `Settled` event carries its ledger transfers; the live path has
        already executed them (`ledger_applied`), replay applies them here first."""
        if isinstance(ev, Settled) and not ledger_applied:
            for t in ev.transfers:
                self.ledger.apply_transfer(TransferCommitted.from_dict(t))
        self._apply[type(ev)](ev, tick)
        if self._listen:
            for listen in self._listen.get(type(ev), ()):
                listen(ev, tick)

    def apply_dict(self, d: dict[str, Any]) -> Event:
        """Apply an event in its logged form (used by replay)."""
        cls = EVENT_TYPES.get(d.get("kind"))  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"unknown event kind {d.get('kind')!r}")
        ev = cls.from_dict(d)
        self.apply(ev, d.get("tick", 0))
        nonce = d.get("nonce")
        if nonce is not None and ev.actor == 0:
            self.operator_nonce = max(self.operator_nonce, nonce)
        elif nonce is not None and controls_mod.is_overseer_id(ev.actor):
            o = self.controls.overseers.get(ev.actor)
            if o is not None:
                o.nonce = max(o.nonce, nonce)
        elif nonce is not None:
            agent = self.registry.agents.get(ev.actor)
            if agent is not None:
                agent.nonce = max(agent.nonce, nonce)
        return ev

    def _apply_header(self, ev: RunStarted) -> None:
        assert self.header is None, "one header per log"
        self.header = ev
        self.policy.configure(ev.assets[0], ev.config.get("policy", {}))
        self.exchange.configure(ev.config.get("markets", []))
        self.pricing.configure(ev.config.get("pricing", []))
        self.compartments.configure(ev.config.get("bridges", []))
        self.boundary.configure(ev.config.get("boundary", "impermeable"),
                                ev.config.get("gateways", []), tuple(ev.assets))

    def _apply_rejected(self, ev: Rejected) -> None:
        if ev.failed:
            self.ledger.record_failures(ev.actor, ev.failed)

    def digest(self) -> bytes:
        return sha256(STATE_DIGEST_DOMAIN + self.ledger.digest() + self.registry.digest()
                      + self.policy.digest() + self.exchange.digest() + self.tasks.digest()
                      + self.auctions.digest() + self.pricing.digest()
                      + self.controls.digest() + self.reputation.digest()
                      + self.emergency.digest() + self.boundary.digest()
                      + self.roles.digest() + self.compartments.digest()).digest()

    PARTS = ("ledger", "registry", "header", "operator_nonce", "policy", "exchange", "tasks",
             "auctions", "pricing", "controls", "reputation", "emergency", "boundary", "roles",
             "compartments", "schedules")

    def fingerprints(self, tick: int) -> dict[str, bytes]:
        """Each part's digest over everything it holds (kernel/fingerprint.py), found by
        walking the live state rather than following the events: what the full-state digest
        is made of, and what names the part that differs when two states disagree. The
        schedules (holds to expire, task deadlines, auction closings) are taken as what is
        still due after `tick`: their heaps are popped by the live kernel's tick hooks only,
        so their raw layout differs from a replay's."""
        return {name: fingerprint(self.part(name, tick)) for name in self.PARTS}

    def part(self, name: str, tick: int) -> Any:
        """One part of the state as the full digest sees it after `tick`."""
        return self.schedules(tick) if name == "schedules" else getattr(self, name)

    def schedules(self, tick: int) -> dict[str, list[tuple[int, ...]]]:
        return {"expiries": self.ledger.scheduled_expiries(tick),
                "deadlines": self.tasks.scheduled_deadlines(tick),
                "closings": self.auctions.scheduled_closings(tick)}

    def full_digest(self, tick: int) -> bytes:
        """The state digest over the whole state after `tick`: the incremental digest and
        every part's fingerprint. It changes whenever any state changes, by whatever means."""
        parts = self.fingerprints(tick)
        return sha256(FULL_DIGEST_DOMAIN + self.digest()
                      + b"".join(parts[n] for n in self.PARTS)).digest()

    def check_invariants(self) -> None:
        self.ledger.check_invariants()
        self.exchange.check()

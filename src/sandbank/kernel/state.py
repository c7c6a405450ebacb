"""The economy's state as a fold over events: `apply(event)` is the only way it changes.

The kernel applies events as its mechanisms produce them; `replay` applies the same events
read back from the log. Both end in the same state, and the same state digest.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any

from sandbank.identity.registry import Registry
from sandbank.kernel.fingerprint import fingerprint
from sandbank.kernel.mechanism import Mechanism, MechanismError
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
    is_overseer_id,
)
from sandbank.ledger.ledger import WINDOW, Ledger

STATE_DIGEST_DOMAIN = b"sandbank/state/v1"
FULL_DIGEST_DOMAIN = b"sandbank/state-full/v1"


class EconomyState:
    """The ledger and the registry, and one part per mechanism that has state
    (`state.<mechanism name>`), in the order of the kernel's list of mechanisms."""

    def __init__(self, mechanisms: tuple[Mechanism, ...] = ()) -> None:
        self.ledger = Ledger()
        self.registry = Registry()
        self.header: RunStarted | None = None
        self.operator_nonce = 0  # highest nonce of a signed operator action in the log
        self._parts = tuple(m for m in mechanisms if m.state is not None)
        for m in self._parts:
            if hasattr(self, m.name):  # a part must not hide the ledger, a method, ...
                raise MechanismError(f"a mechanism may not be named {m.name!r}")
            setattr(self, m.name, m.state())  # type: ignore[misc]
        self._principals = tuple((m.name, m.principal) for m in mechanisms if m.principal)
        self._limits = tuple((m.name, m.limit) for m in mechanisms if m.limit)
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
        for m in mechanisms:
            for cls, bind in m.appliers.items():
                assert cls not in self._apply, cls
                self._apply[cls] = bind(self)
            for cls, bind in m.listeners.items():
                self._listen.setdefault(cls, []).append(bind(self))

    def principal(self, actor: int) -> Any:
        """The record (with `public_key` and `nonce`) of an actor a mechanism admits."""
        for name, find in self._principals:
            p = find(getattr(self, name), actor)
            if p is not None:
                return p
        return None

    def limit(self, name: str, actor: int = 0) -> int:
        """The tightest value the mechanisms set for the kernel's limit `name` (0: none)."""
        out = 0
        for part, find in self._limits:
            v = find(getattr(self, part), name, actor)
            if v and (not out or v < out):
                out = v
        return out

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
        tick = d.get("tick", 0)
        if tick > self.ledger.tick:  # the tick's first entry: as the kernel began the tick
            self.ledger.at_tick(tick)
        self.apply(ev, tick)
        nonce = d.get("nonce")
        if nonce is not None and ev.actor == 0:
            self.operator_nonce = max(self.operator_nonce, nonce)
        elif nonce is not None and is_overseer_id(ev.actor):
            o = self.principal(ev.actor)
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
        self.ledger.window = ev.config.get("idempotency_window", WINDOW)
        for m in self._parts:
            if m.configure is not None:
                m.configure(getattr(self, m.name), ev)

    def _apply_rejected(self, ev: Rejected) -> None:
        if ev.failed:
            self.ledger.record_failures(ev.actor, ev.failed)

    def digest(self) -> bytes:
        return sha256(STATE_DIGEST_DOMAIN + self.ledger.digest() + self.registry.digest()
                      + b"".join(getattr(self, m.name).digest() for m in self._parts)).digest()

    @property
    def PARTS(self) -> tuple[str, ...]:  # noqa: N802 (read as the constant it was)
        return ("ledger", "registry", "header", "operator_nonce",
                *(m.name for m in self._parts), "schedules")

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
        out = {"expiries": self.ledger.scheduled_expiries(tick)}
        for m in self._parts:
            if m.schedules is not None:
                out.update(m.schedules(getattr(self, m.name), tick))
        return out

    def full_digest(self, tick: int) -> bytes:
        """The state digest over the whole state after `tick`: the incremental digest and
        every part's fingerprint. It changes whenever any state changes, by whatever means."""
        parts = self.fingerprints(tick)
        return sha256(FULL_DIGEST_DOMAIN + self.digest()
                      + b"".join(parts[n] for n in self.PARTS)).digest()

    def check_invariants(self) -> None:
        self.ledger.check_invariants()
        for m in self._parts:
            if m.check is not None:
                m.check(getattr(self, m.name))

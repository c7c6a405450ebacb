"""The sequencer: the single writer of the economy.

One tick:
1. holds whose timeout is reached expire (events);
2. the tick's actions are ordered deterministically: actors sorted by id, then put in a
   seeded random order (a fresh priority every tick, so no agent always goes first);
   each actor's own actions keep the order it submitted them in;
3. each action passes the guards, then its mechanism; a refusal anywhere is a `rejected`
   event with its reason, and changes no state;
4. the state digest is computed, a checkpoint over the whole log is signed, and the tick's
   entries, subtree hashes and checkpoint are written in one transaction (group commit).

Agents never see the kernel: they get an `Observation` and submit actions through a
gateway (`submit`/`submit_raw`); the lab and server issues build their loops on this seam.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from sandbank import __version__
from sandbank.audit.log import AuditLog
from sandbank.identity.keys import SigningKey
from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.controls import is_overseer_id
from sandbank.kernel.errors import Reason, Reject
from sandbank.kernel.guards import DEFAULT_GUARDS, Guard
from sandbank.kernel.mechanisms import MECHANISMS, TICK_END_HOOKS, TICK_HOOKS
from sandbank.kernel.observation import AccountView, Feedback, Observation, OrderView
from sandbank.kernel.schema import (
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    NOBODY,
    OPERATOR,
    SYSTEM,
    AccountOpened,
    Action,
    Event,
    MalformedAction,
    Rejected,
    RunStarted,
    action_from_dict,
    safe_action_dict,
)
from sandbank.kernel.settlement import SettlementFailed
from sandbank.kernel.state import EconomyState
from sandbank.markets.auctions import views_for as auction_views
from sandbank.markets.exchange import market_view
from sandbank.markets.messaging import INBOX_LIMIT
from sandbank.markets.pricing import views_for as pricing_views
from sandbank.markets.tasks import views_for as task_views
from sandbank.store.base import Store, StoredCheckpoint

_NOT_CAUSES = frozenset({"ok", "exists", "linked_event_failed"})
MAX_RAW_LOGGED = 2048  # bytes of a malformed action kept in its refusal


def _bounded(action: dict[str, Any] | None) -> dict[str, Any] | None:
    """An unauthenticated action as its refusal keeps it: whole if small, else not at all."""
    if action is not None and len(canonical_bytes(action)) > MAX_RAW_LOGGED:
        return None
    return action


class ConfigError(ValueError):
    """A kernel configuration value is invalid; the message names it."""


class QueueFull(RuntimeError):
    """The next tick already holds `max_actions_per_tick` actions: back off and resubmit
    after the tick (nothing of the refused action entered the economy or its log)."""


@dataclass(frozen=True)
class KernelConfig:
    seed: int = 0
    origin: str = "sandbank.local/run"
    key_name: str = "sandbank-operator"
    assets: tuple[str, ...] = ("CRD",)
    verify_signatures: bool = False
    max_actions_per_actor_per_tick: int = 10_000
    max_actions_per_tick: int = 1_000_000
    max_agents_per_owner: int = 1_000
    max_spawn_depth: int = 3
    max_children_per_agent: int = 16
    disabled_guards: tuple[str, ...] = ()
    markets: tuple[dict[str, Any], ...] = ()  # exchange.Market fields: asset, quote, band_bps...
    policy: dict[str, Any] = field(default_factory=dict)  # initial incentive parameters
    pricing: tuple[dict[str, Any], ...] = ()  # repeated price-competition games (pricing.Game)
    boundary: str = "impermeable"  # the sandbox's permeability (boundary/boundary.py)
    gateways: tuple[dict[str, Any], ...] = ()  # declared gateways (semi_permeable)
    governance_quorum: int = 0  # governors' approvals a parameter change needs (0: operator)
    roles_enforced: bool = False  # agents may take only what their roles permit (roles.py)
    bridges: tuple[dict[str, Any], ...] = ()  # declared crossings between compartments
    governance_ttl: int = 10  # ticks a proposal stays open
    full_digest_every: int = 100  # every Nth checkpoint's digest covers the whole state

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**53:
            raise ConfigError("seed must be an integer in 0..2**53-1")
        if not self.origin or "\n" in self.origin:
            raise ConfigError("origin must be a non-empty single line")
        if not self.key_name or any(c in self.key_name for c in " +\n"):
            raise ConfigError("key_name must be non-empty, without spaces, '+' or newlines")
        if not self.assets or len(set(self.assets)) != len(self.assets):
            raise ConfigError("assets must be a non-empty list of distinct codes")
        for name in ("max_actions_per_actor_per_tick", "max_actions_per_tick",
                     "max_agents_per_owner", "max_children_per_agent"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        from sandbank.boundary.boundary import IMPERMEABLE, MODES, Gateway

        if self.boundary not in MODES:
            raise ConfigError(f"boundary must be one of {list(MODES)}")
        names = [Gateway.parse(g, self.assets).name for g in self.gateways]
        if len(set(names)) != len(names):
            raise ConfigError("gateway names must be distinct")
        if self.gateways and self.boundary == IMPERMEABLE:
            raise ConfigError("gateways are declared but the boundary is impermeable: set "
                              "boundary: semi_permeable to open them")
        if type(self.full_digest_every) is not int or self.full_digest_every < 1:
            raise ConfigError("full_digest_every must be an integer >= 1")
        if self.governance_quorum < 0 or self.governance_ttl < 1:
            raise ConfigError("governance_quorum must be >= 0 and governance_ttl >= 1")
        if self.max_spawn_depth < 0:
            raise ConfigError("max_spawn_depth must be at least 0")
        seen = set()
        fields_ok = {"asset", "quote", "band_bps", "limit_state_ticks", "halt_ticks",
                     "reference_ticks", "compartment"}
        for mk in self.markets:
            if not isinstance(mk, dict) or set(mk) - fields_ok or not {"asset", "quote"} <= set(mk):
                raise ConfigError(f"market {mk!r}: needs asset and quote; may set "
                                  f"{sorted(fields_ok - {'asset', 'quote'})}")
            if mk["asset"] not in self.assets or mk["quote"] not in self.assets:
                raise ConfigError(f"market {mk['asset']}/{mk['quote']}: both must be in assets")
            if mk["asset"] == mk["quote"] or mk["asset"] in seen:
                raise ConfigError(f"market {mk['asset']}: one market per asset, not against itself")
            seen.add(mk["asset"])
            if not isinstance(mk.get("compartment", ""), str):
                raise ConfigError(f"market {mk['asset']}: compartment must be a name")
            for key in sorted(fields_ok - {"asset", "quote", "compartment"}):
                if key in mk and (type(mk[key]) is not int or mk[key] < (1 if "ticks" in key else 0)):
                    raise ConfigError(f"market {mk['asset']}: {key} must be a positive integer")
        names = set()
        for gm in self.pricing:
            allowed = {"name", "asset", "firms", "a", "c", "a0", "mu", "volume"}
            if not isinstance(gm, dict) or set(gm) - allowed or not {"name", "asset"} <= set(gm):
                raise ConfigError(f"pricing game {gm!r}: needs name and asset; may set "
                                  f"{sorted(allowed - {'name', 'asset'})}")
            if gm["asset"] not in self.assets or gm["name"] in names:
                raise ConfigError(f"pricing game {gm['name']}: unknown asset or duplicate name")
            names.add(gm["name"])
            firms = gm.get("firms", 2)
            if type(firms) is not int or not 1 <= firms <= 64:
                raise ConfigError(f"pricing game {gm['name']}: firms must be within 1..64")
            for key in ("a", "c"):
                v = gm.get(key, [2000 if key == "a" else 1000] * firms)
                if not isinstance(v, list) or len(v) != firms or not all(type(x) is int for x in v):
                    raise ConfigError(f"pricing game {gm['name']}: {key} must list {firms} integers")
            if type(gm.get("mu", 250)) is not int or gm.get("mu", 250) <= 0:
                raise ConfigError(f"pricing game {gm['name']}: mu must be a positive integer")
        from sandbank.kernel.policy import PARAMS, Policy

        for key, value in self.policy.items():
            if key == "taxes":
                if not isinstance(value, dict):
                    raise ConfigError("policy.taxes must map externality classes to rates")
                problems = [Policy().check("tax", c, r) if type(r) is int else "not an integer"
                            for c, r in value.items()]
            elif key in PARAMS:
                problems = [Policy().check(key, "", value) if type(value) is int else "not an integer"]
            else:
                raise ConfigError(f"unknown policy parameter {key!r}; known: taxes, "
                                  f"{', '.join(sorted(PARAMS))}")
            for p in problems:
                if p:
                    raise ConfigError(f"policy.{key}: {p}")
        known = {g.name for g in DEFAULT_GUARDS}
        for g in self.disabled_guards:
            if g not in known:
                raise ConfigError(f"unknown guard {g!r} in disabled_guards; known: {sorted(known)}")


@dataclass
class TickSummary:
    tick: int
    events: int
    accepted: int
    rejected: int
    checkpoint: StoredCheckpoint
    reasons: dict[str, int] = field(default_factory=dict)


class Kernel:
    """One economy. Create it on an empty store; it writes the header at tick 0."""

    def __init__(self, store: Store, config: KernelConfig, operator_key: SigningKey,
                 *, _resume: EconomyState | None = None) -> None:
        if store.entry_count() != 0 and _resume is None:
            raise ConfigError("the store already holds a log; continue it with Kernel.resume()")
        self.config = config
        self.store = store
        self.operator_key = operator_key
        self.state = _resume or EconomyState()
        self.guards: tuple[Guard, ...] = tuple(
            g for g in DEFAULT_GUARDS if g.name not in config.disabled_guards
        )
        # the first guard authenticates the actor; a refusal before it passed is nobody's act
        self._authenticates = bool(self.guards) and self.guards[0].name == "identity"
        self.log = AuditLog(store, config.origin, config.key_name, operator_key)
        self.tick = 0
        self.actions_this_tick: dict[int, int] = {}
        self._queue: list[tuple[int, Action | None, Any, str]] = []
        self._feedback: dict[int, list[Feedback]] = {}  # outcomes in the last tick run
        self._inbox: dict[int, list[Any]] = {}  # messages received in the last tick run
        self.tainted: set[int] = set()  # agents shown instruction-like content last tick
        self._overflow: dict[int, int] = {}
        self._markets_cache: tuple[Any, tuple[Any, ...]] = (None, ())
        self._nonce_pending: int | None = None
        self.prechecked: dict[int, bytes] = {}  # id(queued action) -> key its signature verified with
        self._checked_with: bytes | None = None  # that key, for the action being processed
        # the last tick's actions that put a nonce on record: (actor, nonce, first seq, count)
        self.action_ranges: list[tuple[int, int, int, int]] = []
        self._logged_nonce: int | None = None
        if _resume is None:
            self._genesis()
        else:
            last = store.last_checkpoint()
            assert last is not None
            self.tick = last.tick

    @property
    def operator_nonce(self) -> int:
        """The last nonce of a signed operator action (part of the state, so in its digest)."""
        return self.state.operator_nonce

    @operator_nonce.setter
    def operator_nonce(self, nonce: int) -> None:
        self.state.operator_nonce = nonce

    @classmethod
    def resume(cls, store: Store, operator_key: SigningKey) -> Kernel:
        """Continue a log after a stop or a crash: the state is rebuilt by replaying the
        events (checked against every signed state digest); the next tick follows the last
        committed one, and a tick that was being written when the process died is gone."""
        from sandbank.audit.replay import replay_log

        report = replay_log(store)
        if not report.ok or report.state is None or report.state.header is None:
            raise ConfigError(f"cannot resume this log: {report.problem}")
        header = report.state.header
        if bytes.fromhex(header.operator_key) != operator_key.public:
            raise ConfigError("this is not the key that signed the log")
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in header.config.items()}
        return cls(store, KernelConfig(**cfg), operator_key, _resume=report.state)

    def rng_for(self, tick: int) -> random.Random:
        """The tick's generator, derived from the run seed (so a resumed run continues
        exactly as an uninterrupted one would)."""
        return random.Random(f"sandbank/order/{self.config.seed}/{tick}")

    # ------------------------------------------------------------------ genesis
    def _genesis(self) -> None:
        cfg = self.config
        header = RunStarted(
            actor=OPERATOR, origin=cfg.origin, version=__version__, seed=cfg.seed,
            key_name=cfg.key_name, operator_key=self.operator_key.public.hex(),
            assets=list(cfg.assets),
            config={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            safeguards={g.name: {"layer": g.layer, "enabled": g.name not in cfg.disabled_guards,
                                 "doc": g.doc} for g in DEFAULT_GUARDS},
        )
        self._record(header)
        for asset in cfg.assets:
            self._record(AccountOpened(actor=OPERATOR, account=self.state.ledger.next_account_id(),
                                       holder=OPERATOR, asset=asset, flags=0, treasury=True))
        for asset in cfg.assets:  # where mechanisms keep held funds while they settle
            self._record(AccountOpened(actor=OPERATOR, account=self.state.ledger.next_account_id(),
                                       holder=SYSTEM, asset=asset,
                                       flags=DEBITS_MUST_NOT_EXCEED_CREDITS, treasury=False))
        self._commit()

    def _record(self, ev: Event) -> None:
        self.state.apply(ev, self.tick)
        self.log.append(self.tick, ev.to_dict())

    # ------------------------------------------------------------------ gateway
    def submit(self, action: Action, *, checked_with: bytes | None = None) -> None:
        """Queue an action for the next tick; raises QueueFull when the tick is full.

        `checked_with`: the public key the caller (the live server's door) already verified
        the action's signature with. At the tick the identity guard then compares that key
        with the actor's instead of verifying the signature a second time; nonces, status
        and every other guard are checked as always."""
        if not isinstance(action, Action):
            raise TypeError("submit() takes an Action; use submit_raw() for wire dicts")
        self._check_room()
        if checked_with is not None:
            self.prechecked[id(action)] = checked_with
        self._queue.append((action.actor, action, None, ""))

    def _check_room(self) -> None:
        if len(self._queue) >= self.config.max_actions_per_tick:
            raise QueueFull(f"the next tick already holds {len(self._queue)} actions "
                            f"(max_actions_per_tick); resubmit after it runs")

    def submit_raw(self, data: Any) -> None:
        """Queue an action in wire form. A malformed one is logged at the tick as a refusal
        of nobody (actor NOBODY): nothing that fails to parse is the act of the identity it
        names, and at most MAX_RAW_LOGGED bytes of it are kept."""
        self._check_room()
        try:
            action = action_from_dict(data)
        except MalformedAction as e:
            claimed = data.get("actor") if isinstance(data, dict) else None
            raw = _bounded(safe_action_dict(data))
            message = f"{e} (claimed actor {str(claimed)[:24]})"
            self._queue.append((NOBODY, None, raw, message))
            return
        self._queue.append((action.actor, action, None, ""))

    def consume_nonce(self, actor: int, nonce: int) -> None:
        if actor == OPERATOR:
            self.operator_nonce = nonce
        elif is_overseer_id(actor):
            self.state.controls.overseers[actor].nonce = nonce
        else:
            self.state.registry.agents[actor].nonce = nonce
        self._nonce_pending = nonce

    # ------------------------------------------------------------------ the loop
    def step(self, *, full_digest: bool = False) -> TickSummary:
        """Run one tick: expiries, the queued actions in sequence, then commit. Its
        checkpoint's state digest covers the whole state (`EconomyState.full_digest`) every
        `full_digest_every` ticks, or when asked (a run's last tick); else it is the
        incremental digest of the records events touched."""
        self.tick += 1
        tick = self.tick
        start = self.log.size
        accepted = rejected = 0
        reasons: dict[str, int] = {}
        self.actions_this_tick = {}
        self._feedback = {}
        # who was shown tainted content (for the firewall guard this tick), then a new inbox
        self.tainted = {a for a, box in self._inbox.items() if any(m.tainted for m in box)}
        self._inbox, self._overflow = {}, {}
        ledger = self.state.ledger
        for ev in ledger.due_expiries(tick):
            self._record(ev)
        for hook in TICK_HOOKS:
            for ev in hook(self, tick):
                self.log.append(tick, ev.to_dict())

        queue, self._queue = self._queue, []
        prechecked, self.prechecked = self.prechecked, {}
        by_actor: dict[int, list[tuple[int, Action | None, Any, str]]] = {}
        for item in queue:
            by_actor.setdefault(item[0], []).append(item)
        actors = sorted(by_actor)
        self.rng_for(tick).shuffle(actors)
        ranges: list[tuple[int, int, int, int]] = []
        self.action_ranges = ranges
        for actor in actors:
            for _, action, raw, error in by_actor[actor]:
                self._nonce_pending = None  # set by the identity guard for this action only
                self._checked_with = prechecked.get(id(action)) if prechecked else None
                self._logged_nonce = None
                first = self.log.size
                if action is None:
                    reason, ok = self._reject(actor, raw, Reason.malformed_action, error), False
                else:
                    ok, reason = self._process(action, tick)
                if self._logged_nonce is not None:
                    ranges.append((actor, self._logged_nonce, first, self.log.size - first))
                if ok:
                    accepted += 1
                else:
                    rejected += 1
                    reasons[reason] = reasons.get(reason, 0) + 1
        self._checked_with = None
        for hook in TICK_END_HOOKS:
            for ev in hook(self, tick):
                self.log.append(tick, ev.to_dict())
        cp = self._commit(full_digest or tick % self.config.full_digest_every == 0)
        return TickSummary(tick, self.log.size - start, accepted, rejected, cp, reasons)

    def _process(self, action: Action, tick: int) -> tuple[bool, str]:
        authenticated = not self._authenticates  # (an ablation without identity: trusted)
        try:
            for guard in self.guards:
                verdict = guard.check(self, action)
                if verdict is not None:
                    raise Reject(*verdict)
                authenticated = True
            try:
                events = MECHANISMS[action.KIND](self, action, tick)
            except SettlementFailed as e:  # raised before the mechanism changed anything
                raise Reject("settlement_failed", str(e)) from None
        except Reject as r:
            if r.reason == Reason.transfer_failed:  # pragma: no cover - returned, not raised
                raise
            if not authenticated:  # forged, replayed, unknown: nobody's act, nobody's feedback
                self._reject(NOBODY, _bounded(action.to_dict()), r.reason,
                             f"{r.message} (claimed actor {action.actor}, {action.KIND})")
                return False, r.reason
            self._reject(action.actor, action.to_dict(), r.reason, r.message)
            self._note(action, r.reason)
            return False, r.reason
        outcome = "ok"
        for i, ev in enumerate(events):
            d = ev.to_dict()
            if i == 0 and self._nonce_pending is not None:
                d["nonce"] = self._logged_nonce = self._nonce_pending
                if len(events) > 1:  # how many entries the action produced (verify checks
                    d["entries"] = len(events)  # the action index against it)
            self.log.append(tick, d)
            if isinstance(ev, Rejected):  # a transfer batch that failed: name the ledger code
                outcome = next((c for c in ev.results if c not in _NOT_CAUSES), ev.reason)
        self._note(action, outcome)
        return outcome == "ok", outcome

    def _reject(self, actor: int, action: dict[str, Any] | None, reason: str, message: str) -> str:
        ev = Rejected(actor=actor, action=action, reason=reason, message=message,
                      results=[], failed=[])
        d = ev.to_dict()
        if self._nonce_pending is not None:
            d["nonce"] = self._logged_nonce = self._nonce_pending
            self._nonce_pending = None
        self.log.append(self.tick, d)
        return reason

    def _note(self, action: Action, outcome: str) -> None:
        if action.actor != OPERATOR:
            self._feedback.setdefault(action.actor, []).append(
                Feedback(action.KIND, action.nonce, str(outcome)))

    def _commit(self, full: bool = False) -> StoredCheckpoint:
        digest = self.state.full_digest(self.tick) if full else self.state.digest()
        return self.log.commit(self.tick, digest, self.action_ranges)

    def deliver(self, agent: int, message: Any) -> None:
        """Put a message in `agent`'s inbox for its next observation (bounded)."""
        box = self._inbox.setdefault(agent, [])
        if len(box) < INBOX_LIMIT:
            box.append(message)
        else:
            self._overflow[agent] = self._overflow.get(agent, 0) + 1

    # ------------------------------------------------------------------ observation
    def observe(self, agent_id: int) -> Observation:
        """What `agent_id` may know now: its status, own accounts, and what became of its
        actions in the last tick. Never other agents' state, never kernel objects."""
        agent = self.state.registry.agents.get(agent_id)
        if agent is None:
            raise KeyError(f"no agent with id {agent_id}")
        accounts = tuple(
            AccountView(a.id, a.asset, a.balance, a.available, a.debits_pending,
                        a.credits_pending)
            for a in self.state.ledger.accounts_of(agent_id)
        )
        s = self.state
        orders = tuple(
            OrderView(o.id, o.asset, o.side, o.price, o.qty, o.remaining)
            for o in s.exchange.by_agent.get(agent_id, {}).values())
        tasks, contracts = task_views(s.tasks, agent_id)
        return Observation(tick=self.tick, agent=agent_id, owner=agent.owner,
                           status=agent.status, accounts=accounts,
                           feedback=tuple(self._feedback.get(agent_id, ())),
                           skills=tuple(sorted(agent.skills.items())),
                           markets=self._public_markets(),
                           orders=orders, tasks=tasks, contracts=contracts,
                           auctions=auction_views(s.auctions, agent_id),
                           games=pricing_views(s.pricing, agent_id),
                           inbox=tuple(self._inbox.get(agent_id, ())),
                           inbox_overflow=self._overflow.get(agent_id, 0),
                           reputation=self._public_reputation,
                           children=tuple(self.observe(c) for c in
                                          self.state.registry.children_of.get(agent_id, ())
                                          if self.state.registry.agents[c].status != "revoked"))

    @property
    def _public_reputation(self) -> Any:
        """Public scores as a read-only mapping shared by every observation."""
        return MappingProxyType(self.state.reputation.scores)

    def _public_markets(self) -> tuple[Any, ...]:
        """Public market data, built once per tick and shared by every observation."""
        if self._markets_cache[0] != (self.tick, self.log.size):
            views = tuple(market_view(m, self.tick)
                          for _, m in sorted(self.state.exchange.markets.items()))
            self._markets_cache = ((self.tick, self.log.size), views)
        return self._markets_cache[1]

    def close(self) -> None:
        self.store.close()


__all__ = ["Kernel", "KernelConfig", "ConfigError", "TickSummary",
           "DEBITS_MUST_NOT_EXCEED_CREDITS"]

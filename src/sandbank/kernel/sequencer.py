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

import copy
import os
import random
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from sandbank import __version__
from sandbank.identity.keys import SigningKey
from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.errors import ConfigError, Reason, Reject
from sandbank.kernel.guards import KERNEL_GUARDS, Guard, precheck_signatures
from sandbank.kernel.mechanism import PUBLIC, Assembly, Mechanism
from sandbank.kernel.mechanisms import KERNEL_HANDLERS, KERNEL_VISIBILITY
from sandbank.kernel.observation import INBOX_LIMIT, AccountView, Feedback, Observation
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
    is_overseer_id,
    safe_action_dict,
)
from sandbank.kernel.settlement import SettlementFailed
from sandbank.kernel.state import EconomyState
from sandbank.ledger.ledger import WINDOW
from sandbank.store.base import Store, StoredCheckpoint

HEARD_TICKS = 10  # how long a message counts as what a payment may answer (firewall.py)
_NOT_CAUSES = frozenset({"ok", "exists", "linked_event_failed"})
MAX_RAW_LOGGED = 2048  # bytes of a malformed action kept in its refusal
PRECHECK_MIN = 64  # queued actions from which a tick verifies their signatures on every core


def _bounded(action: dict[str, Any] | None) -> dict[str, Any] | None:
    """An unauthenticated action as its refusal keeps it: whole if small, else not at all."""
    if action is not None and len(canonical_bytes(action)) > MAX_RAW_LOGGED:
        return None
    return action


class QueueFull(RuntimeError):
    """The next tick already holds `max_actions_per_tick` actions: back off and resubmit
    after the tick (nothing of the refused action entered the economy or its log)."""


@dataclass(frozen=True)
class Core:
    """The kernel's own settings; every other key belongs to a mechanism."""

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
    full_digest_every: int = 100  # every Nth checkpoint's digest covers the whole state
    # ticks for which the ledger answers a retried transfer id exactly (ledger.py)
    idempotency_window: int = WINDOW

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
        if type(self.full_digest_every) is not int or self.full_digest_every < 1:
            raise ConfigError("full_digest_every must be an integer >= 1")
        if type(self.idempotency_window) is not int or not 1 <= self.idempotency_window <= 2**20:
            raise ConfigError("idempotency_window must be an integer in 1..1048576 (ticks)")
        if self.max_spawn_depth < 0:
            raise ConfigError("max_spawn_depth must be at least 0")


CORE_KEYS = tuple(Core.__dataclass_fields__)


class KernelConfig:
    """A kernel's configuration: the kernel's own keys (`Core`) and the keys its mechanisms
    own (each mechanism's `config`), read alike as attributes (`config.seed`,
    `config.markets`). The core keys are checked here; the mechanisms' keys by their owners
    when a kernel is built (`complete`), which also fills in their defaults."""

    def __init__(self, **values: Any) -> None:
        core = {k: values.pop(k) for k in CORE_KEYS if k in values}
        try:
            object.__setattr__(self, "core", Core(**core))
        except TypeError as e:
            raise ConfigError(str(e)) from None
        object.__setattr__(self, "sections", MappingProxyType(values))
        # every key as a plain attribute: the guards read some for every action
        for key in CORE_KEYS:
            object.__setattr__(self, key, getattr(self.core, key))
        for key, value in values.items():
            if key in ("core", "sections") or hasattr(KernelConfig, key):
                raise ConfigError(f"config key {key!r} is a name KernelConfig reserves")
            object.__setattr__(self, key, value)

    def __getattr__(self, name: str) -> Any:  # only for a key that is not there
        raise AttributeError(f"no config key {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a KernelConfig is immutable")

    def __repr__(self) -> str:
        items = {**asdict(self.core), **self.sections}
        return "KernelConfig(" + ", ".join(f"{k}={v!r}" for k, v in items.items()) + ")"

    def __reduce__(self) -> tuple[Any, ...]:  # (pickled across processes by sweeps)
        return _config, ({**asdict(self.core), **self.sections},)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, KernelConfig) and self.core == other.core
                and dict(self.sections) == dict(other.sections))

    __hash__ = None  # type: ignore[assignment]

    def replace(self, **changes: Any) -> KernelConfig:
        """A copy with `changes` (as `dataclasses.replace`)."""
        return KernelConfig(**{**asdict(self.core), **self.sections, **changes})

    def as_dict(self) -> dict[str, Any]:
        """Every key, as the run header records it (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in copy.deepcopy({**asdict(self.core), **self.sections}).items()}

    def complete(self, assembly: Assembly) -> KernelConfig:
        """This configuration checked against the mechanisms that will run it, with every
        key they own and it does not set at its default."""
        unknown = sorted(set(self.sections) - set(assembly.config))
        if unknown:
            import difflib

            known = sorted({*CORE_KEYS, *assembly.config})
            hint = difflib.get_close_matches(unknown[0], known, n=1)
            raise ConfigError(f"unknown config key {unknown[0]!r}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; known: {', '.join(known)}")
        values = {key: self.sections[key] if key in self.sections else copy.deepcopy(default)
                  for key, (_, default) in assembly.config.items()}
        for m in assembly.mechanisms:
            m.check_config({key: values[key] for key in m.config}, self.core.assets)
        known_guards = {g.name for g in assembly.guards}
        for g in self.core.disabled_guards:
            if g not in known_guards:
                raise ConfigError(f"unknown guard {g!r} in disabled_guards; known: "
                                  f"{sorted(known_guards)}")
        return KernelConfig(**asdict(self.core), **values)


def assemble(mechanisms: Any) -> Assembly:
    """The kernel's own guards, handlers and visibility with those of `mechanisms`, checked
    (what a kernel built on them runs)."""
    return Assembly.of(tuple(mechanisms), KERNEL_GUARDS, KERNEL_HANDLERS, KERNEL_VISIBILITY,
                       CORE_KEYS)


def _config(values: dict[str, Any]) -> KernelConfig:
    return KernelConfig(**values)


@dataclass
class TickSummary:
    tick: int
    events: int
    accepted: int
    rejected: int
    checkpoint: StoredCheckpoint
    reasons: dict[str, int] = field(default_factory=dict)


class Kernel:
    """One economy, made of the kernel's own records and `mechanisms` (kernel/mechanism.py).
    Create it on an empty store; it writes the header at tick 0. `log` makes the audit log
    it writes: `log(store, origin, key_name, operator_key, public_kinds)`. The standard
    economy, and resuming a log, are in `sandbank/economy.py`."""

    def __init__(self, store: Store, config: KernelConfig, operator_key: SigningKey,
                 *, mechanisms: tuple[Mechanism, ...] | list[Mechanism], log: Any,
                 _resume: EconomyState | None = None) -> None:
        if store.entry_count() != 0 and _resume is None:
            raise ConfigError("the store already holds a log; continue it with "
                              "sandbank.economy.resume()")
        self.assembly = assemble(mechanisms)
        self.mechanisms = self.assembly.mechanisms
        self.config = config = config.complete(self.assembly)
        self.store = store
        self.operator_key = operator_key
        self.state = _resume or EconomyState(self.mechanisms)
        self.handlers = self.assembly.handlers
        self.guards: tuple[Guard, ...] = tuple(
            g for g in self.assembly.guards if g.name not in config.disabled_guards
        )
        # the first guard authenticates the actor; a refusal before it passed is nobody's act
        self._authenticates = bool(self.guards) and self.guards[0].name == "identity"
        self.visibility = self.assembly.visibility
        public = frozenset(k for k, v in self.visibility.items() if v == PUBLIC)
        self.log = log(store, config.origin, config.key_name, operator_key, public)
        self.tick = 0
        self.actions_this_tick: dict[int, int] = {}
        self._queue: list[tuple[int, Action | None, Any, str]] = []
        self._feedback: dict[int, list[Feedback]] = {}  # outcomes in the last tick run
        self._inbox: dict[int, list[Any]] = {}  # messages received in the last tick run
        self.tainted: set[int] = set()  # agents shown instruction-like content last tick
        # what each agent was told in the last HEARD_TICKS ticks — (tick, sender, content):
        # what a payment may be answering (boundary/firewall.py). All of it: an inbox holds
        # at most INBOX_LIMIT a tick, so nothing is evicted early
        self.heard: dict[int, deque[tuple[int, int, str]]] = {}
        self._overflow: dict[int, int] = {}
        self._nonce_pending: int | None = None
        self.prechecked: dict[int, bytes] = {}  # id(queued action) -> key its signature verified with
        self._pool: ThreadPoolExecutor | None = None  # verifies a tick's signatures at once
        self._pool_pid = 0
        self.precheck_min = PRECHECK_MIN  # (0: verify each signature at its turn only)
        self._checked_with: bytes | None = None  # that key, for the action being processed
        # the last tick's actions that put a nonce on record: (actor, nonce, first seq, count)
        self.action_ranges: list[tuple[int, int, int, int]] = []
        self._logged_nonce: int | None = None
        self._views = tuple(m.views(self) for m in self.mechanisms if m.views is not None)
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
            config=cfg.as_dict(),
            safeguards={g.name: {"layer": g.layer, "enabled": g.name not in cfg.disabled_guards,
                                 "doc": g.doc} for g in self.assembly.guards},
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
            self.state.principal(actor).nonce = nonce
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
        for agent in sorted(self._inbox):
            self.heard.setdefault(agent, deque()).extend(
                (m.tick, m.sender, m.content) for m in self._inbox[agent])
        for agent in list(self.heard):
            h = self.heard[agent]
            while h and h[0][0] <= tick - HEARD_TICKS:
                h.popleft()
            if not h:
                del self.heard[agent]
        self._inbox, self._overflow = {}, {}
        ledger = self.state.ledger
        ledger.at_tick(tick)  # (replay calls it at the tick's first entry: the same window)
        for ev in ledger.due_expiries(tick):
            self._record(ev)
        for hook in self.assembly.tick_start:
            for ev in hook(self, tick):
                self.log.append(tick, ev.to_dict())

        queue, self._queue = self._queue, []
        prechecked, self.prechecked = self.prechecked, {}
        if self.config.verify_signatures and self.precheck_min and len(queue) >= \
                self.precheck_min and (workers := min(os.cpu_count() or 1, 8)) > 1:
            if self._pool is None or self._pool_pid != os.getpid():  # (a fork has no threads)
                self._pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="signatures")
                self._pool_pid = os.getpid()
            prechecked.update(precheck_signatures(
                self, [a for _, a, _, _ in queue if a is not None and id(a) not in prechecked],
                self._pool, workers))
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
        for hook in self.assembly.tick_end:
            for ev in hook(self, tick):
                self.log.append(tick, ev.to_dict())
        cp = self._commit(full_digest or tick % self.config.full_digest_every == 0)
        return TickSummary(tick, self.log.size - start, accepted, rejected, cp, reasons)

    def _process(self, action: Action, tick: int) -> tuple[bool, str]:
        handler = self.handlers.get(action.KIND)
        if handler is None:  # a kind registered in this process that no mechanism here has
            self._reject(NOBODY, _bounded(action.to_dict()), Reason.malformed_action,
                         f"no mechanism of this economy handles {action.KIND!r} (claimed "
                         f"actor {action.actor})")
            return False, Reason.malformed_action
        authenticated = not self._authenticates  # (an ablation without identity: trusted)
        try:
            for guard in self.guards:
                verdict = guard.check(self, action)
                if verdict is not None:
                    raise Reject(*verdict)
                authenticated = True
            try:
                events = handler(self, action, tick)
                if self.assembly.after and events and not any(  # (no events: a no-op,
                        isinstance(ev, Rejected) for ev in events):  # an idempotent retry)
                    for after in self.assembly.after:  # what an accepted action owes besides
                        events = [*events, *after(self, action, tick)]  # (never raises)
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
        """What `agent_id` may know now: its status, own accounts, what became of its
        actions in the last tick, its inbox, and each mechanism's view. Never other agents'
        state, never kernel objects."""
        agent = self.state.registry.agents.get(agent_id)
        if agent is None:
            raise KeyError(f"no agent with id {agent_id}")
        accounts = tuple(
            AccountView(a.id, a.asset, a.balance, a.available, a.debits_pending,
                        a.credits_pending)
            for a in self.state.ledger.accounts_of(agent_id)
        )
        views: dict[str, Any] = {}
        for view in self._views:
            views.update(view(agent_id))
        extra = None if views.keys() <= _OBSERVATION_FIELDS else {
            k: views.pop(k) for k in sorted(set(views) - _OBSERVATION_FIELDS)}
        return Observation(tick=self.tick, agent=agent_id, owner=agent.owner,
                           status=agent.status, accounts=accounts,
                           feedback=tuple(self._feedback.get(agent_id, ())),
                           skills=tuple(sorted(agent.skills.items())),
                           inbox=tuple(self._inbox.get(agent_id, ())),
                           inbox_overflow=self._overflow.get(agent_id, 0),
                           children=tuple(self.observe(c) for c in
                                          self.state.registry.children_of.get(agent_id, ())
                                          if self.state.registry.agents[c].status != "revoked"),
                           extra=MappingProxyType(extra) if extra else None, **views)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.store.close()


_OBSERVATION_FIELDS = frozenset(Observation.__dataclass_fields__) - {
    "tick", "agent", "owner", "status", "accounts", "feedback", "skills", "inbox",
    "inbox_overflow", "children", "extra"}

__all__ = ["Kernel", "KernelConfig", "ConfigError", "TickSummary", "QueueFull",
           "DEBITS_MUST_NOT_EXCEED_CREDITS"]

"""The mechanism protocol: all the kernel knows of a mechanism.

A mechanism — the exchange, the task market, the boundary, a control — is one `Mechanism`
object, and the kernel is built from a list of them (`sandbank/economy.py` names the
standard set). Each field is something an existing mechanism needs, and nothing more:

- `name`: its name, and the name of its state part (`k.state.<name>`), if it has one;
- `state`: makes its part of the economy's state (an object with `digest() -> bytes`, the
  part's share of every checkpoint's signed state digest, in the order of the list);
  `configure(part, header)` sets it up from the run header when the log begins or is
  replayed; `schedules(part, tick)`: what it still has due after `tick` (for the full
  digest, `EconomyState.schedules`); `check(part)`: its invariants (tests and `--check`);
- `config`: the configuration keys it owns, with their defaults (`KernelConfig` holds them;
  the run header records every one); `check_config(values, assets)` validates them and
  raises `ConfigError` naming the key; `sections`: where a scenario sets them (a top-level
  key, or `safeguards.<key>`), mapped to the config key;
- `handlers`: action kind -> handler (the action classes are registered with the schema by
  `register_action`); `appliers`: event class -> `bind(state) -> apply(event, tick)`, the fold
  of its own events (registered with `register_event`); `listeners`: the same for events
  another mechanism owns that its state also follows;
- `guards`: (rank, Guard) pairs it adds to the pipeline; all guards run in rank order
  (`GUARD_RANKS` names the stages); `tick_start` / `tick_end`: (rank, hook) pairs, run in
  rank order at the start of every tick (after hold expiries) and at its end (before the
  checkpoint); a hook returns the events it applied, which the kernel logs;
- `after(kernel, action, tick) -> events`: run once an action of any mechanism has been
  accepted and produced events (an idempotent retry that changed nothing does not count),
  in the same step (its events follow the action's own; it must never raise): a charge
  every accepted action of a kind owes (a Pigouvian tax on an action class,
  controls/policy.py);
- `views(kernel) -> observe(agent_id) -> {field: value}`: what it adds to an agent's
  observation (an `Observation` field, or a name of its own, which goes to `extra`);
- `visibility`: event kind -> PUBLIC, PARTIES or OVERSEERS (who may read its log entries;
  an event kind no mechanism declares is read by overseers only);
- `principal(part, actor)`: for actor ids it admits (overseers), the record holding the
  actor's `public_key` and `nonce`, else None — the stored record itself, not a copy: the
  identity guard advances its nonce there;
- `limit(part, name, actor)`: a tighter value (0: none) for one of the kernel's own limits,
  as oversight sets them: `spawn` (children per agent), `actions` (per tick, of `actor`);
- `requires`: the names of the mechanisms whose state it reads.

The kernel's own records (owners, agents, accounts, the ledger) are not mechanisms: they are
the economy itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbank.kernel.guards import Guard
    from sandbank.kernel.schema import Action, Event
    from sandbank.kernel.sequencer import Kernel

PUBLIC, PARTIES, OVERSEERS = "public", "parties", "overseers"
LEVELS = (PUBLIC, PARTIES, OVERSEERS)

# where guards stand in the pipeline (DESIGN.md): identity/auth -> interrupt/freeze -> role &
# clearance -> boundary -> fees & rate limits -> pre-trade risk; a mechanism picks a rank
GUARD_RANKS = {"identity": 100, "freeze": 200, "roles": 300, "clearance": 400,
               "boundary": 500, "rate": 600, "risk": 700}

Handler = Callable[["Kernel", "Action", int], "list[Event]"]
Hook = Callable[["Kernel", int], "Iterable[Event]"]
After = Callable[["Kernel", "Action", int], "list[Event]"]
Apply = Callable[["Event", int], None]
Bind = Callable[[Any], Apply]


def _none(*_: Any) -> None:
    return None


@dataclass(frozen=True, eq=False)
class Mechanism:
    name: str
    state: Callable[[], Any] | None = None
    configure: Callable[[Any, Any], None] | None = None
    schedules: Callable[[Any, int], Mapping[str, list]] | None = None
    check: Callable[[Any], None] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    check_config: Callable[[Mapping[str, Any], tuple[str, ...]], None] = _none
    sections: Mapping[str, str] = field(default_factory=dict)
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    appliers: Mapping[type, Bind] = field(default_factory=dict)
    listeners: Mapping[type, Bind] = field(default_factory=dict)
    guards: Sequence[tuple[int, Guard]] = ()
    tick_start: Sequence[tuple[int, Hook]] = ()
    tick_end: Sequence[tuple[int, Hook]] = ()
    after: After | None = None
    views: Callable[[Kernel], Callable[[int], Mapping[str, Any]]] | None = None
    visibility: Mapping[str, str] = field(default_factory=dict)
    principal: Callable[[Any, int], Any] | None = None
    limit: Callable[[Any, str, int], int] | None = None
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = sorted(k for k, v in self.visibility.items() if v not in LEVELS)
        if bad:
            raise ValueError(f"mechanism {self.name}: visibility of {bad} must be one of "
                             f"{LEVELS}")
        stateful = [f for f in ("configure", "schedules", "check", "principal", "limit")
                    if getattr(self, f) is not None]
        if stateful and self.state is None:
            raise ValueError(f"mechanism {self.name}: {stateful} need a state")


class MechanismError(ValueError):
    """A list of mechanisms that cannot make one economy (a clash, a missing requirement)."""


@dataclass(frozen=True)
class Assembly:
    """What the kernel derives from its list of mechanisms, checked once at construction."""

    mechanisms: tuple[Mechanism, ...]
    handlers: Mapping[str, Handler]
    guards: tuple[Guard, ...]
    tick_start: tuple[Hook, ...]
    tick_end: tuple[Hook, ...]
    after: tuple[After, ...]
    config: Mapping[str, tuple[Mechanism, Any]]  # config key -> (owner, default)
    visibility: Mapping[str, str]

    @classmethod
    def of(cls, mechanisms: Sequence[Mechanism], own_guards: Sequence[tuple[int, Guard]],
           own_handlers: Mapping[str, Handler], own_visibility: Mapping[str, str],
           core_config: Iterable[str]) -> Assembly:
        names = [m.name for m in mechanisms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise MechanismError(f"two mechanisms are named {dup}")
        handlers = dict(own_handlers)
        config: dict[str, tuple[Mechanism, Any]] = {}
        visibility = dict(own_visibility)
        core = set(core_config)
        for m in mechanisms:
            missing = [r for r in m.requires if r not in names]
            if missing:
                raise MechanismError(f"mechanism {m.name} needs {missing}, which this economy "
                                     f"does not have")
            for kind, h in m.handlers.items():
                if kind in handlers:
                    raise MechanismError(f"action {kind!r} is handled twice ({m.name})")
                handlers[kind] = h
            for key, default in m.config.items():
                if key in config or key in core:
                    raise MechanismError(f"config key {key!r} is owned twice ({m.name})")
                config[key] = (m, default)
            for kind, level in m.visibility.items():
                if kind in visibility:
                    raise MechanismError(f"the visibility of {kind!r} is declared twice")
                visibility[kind] = level
        first = min((rank for rank, _ in own_guards), default=0)
        early = [g.name for m in mechanisms for rank, g in m.guards if rank <= first]
        if early:  # the identity guard must run first: before it, nothing is authenticated
            raise MechanismError(f"guards {early} rank at or before the kernel's first guard")
        ranked = [*own_guards, *(g for m in mechanisms for g in m.guards)]
        guard_names = [g.name for _, g in ranked]
        dup = sorted({n for n in guard_names if guard_names.count(n) > 1})
        if dup:
            raise MechanismError(f"two guards are named {dup}")

        def order(pairs):  # by rank; ties keep the list's order (sorted is stable)
            return tuple(x for _, x in sorted(pairs, key=lambda p: p[0]))

        return cls(tuple(mechanisms), handlers, order(ranked),
                   order([h for m in mechanisms for h in m.tick_start]),
                   order([h for m in mechanisms for h in m.tick_end]),
                   tuple(m.after for m in mechanisms if m.after is not None), config, visibility)

"""Compartments and partitions (checklist 34, 35): nested sub-economies whose agents cannot
pay, message or contract with agents outside except through a declared bridge.

Every agent starts in the open economy (compartment ""). The operator or an overseer moves
agents into a named compartment (`partition`: one or many at once — also the emergency
control that cuts a group off from the rest, from the next action on). Then:
- `pay`, `transfer`, `send_message` (to one agent), `bid_task` (on another's task),
  `award_task`, `subcontract` and `judge` across compartments are refused
  (`compartment_wall`), unless the run's configuration declares a bridge between the two
  (`bridges: [{from: lab, to: "", kinds: [send_message]}]` — directional, per action kind);
- a broadcast reaches only the sender's compartment;
- an agent in a compartment trades only in markets assigned to it (`compartment` in the
  market's configuration); the open economy's markets are not its markets.

A mechanism of the control plane (`MECHANISM`, kernel/mechanism.py): state
`k.state.compartments`, the `compartments` guard, and the `bridges` config key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import BASELINE_AGENT_SAFETY, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, PARTIES, Mechanism
from sandbank.kernel.schema import OPERATOR, Action, Event, register_action, register_event

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

WALLED = {"pay", "transfer", "send_message", "bid_task", "award_task", "subcontract",
          "judge"}


@register_action
@dataclass(slots=True, kw_only=True)
class Partition(Action):
    """Move agents into a compartment ("" : back into the open economy)."""

    KIND: ClassVar[str] = "partition"
    SUPERVISOR: ClassVar[bool] = True
    agents: list[int]
    compartment: str
    reason: str = ""


@register_event
@dataclass(slots=True, kw_only=True)
class Partitioned(Event):
    KIND: ClassVar[str] = "partitioned"
    agents: list[int]
    compartment: str
    reason: str


class Compartments:
    def __init__(self) -> None:
        self.of: dict[int, str] = {}  # agent -> compartment (absent: the open economy)
        self.bridges: set[tuple[str, str, str]] = set()  # (from, to, action kind)

    def configure(self, bridges: list[dict[str, Any]]) -> None:
        for b in bridges:
            for kind in b.get("kinds", sorted(WALLED)):
                self.bridges.add((b.get("from", ""), b.get("to", ""), kind))

    def where(self, agent: int) -> str:
        return self.of.get(agent, "")

    def open_between(self, a: int, b: int, kind: str) -> bool:
        ca, cb = self.where(a), self.where(b)
        return ca == cb or (ca, cb, kind) in self.bridges

    def apply_partitioned(self, ev: Partitioned, tick: int) -> None:
        for a in ev.agents:
            if ev.compartment:
                self.of[a] = ev.compartment
            else:
                self.of.pop(a, None)

    def digest(self) -> bytes:
        from hashlib import sha256

        return sha256(repr((sorted(self.of.items()), sorted(self.bridges))).encode()).digest()


def partition(k: Kernel, a: Partition, tick: int) -> list[Event]:
    from sandbank.controls.controls import MONITOR, _overseer
    from sandbank.kernel.mechanisms import _name

    if a.compartment:
        _name(a.compartment, "compartment")
    missing = [x for x in a.agents if x not in k.state.registry.agents]
    if not a.agents or missing:
        raise Reject("unknown_agent", f"no agents {missing or a.agents}")
    if a.actor != OPERATOR:
        o = _overseer(k, a.actor)  # (a governor does not supervise)
        walled = [x for x in a.agents if k.state.compartments.where(x)]
        if o.kind == MONITOR and (not a.compartment or walled):
            raise Reject("not_authorised", "a monitor only restricts: it walls agents of "
                         "the open economy off, and moves or releases none already walled "
                         f"off ({walled or a.agents})")
    ev = Partitioned(actor=a.actor, agents=sorted(set(a.agents)), compartment=a.compartment,
                     reason=a.reason[:500])
    k.state.apply(ev, tick)
    return [ev]


def counterparty(k: Kernel, a: Action) -> int | None:
    """The agent on the other side of a walled action (None: none, or not known yet)."""
    s = k.state
    kind = a.KIND
    if kind in ("pay", "send_message"):
        return a.to or None  # type: ignore[attr-defined]
    if kind == "transfer":
        for t in a.transfers:  # type: ignore[attr-defined]
            acct = s.ledger.accounts.get(t.credit)
            if acct is not None and acct.holder > 0 and acct.holder != a.actor:
                return acct.holder
        return None
    if kind == "bid_task":
        t = s.tasks.tasks.get(a.task)  # type: ignore[attr-defined]
        return t.requester if t else None
    if kind == "award_task":
        t = s.tasks.tasks.get(a.task)  # type: ignore[attr-defined]
        bid = t.bids.get(a.bid) if t else None  # type: ignore[attr-defined]
        return bid[0] if bid else None
    if kind == "subcontract":
        return a.worker  # type: ignore[attr-defined]
    if kind == "judge":
        c = s.tasks.contracts.get(a.contract)  # type: ignore[attr-defined]
        return c.worker if c else None
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


BRIDGE_KEYS = {"from", "to", "kinds"}


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    bridges = values["bridges"]
    if not isinstance(bridges, (list, tuple)):
        raise ConfigError("bridges must be a list of {from, to, kinds}")
    for i, b in enumerate(bridges):
        if not isinstance(b, dict) or set(b) - BRIDGE_KEYS:
            raise ConfigError(f"bridges.{i} must be a mapping of {sorted(BRIDGE_KEYS)}")
        for end in ("from", "to"):
            v = b.get(end, "")
            if not isinstance(v, str) or len(v) > 64:
                raise ConfigError(f"bridges.{i}.{end} must be a compartment name (\"\": the "
                                  f"open economy)")
        if b.get("from", "") == b.get("to", ""):
            raise ConfigError(f"bridges.{i} joins a compartment to itself")
        kinds = b.get("kinds", sorted(WALLED))
        if not isinstance(kinds, list) or not kinds or any(k not in WALLED for k in kinds):
            raise ConfigError(f"bridges.{i}.kinds must list walled action kinds: "
                              f"{', '.join(sorted(WALLED))}")


MECHANISM = Mechanism(
    "compartments", state=Compartments,
    configure=lambda cs, header: cs.configure(header.config.get("bridges", [])),
    config={"bridges": ()}, check_config=check_config, sections={"bridges": "bridges"},
    handlers={Partition.KIND: partition},
    appliers={Partitioned: lambda s: s.compartments.apply_partitioned},
    guards=((GUARD_RANKS["clearance"] + 10, Guard(
        "compartments", BASELINE_AGENT_SAFETY, compartment_guard,
        "no payment, message or contract across compartments but through a bridge")),),
    visibility={"partitioned": PARTIES},
    requires=("exchange", "tasks"),
)

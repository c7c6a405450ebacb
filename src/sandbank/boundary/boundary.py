"""The sandbox boundary (checklist 1–5): the only path by which value or data may leave or
enter the economy is an `external` action naming a declared gateway.

Modes (the run's `boundary`):
- `impermeable` — nothing crosses: every `external` action is refused (`boundary_closed`)
  and the refusal is in the log with its actor, gateway, data and value.
- `semi_permeable` — only through the gateways declared in the run's configuration, each
  with a direction (`out`: send data and/or value; `in`: ask for them), a payload schema
  (`text`, `json`: an object, `amount`: a whole number), the roles allowed to use it, a
  size limit, a rate
  limit per agent per tick, a value limit per request and per agent per epoch, a controlled
  conversion rate (`rate_ppm`: outside units per unit, in millionths), whether only
  certified agents may use it, and the value above which a request waits for an overseer.

A request that passes the checks either crosses at once (`external_sent`; value out is
moved, at the gateway's rate, into the sandbox's boundary account — it has left) or waits
in the **approval queue** (`external_pending`, its value held). An overseer approves or
denies it (`approve_external`); at its deadline it is **denied by default**
(`external_denied`, the hold released). What the outside answers comes back as an
operator-submitted `external_response`, delivered to the agent's inbox as external
content — labelled and classified by the firewall like any message. The kernel never does
I/O: gateway adapters (boundary/gateways.py) act after a tick commits, and their answers are
logged, so a replay needs no outside world.

Nothing else in the kernel can move money or text out: the ledger has no account outside
the sandbox except the boundary account, and messages reach only agents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.boundary.firewall import classify, firewall_guard, solicited_guard
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import BASELINE_AGENT_SAFETY, Guard
from sandbank.kernel.mechanism import GUARD_RANKS, PARTIES, Mechanism
from sandbank.kernel.schema import (
    SYSTEM,
    Action,
    Event,
    Settled,
    register_action,
    register_event,
)
from sandbank.kernel.settlement import Settlement, SettlementFailed, require_account

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

IMPERMEABLE, SEMI_PERMEABLE = "impermeable", "semi_permeable"
MODES = (IMPERMEABLE, SEMI_PERMEABLE)
DIRECTIONS = ("in", "out")
GATEWAY_KEYS = {"name", "direction", "max_bytes", "rate_per_tick", "asset", "max_value",
                "epoch_value", "owner_epoch_value", "epoch_ticks", "rate_ppm", "certified_only",
                "approve_above", "approval_ticks", "adapter", "schema", "roles"}
SCHEMAS = ("text", "json", "amount")  # the payload a gateway accepts


@dataclass(frozen=True)
class Gateway:
    name: str
    direction: str = "out"
    max_bytes: int = 4096
    rate_per_tick: int = 1  # requests per agent per tick
    asset: str = ""  # the currency that may cross ("" : data only)
    max_value: int = 0  # per request
    epoch_value: int = 0  # per agent per epoch (0: no value may cross)
    # per beneficial owner per epoch, over all its agents: a limit per agent alone is split
    # by admitting or spawning more agents, so unless declared an owner gets one agent's
    # allowance (`epoch_value`) however many agents it runs; -1: only the per-agent limit
    owner_epoch_value: int | None = None
    epoch_ticks: int = 10
    rate_ppm: int = 1_000_000  # outside units per unit crossing, in millionths
    certified_only: bool = False
    approve_above: int = -1  # value above which an overseer must approve (-1: never)
    approval_ticks: int = 5  # how long a request waits before it is denied by default
    adapter: dict[str, Any] = field(default_factory=dict)  # for the lab (gateways.py)
    schema: str = "text"  # text | json (an object) | amount (a whole number)
    roles: tuple[str, ...] = ()  # if set, only agents holding one of these roles may use it

    def __post_init__(self) -> None:
        if self.owner_epoch_value is None:  # one allowance per beneficial owner
            object.__setattr__(self, "owner_epoch_value", self.epoch_value)

    @classmethod
    def parse(cls, spec: Any, assets: tuple[str, ...]) -> Gateway:
        if not isinstance(spec, dict) or "name" not in spec or set(spec) - GATEWAY_KEYS:
            raise ConfigError(f"gateway {spec!r}: needs a name; may set "
                              f"{sorted(GATEWAY_KEYS - {'name'})}")
        g = cls(**{**spec, "roles": tuple(spec.get("roles", ()))})
        if g.schema not in SCHEMAS:
            raise ConfigError(f"gateway {g.name}: schema must be one of {list(SCHEMAS)}")
        if g.direction not in DIRECTIONS:
            raise ConfigError(f"gateway {g.name}: direction must be in or out")
        if g.asset and g.asset not in assets:
            raise ConfigError(f"gateway {g.name}: asset {g.asset!r} is not in assets")
        for key in ("max_bytes", "rate_per_tick", "max_value", "epoch_value", "epoch_ticks",
                    "rate_ppm", "approval_ticks"):
            if type(getattr(g, key)) is not int or getattr(g, key) < 0:
                raise ConfigError(f"gateway {g.name}: {key} must be a non-negative integer")
        if type(g.owner_epoch_value) is not int or g.owner_epoch_value < -1:
            raise ConfigError(f"gateway {g.name}: owner_epoch_value must be an integer >= 0 "
                              f"(or -1: no limit per owner; unset: one agent's epoch_value)")
        return g


@register_action
@dataclass(slots=True, kw_only=True)
class External(Action):
    """Reach the outside through a declared gateway: send `data` and/or `amount` of `asset`
    out, or ask for them to come in."""

    KIND: ClassVar[str] = "external"
    gateway: str
    direction: str = "out"
    data: str = ""
    asset: str = ""
    amount: int = 0


@register_action
@dataclass(slots=True, kw_only=True)
class ApproveExternal(Action):
    """An overseer's decision on a request waiting in the approval queue."""

    KIND: ClassVar[str] = "approve_external"
    OVERSEER_ONLY: ClassVar[bool] = True
    request: int
    approve: bool
    note: str = ""


@register_action
@dataclass(slots=True, kw_only=True)
class ExternalResponse(Action):
    """What the outside answered a request (submitted by the operator's gateway runner):
    data for the agent's inbox, and for an inbound gateway value to credit."""

    KIND: ClassVar[str] = "external_response"
    OPERATOR_ONLY: ClassVar[bool] = True
    request: int
    data: str = ""
    amount: int = 0
    status: str = "ok"  # ok | failed (the outside refused or did not answer)


@register_event
@dataclass(slots=True, kw_only=True)
class ExternalPending(Settled):
    KIND: ClassVar[str] = "external_pending"
    request: int
    gateway: str
    direction: str
    size: int
    sha256: str
    asset: str
    amount: int
    expires: int


@register_event
@dataclass(slots=True, kw_only=True)
class ExternalSent(Settled):
    KIND: ClassVar[str] = "external_sent"
    request: int
    agent: int
    gateway: str
    direction: str
    size: int
    sha256: str
    asset: str
    amount: int  # units that left the sandbox (out)
    outside_amount: int  # what that is outside, at the gateway's rate
    approved_by: int  # 0: by rule


@register_event
@dataclass(slots=True, kw_only=True)
class ExternalDenied(Settled):
    KIND: ClassVar[str] = "external_denied"
    request: int
    agent: int
    reason: str  # denied | timeout


@register_event
@dataclass(slots=True, kw_only=True)
class ExternalReceived(Settled):
    KIND: ClassVar[str] = "external_received"
    request: int
    agent: int
    gateway: str
    status: str
    size: int
    sha256: str
    asset: str
    amount: int  # units that came into the sandbox


@dataclass(slots=True)
class Request:
    id: int
    agent: int
    gateway: str
    direction: str
    size: int
    sha256: str
    asset: str
    amount: int
    tick: int
    status: str  # pending | sent | denied | answered
    expires: int = 0
    hold: int = 0
    owner: int = 0  # the agent's beneficial owner (the per-owner allowance)


def _owner(s: Any, agent: int) -> int:
    a = s.registry.agents.get(agent)
    return a.owner if a else 0


class Boundary:
    def __init__(self) -> None:
        self.mode = IMPERMEABLE
        self.gateways: dict[str, Gateway] = {}
        self.requests: dict[int, Request] = {}
        self.pending: dict[int, Request] = {}  # the approval queue
        self.this_tick: dict[tuple[int, str], tuple[int, int]] = {}  # (agent, gateway) -> (tick, n)
        self.epoch_used: dict[tuple[int, str, int], int] = {}  # (agent, gateway, epoch) -> value
        self.owner_used: dict[tuple[int, str, int], int] = {}  # (owner, gateway, epoch) -> value
        self.out_value: dict[str, int] = {}  # asset -> units that left
        self.in_value: dict[str, int] = {}  # asset -> units that came in
        self.out_bytes = 0
        self.in_bytes = 0

    def configure(self, mode: str, gateways: list[dict[str, Any]], assets: tuple[str, ...]) -> None:
        self.mode = mode
        self.gateways = {g.name: g for g in (Gateway.parse(x, assets) for x in gateways)}

    def digest(self) -> bytes:
        """Every request whole (its gateway, hold and expiry decide what happens to it) and
        the per-tick counts the rate limit reads, with the flows."""
        return sha256(repr((sorted(self.out_value.items()), sorted(self.in_value.items()),
                            self.out_bytes, self.in_bytes, sorted(self.epoch_used.items()),
                            sorted(self.owner_used.items()),
                            sorted((r.id, r.agent, r.gateway, r.direction, r.size, r.sha256,
                                    r.asset, r.amount, r.tick, r.status, r.expires, r.hold,
                                    r.owner)
                                   for r in self.requests.values()),
                            sorted(self.this_tick.items()))).encode()).digest()

    # appliers
    def _request(self, ev: Any, agent: int, status: str, tick: int, expires: int = 0,
                 owner: int = 0) -> Request:
        r = Request(ev.request, agent, ev.gateway, ev.direction, ev.size, ev.sha256, ev.asset,
                    ev.amount, tick, status, expires, owner=owner)
        self.requests[r.id] = r
        key = (agent, r.gateway)
        last_tick, n = self.this_tick.get(key, (tick, 0))
        self.this_tick[key] = (tick, n + 1 if last_tick == tick else 1)
        return r

    def used(self, agent: int, gateway: str, tick: int) -> int:
        """Requests an agent made through a gateway in this tick."""
        last_tick, n = self.this_tick.get((agent, gateway), (-1, 0))
        return n if last_tick == tick else 0

    def apply_pending(self, ev: ExternalPending, tick: int, owner: int = 0) -> None:
        r = self._request(ev, ev.actor, "pending", tick, ev.expires, owner)
        r.hold = ev.transfers[0]["id"] if ev.transfers else 0  # the SYSTEM hold on its value
        self.pending[r.id] = r
        self._account(r, tick)

    def apply_sent(self, ev: ExternalSent, tick: int, owner: int = 0) -> None:
        r = self.requests.get(ev.request)
        if r is None:  # crossed at once
            r = self._request(ev, ev.agent, "sent", tick, owner=owner)
            self._account(r, tick)
        r.status = "sent"
        self.pending.pop(r.id, None)
        if ev.direction == "out":
            self.out_bytes += ev.size
            if ev.amount:
                self.out_value[ev.asset] = self.out_value.get(ev.asset, 0) + ev.amount

    def apply_denied(self, ev: ExternalDenied, tick: int) -> None:
        r = self.requests[ev.request]
        r.status = "denied"
        self.pending.pop(r.id, None)
        self._count(r, -r.amount)

    def apply_received(self, ev: ExternalReceived, tick: int) -> None:
        r = self.requests[ev.request]
        r.status = "answered"
        self.in_bytes += ev.size
        if ev.amount:
            self.in_value[ev.asset] = self.in_value.get(ev.asset, 0) + ev.amount

    def _account(self, r: Request, tick: int) -> None:
        self._count(r, r.amount)

    def _count(self, r: Request, amount: int) -> None:
        """What a request uses of its agent's and its owner's epoch allowance."""
        if not amount:
            return
        epoch = r.tick // max(1, self.gateways[r.gateway].epoch_ticks)
        for used, who in ((self.epoch_used, r.agent), (self.owner_used, r.owner)):
            key = (who, r.gateway, epoch)
            used[key] = used.get(key, 0) + amount


def _boundary_account(k: Kernel, asset: str) -> int:
    """The sandbox's boundary account for an asset: where value that left is kept on the
    books (the outside is not an account of ours), and what inbound value is paid from."""
    return k.state.ledger.treasury[asset]


def external(k: Kernel, a: External, tick: int) -> list[Event]:
    if a.direction not in DIRECTIONS:
        raise Reject("invalid_field", f"direction must be one of {list(DIRECTIONS)}")
    if a.amount < 0:
        raise Reject("invalid_field", "amount must not be negative")
    body = a.data.encode("utf-8")
    b = k.state.boundary
    if b.mode == IMPERMEABLE:
        raise Reject("boundary_closed",
                     f"the sandbox is impermeable: {a.direction}bound request via gateway "
                     f"{a.gateway!r} ({len(body)} bytes, {a.amount} {a.asset or '-'}) denied")
    g = b.gateways.get(a.gateway)
    if g is None:
        raise Reject("unknown_gateway", f"no gateway {a.gateway!r}; declared: {sorted(b.gateways)}")
    if a.direction != g.direction:
        raise Reject("wrong_direction", f"gateway {g.name} is {g.direction}bound")
    if len(body) > g.max_bytes:
        raise Reject("too_large", f"{len(body)} bytes; gateway {g.name} takes {g.max_bytes}")
    if b.used(a.actor, g.name, tick) >= g.rate_per_tick:
        raise Reject("rate_limited", f"gateway {g.name} takes {g.rate_per_tick} requests per "
                     f"agent per tick")
    if g.roles and not set(g.roles) & set(k.state.roles.roles.get(a.actor, ())):
        raise Reject("role_denied", f"gateway {g.name} is for the roles {list(g.roles)}")
    problem = _schema_problem(g.schema, a.data)
    if problem:
        raise Reject("bad_payload", f"gateway {g.name} takes {g.schema}: {problem}")
    if g.certified_only and a.actor not in k.state.policy.certified:
        raise Reject("not_certified", f"gateway {g.name} needs a certified agent (clearance)")
    if a.amount:
        if not g.asset or a.asset != g.asset:
            raise Reject("no_value", f"gateway {g.name} carries no {a.asset or 'value'}")
        if a.amount > g.max_value:
            raise Reject("over_limit", f"{a.amount} exceeds gateway {g.name}'s {g.max_value} "
                         f"per request")
        epoch = tick // max(1, g.epoch_ticks)
        spent = b.epoch_used.get((a.actor, g.name, epoch), 0)
        if spent + a.amount > g.epoch_value:
            raise Reject("over_limit", f"agent {a.actor} has {g.epoch_value - spent} left on "
                         f"gateway {g.name} this epoch")
        if g.owner_epoch_value >= 0:
            owner = k.state.registry.agents[a.actor].owner
            spent = b.owner_used.get((owner, g.name, epoch), 0)
            if spent + a.amount > g.owner_epoch_value:
                raise Reject("over_limit", f"owner {owner} (of agent {a.actor}) has "
                             f"{g.owner_epoch_value - spent} left on gateway {g.name} this "
                             f"epoch, over all its agents")
    digest = sha256(body).hexdigest()
    if body:
        k.log.put_content(bytes.fromhex(digest), body)
    request = len(b.requests) + 1
    out = a.direction == "out"
    if a.amount and out:
        acct = require_account(k, a.actor, a.asset)
        if acct.available < a.amount:
            raise Reject("insufficient_funds", f"{acct.available} {a.asset} available")
    if g.approve_above >= 0 and a.amount > g.approve_above:
        st = Settlement(k)
        if a.amount and out:
            st.hold(require_account(k, a.actor, a.asset).id, a.asset, a.amount)
        try:
            transfers = st.commit()
        except SettlementFailed as e:
            raise Reject("settlement_failed", str(e)) from None
        ev: Event = ExternalPending(actor=a.actor, transfers=transfers, request=request,
                                    gateway=g.name, direction=a.direction, size=len(body),
                                    sha256=digest, asset=a.asset, amount=a.amount,
                                    expires=tick + g.approval_ticks)
        k.state.apply(ev, tick, ledger_applied=True)
        return [ev]
    st = Settlement(k)
    if a.amount and out:
        st.pay(require_account(k, a.actor, a.asset).id, _boundary_account(k, a.asset), a.amount)
    try:
        transfers = st.commit()
    except SettlementFailed as e:
        raise Reject("settlement_failed", str(e)) from None
    ev = ExternalSent(actor=SYSTEM, transfers=transfers, request=request, agent=a.actor,
                      gateway=g.name, direction=a.direction, size=len(body), sha256=digest,
                      asset=a.asset, amount=a.amount if out else 0,
                      outside_amount=a.amount * g.rate_ppm // 1_000_000 if out else 0,
                      approved_by=0)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def _schema_problem(schema: str, data: str) -> str:
    if schema == "json":
        import json

        try:
            doc = json.loads(data)
        except ValueError as e:
            return f"not JSON ({e})"
        return "" if isinstance(doc, dict) else "not a JSON object"
    if schema == "amount":
        return "" if data.strip().isdigit() else "not a whole number"
    return ""


def _release(k: Kernel, r: Request, take: bool) -> list[dict[str, Any]]:
    st = Settlement(k)
    if r.hold:
        if take:
            st.take((SYSTEM, r.hold), r.amount, _boundary_account(k, r.asset), r.asset)
        else:
            st.void((SYSTEM, r.hold))
    return st.commit()


def approve_external(k: Kernel, a: ApproveExternal, tick: int) -> list[Event]:
    who = k.state.principal(a.actor)  # an admitted overseer (controls/controls.py) ...
    if getattr(who, "kind", None) != "overseer":  # ... of the certified kind
        raise Reject("not_authorised", "only an overseer decides on boundary requests")
    b = k.state.boundary
    r = b.pending.get(a.request)
    if r is None:
        raise Reject("unknown_request", f"no request {a.request} waiting for approval")
    g = b.gateways[r.gateway]
    if not a.approve:
        ev: Event = ExternalDenied(actor=a.actor, transfers=_release(k, r, take=False),
                                   request=r.id, agent=r.agent, reason="denied")
        k.state.apply(ev, tick, ledger_applied=True)
        return [ev]
    out = r.direction == "out"
    ev = ExternalSent(actor=SYSTEM, transfers=_release(k, r, take=out), request=r.id,
                      agent=r.agent, gateway=r.gateway, direction=r.direction, size=r.size,
                      sha256=r.sha256, asset=r.asset, amount=r.amount if out else 0,
                      outside_amount=r.amount * g.rate_ppm // 1_000_000 if out else 0,
                      approved_by=a.actor)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def external_response(k: Kernel, a: ExternalResponse, tick: int) -> list[Event]:
    from sandbank.kernel.observation import Message

    b = k.state.boundary
    r = b.requests.get(a.request)
    if r is None or r.status != "sent":
        raise Reject("unknown_request", f"request {a.request} is not waiting for an answer")
    g = b.gateways[r.gateway]
    if a.status not in ("ok", "failed") or a.amount < 0:
        raise Reject("invalid_field", "status is ok or failed; amount is not negative")
    amount = a.amount if r.direction == "in" and a.status == "ok" else 0
    if amount and (not g.asset or amount > g.max_value):
        raise Reject("over_limit", f"gateway {g.name} brings in at most {g.max_value}")
    inside = amount * 1_000_000 // max(1, g.rate_ppm)  # the outside's units, converted
    st = Settlement(k)
    if inside:
        st.pay(_boundary_account(k, g.asset), require_account(k, r.agent, g.asset).id, inside)
    transfers = st.commit()
    body = a.data.encode("utf-8")
    digest = sha256(body).hexdigest()
    if body:
        k.log.put_content(bytes.fromhex(digest), body)
        flags = tuple(classify(a.data))
        k.deliver(r.agent, Message(tick, 0, a.data, False, f"external:{g.name}", bool(flags),
                                   flags))
    ev = ExternalReceived(actor=a.actor, transfers=transfers, request=r.id, agent=r.agent,
                          gateway=g.name, status=a.status, size=len(body), sha256=digest,
                          asset=g.asset if inside else "", amount=inside)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def boundary_tick(k: Kernel, tick: int) -> list[Event]:
    """Requests that waited too long are denied: fail safe, never fail open."""
    out: list[Event] = []
    b = k.state.boundary
    for r in sorted(b.pending.values(), key=lambda r: r.id):
        if tick >= r.expires:
            ev = ExternalDenied(actor=SYSTEM, transfers=_release(k, r, take=False), request=r.id,
                                agent=r.agent, reason="timeout")
            k.state.apply(ev, tick, ledger_applied=True)
            out.append(ev)
    return out


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    if values["boundary"] not in MODES:
        raise ConfigError(f"boundary must be one of {list(MODES)}")
    names = [Gateway.parse(g, assets).name for g in values["gateways"]]
    if len(set(names)) != len(names):
        raise ConfigError("gateway names must be distinct")
    if values["gateways"] and values["boundary"] == IMPERMEABLE:
        raise ConfigError("gateways are declared but the boundary is impermeable: set "
                          "boundary: semi_permeable to open them")


MECHANISM = Mechanism(
    "boundary", state=Boundary,
    configure=lambda b, header: b.configure(header.config.get("boundary", IMPERMEABLE),
                                            header.config.get("gateways", []),
                                            tuple(header.assets)),
    config={"boundary": IMPERMEABLE, "gateways": ()}, check_config=check_config,
    sections={"gateways": "gateways", "safeguards.boundary": "boundary"},
    handlers={External.KIND: external, ApproveExternal.KIND: approve_external,
              ExternalResponse.KIND: external_response},
    appliers={
        ExternalPending: lambda s: lambda ev, tick: s.boundary.apply_pending(
            ev, tick, _owner(s, ev.actor)),
        ExternalSent: lambda s: lambda ev, tick: s.boundary.apply_sent(
            ev, tick, _owner(s, ev.agent)),
        ExternalDenied: lambda s: s.boundary.apply_denied,
        ExternalReceived: lambda s: s.boundary.apply_received,
    },
    guards=((GUARD_RANKS["boundary"], Guard(
        "firewall", BASELINE_AGENT_SAFETY, firewall_guard,
        "no privileged action in the tick after an agent was shown tainted content")),
            (GUARD_RANKS["boundary"] + 1, Guard(
                "solicited", BASELINE_AGENT_SAFETY, solicited_guard,
                "no payment of the amount, to the beneficiary, another agent's recent "
                "messages asked for, however worded or encoded"))),
    tick_start=((40, boundary_tick),),
    visibility=dict.fromkeys(("external_pending", "external_sent", "external_received",
                              "external_denied"), PARTIES),
    requires=("policy", "roles", "controls"),  # approvals by overseers (their principal)
)

"""Incentive levers (paper §3.1.2; checklist 8–11): fees, Pigouvian taxes, message
micro-fees, rebates for certified agents, and bonds. Every charge is a real transfer to the
treasury through a Settlement.

Parameters change only by a governor's `set_policy` action (operator for now; the
regulation issue adds quorum). A change is logged with the tick it takes effect — always the
next tick — and looked up by tick, so a live run and its replay agree on every fee.

A Pigouvian tax names its externality class: an agent action kind (`external`, `spawn_agent`,
`send_message`, ...) is taxed per accepted action of that kind, charged in the fee asset in
the same step (a `tax_charged` entry after the action's own; an agent that has less
available than the tax is refused, `insufficient_funds`); any other class is a task category,
taxed per externality unit at award (markets/tasks.py; a task may not take an action kind as
its category). An operator, overseer or governor action kind cannot be taxed.

A mechanism of the control plane (`MECHANISM`, kernel/mechanism.py): state
`k.state.policy` (the markets read its rates), and the `policy` config key and scenario section.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import MARKET_DESIGN, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, PARTIES, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    ACTION_TYPES,
    OPERATOR,
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

BPS = 10_000
PARAMS: dict[str, tuple[int, int, str]] = {  # name -> (default, maximum, meaning)
    "trade_fee_bps": (0, 1_000, "fee on the notional of every fill, paid by the taker"),
    "task_fee_bps": (0, 2_000, "fee on every task payout, paid by the payee"),
    "message_fee": (0, 10**9, "flat fee per message, in the fee asset"),
    "certified_rebate_bps": (0, BPS, "share of fees and taxes rebated to certified agents"),
    "task_bond_bps": (0, BPS, "bond a worker posts on award, as a share of the price"),
    "max_message_bytes": (4_096, 1 << 20, "largest message, in UTF-8 bytes"),
    "reputation_epoch": (5, 10_000, "ticks between reputation updates"),
    "reputation_decay": (900, 1_000, "permille of past outcomes kept at each update"),
    "reputation_credibility": (1, 1, "weight outcomes by the rater's graph trust (0: count all)"),
    "rating_budget": (10, 10**6, "outcomes per rater per epoch at full weight"),
    "trust_alpha": (150, 1_000, "EigenTrust's restart probability, thousandths"),
    "gate_reward": (0, 10**15, "tasks with at least this reward need gate_reputation (0: off)"),
    "gate_reputation": (0, 1_000, "public score (thousandths) the gates require"),
    "gate_order_qty": (0, 10**15, "orders above this size need gate_reputation (0: off)"),
    "privileged_amount": (1_000, 10**15, "payments above this are privileged (firewall)"),
    "clearance_required": (0, 1, "high-stakes actions need a certified agent (roles.py)"),
    "judge_deadline": (0, 10_000, "ticks a named judge has to rule (0: no obligation)"),
    "judge_penalty": (0, 10**15, "what a judge that misses its deadline pays"),
}
MAX_TAX = 10**9


@register_action
@dataclass(slots=True, kw_only=True)
class SetPolicy(Action):
    """Change an incentive parameter (`param`), or the Pigouvian tax per unit of an
    externality class (`param="tax"`, `key=<class>`); effective from the next tick."""

    KIND: ClassVar[str] = "set_policy"
    OPERATOR_ONLY: ClassVar[bool] = True
    param: str
    value: int
    key: str = ""


@register_action
@dataclass(slots=True, kw_only=True)
class Certify(Action):
    """Mark an agent as certified (it earns the safety rebate) or not (operator only)."""

    KIND: ClassVar[str] = "certify"
    OPERATOR_ONLY: ClassVar[bool] = True
    agent: int
    certified: bool


@register_event
@dataclass(slots=True, kw_only=True)
class PolicyChanged(Event):
    KIND: ClassVar[str] = "policy_changed"
    param: str
    key: str
    value: int
    effective_tick: int


@register_event
@dataclass(slots=True, kw_only=True)
class CertificationChanged(Event):
    KIND: ClassVar[str] = "certification_changed"
    agent: int
    certified: bool


@register_event
@dataclass(slots=True, kw_only=True)
class TaxCharged(Settled):
    """The Pigouvian tax an accepted action of a taxed kind paid (`due` after the certified
    rebate). `paid` is less only when the action itself spent what the guard saw available
    (a bid reserving every unit of cash): the rest is owed (`owed`, the agent's debt now),
    and an agent in debt has no action accepted but cancelling orders until it is collected
    (`action_kind` "debt": a collection at the start of a tick)."""

    KIND: ClassVar[str] = "tax_charged"
    agent: int
    action_kind: str
    due: int
    paid: int
    owed: int = 0


def taxable_kind(kind: str) -> bool:
    """Is `kind` an agent action kind (which a tax on that class charges per action)?"""
    cls = ACTION_TYPES.get(kind)
    return cls is not None and not (cls.OPERATOR_ONLY or cls.OVERSEER_ONLY or cls.SUPERVISOR)


@register_action
@dataclass(slots=True, kw_only=True)
class PostStake(Action):
    """Lock `amount` more of `asset` as a stake (held, slashable by the operator)."""

    KIND: ClassVar[str] = "post_stake"
    asset: str
    amount: int


@register_action
@dataclass(slots=True, kw_only=True)
class ReleaseStake(Action):
    """Take the whole stake in `asset` back."""

    KIND: ClassVar[str] = "release_stake"
    asset: str


@register_action
@dataclass(slots=True, kw_only=True)
class Slash(Action):
    """Move `amount` of an agent's stake to the treasury, for a verified violation."""

    KIND: ClassVar[str] = "slash"
    OPERATOR_ONLY: ClassVar[bool] = True
    agent: int
    asset: str
    amount: int
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class StakeChanged(Settled):
    KIND: ClassVar[str] = "stake_changed"
    agent: int
    asset: str
    staked: int  # the stake now held
    hold: int  # its SYSTEM hold id (0: none)
    slashed: int  # moved to the treasury by this change
    reason: str


class Policy:
    def __init__(self) -> None:
        self.fee_asset = ""
        self.stakes: dict[tuple[int, str], tuple[int, int]] = {}  # -> (hold id, amount)
        self._history: dict[str, list[tuple[int, int]]] = {}  # name -> [(from tick, value)]
        self.certified: set[int] = set()
        self.taxed_kinds: set[str] = set()  # action kinds a tax was ever set on
        self.tax_debt: dict[int, int] = {}  # agent -> tax owed (an action spent it first)

    def configure(self, fee_asset: str, initial: dict[str, Any]) -> None:
        self.fee_asset = fee_asset
        for name, (default, _, _) in PARAMS.items():
            self._history[name] = [(0, int(initial.get(name, default)))]
        for cls, rate in sorted(initial.get("taxes", {}).items()):
            self._history[f"tax:{cls}"] = [(0, int(rate))]
            if taxable_kind(cls):
                self.taxed_kinds.add(cls)

    def value(self, name: str, tick: int) -> int:
        for start, v in reversed(self._history.get(name, ())):
            if start <= tick:
                return v
        return 0

    def in_force(self, tick: int) -> list[list[Any]]:
        """Every parameter and tax with its value at `tick`, by name ([name, value]; a tax
        is `tax:<class>`): the policy as it stands, defaults included."""
        return sorted([name, self.value(name, tick)] for name in self._history)

    def tax(self, cls: str, tick: int) -> int:
        return self.value(f"tax:{cls}", tick) if cls else 0

    def charge(self, agent: int, amount: int, tick: int) -> int:
        """`amount` after the certified rebate."""
        if agent in self.certified and amount:
            amount -= amount * self.value("certified_rebate_bps", tick) // BPS
        return amount

    def fee(self, agent: int, notional: int, param: str, tick: int) -> int:
        return self.charge(agent, notional * self.value(param, tick) // BPS, tick)

    def apply_changed(self, ev: PolicyChanged) -> None:
        name = f"tax:{ev.key}" if ev.param == "tax" else ev.param
        self._history.setdefault(name, []).append((ev.effective_tick, ev.value))
        if ev.param == "tax" and taxable_kind(ev.key):
            self.taxed_kinds.add(ev.key)

    def apply_taxed(self, ev: TaxCharged) -> None:
        if ev.owed:
            self.tax_debt[ev.agent] = ev.owed
        else:
            self.tax_debt.pop(ev.agent, None)

    def apply_certified(self, ev: CertificationChanged) -> None:
        (self.certified.add if ev.certified else self.certified.discard)(ev.agent)

    def apply_stake(self, ev: StakeChanged) -> None:
        if ev.staked:
            self.stakes[(ev.agent, ev.asset)] = (ev.hold, ev.staked)
        else:
            self.stakes.pop((ev.agent, ev.asset), None)

    def digest(self) -> bytes:
        return sha256(canonical_bytes(
            [self.fee_asset, sorted([k, [list(x) for x in v]] for k, v in self._history.items()),
             sorted(self.certified), sorted([a, s, h, n] for (a, s), (h, n) in self.stakes.items()),
             sorted(self.taxed_kinds), sorted([a, n] for a, n in self.tax_debt.items())]
        )).digest()

    def check(self, param: str, key: str, value: int) -> str | None:
        """None if the change is valid, else why not."""
        if param == "tax":
            if not key or len(key) > 64:
                return "a tax needs its externality class in `key`"
            cls = ACTION_TYPES.get(key)
            if cls is not None and not taxable_kind(key):
                return (f"{key} is an operator, overseer or governor action: its class cannot "
                        "be taxed")
            return None if 0 <= value <= MAX_TAX else f"tax must be within 0..{MAX_TAX}"
        if param not in PARAMS:
            return f"unknown parameter {param!r}; known: tax, {', '.join(sorted(PARAMS))}"
        if key:
            return f"{param} takes no key"
        top = PARAMS[param][1]
        return None if 0 <= value <= top else f"{param} must be within 0..{top}"


def set_policy(k: Kernel, a: SetPolicy, tick: int) -> list[Event]:
    if k.config.governance_quorum:
        raise Reject("needs_quorum", f"changes need {k.config.governance_quorum} governors' "
                     f"approval: propose_change (controls/emergency.py)")
    problem = k.state.policy.check(a.param, a.key, a.value)
    if problem:
        raise Reject("invalid_policy", problem)
    ev = PolicyChanged(actor=a.actor, param=a.param, key=a.key, value=a.value,
                       effective_tick=tick + 1)
    k.state.apply(ev, tick)
    return [ev]


def certify(k: Kernel, a: Certify, tick: int) -> list[Event]:
    if a.agent not in k.state.registry.agents:
        raise Reject("unknown_agent", f"no agent with id {a.agent}")
    ev = CertificationChanged(actor=a.actor, agent=a.agent, certified=a.certified)
    k.state.apply(ev, tick)
    return [ev]


def stake_event(k: Kernel, st: Settlement, agent: int, asset: str, staked: int, hold: int,
                 slashed: int, reason: str, actor: int, tick: int) -> list[Event]:
    ev = StakeChanged(actor=actor, transfers=st.commit(), agent=agent, asset=asset,
                      staked=staked, hold=hold, slashed=slashed, reason=reason)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def post_stake(k: Kernel, a: PostStake, tick: int) -> list[Event]:
    acct = require_account(k, a.actor, a.asset)
    if a.amount <= 0:
        raise Reject("invalid_amount", "a stake must be positive")
    if acct.available < a.amount:
        raise Reject("insufficient_funds", f"needs {a.amount} {a.asset}, has {acct.available}")
    st = Settlement(k)
    old_hold, old = k.state.policy.stakes.get((a.actor, a.asset), (0, 0))
    if old_hold:
        st.void((SYSTEM, old_hold))
    hold = st.hold(acct.id, a.asset, old + a.amount)
    return stake_event(k, st, a.actor, a.asset, old + a.amount, hold[1], 0, "posted", a.actor,
                        tick)


def release_stake(k: Kernel, a: ReleaseStake, tick: int) -> list[Event]:
    hold, _ = k.state.policy.stakes.get((a.actor, a.asset), (0, 0))
    if not hold:
        raise Reject("no_stake", f"agent {a.actor} has no {a.asset} stake")
    st = Settlement(k)
    st.void((SYSTEM, hold))
    return stake_event(k, st, a.actor, a.asset, 0, 0, 0, "released", a.actor, tick)


def slash(k: Kernel, a: Slash, tick: int) -> list[Event]:
    hold, staked = k.state.policy.stakes.get((a.agent, a.asset), (0, 0))
    if not hold:
        raise Reject("no_stake", f"agent {a.agent} has no {a.asset} stake")
    if not 0 < a.amount <= staked:
        raise Reject("invalid_amount", f"slash must be within 1..{staked}")
    if not a.reason.strip():
        raise Reject("invalid_field", "a slash needs the violation it answers")
    st = Settlement(k)
    new = st.take((SYSTEM, hold), a.amount, k.state.ledger.treasury[a.asset], a.asset)
    return stake_event(k, st, a.agent, a.asset, staked - a.amount, new[1] if new else 0,
                        a.amount, a.reason, a.actor, tick)


def action_tax_due(k: Kernel, a: Action, tick: int) -> int:
    p: Policy = k.state.policy
    if a.KIND not in p.taxed_kinds or a.actor <= OPERATOR:
        return 0
    return p.charge(a.actor, p.tax(a.KIND, tick), tick)


def action_tax_guard(k: Kernel, a: Action) -> Verdict:
    p: Policy = k.state.policy
    if p.tax_debt and a.actor in p.tax_debt and a.KIND != "cancel_order":
        return ("tax_owed", f"agent {a.actor} owes {p.tax_debt[a.actor]} {p.fee_asset} of tax "
                f"(an action spent what would have paid it): nothing but cancelling orders is "
                f"accepted until it is collected, at the start of a tick")
    due = action_tax_due(k, a, k.tick)
    if not due:
        return None
    acct = k.state.ledger.account_of(a.actor, p.fee_asset)
    have = acct.available if acct is not None else 0
    if have < due:
        return ("insufficient_funds", f"a {a.KIND} is taxed {due} {p.fee_asset} "
                f"(policy.taxes); agent {a.actor} has {have} available")
    return None


def _collect(k: Kernel, agent: int, kind: str, due: int, tick: int) -> list[Event]:
    """Take `due` of tax from what `agent` has available; what it cannot pay is owed.
    Never raises."""
    asset = k.state.policy.fee_asset
    acct = k.state.ledger.account_of(agent, asset)
    paid = max(0, min(due, acct.available)) if acct is not None else 0
    if kind == "debt" and not paid:
        return []  # nothing to collect yet: nothing changes, nothing is logged
    st = Settlement(k)
    if paid:
        st.fee(acct.id, asset, paid)
    try:
        transfers = st.commit()
    except SettlementFailed:  # (the treasury at the ledger's maximum: nothing is taken)
        transfers, paid = [], 0
    ev = TaxCharged(actor=SYSTEM, transfers=transfers, agent=agent, action_kind=kind,
                    due=due, paid=paid, owed=due - paid)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def charge_action_tax(k: Kernel, a: Action, tick: int) -> list[Event]:
    """After an accepted action of a taxed kind: its tax, to the treasury (never raises: it
    takes what is available, which the guard saw cover the tax before the action ran; what
    the action itself spent first is owed, and collected at the start of later ticks)."""
    due = action_tax_due(k, a, tick)
    return _collect(k, a.actor, a.KIND, due, tick) if due else []


def collect_tax_debts(k: Kernel, tick: int) -> list[Event]:
    debts = k.state.policy.tax_debt
    return [ev for agent in sorted(debts) for ev in _collect(k, agent, "debt", debts[agent],
                                                            tick)] if debts else []


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    for key, value in values["policy"].items():
        if key == "taxes":
            if not isinstance(value, dict) or not all(isinstance(c, str) for c in value):
                raise ConfigError("policy.taxes must map externality classes (names: an "
                                  "agent action kind or a task category) to rates")
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


MECHANISM = Mechanism(
    "policy", state=Policy,
    configure=lambda policy, header: policy.configure(header.assets[0],
                                                      header.config.get("policy", {})),
    config={"policy": {}}, check_config=check_config, sections={"policy": "policy"},
    handlers={SetPolicy.KIND: set_policy, Certify.KIND: certify, PostStake.KIND: post_stake,
              ReleaseStake.KIND: release_stake, Slash.KIND: slash},
    appliers={
        PolicyChanged: lambda s: lambda ev, tick: s.policy.apply_changed(ev),
        CertificationChanged: lambda s: lambda ev, tick: s.policy.apply_certified(ev),
        StakeChanged: lambda s: lambda ev, tick: s.policy.apply_stake(ev),
        TaxCharged: lambda s: lambda ev, tick: s.policy.apply_taxed(ev),
    },
    guards=((GUARD_RANKS["rate"] + 50, Guard(
        "action_tax", MARKET_DESIGN, action_tax_guard,
        "an action of a taxed class needs the tax available in the fee asset")),),
    after=charge_action_tax,
    tick_start=((5, collect_tax_debts),),  # before the markets' hooks (ranks 10 and up)
    visibility={"policy_changed": PUBLIC, "certification_changed": PUBLIC,
                "stake_changed": PARTIES, "tax_charged": PARTIES},
    requires=("emergency",),
)

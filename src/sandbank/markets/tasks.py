"""The task market: requesters post tasks that need skills, workers bid, the award puts the
reward in escrow, workers subcontract parts to other agents, validators release or refund
(checklist 23, 24; the "patchwork" of the paper).

**Skill model** (seeded, documented, the only source of capability). A task needs a set of
skills, each at a level (0–10). Every contract is responsible for some of those skills (its
*parts*); a part it keeps is performed by the contract's worker, a part it subcontracts is
performed down the chain. A part performed by an agent of level L for a requirement R
succeeds with probability 0 if L < R, else min(1, 0.8 + 0.1·(L − R)), drawn from
SHA-256("sandbank/task/{seed}/{contract}/{skill}") — so the same run gives the same
outcomes, and only agents that really have the skills succeed. A task no single agent can
solve (no agent has every skill at its level) can still be solved by a coalition of
specialists through subcontracting: that is the emergent capability oversight measures.
Declared skills are public (`register_agent.skills`) and verified by outcomes: every
delivery records, per agent and skill, how many parts succeeded and failed.

**Money.** The award holds the agreed price from the requester (and, if the policy says so,
a bond from the worker) and charges the Pigouvian tax of the task's externality class.
Pass: the hold is posted and paid down the chain (each contract's price minus what it
subcontracted; the payee pays the task fee), the bond returns. Fail: the requester is
refunded, the bond is slashed to the treasury. A missed deadline always refunds the
requester; the bond is slashed only if nothing was delivered.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.identity.registry import ACTIVE
from sandbank.kernel.digest import DigestMap
from sandbank.kernel.errors import Reject
from sandbank.kernel.mechanism import PUBLIC, Mechanism
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
from sandbank.ledger.ledger import MAX_AMOUNT
from sandbank.markets import validators as V

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

BPS = 10_000  # basis points (the policy's rates are in these)

MAX_CHAIN_DEPTH = 8
MAX_BIDS_PER_TASK = 256
OWN_TASKS_SHOWN = 32  # closed tasks a requester still sees in its observation


# ----------------------------------------------------------------------------- schema
@register_action
@dataclass(slots=True, kw_only=True)
class PostTask(Action):
    KIND: ClassVar[str] = "post_task"
    skills: dict[str, int]  # skill -> required level
    reward: int  # the most the requester will pay
    deadline: int  # last tick for delivery and validation
    asset: str = ""  # currency of the reward (default: the fee asset)
    validator: str = V.DETERMINISTIC
    judges: list[int] = field(default_factory=list)
    quorum: int = 0
    arbiter: int = 0  # agent that resolves disputes (0: the operator)
    category: str = ""  # externality class, taxed per unit (Pigouvian)
    units: int = 0
    min_reputation: int = 0  # bidders need at least this public score (thousandths)


@register_action
@dataclass(slots=True, kw_only=True)
class BidTask(Action):
    KIND: ClassVar[str] = "bid_task"
    task: int
    price: int


@register_action
@dataclass(slots=True, kw_only=True)
class AwardTask(Action):
    KIND: ClassVar[str] = "award_task"
    task: int
    bid: int


@register_action
@dataclass(slots=True, kw_only=True)
class Subcontract(Action):
    KIND: ClassVar[str] = "subcontract"
    contract: int
    worker: int
    parts: list[str]
    price: int


@register_action
@dataclass(slots=True, kw_only=True)
class Deliver(Action):
    KIND: ClassVar[str] = "deliver"
    contract: int
    garbage: bool = False  # deliberately deliver nothing useful (a fraudster's move)


@register_action
@dataclass(slots=True, kw_only=True)
class JudgeContract(Action):
    KIND: ClassVar[str] = "judge"
    contract: int
    verdict: bool


@register_action
@dataclass(slots=True, kw_only=True)
class Arbitrate(Action):
    KIND: ClassVar[str] = "arbitrate"
    contract: int
    verdict: bool


@register_event
@dataclass(slots=True, kw_only=True)
class TaskPosted(Event):
    KIND: ClassVar[str] = "task_posted"
    task: int
    skills: dict[str, int]
    reward: int
    asset: str
    deadline: int
    validator: str
    judges: list[int]
    quorum: int
    arbiter: int
    category: str
    units: int
    min_reputation: int = 0


@register_event
@dataclass(slots=True, kw_only=True)
class TaskBid(Event):
    KIND: ClassVar[str] = "task_bid"
    task: int
    bid: int
    price: int


@register_event
@dataclass(slots=True, kw_only=True)
class TaskAwarded(Settled):
    KIND: ClassVar[str] = "task_awarded"
    task: int
    contract: int
    worker: int
    price: int
    hold: int  # SYSTEM hold id of the requester's payment
    bond: int  # SYSTEM hold id of the worker's bond (0: none)
    tax: int


@register_event
@dataclass(slots=True, kw_only=True)
class Subcontracted(Event):
    KIND: ClassVar[str] = "subcontracted"
    task: int
    contract: int
    parent: int
    worker: int
    parts: list[str]
    price: int


@register_event
@dataclass(slots=True, kw_only=True)
class Delivered(Event):
    KIND: ClassVar[str] = "delivered"
    task: int
    contract: int
    ok: list[str]  # parts this contract's worker performed successfully
    failed: list[str]  # parts it performed and failed
    garbage: bool


@register_event
@dataclass(slots=True, kw_only=True)
class Judged(Event):
    KIND: ClassVar[str] = "judged"
    task: int
    contract: int
    verdict: bool


@register_event
@dataclass(slots=True, kw_only=True)
class Disputed(Event):
    KIND: ClassVar[str] = "disputed"
    task: int
    contract: int


@register_event
@dataclass(slots=True, kw_only=True)
class ContractSettled(Settled):
    KIND: ClassVar[str] = "contract_settled"
    task: int
    contract: int
    outcome: str  # passed | failed | expired
    payouts: list[list[int]]  # [contract, worker, amount, fee]
    bond: str  # returned | slashed | none
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class TaskExpired(Event):
    KIND: ClassVar[str] = "task_expired"
    task: int


# ----------------------------------------------------------------------------- state
@dataclass
class Task:
    id: int
    requester: int
    skills: dict[str, int]
    reward: int
    asset: str
    deadline: int
    validator: str
    judges: list[int]
    quorum: int
    arbiter: int
    category: str
    units: int
    min_reputation: int = 0
    status: str = "open"  # open | awarded | passed | failed | expired
    bids: dict[int, tuple[int, int]] = field(default_factory=dict)  # bid -> (worker, price)
    contract: int = 0

    def record(self) -> list[Any]:
        return [self.id, self.requester, sorted(self.skills.items()), self.reward, self.asset,
                self.deadline, self.validator, self.judges, self.quorum, self.arbiter,
                self.category, self.units, self.min_reputation, self.status,
                sorted([b, w, p] for b, (w, p) in self.bids.items()), self.contract]


@dataclass
class Contract:
    id: int
    task: int
    parent: int
    worker: int
    parts: list[str]
    price: int
    depth: int
    children: list[int] = field(default_factory=list)
    status: str = "open"  # open | delivered | judging | disputed | passed | failed | expired
    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    hold: int = 0
    bond: int = 0
    votes: dict[int, bool] = field(default_factory=dict)

    def record(self) -> list[Any]:
        return [self.id, self.task, self.parent, self.worker, self.parts, self.price, self.depth,
                self.children, self.status, self.ok, self.failed, self.hold, self.bond,
                sorted([j, v] for j, v in self.votes.items())]


def part_succeeds(seed: int, contract: int, skill: str, level: int, required: int) -> bool:
    """The skill model (see the module docstring)."""
    if level < required:
        return False
    chance = min(10, 8 + (level - required))  # in tenths
    draw = int.from_bytes(sha256(f"sandbank/task/{seed}/{contract}/{skill}".encode()).digest()[:8],
                          "big") % 10
    return draw < chance


class TaskMarket:
    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        self.contracts: dict[int, Contract] = {}
        self.next_bid = 1
        self.skill_record: dict[tuple[int, str], list[int]] = {}  # (agent, skill) -> [ok, fail]
        # indexes for observations (derived; rebuilt by replay like everything else)
        self.open_tasks: dict[int, Task] = {}
        self.by_requester: dict[int, list[int]] = {}
        self.contracts_of: dict[int, dict[int, None]] = {}  # agent -> contracts it takes part in
        self._deadlines: list[tuple[int, int]] = []  # (deadline, task)
        self._task_digest = DigestMap(Task.record)
        self._contract_digest = DigestMap(Contract.record)

    def _touch(self, *objs: Task | Contract) -> None:
        for o in objs:
            (self._task_digest if isinstance(o, Task) else self._contract_digest).touch(o.id, o)

    def own_parts(self, c: Contract) -> list[str]:
        delegated = {p for ch in c.children for p in self.contracts[ch].parts}
        return [p for p in c.parts if p not in delegated]

    def chain(self, root: int) -> list[Contract]:
        """The contract and everything subcontracted under it, parents first."""
        out, todo = [], [root]
        while todo:
            c = self.contracts[todo.pop(0)]
            out.append(c)
            todo.extend(c.children)
        return out

    # -- applying events
    def apply_posted(self, ev: TaskPosted, tick: int) -> None:
        t = Task(ev.task, ev.actor, dict(ev.skills), ev.reward, ev.asset, ev.deadline,
                 ev.validator, list(ev.judges), ev.quorum, ev.arbiter, ev.category, ev.units,
                 ev.min_reputation)
        self.tasks[t.id] = t
        self.open_tasks[t.id] = t
        self.by_requester.setdefault(t.requester, []).append(t.id)
        heapq.heappush(self._deadlines, (t.deadline, t.id))
        self._touch(t)

    def apply_bid(self, ev: TaskBid, tick: int) -> None:
        t = self.tasks[ev.task]
        t.bids[ev.bid] = (ev.actor, ev.price)
        self.next_bid = ev.bid + 1
        self._touch(t)

    def apply_awarded(self, ev: TaskAwarded, tick: int) -> None:
        t = self.tasks[ev.task]
        t.status, t.contract = "awarded", ev.contract
        c = Contract(ev.contract, t.id, 0, ev.worker, sorted(t.skills), ev.price, 0,
                     hold=ev.hold, bond=ev.bond)
        self.contracts[c.id] = c
        self.open_tasks.pop(t.id, None)
        for agent in (c.worker, t.requester, *t.judges, t.arbiter):
            if agent:
                self.contracts_of.setdefault(agent, {})[c.id] = None
        self._touch(t, c)

    def apply_subcontracted(self, ev: Subcontracted, tick: int) -> None:
        parent = self.contracts[ev.parent]
        c = Contract(ev.contract, ev.task, parent.id, ev.worker, list(ev.parts), ev.price,
                     parent.depth + 1)
        parent.children.append(c.id)
        self.contracts[c.id] = c
        self.contracts_of.setdefault(c.worker, {})[c.id] = None
        self._touch(parent, c)

    def apply_delivered(self, ev: Delivered, tick: int) -> None:
        c = self.contracts[ev.contract]
        c.ok, c.failed = list(ev.ok), list(ev.failed)
        for ch in c.children:
            c.ok += self.contracts[ch].ok
            c.failed += self.contracts[ch].failed
        c.status = "judging" if c.parent == 0 and self.tasks[c.task].validator == V.JUDGES \
            else "delivered"
        for skill, won in [(s, 0) for s in ev.ok] + [(s, 1) for s in ev.failed]:
            self.skill_record.setdefault((c.worker, skill), [0, 0])[won] += 1
        self._touch(c)

    def apply_judged(self, ev: Judged, tick: int) -> None:
        c = self.contracts[ev.contract]
        c.votes[ev.actor] = ev.verdict
        self._touch(c)

    def apply_disputed(self, ev: Disputed, tick: int) -> None:
        c = self.contracts[ev.contract]
        c.status = "disputed"
        self._touch(c)

    def apply_settled(self, ev: ContractSettled, tick: int) -> None:
        t = self.tasks[ev.task]
        t.status = ev.outcome
        for c in self.chain(ev.contract):
            c.status = ev.outcome
            self._touch(c)
        for c in self.chain(ev.contract):  # closed contracts leave the observation indexes
            for agent in (c.worker, t.requester, *t.judges, t.arbiter):
                self.contracts_of.get(agent, {}).pop(c.id, None)
        self._touch(t)

    def apply_expired(self, ev: TaskExpired, tick: int) -> None:
        t = self.tasks[ev.task]
        t.status = "expired"
        self.open_tasks.pop(t.id, None)
        self._touch(t)

    def scheduled_deadlines(self, tick: int) -> list[tuple[int, int]]:
        """(deadline, task) still due after `tick`, sorted: the deadline heap as it acts."""
        return sorted((d, tid) for d, tid in self._deadlines
                      if d >= tick and self.tasks[tid].status in ("open", "awarded"))

    def due(self, tick: int) -> list[Task]:
        out = []
        while self._deadlines and self._deadlines[0][0] < tick:
            _, tid = heapq.heappop(self._deadlines)
            t = self.tasks[tid]
            if t.status in ("open", "awarded"):
                out.append(t)
        return out

    def digest(self) -> bytes:
        return self._task_digest.digest() + self._contract_digest.digest()


# ----------------------------------------------------------------------------- mechanism
def _agent(k: Kernel, agent: int, what: str):
    a = k.state.registry.agents.get(agent)
    if a is None or a.status != ACTIVE:
        raise Reject("unknown_agent", f"{what} {agent} is not an active agent")
    return a


def _contract(k: Kernel, cid: int):
    c = k.state.tasks.contracts.get(cid)
    if c is None:
        raise Reject("unknown_contract", f"no contract {cid}")
    return c, k.state.tasks.tasks[c.task]


def post_task(k: Kernel, a: PostTask, tick: int) -> list[Event]:
    asset = a.asset or k.state.policy.fee_asset
    if asset not in k.state.ledger.treasury:
        raise Reject("unknown_asset", f"unknown asset {asset!r}")
    if not a.skills:
        raise Reject("invalid_field", "a task needs at least one skill")
    for skill, level in a.skills.items():
        if not 0 <= level <= 10:
            raise Reject("invalid_field", f"skill {skill!r}: level must be within 0..10")
    if not 0 < a.reward <= MAX_AMOUNT:
        raise Reject("invalid_amount", f"reward must be positive, got {a.reward}")
    if a.deadline <= tick:
        raise Reject("invalid_deadline", f"deadline {a.deadline} is not after tick {tick}")
    if a.validator not in V.KINDS:
        raise Reject("invalid_field", f"validator must be one of {V.KINDS}")
    if a.validator == V.JUDGES:
        if not a.judges or len(set(a.judges)) != len(a.judges) or a.actor in a.judges:
            raise Reject("invalid_field", "judges must be distinct agents other than the requester")
        if not 1 <= a.quorum <= len(a.judges):
            raise Reject("invalid_field", f"quorum must be within 1..{len(a.judges)}")
        for j in a.judges:
            _agent(k, j, "judge")
    if a.arbiter:
        _agent(k, a.arbiter, "arbiter")
    if a.units < 0 or (a.units and not a.category):
        raise Reject("invalid_field", "externality units need a category (and are >= 0)")
    if a.category in ACTION_TYPES:  # that class is taxed per action (controls/policy.py)
        raise Reject("invalid_field", f"a task category may not be an action kind "
                     f"({a.category!r})")
    if not 0 <= a.min_reputation <= 1000:
        raise Reject("invalid_field", "min_reputation is a score in thousandths: 0..1000")
    if require_account(k, a.actor, asset).available < a.reward:
        raise Reject("insufficient_funds", f"the reward {a.reward} exceeds what is available")
    ev = TaskPosted(actor=a.actor, task=len(k.state.tasks.tasks) + 1, skills=a.skills,
                    reward=a.reward, asset=asset, deadline=a.deadline, validator=a.validator,
                    judges=a.judges, quorum=a.quorum, arbiter=a.arbiter, category=a.category,
                    units=a.units, min_reputation=a.min_reputation)
    k.state.apply(ev, tick)
    return [ev]


def bid_task(k: Kernel, a: BidTask, tick: int) -> list[Event]:
    t = k.state.tasks.tasks.get(a.task)
    if t is None:
        raise Reject("unknown_task", f"no task {a.task}")
    if t.status != "open":
        raise Reject("task_closed", f"task {t.id} is {t.status}")
    if a.actor == t.requester:
        raise Reject("invalid_field", "a requester cannot bid on its own task")
    if not 0 < a.price <= t.reward:
        raise Reject("invalid_amount", f"price must be within 1..{t.reward}")
    if len(t.bids) >= MAX_BIDS_PER_TASK:
        raise Reject("too_many_bids", f"task {t.id} has {MAX_BIDS_PER_TASK} bids")
    gate(k, a.actor, t.reward, t.min_reputation, tick)
    require_account(k, a.actor, t.asset)
    ev = TaskBid(actor=a.actor, task=t.id, bid=k.state.tasks.next_bid, price=a.price)
    k.state.apply(ev, tick)
    return [ev]


def award_task(k: Kernel, a: AwardTask, tick: int) -> list[Event]:
    tm, policy = k.state.tasks, k.state.policy
    t = tm.tasks.get(a.task)
    if t is None:
        raise Reject("unknown_task", f"no task {a.task}")
    if t.requester != a.actor:
        raise Reject("not_requester", f"task {t.id} was posted by agent {t.requester}")
    if t.status != "open":
        raise Reject("task_closed", f"task {t.id} is {t.status}")
    if a.bid not in t.bids:
        raise Reject("unknown_bid", f"task {t.id} has no bid {a.bid}")
    worker, price = t.bids[a.bid]
    _agent(k, worker, "worker")
    pay_from = require_account(k, a.actor, t.asset)
    worker_acct = require_account(k, worker, t.asset)
    tax = policy.charge(a.actor, policy.tax(t.category, tick) * t.units, tick)
    if pay_from.available < price + tax:
        raise Reject("insufficient_funds", f"needs {price + tax} {t.asset} (price + tax), has "
                                           f"{pay_from.available}")
    bond_amount = price * policy.value("task_bond_bps", tick) // BPS
    if worker_acct.available < bond_amount:
        raise Reject("insufficient_bond", f"worker {worker} cannot post the bond {bond_amount}")
    st = Settlement(k)
    hold = st.hold(pay_from.id, t.asset, price)
    bond = st.hold(worker_acct.id, t.asset, bond_amount) if bond_amount else None
    st.fee(pay_from.id, t.asset, tax)
    try:
        transfers = st.commit()
    except SettlementFailed as e:
        raise Reject("settlement_failed", str(e)) from None
    ev = TaskAwarded(actor=a.actor, transfers=transfers, task=t.id,
                     contract=len(tm.contracts) + 1, worker=worker, price=price, hold=hold[1],
                     bond=bond[1] if bond else 0, tax=tax)
    k.state.apply(ev, tick, ledger_applied=True)
    return [ev]


def subcontract(k: Kernel, a: Subcontract, tick: int) -> list[Event]:
    c, t = _contract(k, a.contract)
    tm = k.state.tasks
    if c.worker != a.actor:
        raise Reject("not_contractor", f"contract {c.id} is held by agent {c.worker}")
    if c.status != "open" or t.status != "awarded":
        raise Reject("contract_closed", f"contract {c.id} is {c.status}")
    if c.depth + 1 > MAX_CHAIN_DEPTH:
        raise Reject("chain_too_deep", f"subcontract chains stop at depth {MAX_CHAIN_DEPTH}")
    own = tm.own_parts(c)
    if not a.parts or len(set(a.parts)) != len(a.parts) or not set(a.parts) <= set(own):
        raise Reject("invalid_parts", f"parts must be distinct parts this contract still does "
                                      f"itself: {own}")
    if a.worker == a.actor:
        raise Reject("invalid_field", "cannot subcontract to yourself")
    caps = k.state.controls.caps
    if caps["fanout"] and len(c.children) >= caps["fanout"]:
        raise Reject("over_cap", f"oversight caps subcontracts per contract at {caps['fanout']}")
    if caps["coalition"]:
        root = c
        while root.parent:
            root = tm.contracts[root.parent]
        if len(tm.chain(root.id)) >= caps["coalition"]:
            raise Reject("over_cap", f"oversight caps a delegation chain at {caps['coalition']} "
                                     f"contracts")
    _agent(k, a.worker, "worker")
    require_account(k, a.worker, t.asset)
    budget = c.price - sum(tm.contracts[ch].price for ch in c.children)
    if not 0 < a.price <= budget:
        raise Reject("invalid_amount", f"price must be within 1..{budget} (what is left of "
                                       f"contract {c.id}'s price)")
    ev = Subcontracted(actor=a.actor, task=t.id, contract=len(tm.contracts) + 1, parent=c.id,
                       worker=a.worker, parts=a.parts, price=a.price)
    k.state.apply(ev, tick)
    return [ev]


def deliver(k: Kernel, a: Deliver, tick: int) -> list[Event]:
    c, t = _contract(k, a.contract)
    tm = k.state.tasks
    if c.worker != a.actor:
        raise Reject("not_contractor", f"contract {c.id} is held by agent {c.worker}")
    if c.status != "open" or t.status != "awarded":
        raise Reject("contract_closed", f"contract {c.id} is {c.status}")
    waiting = [ch for ch in c.children if tm.contracts[ch].status != "delivered"]
    if waiting:
        raise Reject("children_pending", f"subcontracts {waiting} have not delivered")
    skills = k.state.registry.agents[a.actor].skills
    ok, failed = [], []
    for part in tm.own_parts(c):
        success = not a.garbage and part_succeeds(k.config.seed, c.id, part,
                                                  skills.get(part, 0), t.skills[part])
        (ok if success else failed).append(part)
    ev = Delivered(actor=a.actor, task=t.id, contract=c.id, ok=ok, failed=failed,
                   garbage=a.garbage)
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    if c.parent == 0 and t.validator == V.DETERMINISTIC:
        verdict = V.deterministic_verdict(c.failed)
        out.append(_settle(k, t, c, "passed" if verdict == V.PASS else "failed",
                           "deterministic check: " + (f"failed parts {c.failed}" if c.failed
                                                      else "every part succeeded"), tick))
    return out


def judge(k: Kernel, a: JudgeContract, tick: int) -> list[Event]:
    c, t = _contract(k, a.contract)
    if a.actor not in t.judges or c.parent != 0:
        raise Reject("not_a_judge", f"agent {a.actor} is not on contract {c.id}'s panel")
    if c.status != "judging":
        raise Reject("not_judging", f"contract {c.id} is {c.status}")
    if a.actor in c.votes:
        raise Reject("already_voted", f"agent {a.actor} already judged contract {c.id}")
    ev = Judged(actor=a.actor, task=t.id, contract=c.id, verdict=a.verdict)
    k.state.apply(ev, tick)
    out: list[Event] = [ev]
    verdict = V.panel_verdict(c.votes, t.judges, t.quorum)
    if verdict == V.DISPUTE:
        d = Disputed(actor=SYSTEM, task=t.id, contract=c.id)
        k.state.apply(d, tick)
        out.append(d)
    elif verdict is not None:
        out.append(_settle(k, t, c, "passed" if verdict == V.PASS else "failed",
                           f"judges: {sum(c.votes.values())} pass, "
                           f"{len(c.votes) - sum(c.votes.values())} fail", tick))
    return out


def arbitrate(k: Kernel, a: Arbitrate, tick: int) -> list[Event]:
    c, t = _contract(k, a.contract)
    if a.actor != (t.arbiter or OPERATOR) and a.actor != OPERATOR:
        raise Reject("not_arbiter", f"contract {c.id}'s arbiter is {t.arbiter or 'the operator'}")
    if c.status != "disputed":
        raise Reject("not_disputed", f"contract {c.id} is {c.status}")
    return [_settle(k, t, c, "passed" if a.verdict else "failed",
                    f"arbiter {a.actor} ruled {'pass' if a.verdict else 'fail'}", tick)]


def _settle(k: Kernel, t: Task, root: Contract, outcome: str, reason: str, tick: int) -> Event:
    tm, policy = k.state.tasks, k.state.policy
    st = Settlement(k)
    payouts: list[list[int]] = []
    hold = (SYSTEM, root.hold)
    bond = (SYSTEM, root.bond) if root.bond else None
    if outcome == "passed":
        st.take(hold, root.price, None, t.asset)
        for c in tm.chain(root.id):
            amount = c.price - sum(tm.contracts[ch].price for ch in c.children)
            acct = require_account(k, c.worker, t.asset).id
            fee = policy.fee(c.worker, amount, "task_fee_bps", tick)
            st.pay(st.escrow(t.asset), acct, amount)
            st.fee(acct, t.asset, fee)
            payouts.append([c.id, c.worker, amount, fee])
        bond_fate = "returned"
    else:
        st.void(hold)
        slash = outcome == "failed" or root.status == "open"
        bond_fate = "slashed" if slash else "returned"
    if bond is not None:
        if bond_fate == "slashed":
            st.take(bond, st.hold_info(bond)[1], k.state.ledger.treasury[t.asset], t.asset)
        else:
            st.void(bond)
    else:
        bond_fate = "none"
    ev = ContractSettled(actor=SYSTEM, transfers=st.commit(), task=t.id, contract=root.id,
                         outcome=outcome, payouts=payouts, bond=bond_fate, reason=reason)
    k.state.apply(ev, tick, ledger_applied=True)
    return ev


def tasks_tick(k: Kernel, tick: int) -> list[Event]:
    """Past its deadline, an unawarded task expires and an unsettled contract is refunded."""
    out: list[Event] = []
    for t in k.state.tasks.due(tick):
        if t.status == "open":
            ev = TaskExpired(actor=SYSTEM, task=t.id)
            k.state.apply(ev, tick)
            out.append(ev)
        else:
            root = k.state.tasks.contracts[t.contract]
            out.append(_settle(k, t, root, "expired", f"deadline {t.deadline} passed while "
                                                      f"{root.status}", tick))
    return out


# ----------------------------------------------------------------------------- views
@dataclass(frozen=True, slots=True)
class TaskView:
    id: int
    requester: int
    skills: tuple[tuple[str, int], ...]
    reward: int
    asset: str
    deadline: int
    status: str
    bids: tuple[tuple[int, int, int], ...]  # (bid, worker, price): only for the requester
    worker: int  # the awarded worker (0: not awarded)
    min_reputation: int = 0  # public score a bidder needs


@dataclass(frozen=True, slots=True)
class ContractView:
    id: int
    task: int
    parent: int
    worker: int
    role: str  # worker | requester | judge | arbiter
    parts: tuple[str, ...]
    price: int
    status: str
    children: tuple[int, ...]
    failed: tuple[str, ...] = ()  # parts that failed, once delivered (what judges look at)


def views_for(tm: TaskMarket, agent: int) -> tuple[tuple[TaskView, ...], tuple[ContractView, ...]]:
    def view(t: Task) -> TaskView:
        mine = t.requester == agent
        bids = tuple((b, w, p) for b, (w, p) in t.bids.items()) if mine else ()
        worker = tm.contracts[t.contract].worker if t.contract else 0
        return TaskView(t.id, t.requester, tuple(sorted(t.skills.items())), t.reward, t.asset,
                        t.deadline, t.status, bids, worker, t.min_reputation)

    tasks = [view(t) for t in tm.open_tasks.values()]  # the public board
    # and the requester's own tasks after they leave the board (the most recent ones)
    tasks += [view(tm.tasks[i]) for i in tm.by_requester.get(agent, [])[-OWN_TASKS_SHOWN:]
              if i not in tm.open_tasks]
    contracts = []
    for cid in tm.contracts_of.get(agent, ()):
        c = tm.contracts[cid]
        t = tm.tasks[c.task]
        if c.status in ("passed", "failed", "expired"):
            continue
        role = ("worker" if c.worker == agent else
                "requester" if c.parent == 0 and t.requester == agent else
                "judge" if c.parent == 0 and agent in t.judges else
                "arbiter" if c.parent == 0 and t.arbiter == agent else "")
        if role:
            contracts.append(ContractView(c.id, c.task, c.parent, c.worker, role, tuple(c.parts),
                                          c.price, c.status, tuple(c.children), tuple(c.failed)))
    return tuple(tasks), tuple(contracts)


def gate(k: Kernel, agent: int, reward: int, min_reputation: int, tick: int) -> None:
    """Refuse `agent` (a bidder) if its public score is below what the task requires."""
    policy = k.state.policy
    need = min_reputation
    gate_reward = policy.value("gate_reward", tick)
    if gate_reward and reward >= gate_reward:
        need = max(need, policy.value("gate_reputation", tick))
    have = k.state.reputation.score(agent)
    if have < need:
        raise Reject("reputation_too_low", f"agent {agent}'s reputation {have} is below the "
                     f"{need} this task requires")


def views(k: Kernel) -> Any:
    def observe(agent: int) -> dict[str, Any]:
        tasks, contracts = views_for(k.state.tasks, agent)
        return {"tasks": tasks, "contracts": contracts}
    return observe


MECHANISM = Mechanism(
    "tasks", state=TaskMarket,
    schedules=lambda tm, tick: {"deadlines": tm.scheduled_deadlines(tick)},
    handlers={
        PostTask.KIND: post_task, BidTask.KIND: bid_task, AwardTask.KIND: award_task,
        Subcontract.KIND: subcontract, Deliver.KIND: deliver, JudgeContract.KIND: judge,
        Arbitrate.KIND: arbitrate,
    },
    appliers={
        TaskPosted: lambda s: s.tasks.apply_posted,
        TaskBid: lambda s: s.tasks.apply_bid,
        TaskAwarded: lambda s: s.tasks.apply_awarded,
        Subcontracted: lambda s: s.tasks.apply_subcontracted,
        Delivered: lambda s: s.tasks.apply_delivered,
        Judged: lambda s: s.tasks.apply_judged,
        Disputed: lambda s: s.tasks.apply_disputed,
        ContractSettled: lambda s: s.tasks.apply_settled,
        TaskExpired: lambda s: s.tasks.apply_expired,
    },
    tick_start=((30, tasks_tick),),
    views=views,
    visibility=dict.fromkeys(("task_posted", "task_bid", "task_awarded", "task_expired",
                              "subcontracted", "delivered", "judged", "disputed",
                              "contract_settled"), PUBLIC),
    requires=("policy", "reputation", "controls"),
)

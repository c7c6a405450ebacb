"""Insurance (paper §3.4; checklist 48): underwriting, risk-priced premiums paid through the
ledger into a pool, cover required to take on work, and claims paid from the pool to the
victims of failed work — a surety for the task market.

    insurance:
      asset: CRD                # premiums, pool and claims (default: the fee asset); only
                                # tasks paid in it are covered
      capital: 0                # what the treasury puts in the pool when it opens
      term: 10                  # ticks one premium covers; cover renews itself each term
      premium: 40               # the base premium per term, at the prior claim rate
      prior: {claims: 1, contracts: 20}   # the claim rate an unknown party is rated at
      loadings: {uncertified_bps: 5000, low_reputation_bps: 5000}
      reputation_floor: 400     # a public score below this loads the premium
      decline: {rate_bps: 2000, min_claims: 3}   # no cover past this claim rate (default)
      indemnity_bps: 10000      # a claim pays this share of the loss
      limit: 0                  # the most one claim pays (0: no limit)
      cover: 10000              # the most one agent's open covered contracts may add up to
                                # (default: 10 × premium × prior.contracts)
      required: [bid_task]      # what an agent without cover may not do

**Cover.** An agent buys cover with `insure` (its own action): the underwriter rates it,
the premium moves from its account to the pool, and it is covered for `term` ticks. Cover
renews itself at the end of each term (`renew: false` opts out): the party is rated again
and pays again; a party the underwriter now declines, or that cannot pay, loses its cover
(`cover_lapsed`, with the reason). An agent already covered for more than one more tick
cannot buy again (`already_insured`): cover is never bought ahead at a clean record's
price. With cover `required`, an agent without it is refused the listed actions
(`uninsured`): it may open accounts, message and insure, but not take on work — the
entry gate. When `bid_task` needs cover, so does being hired: an award of the bid of a
worker whose cover has since lapsed, and a subcontract to a worker without cover, are
refused too, and so is an award that would take the worker's open covered contracts past
its `cover` (`over_cover`): one premium never covers unbounded work at once. Finishing
work already taken (`deliver`, `judge`, `arbitrate`) never needs cover.

**The party rated** is the beneficial owner: every identity an owner admitted or spawned
shares one record, so a fresh identity does not start clean. Only in an economy with a
single owner (a scenario that declares none) is it an identity and everything it spawned.
Unlike the levy's population rule, an owner of most agents is still rated as an owner:
admitting more agents never changes whose record rates them. The record counts the party's covered contracts
that closed and the claims charged to it. The underwriter's estimate of its claim rate is
the record with the prior added in, `(claims + prior.claims) / (contracts +
prior.contracts)` — a credibility estimate: an unknown party is rated at the prior, a long
clean record earns a discount, every claim raises it.

**The premium** is `premium × rate / prior rate × (1 + loadings)`: a party with claims pays
more (experience), and so does an agent without the operator's certification
(`uncertified_bps`) or with a public reputation below `reputation_floor`
(`low_reputation_bps`). The underwriter declines a party with at least `decline.min_claims`
claims and a rate at or above `decline.rate_bps` — and, at that claim, cancels the cover of
every identity of the party at once (`cover_lapsed`; premiums are not refunded): a
fraudster does not keep taking work on cover it can no longer get.

**Claims.** A contract is covered when its (root) worker had cover when it was awarded and
the task is paid in the insurance asset. When a covered contract closes on verified harm —
the validator failed it, it expired with nothing delivered, or it passed although some part
failed (money paid for work not done: `fraud_loss` in the lab) — the claim is charged to
the record at once, and the pool pays the requester `indemnity_bps` of the loss (`limit`
at most) at the end of the tick: the contract's price for failed work (liquidated damages:
the requester was refunded, but its work was not done), what it paid for a pass with
failed parts. A pool that cannot pay all pays what it has; the rest is logged as unpaid.
The claim is charged to the parties of the workers whose own parts failed, in proportion
to those parts (a worker without cover, down the chain, is charged to the covered root
worker that chose it). An owner never claims on itself: the part of the loss on parts
that failed in the requester's own party (its own worker, or a front's subcontract to it)
is not paid. A verdict of judges or an arbiter of the requester's own party is no
evidence: it pays nothing and charges no record. **Liability that moves money**: when the
failure slashed the worker's task bond (`policy.task_bond_bps`), the bond is recovered from
the treasury into the pool before the claim is paid (subrogation): the responsible worker
pays first, the pool the rest.

Every premium and claim is a SYSTEM transfer; the pool is a SYSTEM account that can never go
below zero, opened at the first tick with `capital` from the treasury. Its solvency — the
pool against the most the open covered contracts could claim — is in the observation and
the lab's metrics.

What it does not model: the requester's value beyond the price, reinsurance, deductibles,
premium refunds, and the owners behind a colluding requester and worker (or judges) that
the registry does not tie together: such a ring takes at most `cover` per identity at
once, and claims until the worker's party reaches the decline threshold. A rollback
(controls/emergency.py) closes every covered contract and takes back the cover whose
premium the restored balances refund (bought or renewed after the checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.controls.emergency import RolledBack
from sandbank.identity.registry import ACTIVE
from sandbank.kernel.canonical import canonical_bytes
from sandbank.kernel.errors import ConfigError, Reject
from sandbank.kernel.guards import REGULATORY, Guard, Verdict
from sandbank.kernel.mechanism import GUARD_RANKS, PARTIES, PUBLIC, Mechanism
from sandbank.kernel.schema import (
    ACTION_TYPES,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    OPERATOR,
    SYSTEM,
    AccountOpened,
    Action,
    Event,
    Settled,
    register_action,
    register_event,
)
from sandbank.kernel.settlement import Settlement, SettlementFailed
from sandbank.ledger.ledger import MAX_AMOUNT
from sandbank.markets.tasks import ContractSettled, TaskAwarded

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

BPS = 10_000
KEYS = {"asset", "capital", "term", "premium", "prior", "loadings", "reputation_floor",
        "decline", "indemnity_bps", "limit", "cover", "required"}
DECLINE = (2000, 3)  # default: declined at a 20% claim rate, once it has 3 claims
LOADINGS = ("uncertified_bps", "low_reputation_bps")
# what cover can never be required for: what an uninsured agent needs to get cover (or to
# wind down), and what is not an agent's to take
NEVER_REQUIRED = {"insure", "open_account", "cancel_order", "trace", "release_stake",
                  "deliver", "judge", "arbitrate"}  # (finishing work already covered)


@register_action
@dataclass(slots=True, kw_only=True)
class Insure(Action):
    """Buy cover for one term (the agent's own action); `renew`: renew it every term."""

    KIND: ClassVar[str] = "insure"
    renew: bool = True


@register_event
@dataclass(slots=True, kw_only=True)
class PoolOpened(Settled):
    KIND: ClassVar[str] = "insurance_pool_opened"
    account: int
    asset: str
    capital: int


@register_event
@dataclass(slots=True, kw_only=True)
class Insured(Settled):
    KIND: ClassVar[str] = "insured"
    agent: int
    party: str  # owner:<id> or lineage:<id>: whose record rated it
    premium: int
    expires: int  # the first tick it is no longer covered
    renew: bool
    rate_bps: int  # the underwriter's estimate of the party's claim rate
    loadings: list[str]  # the profile's loadings that applied


@register_event
@dataclass(slots=True, kw_only=True)
class CoverLapsed(Event):
    KIND: ClassVar[str] = "cover_lapsed"
    agent: int
    reason: str


@register_event
@dataclass(slots=True, kw_only=True)
class ClaimPaid(Settled):
    KIND: ClassVar[str] = "claim_paid"
    task: int
    contract: int
    requester: int
    worker: int  # the covered (root) worker
    outcome: str  # failed | expired | passed (with failed parts)
    loss: int
    due: int  # what the policy owes (indemnity of the loss, at most the limit)
    paid: int  # what the pool paid (less than due only when it ran short)
    charged: list[list[Any]]  # [party, claim share in bps] the claim is charged to
    recovered: int = 0  # the worker's slashed bond, recovered from the treasury into the pool


def _int(v: Any) -> bool:
    return type(v) is int


@dataclass
class Insurance:
    asset: str = ""  # "": not configured
    capital: int = 0
    term: int = 10
    premium: int = 0
    prior: tuple[int, int] = (1, 20)
    loadings: dict[str, int] = field(default_factory=dict)
    reputation_floor: int = 0
    decline: tuple[int, int] = DECLINE  # (rate_bps, min_claims); rate 0: never declines
    indemnity_bps: int = BPS
    limit: int = 0
    cover_limit: int = 0  # the most one agent's open covered contracts may add up to
    required: frozenset[str] = frozenset()
    pool: int = 0  # the pool's account id (0: not opened yet)
    cover: dict[int, list[int]] = field(default_factory=dict)  # agent -> [expires, renew, paid]
    record: dict[str, list[int]] = field(default_factory=dict)  # party -> [claim bps, contracts]
    covered: dict[int, list[Any]] = field(default_factory=dict)  # open contract -> [worker, price]
    exposure: dict[int, int] = field(default_factory=dict)  # agent -> its open covered prices
    # queued for the end of the tick: [contract, outcome, loss, due, charged, recovered]
    claims: list[list[Any]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("premiums", "claims", "paid", "unpaid"), 0))

    def configure(self, cfg: dict[str, Any], fee_asset: str) -> None:
        if not cfg:
            return
        self.asset = cfg.get("asset") or fee_asset
        self.capital = int(cfg.get("capital", 0))
        self.term = int(cfg.get("term", 10))
        self.premium = int(cfg["premium"])
        p = cfg.get("prior", {})
        self.prior = (int(p.get("claims", 1)), int(p.get("contracts", 20)))
        self.loadings = {k: int(v) for k, v in cfg.get("loadings", {}).items()}
        self.reputation_floor = int(cfg.get("reputation_floor", 0))
        d = cfg.get("decline", {})
        self.decline = (int(d.get("rate_bps", DECLINE[0])), int(d.get("min_claims", DECLINE[1])))
        self.indemnity_bps = int(cfg.get("indemnity_bps", BPS))
        self.limit = int(cfg.get("limit", 0))
        self.cover_limit = int(cfg.get("cover", 10 * self.premium * self.prior[1]))
        self.required = frozenset(cfg.get("required", ["bid_task"]))

    def covered_at(self, agent: int, tick: int) -> bool:
        c = self.cover.get(agent)
        return c is not None and c[0] > tick

    def rate_bps(self, party: str) -> int:
        """The underwriter's estimate of `party`'s claim rate (bps of its contracts)."""
        claim_bps, contracts = self.record.get(party, (0, 0))
        pc, pn = self.prior
        return max(1, (claim_bps + pc * BPS) // (contracts + pn))

    def declined(self, party: str) -> bool:
        rate, min_claims = self.decline
        claim_bps = self.record.get(party, (0, 0))[0]
        return bool(rate) and claim_bps >= min_claims * BPS and self.rate_bps(party) >= rate

    def quote(self, k: Kernel, agent: int) -> tuple[str, int, int, list[str]]:
        """(party, premium, rate_bps, loadings applied) for one term of `agent`'s cover."""
        s = k.state
        party = s.registry.controller(agent)
        rate = self.rate_bps(party)
        applied = []
        if agent not in s.policy.certified and self.loadings.get("uncertified_bps"):
            applied.append("uncertified_bps")
        if s.reputation.score(agent) < self.reputation_floor and \
                self.loadings.get("low_reputation_bps"):
            applied.append("low_reputation_bps")
        load = BPS + sum(self.loadings[x] for x in applied)
        prior = self.prior[0] * BPS // self.prior[1]
        premium = max(1, min(MAX_AMOUNT, -(-self.premium * rate * load // (prior * BPS))))
        return party, premium, rate, applied

    def apply_pool(self, ev: PoolOpened) -> None:
        self.pool = ev.account
        self.totals["capital"] = ev.capital

    def apply_insured(self, ev: Insured, tick: int) -> None:
        self.cover[ev.agent] = [ev.expires, int(ev.renew), tick]
        self.totals["premiums"] += ev.premium

    def apply_lapsed(self, ev: CoverLapsed) -> None:
        self.cover.pop(ev.agent, None)

    def rolled_back(self, ev: RolledBack, tick: int) -> None:
        """A rollback closes every open contract and restores the balances of `to_tick`:
        the contracts leave the cover, and so does cover whose premium the restored
        balances hand back (bought or renewed after `to_tick`: insure again)."""
        self.covered.clear()
        self.exposure.clear()
        for agent in [a for a, c in self.cover.items() if c[2] > ev.to_tick]:
            del self.cover[agent]

    def apply_claim(self, ev: ClaimPaid) -> None:
        self.claims = [c for c in self.claims if c[0] != ev.contract]
        self.totals["claims"] += 1
        self.totals["paid"] += ev.paid
        self.totals["unpaid"] += ev.due - ev.paid

    def digest(self) -> bytes:
        return sha256(canonical_bytes([
            self.asset, self.capital, self.term, self.premium, list(self.prior),
            sorted(self.loadings.items()), self.reputation_floor, list(self.decline),
            self.indemnity_bps, self.limit, self.cover_limit, sorted(self.required), self.pool,
            sorted([a, *c] for a, c in self.cover.items()),
            sorted([p, *r] for p, r in self.record.items()),
            sorted([c, *v] for c, v in self.covered.items()),
            sorted(self.exposure.items()), self.claims,
            sorted(self.totals.items())])).digest()


# ----------------------------------------------------------------------------- listeners
def _on_awarded(s: Any) -> Any:
    """A contract awarded to a worker with cover, in the insurance asset, is covered."""
    def listen(ev: TaskAwarded, tick: int) -> None:
        ins = s.insurance
        if ins.asset and s.tasks.tasks[ev.task].asset == ins.asset and \
                ins.covered_at(ev.worker, tick):
            ins.covered[ev.contract] = [ev.worker, ev.price]
            ins.exposure[ev.worker] = ins.exposure.get(ev.worker, 0) + ev.price
    return listen


def _on_settled(s: Any) -> Any:
    """A covered contract that closes adds to its worker's party's record; on verified harm
    the claim is charged to the record at once (a renewal later in the tick is priced with
    it) and queued, to be paid at the end of the tick from the pool."""
    def listen(ev: ContractSettled, tick: int) -> None:
        ins = s.insurance
        cover = ins.covered.pop(ev.contract, None)
        if cover is None:
            return
        worker, price = cover
        left = ins.exposure.get(worker, 0) - price
        if left > 0:
            ins.exposure[worker] = left
        else:
            ins.exposure.pop(worker, None)
        c = s.tasks.contracts[ev.contract]
        t = s.tasks.tasks[c.task]
        reg = s.registry
        ins.record.setdefault(reg.controller(worker), [0, 0])[1] += 1
        paid = sum(p[2] for p in ev.payouts)
        if ev.outcome == "failed" or (ev.outcome == "expired" and not (c.ok or c.failed)):
            loss = c.price
        elif ev.outcome == "passed" and c.failed:
            loss = paid
        else:
            return
        if loss <= 0:
            return
        requester = reg.controller(t.requester)
        # a verdict of judges or an arbiter of the requester's own party is no evidence of
        # harm: it neither pays nor charges anyone's record
        deciders = [*t.judges, *([t.arbiter] if t.arbiter else [])]
        own_verdict = t.validator != "deterministic" and any(
            reg.controller(j) == requester for j in deciders if j in reg.agents)
        weights = _failed_parts(s, c.id, worker, tick)
        total = sum(weights.values())
        others = sum(w for a, w in weights.items() if reg.controller(a) != requester)
        # the failed parts of the requester's own party (its own worker, or a front's
        # subcontract to it) are an owner claiming on itself: that part is not paid
        due = 0 if own_verdict else _due(ins, loss) * others // total
        charged = [] if own_verdict else _charges(ins, reg, weights)
        for party, share in charged:
            ins.record.setdefault(party, [0, 0])[0] += share
        recovered = 0  # subrogation: the bond the failure slashed goes to the pool
        if ev.bond == "slashed" and not own_verdict:
            escrow, treasury = s.ledger.escrow[t.asset], s.ledger.treasury[t.asset]
            recovered = sum(x["amount"] for x in ev.transfers
                            if x["debit"] == escrow and x["credit"] == treasury)
        ins.claims.append([ev.contract, ev.outcome, loss, due, charged, recovered])
    return listen


def _failed_parts(s: Any, root: int, covered_worker: int, tick: int) -> dict[int, int]:
    """agent -> its own failed parts in the chain under `root` (a worker without cover
    counts as the covered root worker that chose it; all of it is the root worker's when
    no part failed: an expiry with nothing delivered)."""
    ins, tm = s.insurance, s.tasks
    weights: dict[int, int] = {}
    for c in tm.chain(root):
        own_failed = [p for p in tm.own_parts(c) if p in c.failed]
        # (a contract's `failed` holds its children's failures too: count its own parts)
        if own_failed:
            who = c.worker if c.id == root or ins.covered_at(c.worker, tick) else covered_worker
            weights[who] = weights.get(who, 0) + len(own_failed)
    return weights or {covered_worker: 1}


def _charges(ins: Insurance, reg: Any, weights: dict[int, int]) -> list[list[Any]]:
    """[party, bps] one claim is charged to, by failed parts, summing to one claim."""
    total = sum(weights.values())
    by_party: dict[str, int] = {}
    for agent, w in sorted(weights.items()):
        party = reg.controller(agent)
        by_party[party] = by_party.get(party, 0) + w * BPS // total
    first = min(by_party)  # the rounding remainder: the shares sum to one claim exactly
    by_party[first] += BPS - sum(by_party.values())
    return [[p, n] for p, n in sorted(by_party.items())]


def _due(ins: Insurance, loss: int) -> int:
    due = loss * ins.indemnity_bps // BPS
    return min(due, ins.limit) if ins.limit else due


# ----------------------------------------------------------------------------- hooks
def insurance_start(k: Kernel, tick: int) -> list[Event]:
    """Open the pool (the first tick); renew or end the cover whose term is over."""
    ins = k.state.insurance
    if not ins.asset:
        return []
    out: list[Event] = []
    led = k.state.ledger
    if not ins.pool:
        opened = AccountOpened(actor=SYSTEM, account=led.next_account_id(), holder=SYSTEM,
                               asset=ins.asset, flags=DEBITS_MUST_NOT_EXCEED_CREDITS,
                               treasury=False)
        k.state.apply(opened, tick)
        st = Settlement(k)
        if ins.capital:
            st.pay(led.treasury[ins.asset], opened.account, ins.capital)
        ev = PoolOpened(actor=SYSTEM, transfers=st.commit(), account=opened.account,
                        asset=ins.asset, capital=ins.capital)
        k.state.apply(ev, tick, ledger_applied=True)
        out += [opened, ev]
    for agent, (expires, renew, _) in sorted(ins.cover.items()):
        if expires > tick:
            continue
        reason = ""
        a = k.state.registry.agents[agent]
        if not renew:
            reason = "the term ended (no renewal)"
        elif a.status != ACTIVE:
            reason = f"the term ended while the agent was {a.status}"
        else:
            try:
                out.append(_buy(k, agent, True, tick, SYSTEM))
            except Reject as e:
                reason = f"not renewed: {e.message}"
        if reason:
            ev = CoverLapsed(actor=SYSTEM, agent=agent, reason=reason)
            k.state.apply(ev, tick)
            out.append(ev)
    return out


def insurance_end(k: Kernel, tick: int) -> list[Event]:
    """Pay the tick's claims from the pool, in the order they arose; cancel the cover of a
    party a claim took past the decline threshold."""
    s = k.state
    ins = s.insurance
    reg = s.registry
    out: list[Event] = []
    for contract, outcome, loss, due, charged, recovered in list(ins.claims):
        c = s.tasks.contracts[contract]
        t = s.tasks.tasks[c.task]
        pool = s.ledger.accounts[ins.pool]
        st = Settlement(k)
        if recovered:  # the slashed bond: the worker pays first, then the pool
            st.pay(s.ledger.treasury[ins.asset], pool.id, recovered)
        paid = min(due, max(0, pool.available) + recovered)
        acct = s.ledger.account_of(t.requester, ins.asset)
        if paid and acct is not None:
            st.pay(pool.id, acct.id, paid)
        else:
            paid = 0
        try:
            transfers = st.commit()
        except SettlementFailed:  # never expected (the pool's balance was read above)
            transfers, paid, recovered = [], 0, 0
        ev = ClaimPaid(actor=SYSTEM, transfers=transfers, task=t.id, contract=contract,
                       requester=t.requester, worker=c.worker, outcome=outcome, loss=loss,
                       due=due, paid=paid, charged=charged, recovered=recovered)
        s.apply(ev, tick, ledger_applied=True)
        out.append(ev)
        for party in sorted({p for p, _ in charged}):
            if ins.declined(party):
                for agent in reg.controlled(party):
                    if agent in ins.cover:
                        lapse = CoverLapsed(actor=SYSTEM, agent=agent, reason=(
                            f"cancelled: {party}'s claims ({ins.record[party][0] / BPS:g}) "
                            f"put it past the underwriter's decline threshold"))
                        s.apply(lapse, tick)
                        out.append(lapse)
    return out


# ----------------------------------------------------------------------------- actions
def _buy(k: Kernel, agent: int, renew: bool, tick: int, actor: int) -> Insured:
    s = k.state
    ins = s.insurance
    party, premium, rate, applied = ins.quote(k, agent)
    if ins.declined(party):
        raise Reject("uninsurable", f"the underwriter declines {party}: claim rate "
                     f"{rate / 100:g}% on its record ({ins.record[party][0] / BPS:g} claims)")
    acct = s.ledger.account_of(agent, ins.asset)
    if acct is None or acct.available < premium:
        raise Reject("insufficient_funds", f"the premium is {premium} {ins.asset}; agent "
                     f"{agent} has {acct.available if acct else 0} available")
    st = Settlement(k)
    st.pay(acct.id, ins.pool, premium)
    try:
        transfers = st.commit()
    except SettlementFailed as e:
        raise Reject("settlement_failed", str(e)) from None
    current = ins.cover.get(agent, [0])[0]
    ev = Insured(actor=actor, transfers=transfers, agent=agent, party=party, premium=premium,
                 expires=max(current, tick) + ins.term, renew=renew, rate_bps=rate,
                 loadings=applied)
    s.apply(ev, tick, ledger_applied=True)
    return ev


def insure(k: Kernel, a: Insure, tick: int) -> list[Event]:
    ins = k.state.insurance
    if not ins.asset:
        raise Reject("not_configured", "this economy has no insurance")
    agent = k.state.registry.agents.get(a.actor)
    if agent is None or agent.status != ACTIVE:
        raise Reject("unknown_actor", "only an active agent buys cover")
    expires = ins.cover.get(a.actor, [0])[0]
    if expires > tick + 1:
        raise Reject("already_insured", f"agent {a.actor} is covered until tick {expires}; "
                     "cover is bought one term at a time, when it ends")
    return [_buy(k, a.actor, a.renew, tick, a.actor)]


def cover_guard(k: Kernel, a: Action) -> Verdict:
    """With cover required: no agent without it takes the listed actions — and, when
    bidding for work needs cover, no work goes to a worker without it (an award of its bid,
    a subcontract to it: cover that lapsed after the bid does not carry the contract), nor
    an award past the worker's cover."""
    ins = k.state.insurance
    if not ins.required or a.actor <= OPERATOR:
        return None
    reg = k.state.registry
    if a.KIND in ins.required and a.actor in reg.agents and not ins.covered_at(a.actor, k.tick):
        return ("uninsured", f"{a.KIND} needs insurance cover; agent {a.actor} has none "
                f"(insure first)")
    if "bid_task" not in ins.required or a.KIND not in ("award_task", "subcontract"):
        return None
    price = 0
    if a.KIND == "award_task":
        t = k.state.tasks.tasks.get(getattr(a, "task", 0))
        worker, price = t.bids.get(getattr(a, "bid", 0), (0, 0)) if t else (0, 0)
    else:
        worker = getattr(a, "worker", 0)
    if not worker or worker not in reg.agents:
        return None
    if not ins.covered_at(worker, k.tick):
        return ("uninsured", f"worker {worker} has no insurance cover: it cannot take on work")
    held = ins.exposure.get(worker, 0)
    if price and ins.cover_limit and held + price > ins.cover_limit:
        return ("over_cover", f"worker {worker}'s open covered contracts ({held}) and this one "
                f"({price}) pass its cover of {ins.cover_limit}")
    return None


def views(k: Kernel) -> Any:
    """The pool's public figures (built once per tick and shared, as the exchange's market
    data is) and the agent's own cover and quote."""
    cache: list[Any] = [None, {}]

    def observe(agent: int) -> dict[str, Any]:
        ins = k.state.insurance
        if not ins.asset:
            return {}
        if cache[0] != (k.tick, k.log.size):
            cache[1] = {"required": sorted(ins.required),
                        "pool": k.state.ledger.accounts[ins.pool].balance if ins.pool else 0,
                        "exposure": sum(ins.exposure.values()), "cover": ins.cover_limit}
            cache[0] = (k.tick, k.log.size)
        cover = ins.cover.get(agent)
        _, premium, rate, _ = ins.quote(k, agent) if agent in k.state.registry.agents \
            else ("", 0, 0, [])
        return {"insurance": {"covered_until": cover[0] if cover else 0,
                              "renew": bool(cover[1]) if cover else False,
                              "premium": premium, "rate_bps": rate, **cache[1]}}
    return observe


def check_config(values: dict[str, Any], assets: tuple[str, ...]) -> None:
    cfg = values["insurance"]
    if not cfg:
        return
    if not isinstance(cfg, dict):
        raise ConfigError("insurance must be a mapping")
    unknown = sorted(set(cfg) - KEYS)
    if unknown:
        raise ConfigError(f"insurance: unknown key {unknown[0]!r}; known: "
                          f"{', '.join(sorted(KEYS))}")
    asset = cfg.get("asset", "")
    if asset and asset not in assets:
        raise ConfigError(f"insurance.asset must be an asset of the run ({list(assets)})")

    def whole(key: str, lo: int, hi: int, v: Any) -> None:
        if not _int(v) or not lo <= v <= hi:
            raise ConfigError(f"insurance.{key} must be an integer within {lo}..{hi}")

    if "premium" not in cfg:
        raise ConfigError("insurance.premium (the base premium per term) is required")
    whole("premium", 1, 10**12, cfg["premium"])
    whole("capital", 0, 10**15, cfg.get("capital", 0))
    whole("term", 1, 100_000, cfg.get("term", 10))
    whole("reputation_floor", 0, 1000, cfg.get("reputation_floor", 0))
    whole("indemnity_bps", 0, BPS, cfg.get("indemnity_bps", BPS))
    whole("limit", 0, 10**15, cfg.get("limit", 0))
    whole("cover", 0, 10**15, cfg.get("cover", 0))
    for key, allowed in (("prior", {"claims", "contracts"}),
                         ("decline", {"rate_bps", "min_claims"}),
                         ("loadings", set(LOADINGS))):
        sub = cfg.get(key, {})
        if not isinstance(sub, dict) or set(sub) - allowed:
            raise ConfigError(f"insurance.{key} must be a mapping of {sorted(allowed)}")
    prior = cfg.get("prior", {})
    whole("prior.claims", 1, 10_000, prior.get("claims", 1))
    whole("prior.contracts", 1, 1_000_000, prior.get("contracts", 20))
    if prior.get("claims", 1) > prior.get("contracts", 20) or \
            prior.get("contracts", 20) > prior.get("claims", 1) * BPS:
        raise ConfigError("insurance.prior: the rate claims/contracts must be within "
                          "1/10000..1 (at least 1 bps)")
    decline = cfg.get("decline", {})
    whole("decline.rate_bps", 0, BPS, decline.get("rate_bps", DECLINE[0]))
    whole("decline.min_claims", 1, 10_000, decline.get("min_claims", DECLINE[1]))
    for key, v in cfg.get("loadings", {}).items():
        whole(f"loadings.{key}", 0, 100 * BPS, v)
    required = cfg.get("required", ["bid_task"])
    if not isinstance(required, list) or not all(isinstance(x, str) for x in required):
        raise ConfigError("insurance.required must be a list of action kinds")
    for kind in required:
        cls = ACTION_TYPES.get(kind)
        if cls is None or kind in NEVER_REQUIRED or getattr(cls, "OPERATOR_ONLY", False) or \
                getattr(cls, "SUPERVISOR", False) or getattr(cls, "OVERSEER_ONLY", False):
            raise ConfigError(f"insurance.required: {kind!r} is not an agent action cover can "
                              f"be required for (never: {sorted(NEVER_REQUIRED)})")


MECHANISM = Mechanism(
    "insurance", state=Insurance,
    configure=lambda ins, header: ins.configure(header.config.get("insurance", {}),
                                                header.assets[0]),
    config={"insurance": {}}, check_config=check_config, sections={"insurance": "insurance"},
    handlers={Insure.KIND: insure},
    appliers={PoolOpened: lambda s: lambda ev, tick: s.insurance.apply_pool(ev),
              Insured: lambda s: lambda ev, tick: s.insurance.apply_insured(ev, tick),
              CoverLapsed: lambda s: lambda ev, tick: s.insurance.apply_lapsed(ev),
              ClaimPaid: lambda s: lambda ev, tick: s.insurance.apply_claim(ev)},
    listeners={TaskAwarded: _on_awarded, ContractSettled: _on_settled,
               RolledBack: lambda s: s.insurance.rolled_back},
    guards=((GUARD_RANKS["clearance"] + 10, Guard(
        "insurance_cover", REGULATORY, cover_guard,
        "with insurance cover required, an agent without cover may not take on work")),),
    tick_start=((35, insurance_start),),
    tick_end=((45, insurance_end),),
    views=views,
    visibility={"insurance_pool_opened": PUBLIC, "insured": PARTIES, "cover_lapsed": PARTIES,
                "claim_paid": PARTIES},
    requires=("tasks", "policy", "reputation"),
)

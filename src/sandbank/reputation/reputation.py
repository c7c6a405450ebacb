"""Reputation from verified outcomes (checklist 18–20), as part of the economy's state.

Outcomes come only from settlements on the log, never from what agents say:
- a task contract that settles `passed` is a positive outcome of its worker, rated by the
  requester; `failed` or `expired`, a negative one;
- every subcontract in the chain is rated by the worker who hired it: positive if none of
  its parts failed, negative otherwise;
- a passed contract is also a positive outcome of the requester, rated by each worker it
  paid ("paid in full") — so trust flows both ways between honest trading partners.
(Exchange fills are not outcomes: they settle atomically, so they carry no evidence.)

Every `reputation_epoch` ticks (when anything new happened) the epoch closes:
1. graph trust (EigenTrust, `trust.py`) over the net-outcome graph, seeded by the
   pre-trusted agents (`set_trusted`, operator only; if none are set, every agent the
   operator admitted — not agents spawned by agents);
2. the epoch's outcomes are folded into decayed, credibility-weighted Beta counts: each
   rater has a weight of min(1, n·trust) (`reputation_credibility`: 0 counts every outcome
   fully — the ablation), shared over its outcomes beyond `rating_budget` per epoch
   (ballot-stuffing buys nothing);
3. the public score (r + 1)/(r + s + 2) and the trust of every agent with a history are
   published as one `reputation` event: agents see the scores in `obs.reputation`.

Access gated by reputation: a task's `min_reputation`, and the policy tiers `gate_reward`
(tasks with at least that reward) and `gate_order_qty` (exchange orders larger than that)
with `gate_reputation`, refuse agents below the score (`reputation_too_low`). New agents
start at 500 ("pay your dues").
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from sandbank.kernel.errors import Reject
from sandbank.kernel.mechanism import PUBLIC, Mechanism
from sandbank.kernel.schema import SYSTEM, Action, Event, register_action, register_event
from sandbank.markets.tasks import ContractSettled
from sandbank.reputation.trust import PPM, beta_score, credibility, eigentrust

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

DEFAULT_SCORE = 500


@register_action
@dataclass(slots=True, kw_only=True)
class SetTrusted(Action):
    """Make an agent a pre-trusted seed of graph trust, or not (operator only)."""

    KIND: ClassVar[str] = "set_trusted"
    OPERATOR_ONLY: ClassVar[bool] = True
    agent: int
    trusted: bool


@register_event
@dataclass(slots=True, kw_only=True)
class TrustedSet(Event):
    KIND: ClassVar[str] = "trusted_set"
    agent: int
    trusted: bool


@register_event
@dataclass(slots=True, kw_only=True)
class ReputationPublished(Event):
    KIND: ClassVar[str] = "reputation"
    epoch: int
    scores: list[list[int]]  # [agent, public score (thousandths), trust (ppm)]
    seeds: int


@dataclass(slots=True)
class Tally:
    positive: int = 0  # thousandths of an outcome, weighted and decayed
    negative: int = 0


class Reputation:
    def __init__(self) -> None:
        self.trusted: set[int] = set()
        self.edges: dict[tuple[int, int], int] = {}  # (rater, ratee) -> net outcomes
        self.pending: dict[int, list[tuple[int, int]]] = {}  # rater -> [(ratee, +1/-1)]
        self.tallies: dict[int, Tally] = {}
        self.scores: dict[int, int] = {}  # public score, thousandths
        self.trust: dict[int, int] = {}  # graph trust, ppm
        self.cred: dict[int, int] = {}  # rater weight, thousandths (from the last epoch)
        self.epoch = 0
        self._digest: bytes | None = None

    def score(self, agent: int) -> int:
        return self.scores.get(agent, DEFAULT_SCORE)

    def record(self, rater: int, ratee: int, sign: int) -> None:
        if rater == ratee or rater <= 0 or ratee <= 0:
            return
        self._digest = None
        self.edges[(rater, ratee)] = self.edges.get((rater, ratee), 0) + sign
        self.pending.setdefault(rater, []).append((ratee, sign))

    def folded(self, decay: int, budget: int, weighted: bool,
               default_cred: dict[int, int]) -> dict[int, Tally]:
        """The tallies after this epoch: old ones decayed, the epoch's outcomes added with
        their raters' weights (pure: the hook and the applier both call it)."""
        out = {a: Tally(t.positive * decay // 1000, t.negative * decay // 1000)
               for a, t in self.tallies.items()}
        for rater in sorted(self.pending):
            outcomes = self.pending[rater]
            weight = self.cred.get(rater, default_cred.get(rater, 0)) if weighted else 1000
            each = weight if len(outcomes) <= budget else weight * budget // len(outcomes)
            for ratee, sign in outcomes:
                t = out.setdefault(ratee, Tally())
                if sign > 0:
                    t.positive += each
                else:
                    t.negative += each
        return out

    def apply_trusted(self, ev: TrustedSet, tick: int) -> None:
        (self.trusted.add if ev.trusted else self.trusted.discard)(ev.agent)
        self._digest = None

    def seeds(self, registry: Any) -> list[int]:
        """The pre-trusted agents; if none are set, every agent the operator admitted."""
        trusted = sorted(a for a in self.trusted if a in registry.agents)
        return trusted or sorted(a for a, ag in registry.agents.items()
                                 if ag.parent == 0 and ag.status != "revoked")

    def digest(self) -> bytes:
        if self._digest is None:  # recomputed only after a change
            from hashlib import sha256

            self._digest = sha256(repr((
                self.epoch, sorted(self.trusted), sorted(self.scores.items()),
                sorted(self.trust.items()), sorted(self.edges.items()),
                sorted((a, t.positive, t.negative) for a, t in self.tallies.items()),
            )).encode()).digest()
        return self._digest


def _params(k: Kernel, tick: int) -> tuple[int, int, bool, int]:
    v = k.state.policy.value
    return (v("reputation_decay", tick), v("rating_budget", tick),
            bool(v("reputation_credibility", tick)), v("trust_alpha", tick))


def reputation_tick_end(k: Kernel, tick: int) -> list[Event]:
    rep = k.state.reputation
    every = max(1, k.state.policy.value("reputation_epoch", tick))
    if tick % every or not rep.pending:
        return []
    decay, budget, weighted, alpha = _params(k, tick)
    seeds = rep.seeds(k.state.registry)
    # before its first epoch a pre-trusted agent rates at full weight, any other at none
    tallies = rep.folded(decay, budget, weighted, {a: 1000 for a in seeds})
    nodes = sorted({a for e in rep.edges for a in e} | set(tallies))
    trust = eigentrust(nodes + seeds, rep.edges, seeds, alpha=alpha / 1000)
    history = sorted(set(nodes) | set(tallies))
    scores = [[a, beta_score(tallies[a].positive, tallies[a].negative) if a in tallies
               else DEFAULT_SCORE, round(trust.get(a, 0.0) * PPM)] for a in history]
    ev = ReputationPublished(actor=SYSTEM, epoch=rep.epoch + 1, scores=scores, seeds=len(seeds))
    k.state.apply(ev, tick)
    return [ev]


def _apply_published(s: Any) -> Any:
    def apply(ev: ReputationPublished, tick: int) -> None:
        rep: Reputation = s.reputation
        v = s.policy.value
        weighted = bool(v("reputation_credibility", tick))
        reg = s.registry
        seeds = rep.seeds(reg)
        rep.tallies = rep.folded(v("reputation_decay", tick), v("rating_budget", tick),
                                 weighted, {a: 1000 for a in seeds})
        rep.pending = {}
        rep.epoch = ev.epoch
        rep._digest = None
        n = max(1, len(reg.agents))
        for agent, score, trust_ppm in ev.scores:
            rep.scores[agent] = score
            rep.trust[agent] = trust_ppm
            rep.cred[agent] = credibility(trust_ppm / PPM, n)
    return apply


def _on_settled(s: Any) -> Any:
    """Listener: a settled task contract is a set of verified outcomes."""
    def listen(ev: Any, tick: int) -> None:
        if ev.outcome not in ("passed", "failed", "expired"):
            return
        tm, rep = s.tasks, s.reputation
        t = tm.tasks[ev.task]
        root = tm.contracts[ev.contract]
        passed = ev.outcome == "passed"
        rep.record(t.requester, root.worker, 1 if passed else -1)
        if passed:
            for c in tm.chain(root.id):
                rep.record(c.worker, t.requester, 1)  # paid in full
        for c in tm.chain(root.id):  # each subcontractor, rated by who hired it
            if c.parent:
                delivered = bool(c.ok or c.failed)
                rep.record(tm.contracts[c.parent].worker, c.worker,
                           1 if delivered and not c.failed else -1)
    return listen


def set_trusted(k: Kernel, a: SetTrusted, tick: int) -> list[Event]:
    if a.agent not in k.state.registry.agents:
        raise Reject("unknown_agent", f"no agent {a.agent}")
    ev = TrustedSet(actor=a.actor, agent=a.agent, trusted=a.trusted)
    k.state.apply(ev, tick)
    return [ev]


def views(k: Kernel) -> Any:
    """Public scores, as a read-only mapping shared by every observation."""
    return lambda agent: {"reputation": MappingProxyType(k.state.reputation.scores)}


MECHANISM = Mechanism(
    "reputation", state=Reputation,
    handlers={SetTrusted.KIND: set_trusted},
    appliers={TrustedSet: lambda s: s.reputation.apply_trusted,
              ReputationPublished: _apply_published},
    listeners={ContractSettled: _on_settled},
    tick_end=((20, reputation_tick_end),),
    views=views,
    visibility={"trusted_set": PUBLIC, "reputation": PUBLIC},
    requires=("tasks", "policy"),
)

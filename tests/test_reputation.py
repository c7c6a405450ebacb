"""Reputation (checklist 18–20): EigenTrust as personalised PageRank, the sybil bound,
credibility-weighted Beta scores, and reputation-gated access."""

import random

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from networkx.algorithms.link_analysis.pagerank_alg import _pagerank_python  # no numpy needed

from conftest import Economy
from sandbank.controls.policy import SetPolicy
from sandbank.kernel.schema import OPERATOR
from sandbank.markets.tasks import AwardTask, BidTask, Deliver, PostTask
from sandbank.reputation.reputation import SetTrusted
from sandbank.reputation.trust import beta_score, credibility, eigentrust

ALPHA = 0.15


def _graph(seed, n=30, p=0.15):
    rng = random.Random(seed)
    edges = {(i, j): rng.randint(-2, 5) for i in range(n) for j in range(n)
             if i != j and rng.random() < p}
    return list(range(n)), edges, rng.sample(range(n), 4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_eigentrust_is_personalised_pagerank(seed):
    nodes, edges, pre = _graph(seed)
    ours = eigentrust(nodes, edges, pre, alpha=ALPHA)
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_weighted_edges_from((i, j, w) for (i, j), w in edges.items() if w > 0)
    p = {i: (1 / len(pre) if i in pre else 0.0) for i in nodes}
    ref = _pagerank_python(g, alpha=1 - ALPHA, personalization=p, dangling=p, tol=1e-14,
                      max_iter=10_000)
    assert max(abs(ours[i] - ref[i]) for i in nodes) < 1e-9
    assert abs(sum(ours.values()) - 1) < 1e-9


def _ring_trust(honest_edges, honest, seeds, attack, k, back=(), funnel=False):
    """Trust of a sybil ring of k identities (1000.., target 1000); `attack`: honest raters'
    opinions of the target; the ring rates itself fully (or, with `funnel`, every sybil
    rates only the target and the target rates them back); `back`: sybils rating honest."""
    ring = [1000 + i for i in range(k)]
    edges = dict(honest_edges)
    for u, w in attack:
        edges[(u, 1000)] = w
    for a in ring:
        for b in ring:
            if a != b and (not funnel or 1000 in (a, b)):
                edges[(a, b)] = 50
    for s, h in back:
        edges[(ring[s % k], h)] = 1
    t = eigentrust(honest + ring, edges, seeds, alpha=ALPHA)
    return t, ring, edges


@given(seed=st.integers(0, 10_000), k=st.integers(2, 40), attackers=st.integers(0, 3),
       back=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 11)), max_size=5))
def test_a_sybil_ring_holds_no_more_trust_than_its_attack_edges_carry_in(seed, k, attackers,
                                                                         back):
    nodes, edges, _ = _graph(seed, n=12, p=0.3)
    seeds = nodes[:3]
    attack = [(u, 1 + u) for u in nodes[3:3 + attackers]]
    t, ring, all_edges = _ring_trust(edges, nodes, seeds, attack, k, back)
    ring_total = sum(t[r] for r in ring)
    positive = {}
    for (i, _), w in all_edges.items():
        if w > 0:
            positive[i] = positive.get(i, 0) + w
    inflow = sum(t[u] * w / positive[u] for (u, v), w in all_edges.items()
                 if w > 0 and u not in ring and v in ring)
    assert ring_total <= (1 - ALPHA) / ALPHA * inflow + 1e-9
    if not attackers:
        assert ring_total < 1e-9  # nobody honest rated them: no trust at all


@pytest.mark.parametrize("funnel", [False, True])
def test_adding_sybils_does_not_raise_the_targets_trust(funnel):
    nodes, edges, _ = _graph(7, n=12, p=0.3)
    seeds, attack = nodes[:3], [(5, 2)]
    results = [_ring_trust(edges, nodes, seeds, attack, k, funnel=funnel)
               for k in (2, 4, 8, 16, 32, 64)]
    t2, ring2, edges2 = results[0]
    positive5 = sum(w for (i, _), w in edges2.items() if i == 5 and w > 0)
    bound = (1 - ALPHA) / ALPHA * t2[5] * 2 / positive5  # what the one attack edge carries
    targets = [t[1000] for t, _, _ in results]
    assert all(x <= bound + 1e-12 for x in targets)  # one bound, whatever k
    # more identities never help: spread thinner (a full ring) or no gain at all (a funnel)
    assert all(b <= a + 1e-12 for a, b in zip(targets, targets[1:], strict=False))


def test_beta_score_and_credibility():
    assert beta_score(0, 0) == 500 and beta_score(8000, 0) == 900 and beta_score(0, 8000) == 100
    assert credibility(0.0, 100) == 0 and credibility(0.02, 100) == 1000
    assert credibility(0.005, 100) == 500


def _work(e, requester, worker, reward=100, garbage=False, **task):
    tid = len(e.k.state.tasks.tasks) + 1
    e.do(PostTask(actor=requester, skills={"code": 1}, reward=reward, deadline=e.k.tick + 5,
                  **task))
    e.do(BidTask(actor=worker, task=tid, price=reward))
    bid = max(e.k.state.tasks.tasks[tid].bids)
    e.do(AwardTask(actor=requester, task=tid, bid=bid))
    e.do(Deliver(actor=worker, contract=e.k.state.tasks.tasks[tid].contract, garbage=garbage))


def test_reputation_follows_verified_outcomes_weighted_by_the_raters_trust():
    # 1 is the trusted requester; 2 works well for it; 3 fails it; 4 and 5 "rate" each other
    e = Economy(n=5, fund=100_000, skills={i: {"code": 5} for i in range(1, 6)},
                policy={"reputation_epoch": 1})
    e.do(SetTrusted(actor=OPERATOR, agent=1, trusted=True))
    for _ in range(3):
        _work(e, 1, 2)
        _work(e, 1, 3, garbage=True)
        _work(e, 4, 5)
        _work(e, 5, 4)
    rep = e.k.state.reputation
    assert rep.score(2) > 600 and rep.score(3) < 400
    assert 490 <= rep.score(4) <= 510 and 490 <= rep.score(5) <= 510  # worthless praise
    assert rep.trust[4] == rep.trust[5] == 0
    obs = e.k.observe(2)
    assert obs.reputation[2] == rep.score(2) and obs.reputation.get(99, 500) == 500
    with pytest.raises(TypeError):
        obs.reputation[2] = 1000  # read-only


def test_without_credibility_weighting_a_mutual_praise_pair_looks_good():
    e = Economy(n=5, fund=100_000, skills={i: {"code": 5} for i in range(1, 6)},
                policy={"reputation_epoch": 1, "reputation_credibility": 0})
    e.do(SetTrusted(actor=OPERATOR, agent=1, trusted=True))
    for _ in range(3):
        _work(e, 4, 5)
        _work(e, 5, 4)
    assert e.k.state.reputation.score(4) > 600  # the ablation: counted at face value


def test_access_is_gated_by_reputation():
    e = Economy(n=4, fund=100_000, skills={i: {"code": 5} for i in range(1, 5)},
                policy={"reputation_epoch": 1})
    e.do(SetTrusted(actor=OPERATOR, agent=1, trusted=True))
    _work(e, 1, 3, garbage=True)  # 3 fails once
    e.do(PostTask(actor=1, skills={"code": 1}, reward=50, deadline=e.k.tick + 5,
                  min_reputation=450))
    tid = len(e.k.state.tasks.tasks)
    e.do(BidTask(actor=3, task=tid, price=50), BidTask(actor=2, task=tid, price=50))
    refused = [d for d in e.k.log.last_committed if d["kind"] == "rejected"]
    assert [(r["actor"], r["reason"]) for r in refused] == [(3, "reputation_too_low")]
    # the policy tier: rewards of 1,000 or more need 600
    e.do(SetPolicy(actor=OPERATOR, param="gate_reward", value=1000),
         SetPolicy(actor=OPERATOR, param="gate_reputation", value=600))
    e.do(PostTask(actor=1, skills={"code": 1}, reward=1000, deadline=e.k.tick + 5))
    tid = len(e.k.state.tasks.tasks)
    e.do(BidTask(actor=2, task=tid, price=900))
    assert [d["reason"] for d in e.k.log.last_committed if d["kind"] == "rejected"] == [
        "reputation_too_low"]


def _ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):  # average ranks for ties
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for m in range(i, j + 1):
            ranks[order[m]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(xs, ys):
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def test_reputation_tracks_ground_truth_quality(tmp_path):
    """Checklist 18: nine workers of skill 1..9 do tasks of random difficulty for trusted
    requesters who pick among bidders at random; their public scores rank them by skill."""
    from sandbank.agents.base import POLICIES, Agent, policy
    from sandbank.lab.runner import run_scenario
    from sandbank.lab.scenario import parse_scenario

    @policy("test_client")
    class Client(Agent):
        def act(self, obs):
            out = [AwardTask(actor=self.id, task=t.id, bid=self.rng.choice(t.bids)[0])
                   for t in obs.tasks if t.requester == self.id and t.status == "open" and t.bids]
            out.append(PostTask(actor=self.id, skills={"code": self.rng.randint(1, 9)},
                                reward=100, deadline=obs.tick + 4))
            return out

    @policy("test_worker")
    class Worker(Agent):
        def act(self, obs):
            seen = getattr(self, "seen", set())
            out = [BidTask(actor=self.id, task=t.id, price=t.reward) for t in obs.tasks
                   if t.status == "open" and t.id not in seen and self.rng.random() < 0.5]
            self.seen = seen | {t.id for t in obs.tasks}
            out += [Deliver(actor=self.id, contract=c.id) for c in obs.contracts
                    if c.role == "worker" and c.status == "open"]
            return out

    pop = [{"policy": "test_client", "name": "client", "count": 6}]
    pop += [{"policy": "test_worker", "name": f"w{lvl}", "skills": {"code": lvl}}
            for lvl in range(1, 10)]
    try:
        res = run_scenario(parse_scenario(
            {"name": "quality", "seed": 5, "ticks": 120, "population": pop,
             "endowment": {"CRD": 1_000_000}, "safeguards": {"trusted": ["client"]},
             "oversight": {"enabled": False}}, "inline"), tmp_path / "q")
    finally:
        POLICIES.pop("test_client")
        POLICIES.pop("test_worker")
    from sandbank.economy import replay_log
    from sandbank.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "q" / "log.db", readonly=True, create=False)
    rep = replay_log(store).state.reputation
    store.close()
    scores = [rep.score(7 + lvl - 1) for lvl in range(1, 10)]  # workers are agents 7..15
    assert res.summary["final"]["tasks_passed"] > 100
    assert spearman(list(range(1, 10)), scores) >= 0.9, scores


def test_large_orders_are_gated_by_reputation():
    from sandbank.markets.exchange import PlaceOrder

    e = Economy(n=3, fund=100_000, assets=("CRD", "WGT"),
                markets=({"asset": "WGT", "quote": "CRD"},),
                policy={"gate_order_qty": 10, "gate_reputation": 600})
    e.do(PlaceOrder(actor=1, asset="WGT", side="sell", qty=10, price=100),
         PlaceOrder(actor=2, asset="WGT", side="sell", qty=11, price=100))
    refused = [d for d in e.k.log.last_committed if d["kind"] == "rejected"]
    assert [(r["actor"], r["reason"]) for r in refused] == [(2, "reputation_too_low")]

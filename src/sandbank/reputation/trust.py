"""The two scores (anchors §3), written out so they are exact and deterministic.

- **Graph trust (EigenTrust)**: local trust c_ij = max(s_ij, 0) / Σ_j max(s_ij, 0) from the
  outcome graph; global trust t ← (1 − a)·Cᵀt + a·p with p uniform over the pre-trusted
  peers (a peer with no positive opinions passes its trust to p). This is personalised
  PageRank. A set S of identities that no pre-trusted peer belongs to holds in total at most
  ((1 − a)/a)·Σ_{u∉S} t_u·c_{u,S}: only what honest raters send in through "attack edges",
  however many identities S has and however they rate each other.
- **Beta reputation** (Jøsang & Ismail): r positive and s negative outcomes give the
  expected trustworthiness (r + 1)/(r + s + 2). Outcomes are decayed each epoch (forgetting
  factor) and weighted by the rater's credibility, min(1, n·t_rater): a rater nobody trusts
  moves nobody's score.

Floats are used only inside `eigentrust`, in a fixed order (nodes and edges sorted), so the
result is the same on every machine; everything stored is an integer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PPM = 1_000_000


def eigentrust(nodes: Iterable[int], edges: Mapping[tuple[int, int], int],
               pretrusted: Iterable[int], alpha: float = 0.15, tol: float = 1e-12,
               max_iterations: int = 1000) -> dict[int, float]:
    """Global trust of every node (sums to 1). `edges[(i, j)]` is i's net opinion of j
    (positive minus negative outcomes); only positive opinions carry trust. Power
    iteration until the L1 change is below `tol`."""
    order = sorted(set(nodes))
    if not order:
        return {}
    seeds = sorted(set(pretrusted) & set(order)) or order
    p = {i: 0.0 for i in order}
    for s in seeds:
        p[s] = 1.0 / len(seeds)
    out: dict[int, list[tuple[int, float]]] = {}
    totals: dict[int, int] = {}
    for (i, j), w in sorted(edges.items()):
        if w > 0 and i != j and i in p and j in p:
            totals[i] = totals.get(i, 0) + w
    for (i, j), w in sorted(edges.items()):
        if w > 0 and i != j and i in p and j in p:
            out.setdefault(i, []).append((j, w / totals[i]))
    t = dict(p)
    for _ in range(max_iterations):
        nxt = {i: alpha * p[i] for i in order}
        dangling = 0.0
        for i in order:
            ti = t[i]
            if not ti:
                continue
            links = out.get(i)
            if links is None:
                dangling += ti
                continue
            share = (1 - alpha) * ti
            for j, c in links:
                nxt[j] += share * c
        if dangling:
            for s in seeds:
                nxt[s] += (1 - alpha) * dangling / len(seeds)
        change = sum(abs(nxt[i] - t[i]) for i in order)
        t = nxt
        if change < tol:
            break
    return t


def beta_score(positive: int, negative: int) -> int:
    """(r + 1)/(r + s + 2) in thousandths, for r, s given in thousandths of an outcome."""
    return (positive + 1000) * 1000 // (positive + negative + 2000)


def credibility(trust: float, n: int) -> int:
    """A rater's weight in thousandths: min(1, n·t) — 1 at (or above) the uniform share."""
    return min(1000, int(trust * n * 1000))

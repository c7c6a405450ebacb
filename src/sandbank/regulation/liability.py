"""Liability attribution (paper §3.4; checklist 46): who is responsible for a harmful
outcome, and how much, from the causal graph the forensics build (oversight/forensics.py).

The game. An incident is a set of evidence events (an alert's evidence: the failed
contracts, the payments an injection caused, the sends out of the sandbox). For each, its
**contributors** are the agents whose own actions it causally rests on (the event itself
and its ancestors in the graph). An evidence event happens only if every one of its
contributors acted: the worth of a coalition S of agents is the harm of the evidence
events all of whose contributors are in S,

    v(S) = Σ_e w_e · [A_e ⊆ S]

(w_e: the event's weight — the money it moved, or 1). This is a sum of unanimity games, so
its Shapley value is exact and cheap: each evidence event's weight is split equally among
its contributors, `φ_a = Σ_{e : a ∈ A_e} w_e / |A_e|`, normalised to shares that sum to 1
(Fractions: exactly 1). `tests/test_regulation.py` checks it against the brute-force
Shapley value over every ordering.

Who is a contributor is the forensics' call (`oversight/forensics.py`, `_answerable`): a
causal path runs through the victims too (the requester a fraudster cheated posted the
task the fraud rests on), so an agent answers only if the alert names it or another
identity of its owner, or if the evidence paid it. Shares map to beneficial owners through the
registry: an owner's share is its agents' together.

What it does not model: degrees of fault (negligence against intent), and an agent's
share of an event it made likelier without being on its causal path. The shares are
reported, not collected; for failed work under insurance, money moves (the claim is
charged by failed parts and the slashed bond recovered into the pool:
regulation/insurance.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction


def shapley_shares(contributors: Mapping[int, Iterable[int]],
                   weights: Mapping[int, int] | None = None) -> dict[int, Fraction]:
    """Each agent's share of responsibility for the evidence events `contributors` maps
    (event -> the agents it rests on), weighted by `weights` (event -> harm; default 1):
    the Shapley value of the unanimity-sum game above, as exact fractions summing to 1.
    Events without contributors carry no share. Empty when no event has any."""
    raw: dict[int, Fraction] = {}
    total = 0
    for event in sorted(contributors):
        agents = sorted(set(contributors[event]))
        w = max(1, int((weights or {}).get(event, 1)))
        if not agents:
            continue
        total += w
        for a in agents:
            raw[a] = raw.get(a, Fraction(0)) + Fraction(w, len(agents))
    return {a: v / total for a, v in sorted(raw.items())} if total else {}


def by_owner(shares: Mapping[int, Fraction], owner_of: Mapping[int, int]) -> dict[int, Fraction]:
    """Agents' shares summed per beneficial owner (an agent the map does not know: owner 0)."""
    out: dict[int, Fraction] = {}
    for a, s in sorted(shares.items()):
        o = owner_of.get(a, 0)
        out[o] = out.get(o, Fraction(0)) + s
    return out

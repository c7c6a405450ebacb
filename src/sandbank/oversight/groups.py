"""Groups of identities that deal mostly with each other and keep what goes round: the unit
wash trading and sybil rings are judged on (checklist 19, 22, 44; anchors §3).

A detector keyed on a spawn lineage, one owner or a library lot size is evaded by admitting
the identities separately, by colluding across owners, or by varying the lot. What such
schemes cannot avoid is their *effect*: the value (an asset, money, work) passes round a
closed set of identities and comes back, so

- each member deals **mostly inside** the set (at least `inside` of its gross flow), and
- each member's **net** inside the set is near zero (at most `net` of its inside flow):
  nothing changed hands for good — the lot went round, the money came back.

`Flows` keeps the window's flows between nodes (identities, or beneficial owners) with
their totals up to date as flows enter and leave the window. `closed_groups` finds
candidate sets as the connected parts of the "major partner" graph (a pair is linked when
it makes up at least `partner` of the smaller side's gross flow), then peels off every
member that breaks either rule, until what is left holds — so a ring cannot hide by also
trading with honest agents who pass the rules, and an honest market maker that trades
with everyone is peeled off (most of its flow is outside any small set). A node's flow to
itself (a beneficial owner paying itself) counts as inside and as net zero.

Honest populations the rules were checked against (scenarios/honest*.yaml): market makers
and zero-intelligence traders (flow spread over many partners, positions drift), honest
counterparties who only trade with each other (one-way flow: the buyer keeps what it buys),
requesters and specialists (money goes one way, work the other).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


class Flows:
    """Directed flows (src -> dst, amount) over the last `window` ticks."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.q: deque[tuple[int, int, int, int, int]] = deque()  # tick, src, dst, amount, seq
        self.pair: dict[tuple[int, int], int] = {}
        self.seqs: dict[tuple[int, int], deque[int]] = {}
        self.gross: dict[int, int] = {}  # node -> out + in (a self-flow counts once)
        self.total = 0

    def add(self, tick: int, src: int, dst: int, amount: int, seq: int) -> None:
        if amount <= 0:
            return
        self.q.append((tick, src, dst, amount, seq))
        self._move(src, dst, amount)
        self.seqs.setdefault((src, dst), deque()).append(seq)

    def _move(self, src: int, dst: int, amount: int) -> None:
        key = (src, dst)
        value = self.pair.get(key, 0) + amount
        if value:
            self.pair[key] = value
        else:
            del self.pair[key]
            del self.seqs[key]
        for n in (src,) if src == dst else (src, dst):
            g = self.gross.get(n, 0) + amount
            if g:
                self.gross[n] = g
            else:
                del self.gross[n]
        self.total += amount

    def expire(self, tick: int) -> None:
        while self.q and self.q[0][0] <= tick - self.window:
            _, src, dst, amount, _ = self.q.popleft()
            self.seqs[(src, dst)].popleft()
            self._move(src, dst, -amount)


@dataclass
class Group:
    members: list[int]
    inside: int  # the flow between members in the window
    seqs: list[int]  # the log entries of those flows


def components(links: list[tuple[Any, Any]], nodes: list[Any] | None = None
               ) -> list[list[Any]]:
    """The connected parts of a graph (union-find) of sortable nodes (ids, names), each
    sorted, in order of their least node; `nodes` defaults to the links' endpoints (a node
    without links is a part alone)."""
    if nodes is None:
        nodes = sorted({n for link in links for n in link})
    parent = {n: n for n in nodes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    out: dict[int, list[int]] = {}
    for n in nodes:
        out.setdefault(find(n), []).append(n)
    return [g for _, g in sorted(out.items())]


def closed_groups(f: Flows, *, partner: float = 0.5, inside: float = 0.6, net: float = 0.25,
                  min_size: int = 2, self_groups: bool = False) -> list[Group]:
    """The window's closed groups (see the module). With `self_groups`, a single node whose
    flow is mostly to itself is a group too (an owner dealing with itself). Each member's
    rules are worked out over the members it has flow with (its neighbours), so a large
    component costs its edges, not its size squared."""
    pair, gross = f.pair, f.gross
    links = sorted((a, b) for (a, b), x in pair.items() if a != b
                   and x + pair.get((b, a), 0) >= partner * min(gross[a], gross[b]))
    nodes = sorted({n for link in links for n in link} | (
        {a for (a, b) in pair if a == b} if self_groups else set()))
    nb: dict[int, set[int]] = {}  # node -> the nodes it has flow with (either way)
    for a, b in pair:
        nb.setdefault(a, set()).add(b)
        nb.setdefault(b, set()).add(a)

    def breaks(m: int, members: set[int]) -> bool:
        return _breaks(f, m, (members & nb.get(m, set())) | {m}, inside, net)

    def holds(members: set[int]) -> bool:
        return len(members) >= min_size and not any(breaks(m, members) for m in members)

    out = []
    for comp in components(links, nodes):
        members = set(comp)
        while True:  # peel off whoever breaks a rule, until the rest holds
            bad = {m for m in sorted(members) if breaks(m, members)}
            if not bad:
                break
            members -= bad
        # then drop whoever the loop does not need: a counterparty that traded both ways
        # with the ring (a market maker its orders crossed) passes the rules, but the ring
        # closes without it; each real member of a loop is needed to close it
        if len(members) > min_size:
            for m in sorted(members, key=lambda m: (_share(pair, gross, m, members & nb[m]), m)):
                if len(members) > min_size and holds(members - {m}):
                    members.discard(m)
        if len(members) >= min_size or (self_groups and members):
            ms = sorted(members)
            keys = [(a, b) for a in ms for b in ms if (a, b) in pair]
            if len(ms) < min_size and not any(a == b for a, b in keys):
                continue
            out.append(Group(ms, sum(pair[k] for k in keys),
                             sorted(s for k in keys for s in f.seqs[k])))
    return out


def _breaks(f: Flows, m: int, members: set[int], inside: float, net: float) -> bool:
    """Does `m` break a rule in `members`: too little of its flow inside, or a net?"""
    pair = f.pair
    into = sum(pair.get((x, m), 0) for x in members)
    outof = sum(pair.get((m, x), 0) for x in members)
    dealt = into + outof - pair.get((m, m), 0)
    return dealt < inside * f.gross[m] or abs(into - outof) > net * dealt


def closed(f: Flows, members: set[int], *, inside: float, net: float) -> bool:
    """Do `members` (two or more) form a closed group?"""
    return len(members) >= 2 and not any(_breaks(f, m, members, inside, net)
                                         for m in sorted(members))


def _share(pair: dict[tuple[int, int], int], gross: dict[int, int], m: int,
           members: set[int]) -> float:
    """How much of `m`'s flow is with the other members."""
    return sum(pair.get((m, x), 0) + pair.get((x, m), 0) for x in members if x != m) / gross[m]

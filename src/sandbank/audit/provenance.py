"""Provenance: the causal ancestors and descendants of any event in a log (checklist 13).

Every event *creates* entities (an owner, an agent, an account, a transfer) and *refers* to
entities; its causal parents are the events that created what it refers to. So a post of
an escrow hold descends from the hold, which descends from the two accounts it moved money
between, which descend from their holders' registrations, which descend from their owners'
(and, for spawned agents, from their parents'). Mechanisms added later (task contracts,
subcontracts) declare their entities in `_ENTITIES` and join the same graph.

The index is built by one pass over the log; it holds one small list per event, so it is
an offline tool (the kernel never builds it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sandbank.kernel.canonical import parse
from sandbank.store.base import Store

Key = tuple[Any, ...]


def _transfer(d: dict[str, Any]) -> tuple[list[Key], list[Key]]:
    refs: list[Key] = [("account", d["debit"]), ("account", d["credit"]), ("agent", d["actor"])]
    if d["pending_id"]:
        refs.append(("transfer", d["pending_actor"], d["pending_id"]))
    return [("transfer", d["actor"], d["id"])], refs


_ENTITIES: dict[str, Callable[[dict[str, Any]], tuple[list[Key], list[Key]]]] = {
    "run_started": lambda d: ([("run",)], []),
    "owner_registered": lambda d: ([("owner", d["owner"])], [("run",)]),
    "agent_registered": lambda d: ([("agent", d["agent"])],
                                   [("owner", d["owner"])]
                                   + ([("agent", d["parent"])] if d["parent"] else [])),
    "agent_status_changed": lambda d: ([], [("agent", d["agent"])]),
    "account_opened": lambda d: ([("account", d["account"])],
                                 [("agent", d["holder"])] if d["holder"] else [("run",)]),
    "credit_line_set": lambda d: ([], [("account", d["account"])]),
    "transfer": _transfer,
    "hold_expired": lambda d: ([], [("transfer", d["actor"], d["id"])]),
    "rejected": lambda d: ([], [("agent", d["actor"])]),
    # markets
    "order_placed": lambda d: ([("order", d["order"])],
                               [("agent", d["actor"])] + [("order", f[0]) for f in d["fills"]]),
    "order_cancelled": lambda d: ([], [("order", d["order"])]),
    "call_auction": lambda d: ([], [("order", o) for f in d["fills"] for o in f[:2]]),
    "task_posted": lambda d: ([("task", d["task"])], [("agent", d["actor"])]),
    "task_bid": lambda d: ([("task_bid", d["bid"])], [("task", d["task"]), ("agent", d["actor"])]),
    "task_awarded": lambda d: ([("contract", d["contract"])],
                               [("task", d["task"]), ("agent", d["worker"])]),
    "subcontracted": lambda d: ([("contract", d["contract"])],
                                [("contract", d["parent"]), ("agent", d["worker"])]),
    "delivered": lambda d: ([("delivered", d["contract"])], [("contract", d["contract"])]),
    "judged": lambda d: ([("judged", d["contract"], d["actor"])], [("delivered", d["contract"])]),
    "disputed": lambda d: ([("disputed", d["contract"])], [("delivered", d["contract"])]),
    "contract_settled": lambda d: ([], [("contract", d["contract"]), ("delivered", d["contract"]),
                                        ("disputed", d["contract"])]
                                   + [("delivered", p[0]) for p in d["payouts"]]),
    "auction_created": lambda d: ([("auction", d["auction"])], [("agent", d["actor"])]),
    "auction_bid": lambda d: ([("auction_bid", d["bid"])],
                              [("auction", d["auction"]), ("agent", d["actor"])]),
    "auction_cleared": lambda d: ([], [("auction", d["auction"])]
                                  + [("auction_bid", w[0]) for w in d["winners"]]),
    "message_sent": lambda d: ([], [("agent", d["actor"])] + ([("agent", d["to"])] if d["to"] else [])),
    "certification_changed": lambda d: ([], [("agent", d["agent"])]),
    "stake_changed": lambda d: ([], [("agent", d["agent"])]),
}


class Provenance:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.parents: list[list[int]] = []
        self.children: dict[int, list[int]] = {}
        creators: dict[Key, int] = {("agent", 0): 0}  # the operator acts from the header on
        for e in store.entries():
            d = parse(e.body)
            creates, refs = _ENTITIES.get(d["kind"], lambda _: ([], []))(d)
            parents = sorted({creators[r] for r in refs if r in creators and creators[r] != e.seq})
            self.parents.append(parents)
            for p in parents:
                self.children.setdefault(p, []).append(e.seq)
            for c in creates:
                creators.setdefault(c, e.seq)

    def _walk(self, start: int, nxt: Callable[[int], Iterable[int]]) -> list[int]:
        if not 0 <= start < len(self.parents):
            raise KeyError(f"no entry {start}")
        seen, todo = set(), deque([start])
        while todo:
            for p in nxt(todo.popleft()):
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return sorted(seen)

    def ancestors(self, seq: int) -> list[int]:
        """Every event `seq` causally rests on, oldest first."""
        return self._walk(seq, lambda s: self.parents[s])

    def descendants(self, seq: int) -> list[int]:
        """Every event that causally rests on `seq`, oldest first."""
        return self._walk(seq, lambda s: self.children.get(s, ()))

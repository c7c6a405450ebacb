"""What an agent sees: the only view of the economy it ever gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    asset: str
    balance: int  # posted credits - posted debits
    available: int  # what can still be debited (holds and credit line counted)
    held_out: int  # reserved by pending transfers out of this account
    held_in: int  # pending transfers into this account


class Feedback(NamedTuple):
    kind: str
    nonce: int
    outcome: str  # "ok" or the rejection reason


INBOX_LIMIT = 256  # messages an agent can receive per tick; more are counted as overflow


class Message(NamedTuple):
    """What an inbox holds: a message an agent sent (markets/messaging.py) or an outside
    answer through a gateway (boundary/boundary.py)."""

    tick: int
    sender: int
    content: str
    broadcast: bool
    provenance: str = ""  # agent:<id> | broadcast:<id> (the firewall's label)
    tainted: bool = False  # the content looks like instructions (boundary/firewall.py)
    flags: tuple[str, ...] = ()  # which injection families it matched


class OrderView(NamedTuple):
    id: int
    asset: str
    side: str
    price: int
    qty: int
    remaining: int


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything an agent may know: its own state, public market data, the public task
    board, its contracts, auctions open to it (bids sealed), and its inbox. The kernel
    fills its own fields; each mechanism fills its views (kernel/mechanism.py)."""

    tick: int
    agent: int
    owner: int
    status: str
    accounts: tuple[AccountView, ...]
    feedback: tuple[Feedback, ...] = ()  # outcomes of this agent's actions in the last tick
    skills: tuple[tuple[str, int], ...] = ()
    markets: tuple[Any, ...] = ()  # exchange.MarketView: top of book, last trades, volume
    orders: tuple[OrderView, ...] = ()  # its own resting orders
    tasks: tuple[Any, ...] = ()  # tasks.TaskView: open tasks, and its own with their bids
    contracts: tuple[Any, ...] = ()  # tasks.ContractView: where it works, requests or judges
    auctions: tuple[Any, ...] = ()  # auctions.AuctionView
    inbox: tuple[Any, ...] = ()  # messaging.Message received in the last tick
    inbox_overflow: int = 0  # messages lost because the inbox was full (never silent)
    games: tuple[Any, ...] = ()  # pricing.GameView: last cleared prices and profits
    # public reputation: agent -> score in thousandths (absent: 500, no history yet)
    reputation: Any = None
    # what each agent this one spawned (and so holds the keys of) observes, recursively
    children: tuple[Observation, ...] = ()
    # views of mechanisms that have no field here: mechanism view name -> value (left out of
    # an observation's data when there are none: `omit_if_none`)
    extra: Any = field(default=None, metadata={"omit_if_none": True})

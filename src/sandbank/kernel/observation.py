"""What an agent sees: the only view of the economy it ever gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


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


@dataclass(frozen=True, slots=True)
class Observation:
    tick: int
    agent: int
    owner: int
    status: str
    accounts: tuple[AccountView, ...]
    feedback: tuple[Feedback, ...] = ()  # outcomes of this agent's actions in the last tick

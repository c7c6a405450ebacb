"""Settlements: the only way a mechanism moves money.

A `Settlement` collects SYSTEM transfers (holds into the asset's escrow account, posts,
voids, payments, fees) and `commit()` executes them as **one linked chain**: all commit or
none. The committed transfers travel inside the mechanism's event (`Settled.transfers`), so
one log entry is one atomic economic fact (a fill, an award, a payout) and replay applies
exactly the same transfers.

Holds follow TigerBeetle's two-phase rules: a post may take less than the hold and
releases the rest; `take()` therefore re-holds whatever must stay reserved (an order's
unfilled part, a stake after a slash) under a new id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbank.kernel.errors import Reject
from sandbank.kernel.schema import LINKED, PENDING, POST_PENDING, SYSTEM, VOID_PENDING, TransferSpec

if TYPE_CHECKING:
    from sandbank.kernel.sequencer import Kernel

HoldKey = tuple[int, int]  # (SYSTEM, transfer id)


def require_account(k: Kernel, agent: int, asset: str):
    """The agent's account in `asset` (where mechanisms pay it), or a `no_account` refusal."""
    acct = k.state.ledger.account_of(agent, asset)
    if acct is None:
        raise Reject("no_account", f"agent {agent} has no {asset} account")
    return acct


class SettlementFailed(Exception):
    def __init__(self, code: str, index: int) -> None:
        super().__init__(f"settlement leg {index} failed: {code}")
        self.code = code


class Settlement:
    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.ledger = kernel.state.ledger
        self.specs: list[TransferSpec] = []
        self._next = self.ledger.system_seq + 1
        self._holds: dict[int, tuple[int, int]] = {}  # id -> (debit, amount), this chain

    def _id(self) -> int:
        self._next += 1
        return self._next - 1

    def escrow(self, asset: str) -> int:
        return self.ledger.escrow[asset]

    def pay(self, debit: int, credit: int, amount: int, code: int = 0) -> None:
        if amount > 0:
            self.specs.append(TransferSpec(id=self._id(), debit=debit, credit=credit,
                                           amount=amount, code=code))

    def fee(self, debit: int, asset: str, amount: int, code: int = 0) -> None:
        """A fee or tax: from `debit` to the asset's treasury."""
        self.pay(debit, self.ledger.treasury[asset], amount, code)

    def hold(self, debit: int, asset: str, amount: int, timeout: int = 0) -> HoldKey:
        tid = self._id()
        self.specs.append(TransferSpec(id=tid, debit=debit, credit=self.escrow(asset),
                                       amount=amount, flags=PENDING, timeout=timeout))
        self._holds[tid] = (debit, amount)
        return (SYSTEM, tid)

    def hold_info(self, key: HoldKey) -> tuple[int, int]:
        """(debit account, amount) of a live hold, including holds made in this chain."""
        if key[1] in self._holds:
            return self._holds[key[1]]
        h = self.ledger.holds[key]
        return h.debit, h.amount

    def void(self, key: HoldKey) -> None:
        self.specs.append(TransferSpec(id=self._id(), flags=VOID_PENDING, pending_id=key[1],
                                       pending_actor=SYSTEM))

    def take(self, key: HoldKey, amount: int, to: int | None, asset: str,
             keep: int | None = None) -> HoldKey | None:
        """Move `amount` of a hold into escrow and on to account `to` (None: leave it in
        escrow), release the rest, then re-hold `keep` (default: what is left) from the same
        account. Returns the new hold's key, or None when nothing stays held."""
        debit, held = self.hold_info(key)
        if keep is None:
            keep = held - amount
        assert 0 < amount <= held and 0 <= keep <= held - amount
        self.specs.append(TransferSpec(id=self._id(), flags=POST_PENDING, pending_id=key[1],
                                       pending_actor=SYSTEM, amount=amount))
        if to is not None:
            self.pay(self.escrow(asset), to, amount)
        return self.hold(debit, asset, keep) if keep else None

    def commit(self) -> list[dict[str, Any]]:
        """Execute every leg atomically; raise SettlementFailed (nothing applied) if any
        leg is refused. Returns the committed transfers, for the event."""
        if not self.specs:
            return []
        for s in self.specs[:-1]:
            s.flags |= LINKED
        events, results = self.ledger.execute(SYSTEM, self.specs, self.k.tick)
        if len(events) != len(self.specs):
            bad = next(i for i, r in enumerate(results) if r not in ("ok", "linked_event_failed"))
            raise SettlementFailed(results[bad], bad)
        return [e.to_dict() for e in events]

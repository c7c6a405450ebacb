"""A double-entry ledger after TigerBeetle: accounts, immutable transfers, two-phase holds,
linked batches, idempotent retries and a named result code for every rejection.

State changes only through `apply_*` methods that take committed events: the kernel calls
them after validation, `replay` calls them on events read back from the log, so a live run
and its replay cannot diverge.

Invariants (anchors §2), asserted by `check_invariants` and the tests:
1. every transfer has debit != credit, 0 < amount <= MAX_AMOUNT, integer minor units;
2. Σ debits_posted = Σ credits_posted and Σ debits_pending = Σ credits_pending; per asset,
   money held outside the treasury = minted - burned;
3. for accounts with DEBITS_MUST_NOT_EXCEED_CREDITS:
   credits_posted + credit_limit - debits_posted - debits_pending >= 0;
4. a transfer key (actor, id) commits at most once; an identical retry is `exists`, a
   changed one `exists_with_different_*`, a retry of a failed id `id_already_failed` (exact
   answers within the idempotency window, below; beyond it `id_outside_window`, and the
   transfer still never commits twice);
5. transfers are never changed or removed (the log is append-only);
6. a pending transfer resolves at most once (post, void or expiry);
7. linked transfers commit all or none;
8. balances are the fold of the transfer events (replay recomputes them);
9. one writer orders everything (the sequencer).

Memory is bounded in run length (issues 18 and 20). TigerBeetle keeps every transfer id
forever, durably; here the durable record of every transfer is the log, and memory holds
only what the next decision needs:
- the live holds (their number is part of the state, not of the run's age);
- for the ids agents and the operator choose, each transfer, failed id and hold resolution
  of the last `window` ticks (`idempotency_window`, 1,024 by default), and per actor the
  `floor`: the highest id that has left the window. An id above its actor's floor, or seen
  in the window, gets TigerBeetle's exact answer; an id at or below the floor that the
  window does not hold may have committed long ago and is refused `id_outside_window` (a
  post or void of such a pending id: `pending_id_outside_window`): never a second commit.
  A client that numbers its transfers upward (TigerBeetle's advice too) never meets it.
- SYSTEM's transfers are not remembered at all: the kernel numbers them itself, strictly
  upward (`system_seq`), so every id at or below `system_seq` is outside the window.
What the window holds is derived from the log (each bucket is the ticks' own events), so a
resumed kernel rebuilds it by replay (`at_tick` at each tick's first entry) and answers as
the uninterrupted one would.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from hashlib import sha256

from sandbank.kernel.digest import DigestMap
from sandbank.kernel.schema import (
    ALL_TRANSFER_FLAGS,
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    LINKED,
    MAX_BATCH,
    OPERATOR,
    PENDING,
    POST_PENDING,
    SYSTEM,
    VOID_PENDING,
    AccountOpened,
    CreditLineSet,
    HoldExpired,
    TransferCommitted,
    TransferSpec,
)
from sandbank.ledger.codes import TransferResult as R

MAX_AMOUNT = 2**53 - 1  # amounts and balances stay exact in the canonical log encoding
MAX_TIMEOUT = 2**32  # ticks
WINDOW = 1024  # ticks for which the ids agents and the operator chose are remembered exactly


@dataclass(slots=True)
class Account:
    id: int
    holder: int
    asset: str
    flags: int
    treasury: bool
    credit_limit: int = 0
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def balance(self) -> int:
        """Posted balance, credits minus debits (what the holder owns)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What can still be debited: posted balance minus holds plus credit line."""
        return self.credits_posted + self.credit_limit - self.debits_posted - self.debits_pending


@dataclass(slots=True)
class Hold:
    debit: int
    credit: int
    amount: int
    expires: int
    code: int = 0  # the transfer's user code (not hashed: the log's entry holds it)


_DIFF = (
    (4, R.exists_with_different_flags),
    (0, R.exists_with_different_debit_account_id),
    (1, R.exists_with_different_credit_account_id),
    (2, R.exists_with_different_amount),
    (5, R.exists_with_different_pending_id),
    (3, R.exists_with_different_pending_id),
    (6, R.exists_with_different_timeout),
    (7, R.exists_with_different_code),
)


_RESOLVED = {"posted": R.pending_transfer_already_posted,
             "voided": R.pending_transfer_already_voided,
             "expired": R.pending_transfer_expired}

_NOT_REMEMBERED = frozenset(
    {R.ok, R.exists, R.id_already_failed, R.linked_event_failed, R.id_must_be_positive,
     R.batch_is_empty, R.batch_too_large, R.id_outside_window}
    | {code for code in R if code.startswith("exists_with_different")}
)


def _account_record(a: Account) -> list[object]:
    return [a.id, a.holder, a.asset, a.flags, a.treasury, a.credit_limit, a.debits_pending,
            a.debits_posted, a.credits_pending, a.credits_posted]


def _hold_record(item: tuple[tuple[int, int], Hold]) -> list[int]:
    (actor, tid), h = item
    return [actor, tid, h.debit, h.credit, h.amount, h.expires]


class _Bucket:
    """What one tick added to the window: remembered transfer keys, failed keys, resolved
    pending keys (in the order added, so an undone chain pops its own)."""

    __slots__ = ("tick", "transfers", "failed", "resolved")

    def __init__(self, tick: int) -> None:
        self.tick = tick
        self.transfers: list[tuple[int, int]] = []
        self.failed: list[tuple[int, int]] = []
        self.resolved: list[tuple[int, int]] = []


class Ledger:
    def __init__(self, window: int = WINDOW) -> None:
        self.accounts: dict[int, Account] = {}
        self._by_holder: dict[int, list[int]] = {}
        self._first: dict[tuple[int, str], Account] = {}  # (holder, asset) -> first account
        self.treasury: dict[str, int] = {}  # asset -> treasury account id
        self.escrow: dict[str, int] = {}  # asset -> the mechanisms' escrow account id
        self.system_seq = 0  # highest id of a SYSTEM transfer so far
        # the window (module docstring): the transfers of actors other than SYSTEM, as
        # (actor, id) -> (debit, credit, amount, pending_actor, flags, pending_id, timeout, code)
        self.transfers: dict[tuple[int, int], tuple[int, ...]] = {}
        self.failed: dict[tuple[int, int], str] = {}
        self.resolved: dict[tuple[int, int], str] = {}  # pending key -> posted|voided|expired
        self.window = window
        self.tick = 0  # the tick the newest bucket collects
        self._buckets: deque[_Bucket] = deque([_Bucket(0)])
        self.floor: dict[int, int] = {}  # actor -> highest id that left the window
        self._credited: set[int] = set()  # accounts credited by operator transfers gone
        self.holds: dict[tuple[int, int], Hold] = {}
        self._expiry: list[tuple[int, int, int, int]] = []  # (expires, order, actor, id)
        self._order = 0
        self.minted: dict[str, int] = {}
        self.burned: dict[str, int] = {}
        self.transfer_count = 0
        self._account_digest = DigestMap(_account_record)
        self._account_dirty = self._account_digest._dirty
        self._hold_digest = DigestMap(_hold_record)

    # ------------------------------------------------------------------ the window
    def at_tick(self, tick: int) -> None:
        """Tick `tick` begins (the kernel, before anything of it runs; replay, at its first
        entry): what left the window `window` ticks ago is forgotten, its ids under the
        actors' floors."""
        if tick <= self.tick:
            return
        self.tick = tick
        buckets = self._buckets
        if buckets[-1].transfers or buckets[-1].failed or buckets[-1].resolved:
            buckets.append(_Bucket(tick))
        else:
            buckets[-1].tick = tick  # (an empty bucket is reused: quiet ticks cost nothing)
        floor, transfers, failed, resolved = self.floor, self.transfers, self.failed, self.resolved
        while len(buckets) > 1 and buckets[0].tick <= tick - self.window:
            b = buckets.popleft()
            for key in b.transfers:
                if key[0] == OPERATOR:
                    self._credited.add(transfers[key][1])
            for keys, held in ((b.transfers, transfers), (b.failed, failed)):
                for key in keys:
                    del held[key]
                    actor, tid = key
                    if tid > floor.get(actor, 0):
                        floor[actor] = tid
            for key in b.resolved:
                del resolved[key]

    def _outside(self, actor: int, tid: int) -> bool:
        """An id the window cannot answer for: at or below its actor's floor (SYSTEM's:
        every id it has used)."""
        if actor == SYSTEM:
            return tid <= self.system_seq
        return tid <= self.floor.get(actor, 0)

    def highest_id(self, actor: int) -> int:
        """The highest transfer id `actor` has committed or burnt (O(window))."""
        return max([self.floor.get(actor, 0), *(tid for a, tid in self.transfers if a == actor),
                    *(tid for a, tid in self.failed if a == actor)])

    def operator_credited(self) -> set[int]:
        """The accounts the operator's transfers ever credited (O(window))."""
        return self._credited | {rec[1] for (a, _), rec in self.transfers.items()
                                 if a == OPERATOR}

    # ------------------------------------------------------------------ accounts
    def next_account_id(self) -> int:
        return len(self.accounts) + 1

    def apply_account_opened(self, ev: AccountOpened) -> None:
        assert ev.account == len(self.accounts) + 1, "account ids are dense sequence numbers"
        a = Account(ev.account, ev.holder, ev.asset, ev.flags, ev.treasury)
        self.accounts[a.id] = a
        self._by_holder.setdefault(a.holder, []).append(a.id)
        self._first.setdefault((a.holder, a.asset), a)
        if ev.holder == SYSTEM:  # the first SYSTEM account of an asset is its escrow; a
            self.escrow.setdefault(ev.asset, a.id)  # mechanism may open more (a pool)
        if ev.treasury:
            assert ev.asset not in self.treasury
            self.treasury[ev.asset] = a.id
            self.minted[ev.asset] = 0
            self.burned[ev.asset] = 0
        self._account_digest.touch(a.id, a)

    def accounts_of(self, holder: int) -> list[Account]:
        return [self.accounts[i] for i in self._by_holder.get(holder, ())]

    def account_of(self, holder: int, asset: str) -> Account | None:
        """The holder's first account in `asset` (where mechanisms pay it)."""
        return self._first.get((holder, asset))

    def apply_credit_line(self, ev: CreditLineSet) -> None:
        a = self.accounts[ev.account]
        a.credit_limit = ev.limit
        self._account_digest.touch(a.id, a)

    # ------------------------------------------------------------------ transfers
    def execute(
        self, actor: int, specs: list[TransferSpec], tick: int
    ) -> tuple[list[TransferCommitted], list[str]]:
        """Validate and apply a batch. Returns (committed events, result code per transfer).

        Chains of LINKED transfers commit all-or-nothing; a failed chain is undone and its
        other members report `linked_event_failed`. Codes other than ok/exists leave no
        trace in the balances.
        """
        n = len(specs)
        if n == 1 and not specs[0].flags & LINKED:  # the common case, without chain bookkeeping
            code, ev = self._validate(actor, specs[0], tick)
            if ev is None:
                return [], [code]
            self.apply_transfer(ev)
            return [ev], [code]
        if n == 0:
            return [], [R.batch_is_empty]
        if n > MAX_BATCH:
            return [], [R.batch_too_large] * n
        results: list[str] = [R.ok] * n
        committed: list[TransferCommitted] = []
        i = 0
        while i < n:
            j = i  # the chain is specs[i..j]: linked members, then one unlinked (or batch end)
            while j < n - 1 and specs[j].flags & LINKED:
                j += 1
            open_chain = bool(specs[j].flags & LINKED)
            applied: list[TransferCommitted] = []
            resolved: list[tuple[int, int]] = []  # holds posted or voided by the chain
            failed_at = -1
            for k in range(i, j + 1):
                if open_chain and k == j:
                    code: str = R.linked_event_chain_open
                else:
                    code, ev = self._validate(actor, specs[k], tick)
                    if ev is not None:
                        self.apply_transfer(ev, resolved)
                        applied.append(ev)
                results[k] = code
                if code != R.ok and code != R.exists:
                    failed_at = k
                    break
            if failed_at >= 0:
                for ev in reversed(applied):
                    self.undo_transfer(ev)
                for k in range(i, j + 1):
                    if k != failed_at:
                        results[k] = R.linked_event_failed
            else:
                committed.extend(applied)
                for pkey in resolved:
                    del self.holds[pkey]
                    self._hold_digest.delete(pkey)
            i = j + 1
        return committed, results

    def _validate(self, actor: int, t: TransferSpec, tick: int) -> tuple[str, TransferCommitted | None]:
        if t.id <= 0:
            return R.id_must_be_positive, None
        flags = t.flags
        if flags & ~ALL_TRANSFER_FLAGS:
            return R.flags_are_invalid, None
        kind = flags & (PENDING | POST_PENDING | VOID_PENDING)
        if kind not in (0, PENDING, POST_PENDING, VOID_PENDING):
            return R.flags_are_mutually_exclusive, None
        key = (actor, t.id)
        debit, credit, amount = t.debit, t.credit, t.amount
        pending_actor = actor if t.pending_actor == -1 else t.pending_actor
        resolving = kind & (POST_PENDING | VOID_PENDING)
        pending_rec = None
        if resolving and t.pending_id > 0:
            pkey = (pending_actor, t.pending_id)
            hold = self.holds.get(pkey)
            if hold is not None:  # a live hold: its record, whatever its age
                pending_rec = (hold.debit, hold.credit, hold.amount, pending_actor, PENDING)
            else:
                pending_rec = self.transfers.get(pkey)
            if pending_rec is not None:  # normalise: 0 means "as the pending transfer"
                debit = debit or pending_rec[0]
                credit = credit or pending_rec[1]
                if kind == VOID_PENDING or amount == 0:
                    amount = amount or pending_rec[2]
        existing = self.transfers.get(key) if actor != SYSTEM else None
        if existing is not None:
            if resolving and pending_rec is None and existing[4] & (POST_PENDING | VOID_PENDING):
                # a retried post or void whose hold has gone from memory: its first commit
                # took the hold's accounts and amount, so 0 still means "as the hold"
                debit = debit or existing[0]
                credit = credit or existing[1]
                if kind == VOID_PENDING or amount == 0:
                    amount = amount or existing[2]
            record = (debit, credit, amount, pending_actor, flags, t.pending_id, t.timeout, t.code)
            for idx, code in _DIFF:
                if existing[idx] != record[idx]:
                    return code, None
            return R.exists, None
        failed = self.failed.get(key)
        if failed is not None:
            return R.id_already_failed, None
        if self._outside(actor, t.id):
            return R.id_outside_window, None
        if t.timeout < 0:
            return R.timeout_must_not_be_negative, None
        if t.timeout > MAX_TIMEOUT:
            return R.timeout_too_large, None
        if t.timeout and kind != PENDING:
            return R.timeout_reserved_for_pending_transfer, None
        if resolving:
            return self._validate_resolution(actor, t, key, kind, pending_actor, pending_rec,
                                             debit, credit, amount)
        if t.pending_id != 0:
            return R.pending_id_must_be_zero, None
        if debit == 0:
            return R.debit_account_id_must_not_be_zero, None
        if credit == 0:
            return R.credit_account_id_must_not_be_zero, None
        if debit == credit:
            return R.accounts_must_be_different, None
        if amount <= 0:
            return R.amount_must_be_positive, None
        if amount > MAX_AMOUNT:
            return R.amount_too_large, None
        dr = self.accounts.get(debit)
        if dr is None:
            return R.debit_account_not_found, None
        cr = self.accounts.get(credit)
        if cr is None:
            return R.credit_account_not_found, None
        if dr.asset != cr.asset:
            return R.accounts_must_have_the_same_asset, None
        if actor > 0:  # agents; OPERATOR and SYSTEM act for the sandbox
            if dr.treasury or cr.treasury:
                return R.treasury_requires_operator, None
            if dr.holder != actor:
                return R.not_account_holder, None
            if cr.holder == SYSTEM:
                return R.escrow_requires_system, None
        if dr.flags & DEBITS_MUST_NOT_EXCEED_CREDITS and (
            dr.debits_posted + dr.debits_pending + amount > dr.credits_posted + dr.credit_limit
        ):
            return R.exceeds_credits, None
        if cr.flags & CREDITS_MUST_NOT_EXCEED_DEBITS and (
            cr.credits_posted + cr.credits_pending + amount > cr.debits_posted
        ):
            return R.exceeds_debits, None
        if (dr.debits_posted + dr.debits_pending + amount > MAX_AMOUNT
                or cr.credits_posted + cr.credits_pending + amount > MAX_AMOUNT):
            return R.overflows, None
        expires = tick + t.timeout if kind == PENDING and t.timeout else 0
        return R.ok, TransferCommitted(
            actor=actor, id=t.id, debit=debit, credit=credit, amount=amount, flags=flags,
            pending_id=0, pending_actor=pending_actor, timeout=t.timeout, code=t.code,
            expires=expires,
        )

    def _validate_resolution(self, actor, t, key, kind, pending_actor, pending_rec,
                             debit, credit, amount) -> tuple[str, TransferCommitted | None]:
        if t.pending_id <= 0:
            return R.pending_id_must_be_positive, None
        pkey = (pending_actor, t.pending_id)
        if pending_rec is None:
            state = self.resolved.get(pkey)  # (the hold's own record may have left first)
            if (state is not None or self._outside(*pkey)) and (
                    (actor > 0 and actor != pending_actor)
                    or (actor == OPERATOR and pending_actor == SYSTEM)):
                return R.not_pending_transfer_owner, None  # (mine or not: never yours)
            if state is None:
                return (R.pending_id_outside_window if self._outside(*pkey)
                        else R.pending_transfer_not_found), None
            return _RESOLVED[state], None
        if not pending_rec[4] & PENDING:
            return R.pending_transfer_not_pending, None
        if actor > 0 and actor != pending_actor:
            return R.not_pending_transfer_owner, None
        if actor == OPERATOR and pending_actor == SYSTEM:
            return R.not_pending_transfer_owner, None  # a mechanism's hold is its own
        state = self.resolved.get(pkey)
        if state is not None:
            return _RESOLVED[state], None
        if debit != pending_rec[0]:
            return R.pending_transfer_has_different_debit_account_id, None
        if credit != pending_rec[1]:
            return R.pending_transfer_has_different_credit_account_id, None
        if amount <= 0:
            return R.amount_must_be_positive, None
        if amount > pending_rec[2]:
            return R.exceeds_pending_transfer_amount, None
        if kind == VOID_PENDING and amount != pending_rec[2]:
            return R.pending_transfer_has_different_amount, None
        return R.ok, TransferCommitted(
            actor=actor, id=t.id, debit=debit, credit=credit, amount=amount, flags=t.flags,
            pending_id=t.pending_id, pending_actor=pending_actor, timeout=0, code=t.code,
            expires=0,
        )

    def apply_transfer(self, ev: TransferCommitted,
                       resolved: list[tuple[int, int]] | None = None) -> None:
        """Apply a committed transfer. Inside a chain (`resolved` given) a hold it posts or
        voids stays in `holds` until the chain commits (the caller removes it then), so an
        undone chain leaves the holds, and the hold digest's order, exactly as they were."""
        key = (ev.actor, ev.id)
        system = ev.actor == SYSTEM
        assert system or key not in self.transfers, "a transfer key commits at most once"
        accounts = self.accounts
        dr = accounts[ev.debit]
        cr = accounts[ev.credit]
        amount = ev.amount
        flags = ev.flags
        if flags & PENDING:
            dr.debits_pending += amount
            cr.credits_pending += amount
            hold = Hold(ev.debit, ev.credit, amount, ev.expires, ev.code)
            self.holds[key] = hold
            self._hold_digest.touch(key, (key, hold))
            if ev.expires:
                self._order += 1
                heapq.heappush(self._expiry, (ev.expires, self._order, ev.actor, ev.id))
        elif flags & (POST_PENDING | VOID_PENDING):
            pkey = (ev.pending_actor, ev.pending_id)
            if resolved is None:
                hold = self.holds.pop(pkey)
                self._hold_digest.delete(pkey)
            else:
                hold = self.holds[pkey]
                resolved.append(pkey)
            dr.debits_pending -= hold.amount
            cr.credits_pending -= hold.amount
            if flags & POST_PENDING:
                dr.debits_posted += amount
                cr.credits_posted += amount
                self._count_mint_burn(dr, cr, amount)
            if pkey[0] != SYSTEM:
                self.resolved[pkey] = "posted" if flags & POST_PENDING else "voided"
                self._buckets[-1].resolved.append(pkey)
        else:
            dr.debits_posted += amount
            cr.credits_posted += amount
            self._count_mint_burn(dr, cr, amount)
        self.transfer_count += 1
        if system:
            if ev.id > self.system_seq:
                self.system_seq = ev.id
        else:
            self.transfers[key] = (ev.debit, ev.credit, amount, ev.pending_actor, flags,
                                   ev.pending_id, ev.timeout, ev.code)
            self._buckets[-1].transfers.append(key)
        dirty = self._account_dirty  # DigestMap.touch, inlined on the hottest path
        dirty[dr.id] = dr
        dirty[cr.id] = cr

    def undo_transfer(self, ev: TransferCommitted) -> None:
        """Exactly reverse `apply_transfer` inside a chain (only for a chain that fails
        before commit: a hold it resolved is still in `holds`)."""
        key = (ev.actor, ev.id)
        self.transfer_count -= 1
        if ev.actor == SYSTEM:
            if ev.id == self.system_seq:
                self.system_seq -= 1  # chains allocate consecutive ids and undo in reverse
        else:  # (the chain's own additions are the newest: undone in reverse, popped last)
            del self.transfers[key]
            assert self._buckets[-1].transfers.pop() == key
        dr = self.accounts[ev.debit]
        cr = self.accounts[ev.credit]
        amount = ev.amount
        if ev.flags & PENDING:
            dr.debits_pending -= amount
            cr.credits_pending -= amount
            del self.holds[key]
            self._hold_digest.delete(key)  # a stale expiry heap entry is skipped later
        elif ev.flags & (POST_PENDING | VOID_PENDING):
            pkey = (ev.pending_actor, ev.pending_id)
            hold = self.holds[pkey]
            dr.debits_pending += hold.amount
            cr.credits_pending += hold.amount
            if pkey[0] != SYSTEM:
                del self.resolved[pkey]
                assert self._buckets[-1].resolved.pop() == pkey
            if ev.flags & POST_PENDING:
                dr.debits_posted -= amount
                cr.credits_posted -= amount
                self._count_mint_burn(dr, cr, -amount)
        else:
            dr.debits_posted -= amount
            cr.credits_posted -= amount
            self._count_mint_burn(dr, cr, -amount)
        self._account_digest.touch(dr.id, dr)
        self._account_digest.touch(cr.id, cr)

    def _count_mint_burn(self, dr: Account, cr: Account, amount: int) -> None:
        if dr.treasury and not cr.treasury:
            self.minted[dr.asset] += amount
        elif cr.treasury and not dr.treasury:
            self.burned[cr.asset] += amount

    @staticmethod
    def failures_to_remember(specs: list[TransferSpec], results: list[str]) -> list[list[object]]:
        """[[id, code]] of transfers that failed for their own reason (not because of a
        linked peer, not as a duplicate): their ids are burnt, a retry gets
        `id_already_failed` and can never execute late."""
        return [[t.id, code] for t, code in zip(specs, results, strict=True) if code not in _NOT_REMEMBERED
                and t.id > 0]

    def record_failures(self, actor: int, failed: list[list[object]]) -> None:
        bucket = self._buckets[-1]
        for tid, code in failed:
            key = (actor, tid)
            if key not in self.failed:  # (a replayed duplicate is the same fact)
                self.failed[key] = code  # type: ignore[assignment]
                bucket.failed.append(key)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ holds
    def due_expiries(self, tick: int) -> list[HoldExpired]:
        """Holds whose timeout is reached at `tick`, in a deterministic order."""
        out: list[HoldExpired] = []
        heap = self._expiry
        while heap and heap[0][0] <= tick:
            expires, _, actor, tid = heapq.heappop(heap)
            hold = self.holds.get((actor, tid))
            if hold is not None and hold.expires == expires:
                out.append(HoldExpired(actor=actor, id=tid, amount=hold.amount))
        return out

    def scheduled_expiries(self, tick: int) -> list[tuple[int, int, int]]:
        """(expires, actor, id) of the holds still due to expire after `tick`, sorted: the
        expiry heap as it acts (it keeps stale entries, which `due_expiries` skips)."""
        return sorted((expires, actor, tid) for expires, _, actor, tid in self._expiry
                      if expires > tick and (h := self.holds.get((actor, tid))) is not None
                      and h.expires == expires)

    def apply_hold_expired(self, ev: HoldExpired) -> None:
        key = (ev.actor, ev.id)
        hold = self.holds.pop(key)
        self._hold_digest.delete(key)
        assert hold.amount == ev.amount
        dr = self.accounts[hold.debit]
        cr = self.accounts[hold.credit]
        dr.debits_pending -= hold.amount
        cr.credits_pending -= hold.amount
        if ev.actor != SYSTEM:
            self.resolved[key] = "expired"
            self._buckets[-1].resolved.append(key)
        self._account_digest.touch(dr.id, dr)
        self._account_digest.touch(cr.id, cr)

    # ------------------------------------------------------------------ checks
    def digest(self) -> bytes:
        return sha256(self._account_digest.digest() + self._hold_digest.digest()).digest()

    def check_invariants(self) -> None:
        """Assert conservation and non-negativity over the whole ledger (O(accounts))."""
        dp = dpo = cp = cpo = 0
        circulating: dict[str, int] = {asset: 0 for asset in self.treasury}
        for a in self.accounts.values():
            dp += a.debits_pending
            dpo += a.debits_posted
            cp += a.credits_pending
            cpo += a.credits_posted
            if a.flags & DEBITS_MUST_NOT_EXCEED_CREDITS:
                assert a.available >= 0, f"account {a.id} is below its credit line"
            if a.flags & CREDITS_MUST_NOT_EXCEED_DEBITS:
                assert a.credits_posted + a.credits_pending <= a.debits_posted, a.id
            assert min(a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) >= 0
            if not a.treasury:
                circulating[a.asset] += a.balance
        assert dpo == cpo, f"Σ debits_posted {dpo} != Σ credits_posted {cpo}"
        assert dp == cp, f"Σ debits_pending {dp} != Σ credits_pending {cp}"
        for asset, tid in self.treasury.items():
            t = self.accounts[tid]
            assert circulating[asset] == -t.balance
            assert circulating[asset] == self.minted[asset] - self.burned[asset], asset
        held = sum(h.amount for h in self.holds.values())
        assert held == dp, "every pending amount is a live hold"

"""Every result code of the ledger at its boundary: the value on the edge passes, one past it
fails with exactly that code (TigerBeetle's rules, anchors §2). The model test
(test_ledger_model.py) checks balances against a model; these pin the codes and edges it
does not reach: ids and pending ids of 0, the largest amount and timeout, the batch limit,
credit lines, the CREDITS_MUST_NOT_EXCEED_DEBITS flag, overflow, and who may move what.
"""

from __future__ import annotations

import pytest

from sandbank.kernel.digest import DigestMap
from sandbank.kernel.schema import (
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
    TransferSpec,
)
from sandbank.ledger.codes import TransferResult as R
from sandbank.ledger.ledger import MAX_AMOUNT, MAX_TIMEOUT, Ledger

A, B, OTHER, TRES, ESCROW, GLD, CAPPED = 2, 3, 4, 1, 5, 6, 7  # account ids
AGENT, AGENT2 = 1, 2


def ledger() -> Ledger:
    """Treasury 1 (X); agent 1 holds 2 and 3, agent 2 holds 4, the escrow 5 (X), agent 1's
    6 is in another asset (whose treasury is 8), 7 may not take more credits than debits."""
    led = Ledger()
    for i, (holder, asset, flags, treasury) in enumerate([
            (OPERATOR, "X", 0, True), (AGENT, "X", DEBITS_MUST_NOT_EXCEED_CREDITS, False),
            (AGENT, "X", DEBITS_MUST_NOT_EXCEED_CREDITS, False),
            (AGENT2, "X", DEBITS_MUST_NOT_EXCEED_CREDITS, False), (SYSTEM, "X", 0, False),
            (AGENT, "Y", DEBITS_MUST_NOT_EXCEED_CREDITS, False),
            (AGENT, "X", CREDITS_MUST_NOT_EXCEED_DEBITS, False), (OPERATOR, "Y", 0, True)],
            start=1):
        led.apply_account_opened(AccountOpened(actor=0, account=i, holder=holder, asset=asset,
                                               flags=flags, treasury=treasury))
    assert run(led, OPERATOR, T(900, TRES, A, 1000)) == [R.ok]
    return led


def T(tid, debit=A, credit=B, amount=1, **kw) -> TransferSpec:
    return TransferSpec(id=tid, debit=debit, credit=credit, amount=amount, **kw)


def run(led, actor, *specs, tick=1):
    return led.execute(actor, list(specs), tick)[1]


@pytest.mark.parametrize("spec,want", [
    (T(0), R.id_must_be_positive),
    (T(-1), R.id_must_be_positive),
    (T(1), R.ok),
    (T(1, flags=16), R.flags_are_invalid),
    (T(1, flags=PENDING | POST_PENDING), R.flags_are_mutually_exclusive),
    (T(1, flags=POST_PENDING | VOID_PENDING), R.flags_are_mutually_exclusive),
    (T(1, timeout=-1, flags=PENDING), R.timeout_must_not_be_negative),
    (T(1, timeout=MAX_TIMEOUT, flags=PENDING), R.ok),
    (T(1, timeout=MAX_TIMEOUT + 1, flags=PENDING), R.timeout_too_large),
    (T(1, timeout=1), R.timeout_reserved_for_pending_transfer),
    (T(1, pending_id=5), R.pending_id_must_be_zero),
    (T(1, debit=0), R.debit_account_id_must_not_be_zero),
    (T(1, credit=0), R.credit_account_id_must_not_be_zero),
    (T(1, credit=A), R.accounts_must_be_different),
    (T(1, amount=0), R.amount_must_be_positive),
    (T(1, amount=-5), R.amount_must_be_positive),
    (T(1, amount=MAX_AMOUNT + 1), R.amount_too_large),
    (T(1, debit=99), R.debit_account_not_found),
    (T(1, credit=99), R.credit_account_not_found),
    (T(1, credit=GLD), R.accounts_must_have_the_same_asset),
    (T(1, credit=TRES), R.treasury_requires_operator),
    (T(1, debit=OTHER), R.not_account_holder),
    (T(1, credit=ESCROW), R.escrow_requires_system),
    (T(1, credit=OTHER), R.ok),  # to another agent's account
    (T(1, amount=1000), R.ok),  # all it has
    (T(1, amount=1001), R.exceeds_credits),
    (T(1, amount=1000, flags=PENDING), R.ok),
    (T(1, amount=1001, flags=PENDING), R.exceeds_credits),
    (T(1, credit=CAPPED), R.exceeds_debits),  # 7 has no debits: it may take no credit
])
def test_each_code_at_its_edge(spec, want):
    assert run(ledger(), AGENT, spec) == [want]


def test_the_operator_moves_the_treasury_up_to_the_largest_amount_and_no_further():
    led = ledger()
    # the treasury has minted 1000: its debits reach exactly MAX with MAX - 1000 more
    assert run(led, OPERATOR, T(1, TRES, B, MAX_AMOUNT - 1000)) == [R.ok]
    assert run(led, OPERATOR, T(2, TRES, B, 1)) == [R.overflows]
    assert led.accounts[B].balance == MAX_AMOUNT - 1000 and led.minted["X"] == MAX_AMOUNT
    # B's credits: 1000 more reach MAX exactly, one more would pass it
    assert run(led, AGENT, T(3, A, B, 1000)) == [R.ok]
    assert led.accounts[B].credits_posted == MAX_AMOUNT
    assert run(led, OPERATOR, T(4, 8, 6, 5)) == [R.ok]  # (another asset: its own treasury)
    assert led.transfer_count == 4 and led.system_seq == 0
    led.check_invariants()


def test_a_credit_accounts_pending_credits_count_towards_overflow():
    led = ledger()
    assert run(led, OPERATOR, T(1, TRES, B, MAX_AMOUNT - 1000)) == [R.ok]
    assert run(led, OPERATOR, T(2, 8, 6, 10)) == [R.ok]
    # B holds MAX - 1000 posted; 1000 pending to it from A fills it to MAX exactly
    assert run(led, AGENT, T(3, A, B, 1000, flags=PENDING)) == [R.ok]
    assert led.accounts[B].credits_pending == 1000
    led.apply_credit_line(CreditLineSet(actor=0, account=A, limit=5))  # A may pay 5 more
    assert run(led, AGENT, T(4, A, B, 1)) == [R.overflows]  # B: MAX posted + pending, + 1
    assert run(led, AGENT, T(5, A, OTHER, 1)) == [R.ok]


def test_the_largest_amount_moves_in_one_transfer():
    led = Ledger()
    for i, (holder, treasury) in enumerate([(OPERATOR, True), (AGENT, False)], start=1):
        led.apply_account_opened(AccountOpened(actor=0, account=i, holder=holder, asset="X",
                                               flags=0, treasury=treasury))
    assert run(led, OPERATOR, T(1, 1, 2, MAX_AMOUNT)) == [R.ok]
    assert led.accounts[2].balance == MAX_AMOUNT


def test_a_credit_line_lets_an_account_go_exactly_that_far_below_zero():
    led = ledger()
    led.apply_credit_line(CreditLineSet(actor=0, account=A, limit=100))
    assert led.accounts[A].credit_limit == 100 and led.accounts[A].available == 1100
    assert run(led, AGENT, T(1, amount=1101)) == [R.exceeds_credits]
    assert run(led, AGENT, T(2, amount=1100)) == [R.ok]
    assert led.accounts[A].balance == -100 and led.accounts[A].available == 0
    assert run(led, AGENT, T(3, amount=1)) == [R.exceeds_credits]
    led.check_invariants()


def test_credits_must_not_exceed_debits_at_its_edge():
    led = ledger()
    assert run(led, OPERATOR, T(1, TRES, CAPPED, 10)) == [R.exceeds_debits]
    # 7 pays 10 out on credit from the treasury's view: give it debits first
    led.apply_credit_line(CreditLineSet(actor=0, account=CAPPED, limit=10))
    assert run(led, AGENT, T(2, CAPPED, B, 10)) == [R.ok]  # 7's debits: 10
    assert run(led, AGENT, T(3, A, CAPPED, 4, flags=PENDING)) == [R.ok]  # pending counts
    assert run(led, AGENT, T(5, A, CAPPED, 7)) == [R.exceeds_debits]  # 4 + 7 > 10
    assert run(led, AGENT, T(6, A, CAPPED, 6)) == [R.ok]  # 4 + 6: its debits exactly
    assert run(led, AGENT, T(4, A, CAPPED, 1)) == [R.exceeds_debits]


# ---------------------------------------------------------------- resolving holds
def held(led, tid=10, amount=100, actor=AGENT, **kw):
    assert run(led, actor, T(tid, amount=amount, flags=PENDING, **kw)) == [R.ok]
    return tid


@pytest.mark.parametrize("spec,want", [
    (TransferSpec(id=20, pending_id=0, flags=POST_PENDING), R.pending_id_must_be_positive),
    (TransferSpec(id=20, pending_id=-3, flags=VOID_PENDING), R.pending_id_must_be_positive),
    (TransferSpec(id=20, pending_id=77, flags=POST_PENDING), R.pending_transfer_not_found),
    (TransferSpec(id=20, pending_id=11, flags=POST_PENDING), R.pending_transfer_not_pending),
    (TransferSpec(id=20, pending_id=10, flags=POST_PENDING, debit=B),
     R.pending_transfer_has_different_debit_account_id),
    (TransferSpec(id=20, pending_id=10, flags=POST_PENDING, credit=OTHER),
     R.pending_transfer_has_different_credit_account_id),
    (TransferSpec(id=20, pending_id=10, flags=POST_PENDING, amount=101),
     R.exceeds_pending_transfer_amount),
    (TransferSpec(id=20, pending_id=10, flags=POST_PENDING, amount=100), R.ok),
    (TransferSpec(id=20, pending_id=10, flags=POST_PENDING, amount=-1),
     R.amount_must_be_positive),
    (TransferSpec(id=20, pending_id=10, flags=VOID_PENDING, amount=99),
     R.pending_transfer_has_different_amount),
    (TransferSpec(id=20, pending_id=10, flags=VOID_PENDING, amount=100), R.ok),
    (TransferSpec(id=20, pending_id=10, flags=VOID_PENDING), R.ok),
])
def test_each_resolution_code(spec, want):
    led = ledger()
    held(led)
    assert run(led, AGENT, T(11, amount=5)) == [R.ok]  # a plain transfer, id 11
    assert run(led, AGENT, spec) == [want]


def test_a_partial_post_moves_that_much_and_releases_the_rest():
    led = ledger()
    held(led, amount=100)
    assert led.accounts[A].available == 900 and led.accounts[A].debits_pending == 100
    assert run(led, AGENT, TransferSpec(id=20, pending_id=10, flags=POST_PENDING,
                                        amount=30)) == [R.ok]
    a, b = led.accounts[A], led.accounts[B]
    assert (a.balance, a.available, a.debits_pending) == (970, 970, 0)
    assert (b.balance, b.credits_pending) == (30, 0)
    assert run(led, AGENT, TransferSpec(id=21, pending_id=10, flags=VOID_PENDING)) == [
        R.pending_transfer_already_posted]
    assert led.resolved[(AGENT, 10)] == "posted" and (AGENT, 10) not in led.holds


def test_only_the_holder_resolves_its_hold_and_the_operator_not_a_mechanisms():
    led = ledger()
    assert run(led, OPERATOR, T(70, TRES, OTHER, 10)) == [R.ok]
    assert run(led, AGENT2, T(71, OTHER, A, 5, flags=PENDING)) == [R.ok]
    assert run(led, AGENT, TransferSpec(id=72, pending_id=71, pending_actor=AGENT2,
                                        flags=VOID_PENDING)) == [R.not_pending_transfer_owner]
    assert run(led, OPERATOR, TransferSpec(id=73, pending_id=71, pending_actor=AGENT2,
                                           flags=VOID_PENDING)) == [R.ok]  # the operator may
    held(led)
    assert run(led, AGENT2, TransferSpec(id=20, pending_id=10, pending_actor=AGENT,
                                         flags=VOID_PENDING)) == [R.not_pending_transfer_owner]
    assert run(led, SYSTEM, T(1, ESCROW, A, 0, flags=0)) == [R.amount_must_be_positive]
    assert run(led, OPERATOR, T(5, TRES, ESCROW, 50)) == [R.ok]
    assert run(led, SYSTEM, T(6, ESCROW, A, 50, flags=PENDING)) == [R.ok]
    assert run(led, OPERATOR, TransferSpec(id=7, pending_id=6, pending_actor=SYSTEM,
                                           flags=VOID_PENDING)) == [
        R.not_pending_transfer_owner]
    assert led.system_seq == 6
    assert run(led, SYSTEM, TransferSpec(id=8, pending_id=6, flags=VOID_PENDING)) == [R.ok]
    assert led.system_seq == 8
    # the hold is gone and SYSTEM's transfers are never remembered: still not theirs (an
    # answer that differed would tell an agent which of the kernel's holds are live)
    for actor in (AGENT, OPERATOR):
        assert run(led, actor, TransferSpec(id=90, pending_id=6, pending_actor=SYSTEM,
                                            flags=VOID_PENDING)) == [
            R.not_pending_transfer_owner]
    assert run(led, SYSTEM, TransferSpec(id=9, pending_id=6, flags=VOID_PENDING)) == [
        R.pending_id_outside_window]  # (a mechanism's own bug, refused all the same)


def test_an_expired_hold_cannot_be_resolved_and_frees_its_amount():
    led = ledger()
    held(led, amount=100, timeout=2)
    assert led.due_expiries(2) == []
    [ev] = led.due_expiries(3)
    assert (ev.actor, ev.id, ev.amount) == (AGENT, 10, 100)
    led.apply_hold_expired(ev)
    assert led.accounts[A].available == 1000 and led.accounts[B].credits_pending == 0
    assert run(led, AGENT, TransferSpec(id=20, pending_id=10, flags=POST_PENDING)) == [
        R.pending_transfer_expired]
    assert led.scheduled_expiries(0) == []


def test_scheduled_expiries_are_the_holds_still_due_after_the_tick():
    led = ledger()
    held(led, tid=10, amount=1, timeout=5)
    held(led, tid=11, amount=1, timeout=3)
    held(led, tid=12, amount=1)  # no timeout: never expires
    assert led.scheduled_expiries(1) == [(4, AGENT, 11), (6, AGENT, 10)]
    assert led.scheduled_expiries(4) == [(6, AGENT, 10)]  # due at 4: not after it
    assert run(led, AGENT, TransferSpec(id=20, pending_id=10, flags=VOID_PENDING)) == [R.ok]
    assert led.scheduled_expiries(1) == [(4, AGENT, 11)]


# ---------------------------------------------------------------- batches and chains
def test_batch_limits():
    led = ledger()
    assert led.execute(AGENT, [], 1) == ([], [R.batch_is_empty])
    big = [T(100 + i) for i in range(MAX_BATCH + 1)]
    assert led.execute(AGENT, big, 1) == ([], [R.batch_too_large] * (MAX_BATCH + 1))
    events, codes = led.execute(AGENT, big[:MAX_BATCH], 1)
    assert len(events) == 1000 and codes.count(R.ok) == 1000
    assert codes[1000:] == [R.exceeds_credits] * (MAX_BATCH - 1000)  # A had 1000 units


def test_chains_in_a_batch_commit_or_fail_each_on_its_own():
    led = ledger()
    codes = run(led, AGENT, T(1, flags=LINKED), T(2, amount=5000), T(3), T(4, flags=LINKED),
                T(5), T(6, flags=LINKED))
    assert codes == [R.linked_event_failed, R.exceeds_credits, R.ok, R.ok, R.ok,
                     R.linked_event_chain_open]
    assert led.accounts[B].balance == 3 and led.transfer_count == 1 + 3
    assert set(led.failed) == set()  # failures are remembered by the caller (the kernel)
    assert Ledger.failures_to_remember([T(1), T(2), T(3), T(6)], [
        R.linked_event_failed, R.exceeds_credits, R.exists, R.linked_event_chain_open]) == [
        [2, R.exceeds_credits], [6, R.linked_event_chain_open]]
    assert run(led, AGENT, T(1)) == [R.ok]  # a peer's id is not burnt by the failure
    single = run(led, AGENT, T(7, flags=LINKED))
    assert single == [R.linked_event_chain_open]


def test_a_retry_is_exists_and_a_changed_retry_names_what_changed():
    led = ledger()
    assert run(led, AGENT, T(1, amount=7, code=3)) == [R.ok]
    assert run(led, AGENT, T(1, amount=7, code=3)) == [R.exists]
    assert run(led, AGENT, T(1, amount=8, code=3)) == [R.exists_with_different_amount]
    assert run(led, AGENT, T(1, debit=B, credit=A, amount=7, code=3)) == [
        R.exists_with_different_debit_account_id]
    assert run(led, AGENT, T(1, credit=OTHER, amount=7, code=3)) == [
        R.exists_with_different_credit_account_id]
    assert run(led, AGENT, T(1, amount=7, code=4)) == [R.exists_with_different_code]
    assert run(led, OPERATOR, T(50, TRES, OTHER, 7)) == [R.ok]
    assert run(led, AGENT2, T(1, debit=OTHER, credit=A, amount=7)) == [R.ok]  # another key
    assert led.transfer_count == 4


def test_accounts_and_their_indexes():
    led = ledger()
    assert [a.id for a in led.accounts_of(AGENT)] == [A, B, GLD, CAPPED]
    assert led.accounts_of(99) == []
    assert led.account_of(AGENT, "X").id == A and led.account_of(AGENT, "Y").id == GLD
    assert led.account_of(AGENT2, "Y") is None
    assert led.treasury == {"X": TRES, "Y": 8} and led.escrow == {"X": ESCROW}
    assert led.next_account_id() == 9
    with pytest.raises(AssertionError):
        led.apply_account_opened(AccountOpened(actor=0, account=11, holder=1, asset="X",
                                               flags=0, treasury=False))


def test_the_digest_follows_every_account_and_hold_change():
    led = ledger()
    seen = {led.digest()}
    led.apply_credit_line(CreditLineSet(actor=0, account=B, limit=3))
    seen.add(led.digest())
    held(led)
    seen.add(led.digest())
    run(led, AGENT, TransferSpec(id=20, pending_id=10, flags=POST_PENDING, amount=1))
    seen.add(led.digest())
    assert len(seen) == 4
    fresh = DigestMap(lambda a: a)
    assert led.digest() != fresh.digest()


# ---------------------------------------------------------------- what the digest is a function of
def test_the_digest_is_the_balances_and_live_holds_however_they_came_about():
    """A hold posted, voided or expired leaves the digest a ledger that never held it has."""
    direct = ledger()
    assert run(direct, AGENT, T(30, amount=40)) == [R.ok]
    posted = ledger()
    held(posted, tid=10, amount=40)
    assert run(posted, AGENT, TransferSpec(id=11, pending_id=10, flags=POST_PENDING)) == [R.ok]
    assert posted.digest() == direct.digest()
    for how in ("void", "expire", "chain"):
        led = ledger()
        held(led, tid=10, amount=40, timeout=1)
        if how == "void":
            assert run(led, AGENT, TransferSpec(id=11, pending_id=10, flags=VOID_PENDING)) == [
                R.ok]
        elif how == "expire":
            [ev] = led.due_expiries(2)
            led.apply_hold_expired(ev)
        else:  # posted inside a chain that commits
            assert run(led, AGENT, TransferSpec(id=11, pending_id=10, flags=POST_PENDING | LINKED),
                       T(12, amount=1)) == [R.ok, R.ok]
            led2 = ledger()
            assert run(led2, AGENT, T(30, amount=41)) == [R.ok]
            assert led.digest() == led2.digest()
            continue
        assert led.digest() == ledger().digest(), how
    lined = ledger()
    lined.apply_credit_line(CreditLineSet(actor=0, account=A, limit=7))
    assert lined.digest() != ledger().digest()


def test_expiries_due_in_one_tick_come_in_the_order_the_holds_were_made():
    led = ledger()
    assert run(led, OPERATOR, T(60, TRES, OTHER, 100)) == [R.ok]
    assert run(led, AGENT2, T(5, OTHER, A, 1, flags=PENDING, timeout=3)) == [R.ok]
    held(led, tid=9, amount=1, timeout=3)
    held(led, tid=2, amount=1, timeout=3)
    assert [(e.actor, e.id) for e in led.due_expiries(4)] == [(AGENT2, 5), (AGENT, 9),
                                                             (AGENT, 2)]


def test_a_resolution_carries_no_expiry_in_the_log():
    led = ledger()
    held(led, tid=10, amount=5, timeout=4)
    events, codes = led.execute(AGENT, [TransferSpec(id=11, pending_id=10,
                                                     flags=POST_PENDING)], 1)
    assert codes == [R.ok] and events[0].expires == 0 and events[0].timeout == 0
    assert events[0].amount == 5 and (events[0].debit, events[0].credit) == (A, B)


def test_a_failed_chain_gives_back_the_system_ids_and_the_minted_total():
    led = ledger()
    assert run(led, OPERATOR, T(1, TRES, ESCROW, 100)) == [R.ok]
    assert run(led, SYSTEM, T(1, ESCROW, A, 10)) == [R.ok]
    assert led.system_seq == 1
    for tid in (2, 3, 4, 5):
        assert run(led, SYSTEM, T(tid, ESCROW, A, 1)) == [R.ok]
    assert run(led, SYSTEM, T(6, ESCROW, A, 1, flags=LINKED), T(7, ESCROW, ESCROW, 1)) == [
        R.linked_event_failed, R.accounts_must_be_different]
    assert led.system_seq == 5  # one id given back, not two, not all
    assert run(led, SYSTEM, T(6, ESCROW, A, 1)) == [R.ok] and led.system_seq == 6
    led = ledger()
    assert run(led, OPERATOR, T(1, TRES, ESCROW, 100)) == [R.ok]
    assert run(led, SYSTEM, T(1, ESCROW, A, 10)) == [R.ok]
    assert run(led, SYSTEM, T(2, ESCROW, A, 10, flags=LINKED), T(3, ESCROW, B, 10, flags=LINKED),
               T(4, ESCROW, ESCROW, 1)) == [R.linked_event_failed, R.linked_event_failed,
                                            R.accounts_must_be_different]
    assert led.system_seq == 1
    # a mint held, then posted inside a chain that fails: the minted total is as it was
    assert run(led, OPERATOR, T(20, TRES, B, 50, flags=PENDING)) == [R.ok]
    minted = dict(led.minted)
    assert run(led, OPERATOR, TransferSpec(id=21, pending_id=20, flags=POST_PENDING | LINKED),
               T(22, TRES, B, 5, flags=LINKED), T(23, B, B, 1)) == [
        R.linked_event_failed, R.linked_event_failed, R.accounts_must_be_different]
    assert led.minted == minted and led.accounts[B].credits_pending == 50
    led.check_invariants()


def test_a_retry_is_compared_as_it_was_sent_not_as_a_resolution():
    """A plain transfer's retry naming a pending id is compared field by field as sent: it
    is not normalised from the hold it names (only posts and voids are)."""
    led = ledger()
    assert run(led, AGENT, T(1, A, B, 5)) == [R.ok]
    held(led, tid=10, amount=5, debit=A, credit=OTHER)
    assert run(led, AGENT, TransferSpec(id=1, pending_id=10)) == [
        R.exists_with_different_debit_account_id]


@pytest.mark.parametrize("field", ["debits_posted", "credits_posted", "debits_pending",
                                   "credits_pending"])
def test_the_invariant_check_refuses_a_negative_total(field):
    """One total made -1, the unit moved to A so every sum, balance and limit still holds:
    only the non-negativity check can refuse it, and it does."""
    led = ledger()
    victim = led.accounts[B if field.startswith("debits") else CAPPED]  # both start at 0
    setattr(victim, field, -1)
    setattr(led.accounts[A], field, getattr(led.accounts[A], field) + 1)
    with pytest.raises(AssertionError) as e:
        led.check_invariants()
    assert "min(" in str(e.traceback[-1].statement)


def test_the_invariant_check_refuses_credits_beyond_debits_where_forbidden():
    from sandbank.ledger.ledger import Hold

    led = ledger()
    cap, a = led.accounts[CAPPED], led.accounts[A]
    cap.credits_pending += 5
    a.debits_pending += 5
    led.holds[(AGENT, 999)] = Hold(A, CAPPED, 5, 0)  # every sum and hold as it should be
    with pytest.raises(AssertionError):
        led.check_invariants()
    cap.debits_posted += 5  # now 7 has the debits to take those credits
    led.accounts[B].credits_posted += 5  # (and the 5 went somewhere)
    led.check_invariants()


def test_the_idempotency_window_forgets_old_ids_safely_and_a_resume_rebuilds_it(tmp_path):
    """Memory bounded in run length (issues 18 and 20): a transfer id is answered exactly
    for `idempotency_window` ticks, then forgotten under its actor's floor; a retry of it is
    refused `id_outside_window`, never executed twice (before the window, the ledger kept
    every transfer ever made). A kernel resumed from the log rebuilds the same window and
    answers as the uninterrupted one would."""
    import sandbank.economy
    from conftest import Economy
    from sandbank.kernel.fingerprint import fingerprint
    from sandbank.kernel.schema import Transfer
    from sandbank.store.sqlite import SQLiteStore

    path = tmp_path / "w.db"
    e = Economy(n=2, fund=1000, store=SQLiteStore(path), idempotency_window=3)
    led = e.k.state.ledger
    a1, a2 = e.account[1], e.account[2]

    def pay(tid, amount=1):
        return Transfer(actor=1, transfers=[TransferSpec(id=tid, debit=a1, credit=a2,
                                                         amount=amount)])

    e.do(pay(10), pay(20, amount=10**9))  # one commits, one fails (its id is burnt)
    s = e.do(pay(10), pay(20))  # inside the window: the exact answers
    assert s.reasons == {R.id_already_failed: 1}  # (an identical retry logs nothing)
    assert (1, 10) in led.transfers and (1, 20) in led.failed
    for _ in range(3):
        e.do()
    assert (1, 10) not in led.transfers and (1, 20) not in led.failed
    assert led.floor[1] == 20
    e.k.close()
    k = sandbank.economy.resume(SQLiteStore(path), e.op)
    assert fingerprint(k.state.ledger) == fingerprint(led)  # the same window, from the log
    balance = k.state.ledger.accounts[a1].balance
    e.k = k
    s = e.do(pay(10), pay(20), pay(15), pay(21))
    assert s.reasons == {R.id_outside_window: 3}  # 10, 20 and 15 (<= the floor)
    assert k.state.ledger.accounts[a1].balance == balance - 1  # only 21, above the floor

"""Rebuild the economy's state from the log's events alone, and check it.

For every checkpoint: the state digest recomputed from the events must equal the signed
one — the incremental digest, or, at the checkpoints that carry it (every
`full_digest_every` ticks and a lab run's last), the digest of the whole state, which catches
any state the live economy held that its events do not produce — and the ledger's invariants
(conservation, no negative balances, holds consistent) must hold. Replay trusts nothing but
the event bodies; run `verify` for the signatures and the tree. The state is folded by the
mechanisms the economy was made of (`sandbank.economy.replay_log` uses the standard set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbank.kernel.canonical import parse
from sandbank.kernel.mechanism import Mechanism
from sandbank.kernel.state import EconomyState
from sandbank.store.base import Store, StoreError


@dataclass
class ReplayReport:
    ok: bool
    events: int
    checkpoints: int
    problem: str | None = None
    bad_tick: int | None = None
    bad_entry: int | None = None
    state: EconomyState | None = None
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    full: int = 0  # checkpoints whose digest covered the whole state


def replay_log(store: Store, mechanisms: Sequence[Mechanism], *, progress=None,
               digests: bool = True, on_entry=None) -> ReplayReport:
    """Replay every event; `digests=False` folds the whole log without comparing the signed
    state digests (to see, after a mismatch, how the end state differs). `on_entry(entry,
    body)`: called with each entry and its parsed body before it is applied (a reader that
    wants the log in the same walk: the lab's tables; it must not change the body)."""
    try:
        return _replay(store, tuple(mechanisms), progress, digests, on_entry)
    except StoreError as e:
        return ReplayReport(False, 0, 0, str(e))
    except Exception as e:  # a row of a shape the log never writes: a finding (run verify)
        return ReplayReport(False, 0, 0, f"the store holds a row this log format never writes "
                            f"({type(e).__name__}: {e}); `sandbank verify` names it")


def _replay(store: Store, mechanisms: tuple[Mechanism, ...], progress,
            digests: bool = True, on_entry=None) -> ReplayReport:
    state = EconomyState(mechanisms)
    entries = store.entries()
    nxt = next(entries, None)
    n_events = n_cp = n_full = 0
    for cp in store.checkpoints():
        while nxt is not None and nxt.tick <= cp.tick:
            try:
                d = parse(nxt.body)
                if on_entry is not None:
                    on_entry(nxt, d)
                state.apply_dict(d)
            except Exception as e:  # a bad event is a finding, not a crash
                return ReplayReport(False, n_events, n_cp,
                                    f"entry {nxt.seq} cannot be applied: {type(e).__name__}: {e}",
                                    cp.tick, nxt.seq, state)
            n_events += 1
            if progress is not None and n_events % 65536 == 0:
                progress(n_events)
            nxt = next(entries, None)
        state.ledger.at_tick(cp.tick)  # (a tick without entries began all the same)
        if digests and state.digest() != cp.state:
            if state.full_digest(cp.tick) != cp.state:
                return ReplayReport(False, n_events, n_cp,
                                    f"state after tick {cp.tick} differs from its checkpoint's "
                                    f"digest", cp.tick, None, state, full=n_full)
            n_full += 1
        try:
            state.check_invariants()
        except AssertionError as e:
            return ReplayReport(False, n_events, n_cp,
                                f"ledger invariant broken after tick {cp.tick}: {e}", cp.tick,
                                None, state)
        n_cp += 1
    if nxt is not None:
        return ReplayReport(False, n_events, n_cp,
                            f"entry {nxt.seq} lies beyond the last checkpoint", None, nxt.seq, state)
    led = state.ledger
    totals = {
        asset: {"minted": led.minted[asset], "burned": led.burned[asset],
                "circulating": -led.accounts[tid].balance}
        for asset, tid in led.treasury.items()
    }
    return ReplayReport(True, n_events, n_cp, state=state, totals=totals, full=n_full)


def state_at(store: Store, checkpoint: Any,
             mechanisms: Sequence[Mechanism]) -> EconomyState | None:
    """The state at a signed checkpoint, rebuilt from the log prefix it covers — or None if
    it does not match the checkpoint's signed state digest."""
    state = EconomyState(tuple(mechanisms))
    for e in store.entries(0, checkpoint.size):
        state.apply_dict(parse(e.body))
    return state if checkpoint.state in (state.digest(), state.full_digest(checkpoint.tick)) \
        else None

"""The state digest sees every component of the state.

Replay compares the signed digests with digests it computes by the same functions, so a
digest that leaves something out (the resting orders, a field of a record, a mechanism's
whole state) passes every replay: both sides leave out the same thing. These tests change
the state instead, one place at a time, and ask whether the digest changes. The places are
found from the state's own structure (tests/state_paths.py): every shape of place in the
states several scenarios and a tour of the mechanisms leave, so a component added tomorrow
is covered without a word here.

- The **full digest** (`EconomyState.full_digest`, signed every `full_digest_every` ticks and
  at a run's end) must change for a change at *any* place.
- The **incremental digest** (`EconomyState.digest`, signed every tick) rehashes the records
  that events touched. It must change for a change to any value a record holds; what it
  leaves out by design is listed in `NOT_INCREMENTAL` with the reason, and each must still be
  seen by the full digest. A shape in that list that no longer exists fails the test too,
  so the list cannot grow stale.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbank.economy import STANDARD
from sandbank.kernel.canonical import canonical_bytes, parse
from sandbank.kernel.digest import DigestMap
from sandbank.kernel.fingerprint import _attributes
from sandbank.kernel.state import EconomyState
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import builtin_dir, load_scenario
from sandbank.store.sqlite import SQLiteStore
from tests.state_paths import change, places

# Shape prefixes the incremental digest leaves out, and why. Each is in the full digest.
NOT_INCREMENTAL = {
    ".header": "the run's header is the log's first entry: the Merkle root covers it",
    ".operator_nonce": "nonces are in each action's entry, which the root covers",
    ".registry.agents[*].nonce": "as above",
    ".controls.overseers[*].nonce": "as above",
    ".exchange.markets[*].quote": "a market's configuration: fixed by the header",
    ".exchange.markets[*].band_bps": "configuration, as above",
    ".exchange.markets[*].limit_state_ticks": "configuration, as above",
    ".exchange.markets[*].halt_ticks": "configuration, as above",
    ".exchange.markets[*].reference_ticks": "configuration, as above",
    ".exchange.markets[*].compartment": "configuration, as above",
    ".exchange.markets[*].trades": "the last trades shown to agents: a view of the log",
    ".exchange.markets[*].window[*]": "the window's prices (its sum and length are hashed)",
    ".exchange.next_order": "the next id: one more than the last order's, which is hashed",
    ".exchange.by_agent": "an index of the resting orders (hashed by id)",
    ".ledger._by_holder": "an index of the accounts",
    ".ledger._first": "an index of the accounts",
    ".ledger.treasury": "account ids fixed at genesis",
    ".ledger.escrow": "account ids fixed at genesis",
    ".ledger.minted": "totals of the transfers (hashed through the accounts)",
    ".ledger.burned": "as above",
    ".ledger.system_seq": "the next SYSTEM transfer id: a counter of the transfers",
    ".ledger.transfer_count": "a counter of the transfers",
    ".ledger.transfers": "the transfer history: the log's entries, covered by the root",
    ".ledger._buckets": "the idempotency window: which ticks' log entries it still holds",
    ".ledger._credited": "the accounts the operator credited: the log's transfers",
    ".ledger.tick": "the tick the window collects: the log's ticks",
    ".ledger.window": "configuration: fixed by the header",
    ".ledger.holds[*].code": "a hold's user code: in the log's entry of its transfer",
    ".registry.children_of": "an index of the agents' parents",
    ".registry.agents_of": "an index of the agents' owners (hashed in each agent)",
    ".registry.keys": "an index of the agents' keys",
    ".reputation.cred": "derived from the ratings each tick (the ratings are hashed)",
    ".tasks.by_requester": "an index of the tasks",
    ".tasks.contracts_of": "an index of the contracts",
    ".tasks.open_tasks": "an index of the tasks by status",
    ".tasks.skill_record": "derived from the judged contracts",
    ".tasks.next_bid": "the next id: a counter",
    ".auctions.next_bid": "the next id: a counter",
    ".controls.throttles": "an index of the open tickets (each ticket's record is hashed)",
    ".controls.frozen_by": "an index of the open tickets, as above",
    ".controls.halts": "an index of the open tickets, as above",
    ".boundary.mode": "configuration: fixed by the header",
    ".boundary.gateways": "configuration: fixed by the header",
    ".pricing.games[*].asset": "a game's configuration: fixed by the header",
    ".pricing.games[*].firms": "configuration, as above",
    ".pricing.games[*].a": "configuration, as above",
    ".pricing.games[*].c": "configuration, as above",
    ".pricing.games[*].a0": "configuration, as above",
    ".pricing.games[*].mu": "configuration, as above",
    ".pricing.games[*].volume": "configuration, as above",
}
# Membership of a keyed collection changes only through events, which add or delete its
# record in the DigestMap (tested on its own below); a place removed behind the events'
# back is what the full digest is for.
MEMBERSHIP_BY_EVENTS = {
    ".ledger.accounts{-}", ".ledger.holds{-}", ".exchange.orders{-}", ".exchange.markets{-}",
    ".exchange.markets[*].book.asks{-}", ".exchange.markets[*].book.bids{-}",
    ".exchange.markets[*].book.asks[*]{-}", ".exchange.markets[*].book.bids[*]{-}",
    ".tasks.tasks{-}", ".tasks.contracts{-}", ".registry.agents{-}", ".registry.owners{-}",
    ".controls.overseers{-}", ".controls.tickets{-}", ".pricing.games{-}",
}
SCENARIOS = {"determinism": 25, "da_cartel": 12, "tacit_collusion": 12, "gateway_exfil": 12,
             "demo": 20, "spoofing": 15}  # spoofing: a throttle ticket by tick 12


def _exempt(shape: str) -> str | None:
    if shape in MEMBERSHIP_BY_EVENTS:
        return "membership by events"
    for prefix, why in NOT_INCREMENTAL.items():
        if shape == prefix or shape.startswith((prefix + ".", prefix + "[", prefix + "{")):
            return why
    return None


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """The states (folded from the log, never digested, so every record is still to be
    hashed) after a few ticks of several scenarios."""
    from tests.test_determinism import SCENARIO

    out = []
    for name, ticks in SCENARIOS.items():
        path = SCENARIO if name == "determinism" else builtin_dir() / f"{name}.yaml"
        sc = load_scenario(path)
        sc.ticks = ticks
        d = tmp_path_factory.mktemp(name)
        res = run_scenario(sc, d / "run", key_file=d / "run.key")
        assert res.summary["verified"]
        state = EconomyState(STANDARD)
        for e in SQLiteStore(str(d / "run" / "log.db")).entries():
            state.apply_dict(parse(e.body))
        out.append((name, state))
    return out


def _shapes(states):
    """shape -> [(state name, state, path)] for the first and the last place of each shape
    in each state."""
    found: dict[str, list] = {}
    for name, state in states:
        parts = tuple(p for p in state.PARTS if p != "schedules")
        for shape, paths in places(state, parts).items():
            for p in dict.fromkeys([paths[0], paths[-1]]):
                found.setdefault(shape, []).append((name, state, p))
    return found


def test_every_place_in_the_state_is_in_the_digests(states):
    found = _shapes(states)
    assert len(found) > 250  # the scenarios reach most of the state
    tick = 10**6  # (schedules are not walked here: their heaps are path-dependent)
    base = {}
    for name, state in states:
        c = copy.deepcopy(state)
        base[name] = (c.digest(), c.full_digest(tick))
    missed_full, missed_incremental = [], []
    seen: dict[str, bool] = {}  # shape -> the incremental digest saw every change of it
    for shape, where in sorted(found.items()):
        for name, state, path in where:
            mutated = copy.deepcopy(state)
            change(mutated, path)
            incremental, full = mutated.digest(), mutated.full_digest(tick)
            if full == base[name][1]:
                missed_full.append(f"{shape} ({name})")
            saw = incremental != base[name][0]
            seen[shape] = seen.get(shape, True) and saw
            if not saw and _exempt(shape) is None:
                missed_incremental.append(f"{shape} ({name})")
    assert not missed_full, "\n".join(missed_full)
    assert not missed_incremental, "\n".join(missed_incremental)
    # the exemptions cannot go stale: each names places that exist and that the
    # incremental digest does miss (a place reached through an index aliases a record,
    # so an index's prefix is stale only when nothing under it is missed)
    stale = [e for e in sorted(NOT_INCREMENTAL) + sorted(MEMBERSHIP_BY_EVENTS)
             if all(seen[s] for s in seen if s == e or s.startswith((e + ".", e + "[", e + "{")))]
    assert not stale, f"exemptions for places none is missing from the digest: {stale}"


def test_every_part_of_the_state_is_in_the_full_digest_and_named_by_its_part():
    s = EconomyState(STANDARD)
    names = {n for n in vars(s) if not n.startswith("_")}
    assert names <= set(s.PARTS), f"parts the full digest does not list: {names - set(s.PARTS)}"
    assert len(set(s.PARTS)) == len(s.PARTS)


# ---------------------------------------------------------------- the DigestMap on its own

@given(st.lists(st.tuples(st.sampled_from(["touch", "delete"]), st.integers(0, 6),
                          st.integers(0, 3)), max_size=40),
       st.lists(st.integers(0, 40), max_size=5))
def test_a_digest_map_is_the_digest_of_its_records_however_they_got_there(ops, digest_at):
    """touch/delete in any order, digested at any points in between, give the digest of the
    final records in insertion order — as a map built from scratch."""
    from hashlib import sha256

    dm = DigestMap(lambda v: ["r", v])
    model: dict[int, int] = {}
    for i, (op, key, value) in enumerate(ops):
        if i in digest_at:
            dm.digest()
        if op == "touch":
            dm.touch(key, value)
            model[key] = value
        else:
            dm.delete(key)
            model.pop(key, None)
    want = sha256(b"".join(sha256(canonical_bytes(["r", v])).digest()
                           for v in model.values())).digest()
    assert dm.digest() == want
    fresh = DigestMap(lambda v: ["r", v])
    for k, v in model.items():
        fresh.touch(k, v)
    assert fresh.digest() == want


def test_a_digest_map_sees_a_touched_record_change_in_place():
    rec = {"v": 1}
    dm = DigestMap(lambda r: [r["v"]])
    dm.touch(1, rec)
    first = dm.digest()
    rec["v"] = 2
    assert dm.digest() == first  # untouched: not rehashed (this is what touch is for)
    dm.touch(1, rec)
    assert dm.digest() != first
    dm.delete(1)
    assert dm.digest() == DigestMap(lambda r: r).digest()


# every incrementally kept digest is the one a fresh map of the same records would give
KEPT = [("ledger", "_account_digest", "accounts", False), ("ledger", "_hold_digest", "holds", True),
        ("registry", "_owner_digest", "owners", False),
        ("registry", "_agent_digest", "agents", False),
        ("exchange", "_orders_digest", "orders", False),
        ("exchange", "_markets_digest", "markets", False),
        ("tasks", "_task_digest", "tasks", False),
        ("tasks", "_contract_digest", "contracts", False),
        ("auctions", "_digest", "auctions", False), ("pricing", "_digest", "games", False),
        ("controls", "_tickets", "tickets", False), ("controls", "_overseers", "overseers", False),
        ("missions", "_digest_map", "missions", False)]


def _kept_digests_agree(state) -> list[str]:
    bad = []
    for part, attr, mapping, items in KEPT:
        obj = getattr(state, part)
        kept = getattr(obj, attr)
        fresh = DigestMap(kept._record)
        for key, record in getattr(obj, mapping).items():
            fresh.touch(key, (key, record) if items else record)
        if kept.digest() != fresh.digest():
            bad.append(f"{part}.{attr}")
    return bad


def test_every_kept_digest_is_the_digest_of_its_records(states):
    every = {f"{p}.{a}" for p, a, _, _ in KEPT}
    found = {f"{p}.{n}" for _, s in states for p in s.PARTS
             for n in _attributes(s.part(p, 0)) if isinstance(getattr(s.part(p, 0), n), DigestMap)}
    assert found == every, f"DigestMaps this test does not know: {found - every}"
    for name, state in states:
        assert _kept_digests_agree(copy.deepcopy(state)) == [], name


def test_the_kept_digests_agree_tick_after_tick_through_fills_cancels_and_holds():
    from conftest import Economy
    from sandbank.markets.exchange import CancelOrder, PlaceOrder

    e = Economy(n=4, fund=10_000, assets=("CRD", "WGT"), markets=({"asset": "WGT", "quote": "CRD",
                                                                     "band_bps": 2000},),
                policy={"trade_fee_bps": 25})

    def o(actor, side, qty, price, kind="limit"):
        return PlaceOrder(actor=actor, asset="WGT", side=side, qty=qty, price=price,
                          order_type=kind)

    script = [[o(1, "sell", 5, 100), o(2, "buy", 3, 95)], [o(3, "buy", 2, 101)],
              [CancelOrder(actor=2, order=2)], [o(4, "buy", 9, 0, "market")],
              [o(1, "sell", 4, 99), o(2, "buy", 4, 99)], [o(3, "sell", 2, 150)], []]
    for actions in script:
        e.do(*actions)
        e.k.state.digest()
        assert _kept_digests_agree(e.k.state) == []


def test_the_full_digest_sees_what_the_schedules_still_have_due():
    """The heaps that schedule expiries are left out of the walk (their layout depends on
    the path taken); what they still have due is hashed instead: a hold whose expiry was
    dropped from the heap (it would never expire) changes the full digest."""
    from conftest import Economy
    from sandbank.kernel.schema import PENDING, Transfer, TransferSpec

    e = Economy(n=2, fund=100)
    e.do(Transfer(actor=1, transfers=[TransferSpec(id=1, debit=e.account[1],
                                                   credit=e.account[2], amount=5, flags=PENDING,
                                                   timeout=9)]))
    s = e.k.state
    tick = e.k.tick
    assert s.schedules(tick)["expiries"] == [(tick + 9, 1, 1)]
    before = s.full_digest(tick)
    parts = s.fingerprints(tick)
    s.ledger._expiry.clear()
    assert s.full_digest(tick) != before
    assert [n for n, fp in s.fingerprints(tick).items() if fp != parts[n]] == ["schedules"]


def test_an_unknown_event_kind_is_named():
    with pytest.raises(ValueError, match="^unknown event kind 'no_such_event'$"):
        EconomyState(STANDARD).apply_dict({"kind": "no_such_event", "seq": 0, "tick": 0})


def test_a_credit_line_is_state_live_and_in_replay(tmp_path):
    from conftest import Economy
    from sandbank.economy import replay_log
    from sandbank.kernel.schema import OPERATOR, SetCreditLine
    from sandbank.markets.payments import Pay

    e = Economy(n=2, fund=100, store=SQLiteStore(str(tmp_path / "log.db")))
    e.do(SetCreditLine(actor=OPERATOR, account=e.account[1], limit=50))
    assert e.k.state.ledger.accounts[e.account[1]].credit_limit == 50
    assert e.do(Pay(actor=1, to=2, asset="CRD", amount=150)).reasons == {}
    assert e.balance(1) == -50
    r = replay_log(e.k.store)
    assert r.ok and r.state.ledger.accounts[e.account[1]].credit_limit == 50

"""What `verify` says of each kind of damage, word for word: the finding is what an auditor
reads, so its text, the entry and the checkpoint it names are all pinned. (test_audit.py and
test_trust.py show each damage is caught; these show it is reported as it is.)
"""

from __future__ import annotations

import shutil
from hashlib import sha256

import orjson
import pytest

from sandbank.audit.checkpoint import Checkpoint
from sandbank.audit.merkle import CompactRange, leaf_hash
from sandbank.audit.verify import MAX_INSERT_SEARCH, verify_log
from sandbank.kernel.canonical import canonical_bytes
from sandbank.store.base import Entry, StoredCheckpoint
from sandbank.store.sqlite import SQLiteStore
from tests.keys import fixed_key, fixed_secret
from tests.test_audit import tamper, verify


def read(path):
    s = SQLiteStore(path, readonly=True, create=False)
    return s, s.connection


def finding(path):
    r = verify(path)
    assert not r.ok
    return r.problem, r.bad_entry, r.bad_checkpoint


def test_an_empty_log_has_no_header(tmp_path):
    r = verify_log(SQLiteStore(tmp_path / "empty.db"))
    assert (r.ok, r.problem, r.bad_entry, r.entries, r.checkpoints) == (
        False, "the log is empty: no header entry", 0, 0, 0)
    assert (r.origin, r.key_name, r.operator_key, r.root) == (None, None, None, None)


def test_a_first_entry_that_is_not_a_run_header(log):
    body = orjson.dumps({"kind": "transfer", "seq": 0, "tick": 0}, option=orjson.OPT_SORT_KEYS)
    tamper(log, ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 0",
                 (body, leaf_hash(body))))
    problem, entry, cp = finding(log)
    assert problem.startswith("entry 0 is not a valid run header (") and entry == 0


def test_a_missing_checkpoint_is_named_by_its_tick(log):
    tamper(log, "DELETE FROM checkpoints WHERE tick = 17")
    assert finding(log) == ("the checkpoint of tick 17 is missing (every tick is "
                            "checkpointed)", None, 17)


def test_stored_columns_that_differ_from_the_signed_note(log):
    tamper(log, ("UPDATE checkpoints SET state = ? WHERE tick = 5", (b"\x01" * 32,)))
    assert finding(log) == ("checkpoint of tick 5: stored columns differ from the signed note",
                            None, 5)


def test_a_checkpoint_column_of_the_wrong_type(log):
    tamper(log, "UPDATE checkpoints SET size = 'many' WHERE tick = 3")
    assert finding(log) == ("checkpoint row 3: a column of the wrong type (altered)", None, 3)


def test_a_checkpoint_that_goes_backwards_even_when_signed(log):
    """The operator's key re-signs tick 6 at tick 5's size: signed, and still refused."""
    s, db = read(log)
    cp5 = s.checkpoint(5)
    s.close()
    note = Checkpoint("sandbank.demo/seed-4", cp5.size - 1, cp5.root, 6, cp5.state).sign(
        "sandbank-operator", fixed_secret().key("operator"))
    tamper(log, ("UPDATE checkpoints SET size = ?, root = ?, state = ?, note = ? WHERE tick = 6",
                 (cp5.size - 1, cp5.root, cp5.state, note)))
    assert finding(log) == ("checkpoint of tick 6 goes backwards", None, 6)


def test_a_missing_entry_names_the_next_one_stored(log):
    tamper(log, "DELETE FROM entries WHERE seq = 77")
    assert finding(log) == ("entry 77 is missing (next stored entry is 78)", 77, None)


def test_an_entry_moved_to_an_earlier_tick(log):
    s, db = read(log)
    seq = db.execute("select min(seq) from entries where tick = 12").fetchone()[0]
    s.close()
    tamper(log, f"UPDATE entries SET tick = 3 WHERE seq = {seq}")
    assert finding(log) == (f"entry {seq}: tick 3 is before the previous checkpoint", seq,
                            None)


def test_bodies_rewritten_with_matching_hashes_name_the_tick_and_its_first_entry(log):
    s, db = read(log)
    first = db.execute("select min(seq) from entries where tick = 12").fetchone()[0]
    e = s.entry(first + 3)
    s.close()
    d = orjson.loads(e.body)
    d["actor"] += 1
    body = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    tamper(log, ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?",
                 (body, leaf_hash(body), e.seq)))
    assert finding(log) == ("entries of tick 12 do not match its signed root; the bodies were "
                            "rewritten with matching hashes", first, 12)


def test_an_entry_inserted_in_a_tick_is_found_and_named(log):
    s, db = read(log)
    rows = list(s.entries(150))
    s.close()
    tick = rows[0].tick
    fake = orjson.dumps({"kind": "transfer", "seq": 150, "tick": tick},
                        option=orjson.OPT_SORT_KEYS)
    shifted = [(r.seq + 1, r.tick, r.kind, r.body, r.leaf_hash) for r in rows]
    tamper(log, "DELETE FROM entries WHERE seq >= 150",
           ("INSERT INTO entries VALUES (?,?,?,?,?)", (150, tick, "transfer", fake,
                                                        leaf_hash(fake))),
           *[("INSERT INTO entries VALUES (?,?,?,?,?)", r) for r in shifted])
    assert finding(log) == (f"entry 150 was inserted: without it, tick {tick} matches its "
                            f"signed root", 150, tick)
    assert MAX_INSERT_SEARCH == 2048


def test_an_entry_appended_to_the_last_tick_is_found(log):
    s, db = read(log)
    n, last = s.entry_count(), s.last_checkpoint()
    s.close()
    body = orjson.dumps({"kind": "transfer", "seq": n, "tick": last.tick},
                        option=orjson.OPT_SORT_KEYS)
    tamper(log, ("INSERT INTO entries VALUES (?,?,?,?,?)", (n, last.tick, "transfer", body,
                                                             leaf_hash(body))))
    assert finding(log) == (f"entry {n} was inserted: without it, tick {last.tick} matches its "
                            f"signed root", n, last.tick)


def test_a_tick_cut_short_names_where_it_ends(log):
    s, db = read(log)
    n, last = s.entry_count(), s.last_checkpoint()
    s.close()
    tamper(log, f"DELETE FROM entries WHERE seq = {n - 1}")
    assert finding(log) == (f"checkpoint of tick {last.tick} covers {last.size} entries but the "
                            f"log has {last.size - 1} up to that tick; first entry out of place: "
                            f"{n - 1}", n - 1, last.tick)


def test_an_entry_past_every_checkpoint(log):
    s, db = read(log)
    n, last = s.entry_count(), s.last_checkpoint()
    s.close()
    body = orjson.dumps({"kind": "transfer", "seq": n, "tick": last.tick + 1},
                        option=orjson.OPT_SORT_KEYS)
    tamper(log, ("INSERT INTO entries VALUES (?,?,?,?,?)", (n, last.tick + 1, "transfer",
                                                             body, leaf_hash(body))))
    assert finding(log) == (f"entry {n} lies beyond the last signed checkpoint (inserted, or "
                            f"written without a checkpoint)", n, None)


def test_an_action_without_its_index_row_and_a_row_that_lies(log):
    s, db = read(log)
    actor, nonce, first, count = db.execute(
        "select actor, nonce, first_seq, count from action_index where actor > 0 "
        "order by first_seq limit 1").fetchone()
    s.close()
    other = log.with_name("other.db")
    shutil.copy(log, other)
    tamper(log, f"DELETE FROM action_index WHERE first_seq = {first}")
    assert finding(log) == (f"entry {first} starts action (actor {actor}, nonce {nonce}) but the "
                            f"action index has no row for it (altered)", first, None)
    tamper(other, f"UPDATE action_index SET nonce = nonce + 1 WHERE first_seq = {first}")
    assert finding(other) == (f"action index row ({actor}, {nonce + 1}, {first}, {count}) "
                              f"differs from what entry {first} implies ({actor}, {nonce}, "
                              f"{first}, {count}) (the index was altered)", first, None)


def test_stored_content_missing_or_changed(log):
    s, db = read(log)
    e = next(e for e in s.entries() if b'"sha256"' in e.body)
    s.close()
    d = orjson.loads(e.body)
    other = log.with_name("other.db")
    shutil.copy(log, other)
    tamper(log, ("DELETE FROM contents WHERE sha256 = ?", (bytes.fromhex(d["sha256"]),)))
    assert finding(log) == (f"entry {e.seq}: the content it refers to ({d['sha256'][:16]}…) is "
                            f"missing", e.seq, None)
    tamper(other, ("UPDATE contents SET body = ? WHERE sha256 = ?",
                   (b"something else", bytes.fromhex(d["sha256"]))))
    assert finding(other) == (f"entry {e.seq}: the stored content {d['sha256'][:16]}… does not "
                              f"match the digest and size the entry carries (altered)", e.seq,
                              None)



def test_an_empty_content_is_checked_like_any_other(tmp_path):
    """A trace whose response was empty still names a stored content (of 0 bytes): rewriting
    that row must not pass, or a tool showing the transcript shows the forger's text."""
    from conftest import Economy
    from sandbank.controls.traces import Trace

    e = Economy(n=2, store=SQLiteStore(tmp_path / "t.db"))
    e.do(Trace(actor=1, prompt="what now?", response="", model="m", outcome="error"))
    seq = e.k.log.size - 1
    e.k.store.close()
    assert verify(tmp_path / "t.db").ok
    empty = sha256(b"").hexdigest()
    tamper(tmp_path / "t.db", ("UPDATE contents SET body = ? WHERE sha256 = ?",
                               (b"pay agent 2 everything", bytes.fromhex(empty))))
    assert finding(tmp_path / "t.db") == (
        f"entry {seq}: the stored content {empty[:16]}… does not match the digest and size the "
        f"entry carries (altered)", seq, None)

@pytest.mark.parametrize("level,index", [(8, 0), (8, 1), (8, 2)])
def test_a_wrong_stored_subtree_names_the_entries_it_covers(log, level, index):
    tamper(log, ("UPDATE nodes SET hash = ? WHERE id = ?", (b"\x00" * 32, level << 48 | index)))
    lo, hi = index << level, ((index + 1) << level) - 1
    assert finding(log) == (f"stored subtree hash at level {level} index {index} is wrong "
                            f"(covers entries {lo}..{hi})", lo, None)


# ---------------------------------------------------------------- what a failed report carries
def test_a_failed_report_still_says_whose_log_it_is_and_how_far_it_checked(log):
    tamper(log, "DELETE FROM checkpoints WHERE tick = 17")
    r = verify(log)
    s, db = read(log)
    size16 = s.checkpoint(16).size
    header = orjson.loads(s.entry(0).body)
    s.close()
    assert (r.ok, r.root, r.checkpoints, r.entries) == (False, None, 17, size16)
    assert r.origin == "sandbank.demo/seed-4" and r.key_name == "sandbank-operator"
    assert r.operator_key == bytes.fromhex(header["operator_key"])


class _Failing(SQLiteStore):
    """A store that fails part-way through reading its checkpoints."""

    def __init__(self, path, error):
        super().__init__(path, readonly=True, create=False)
        self.error = error

    def checkpoints(self):
        for i, cp in enumerate(super().checkpoints()):
            if i == 5:
                raise self.error
            yield cp


def test_a_store_that_fails_is_a_finding_with_what_was_checked(good_log):
    from sandbank.store.base import StoreError

    for error, problem in ((StoreError("the disk said no"), "the disk said no"),
                           (TypeError("odd row"), None)):
        store = _Failing(good_log, error)
        r = verify_log(store)
        cp4 = store.checkpoint(4)
        store.close()
        assert (r.ok, r.root, r.checkpoints, r.entries) == (False, None, 5, cp4.size)
        assert r.origin == "sandbank.demo/seed-4" and r.key_name == "sandbank-operator"
        assert r.operator_key is not None
        if problem:
            assert (r.problem, r.bad_entry) == (problem, None)
        else:
            assert r.problem == (f"the store holds a row this log format never writes "
                                 f"(TypeError: odd row); near entry {cp4.size}")
            assert r.bad_entry == cp4.size


def test_an_empty_checkpoint_table_and_a_good_log(log, good_log):
    r = verify(good_log)
    s, db = read(good_log)
    last = s.last_checkpoint()
    s.close()
    assert (r.ok, r.problem, r.entries, r.checkpoints, r.root) == (True, None, last.size,
                                                                  last.tick + 1, last.root)
    assert (r.bad_entry, r.bad_checkpoint, r.cosigned, r.extends) == (None, None, 0, None)
    assert (r.origin, r.key_name) == ("sandbank.demo/seed-4", "sandbank-operator")
    assert r.operator_key == fixed_secret().key("operator").public
    tamper(log, "DELETE FROM checkpoints")
    assert finding(log)[1:] == (0, None)  # every entry then lies beyond a checkpoint


# ---------------------------------------------------------------- cosignatures
def test_cosignatures_by_a_witness_are_counted_and_each_checked(log):
    from sandbank.audit.witness import cosign

    w, other = fixed_key(31, "witness"), fixed_key(31, "other")
    s, db = read(log)
    notes = {t: s.checkpoint(t).note for t in (3, 9, 20)}
    s.close()
    lines = {t: cosign(n, "w.example", w, 1_700_000_000 + t).splitlines()[-1]
             for t, n in notes.items()}
    stranger = cosign(notes[9], "other.example", other, 5).splitlines()[-1]
    mangled = lines[20].replace(" ", "\t", 1)  # not a line of the form "— name signature"
    tamper(log, *[("INSERT INTO cosignatures VALUES (?, ?)", (t, ln)) for t, ln in lines.items()],
           ("INSERT INTO cosignatures VALUES (?, ?)", (9, stranger)),
           ("INSERT INTO cosignatures VALUES (?, ?)", (20, mangled)))
    s = SQLiteStore(log, readonly=True, create=False)
    r = verify_log(s, witness=("w.example", w.public))
    assert (r.ok, r.cosigned) == (True, 3)
    r = verify_log(s, witness=("nobody.example", w.public))
    assert (r.ok, r.problem) == (False, "the log keeps no cosignature by the witness "
                                        "nobody.example")
    r = verify_log(s, witness=("w.example", other.public))
    assert not r.ok and r.bad_checkpoint == 3 and r.problem.startswith(
        "the cosignature by w.example of tick 3 is not valid: ")
    s.close()
    tamper(log, ("INSERT INTO cosignatures VALUES (?, ?)", (99, lines[3])))
    s = SQLiteStore(log, readonly=True, create=False)
    r = verify_log(s, witness=("w.example", w.public))
    s.close()
    assert (r.ok, r.problem) == (False, "a cosignature by w.example names tick 99, which has "
                                        "no checkpoint")


def test_progress_is_reported_every_65536_entries(tmp_path):
    from conftest import Economy
    from sandbank.kernel.schema import Transfer, TransferSpec

    e = Economy(n=2, fund=10**9, store=SQLiteStore(tmp_path / "big.db"))
    tid = 10**6
    while e.k.log.size < 2 * 65536 + 10:  # a batch of 4000 transfers: 4000 entries
        e.do(Transfer(actor=1, transfers=[
            TransferSpec(id=tid + i, debit=e.account[1], credit=e.account[2], amount=1)
            for i in range(1, 4001)]))
        tid += 4000
    seen = []
    r = verify_log(e.k.store, progress=seen.append)
    assert r.ok and seen == [65536, 131072]


# ---------------------------------------------------------------- damage to the store's copy
def first_of_tick(log, tick):
    s, db = read(log)
    seq = db.execute("select min(seq) from entries where tick = ?", (tick,)).fetchone()[0]
    s.close()
    return seq


def test_a_tick_column_that_lies_within_its_checkpoint(log):
    """Entry k of tick 12 said to be of tick 11 in its column: still read with tick 12's
    entries (no earlier checkpoint covers it), so it is its own body that gives it away."""
    k = first_of_tick(log, 12) + 3
    tamper(log, f"UPDATE entries SET tick = 11 WHERE seq = {k}")
    assert finding(log) == (f"entry {k}: its body says seq {k}, tick 12; the store says seq {k}, "
                            f"tick 11", k, None)


def test_a_body_rewritten_to_another_tick_is_named_as_out_of_place(log):
    k = first_of_tick(log, 12) + 3
    s, db = read(log)
    d = orjson.loads(s.entry(k).body)
    s.close()
    d["tick"] = 11
    body = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    tamper(log, ("UPDATE entries SET tick = 11, body = ?, leaf_hash = ? WHERE seq = ?",
                 (body, leaf_hash(body), k)))
    assert finding(log) == (f"entries of tick 12 do not match its signed root; first entry out "
                            f"of place: {k}", k, 12)


def test_two_entries_inserted_in_a_tick_name_the_first_out_of_place(log):
    """Two copies of entry p put in a tick (no search finds two): the first stored entry
    whose body says it belongs elsewhere is named, not the tick's end. The tick is one
    with room after p and no stored subtree completing in it (that would be found first)."""
    s, db = read(log)
    sizes = [cp.size for cp in s.checkpoints()]
    t = next(t for t in range(1, len(sizes)) if sizes[t] - sizes[t - 1] >= 5
             and sizes[t - 1] // 256 == (sizes[t] + 2) // 256)
    p = sizes[t - 1] + 1
    rows = list(s.entries(p))
    s.close()
    copy = (rows[0].tick, rows[0].kind, rows[0].body, rows[0].leaf_hash)
    shifted = [(r.seq + 2, r.tick, r.kind, r.body, r.leaf_hash) for r in rows]
    tamper(log, f"DELETE FROM entries WHERE seq >= {p}",
           *[("INSERT INTO entries VALUES (?,?,?,?,?)", r)
             for r in [(p, *copy), (p + 1, *copy), *shifted]])
    assert finding(log) == (f"checkpoint of tick {t} covers {sizes[t]} entries but the log "
                            f"has {sizes[t] + 2} up to that tick; first entry out of place: "
                            f"{p + 1}", p + 1, t)


def test_the_last_entry_of_a_tick_removed(log):
    s, db = read(log)
    cp = s.checkpoint(12)
    s.close()
    tamper(log, f"DELETE FROM entries WHERE seq = {cp.size - 1}")
    # the search stays in tick 12: entry cp.size is tick 13's first, in its place
    assert finding(log) == (f"checkpoint of tick 12 covers {cp.size} entries but the log has "
                            f"{cp.size - 1} up to that tick; first entry out of place: "
                            f"{cp.size - 1}", cp.size - 1, 12)


def test_a_pinned_operator_key_that_is_not_the_headers(log):
    s = SQLiteStore(log, readonly=True, create=False)
    r = verify_log(s, pinned_key=b"\x01" * 32)
    s.close()
    assert (r.ok, r.problem, r.bad_entry) == (
        False, "the log's header names a different operator key than the pinned one", 0)


def test_a_header_of_another_kind(log):
    s, db = read(log)
    d = orjson.loads(s.entry(0).body)
    s.close()
    d["kind"] = "transfer"  # everything else a header has, still at seq 0
    body = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    tamper(log, ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 0",
                 (body, leaf_hash(body))))
    assert finding(log) == ("entry 0 is not a valid run header ()", 0, None)


@pytest.mark.parametrize("column,value", [("tick", "'x'"), ("kind", "X'07'"),
                                          ("body", "CAST(body AS TEXT)"),
                                          ("leaf_hash", "hex(leaf_hash)")])
def test_an_entry_column_of_the_wrong_type(log, column, value):
    tamper(log, f"UPDATE entries SET {column} = {value} WHERE seq = 100")
    assert finding(log) == ("entry row 100: a column of the wrong type (altered)", 100, None)


def test_a_stored_content_that_is_not_bytes(log):
    s, db = read(log)
    e = next(e for e in s.entries() if b'"sha256"' in e.body)
    s.close()
    digest = orjson.loads(e.body)["sha256"]
    tamper(log, ("UPDATE contents SET body = CAST(body AS TEXT) WHERE sha256 = ?",
                 (bytes.fromhex(digest),)))
    assert finding(log) == (f"entry {e.seq}: the stored content {digest[:16]}… is not bytes "
                            f"(altered)", e.seq, None)


def test_an_index_row_for_an_entry_that_starts_no_action(log):
    """The row is put just before a real action's: the check must fire at its own entry."""
    s, db = read(log)
    starts = {first for (first,) in db.execute("select first_seq from action_index")}
    x = next(seq for seq in sorted(starts) if seq - 1 not in starts and seq > 1) - 1
    s.close()
    tamper(log, ("INSERT INTO action_index VALUES (?,?,?,?)", (5, 10**9, x, 1)))
    assert finding(log) == (f"action index row (5, {10**9}, {x}, 1): entry {x} starts no "
                            f"signed action (the index was altered)", x, None)


def test_an_index_row_past_the_log(log):
    s, db = read(log)
    n = s.entry_count()
    s.close()
    tamper(log, ("INSERT INTO action_index VALUES (?,?,?,?)", (5, 10**9, n + 5, 1)))
    assert finding(log) == (f"action index row (5, {10**9}, {n + 5}, 1) names entries the log "
                            f"does not have (the index was altered)", n + 5, None)


# ---------------------------------------------------------------- kept checkpoints
def kept_note(log, **change):
    s, db = read(log)
    cp = s.checkpoint(change.pop("at", 5))
    s.close()
    fields = {"origin": "sandbank.demo/seed-4", "size": cp.size, "root": cp.root,
              "tick": cp.tick, "state": cp.state, **change}
    key = change.get("key") or fixed_secret().key("operator")
    fields.pop("key", None)
    return Checkpoint(**fields).sign("sandbank-operator", key)


def verify_kept(log, note):
    s = SQLiteStore(log, readonly=True, create=False)
    try:
        return verify_log(s, pinned_checkpoint=note)
    finally:
        s.close()


def test_a_log_extends_its_kept_checkpoint(good_log):
    s, db = read(good_log)
    cp = s.checkpoint(7)
    s.close()
    r = verify_kept(good_log, cp.note)
    assert r.ok and r.extends == Checkpoint("sandbank.demo/seed-4", cp.size, cp.root, 7, cp.state)


def test_what_a_kept_checkpoint_can_show(good_log):
    s, db = read(good_log)
    n, cp5 = s.entry_count(), s.checkpoint(5)
    s.close()
    cases = [
        (kept_note(good_log, root=b"\x01" * 32),
         (f"the kept checkpoint (tick 5, size {cp5.size}) has another root than this log at "
          f"that size: the log was rewritten, or forked", None, 5)),
        (kept_note(good_log, origin="elsewhere/1"),
         ("the kept checkpoint is of 'elsewhere/1', this log of 'sandbank.demo/seed-4'", None,
          None)),
        (kept_note(good_log, size=cp5.size + 1),
         (f"the log does not extend the kept checkpoint (tick 5, size {cp5.size + 1:,}): it has "
          f"{n:,} entries and no checkpoint of that size (rewritten, or another log)", None, None)),
        (kept_note(good_log, size=n + 10, tick=41),
         (f"the log does not extend the kept checkpoint (tick 41, size {n + 10:,}): it has "
          f"{n:,} entries — it was truncated", None, None)),
    ]
    for note, want in cases:
        r = verify_kept(good_log, note)
        assert (r.problem, r.bad_entry, r.bad_checkpoint) == want and not r.ok
    r = verify_kept(good_log, kept_note(good_log, key=fixed_key(3, "stranger")))
    assert not r.ok and r.problem.startswith(
        "the kept checkpoint is not signed by this log's operator key: ")


# ---------------------------------------------------------------- logs the operator's key signs
NAME, ORIGIN = "forger", "forged.example/1"
ABC = sha256(b"abc").hexdigest()


def forge(path, ticks, actions=None):
    """A log signed by its own operator key, of entries a test chooses: what a dishonest
    operator (or anyone holding its key) can write, so the checks verify makes of signed
    bodies, not only of the store's copy, are reachable. `ticks[t]` lists tick t's entries
    after the header: a dict (seq and tick filled in unless it names them) or a (kind column,
    raw body) pair; `actions[t]` are tick t's index rows; the content b"abc" is stored."""
    key = fixed_key(7, "operator")
    store = SQLiteStore(path)
    r = CompactRange()
    header = {"kind": "run_started", "origin": ORIGIN, "key_name": NAME,
              "operator_key": key.public.hex()}
    for t, items in enumerate(ticks):
        entries, nodes = [], []
        for item in ([header] if t == 0 else []) + list(items):
            if isinstance(item, dict):
                kind, body = item["kind"], canonical_bytes({"seq": r.size, "tick": t, **item})
            else:
                kind, body = item
            entries.append(Entry(r.size, t, kind, body, leaf_hash(body)))
            nodes.extend(r.append(leaf_hash(body)))
        cp = Checkpoint(ORIGIN, r.size, r.root(), t, bytes(32))
        store.append_tick(entries, nodes, StoredCheckpoint(t, cp.size, cp.root, cp.state,
                                                           cp.sign(NAME, key)),
                          [(bytes.fromhex(ABC), b"abc")] if t == 0 else [],
                          (actions or {}).get(t, []))
    store.close()
    return path


def test_a_forged_log_verifies_when_its_bodies_are_in_form(tmp_path):
    """What the tests below change one thing of. An empty tick (a checkpoint of the same
    size as the last) is in form; a `size` field without a content digest names no content;
    an empty content needs no row (the boundary keeps none for a value-only crossing)."""
    r = verify(forge(tmp_path / "f.db", [
        [{"kind": "note", "sha256": ABC, "size": 3},
         {"kind": "note", "sha256": sha256(b"").hexdigest(), "size": 0}], [],
        [{"kind": "order", "size": 5}, {"kind": "pay", "actor": 3, "nonce": 1, "entries": 2},
         {"kind": "paid"}]], actions={2: [(3, 1, 4, 2)]}))
    assert (r.ok, r.entries, r.checkpoints) == (True, 6, 3), r.problem
    assert (r.origin, r.key_name, r.operator_key) == (ORIGIN, NAME,
                                                      fixed_key(7, "operator").public)


@pytest.mark.parametrize("item,problem", [
    (("note", b'{"kind": "note", "seq": 1, "tick": 0}'), "entry 1: the body is not canonical JSON"),
    (("note", b'{"kind":"note","kind":"alert","seq":1,"tick":0}'),
     "entry 1: the body is not canonical JSON"),  # which kind would a tool read?
    (("note", b"not json"), "entry 1: the body is not canonical JSON"),
    (("note", b"[1]"), "entry 1: its body says seq ?, tick ?; the store says seq 1, tick 0"),
    ({"kind": "note", "seq": 7}, "entry 1: its body says seq 7, tick 0; the store says seq 1, "
                                 "tick 0"),
    ({"kind": "note", "tick": 5}, "entry 1: its body says seq 1, tick 5; the store says seq 1, "
                                  "tick 0"),
    (("other", canonical_bytes({"kind": "note", "seq": 1, "tick": 0})),
     "entry 1: the store's kind column says 'other', the signed body 'note' (the column was "
     "altered)"),
    ({"kind": "note", "sha256": "not hex", "size": 3}, "entry 1: its content digest is not hex"),
    ({"kind": "note", "sha256": ABC, "size": 4}, f"entry 1: the stored content {ABC[:16]}… "
                                                 f"does not match the digest and size the "
                                                 f"entry carries (altered)"),
    ({"kind": "note", "sha256": ABC}, f"entry 1: the stored content {ABC[:16]}… does not match "
                                      f"the digest and size the entry carries (altered)"),
    ({"kind": "note", "sha256": ABC, "size": 0}, f"entry 1: the stored content {ABC[:16]}… "
                                                 f"does not match the digest and size the "
                                                 f"entry carries (altered)"),
    ({"kind": "note", "sha256": "00" * 32, "size": 0},  # "empty", under another digest
     f"entry 1: the content it refers to ({'00' * 8}…) is missing"),
    ({"kind": "pay", "actor": 3, "nonce": 1, "entries": 2},
     "entry 1: its action's entries (2) run past its tick"),
])
def test_what_a_signed_body_says_is_checked_against_the_store(tmp_path, item, problem):
    rows = {0: [(3, 1, 1, 2)]} if isinstance(item, dict) and "nonce" in item else None
    r = verify(forge(tmp_path / "f.db", [[item]], actions=rows))
    assert (r.ok, r.problem, r.bad_entry, r.bad_checkpoint) == (False, problem, 1, None)


@pytest.mark.parametrize("size,searched", [(7, True), (8, False)])
def test_an_insertion_is_searched_for_in_ticks_up_to_the_limit(tmp_path, monkeypatch, size,
                                                               searched):
    """A tick of `size` entries and one inserted at its end, with the limit set to 8."""
    import sandbank.audit.verify as v

    monkeypatch.setattr(v, "MAX_INSERT_SEARCH", 8)
    path = forge(tmp_path / "f.db", [[{"kind": "note"}] * 20, [{"kind": "note"}] * size,
                                     [{"kind": "note"}] * 3])
    end = 21 + size  # tick 1 is [21, end)
    s = SQLiteStore(path, readonly=True, create=False)
    rows = list(s.entries(end))
    s.close()
    fake = canonical_bytes({"kind": "note", "seq": end, "tick": 1})
    tamper(path, f"DELETE FROM entries WHERE seq >= {end}",
           ("INSERT INTO entries VALUES (?,?,?,?,?)", (end, 1, "note", fake, leaf_hash(fake))),
           *[("INSERT INTO entries VALUES (?,?,?,?,?)", (r.seq + 1, *r[1:])) for r in rows])
    if searched:
        assert finding(path) == (f"entry {end} was inserted: without it, tick 1 matches its "
                                 f"signed root", end, 1)
    else:
        assert finding(path) == (f"checkpoint of tick 1 covers {end} entries but the log has "
                                 f"{end + 1} up to that tick; first entry out of place: {end}",
                                 end, 1)

"""verify / replay / proof on real logs, and on logs tampered with in every way we know."""

import json
import sqlite3

import orjson
import pytest
from typer.testing import CliRunner

from sandbank.audit.checkpoint import (
    Checkpoint,
    NoteError,
    open_checkpoint,
    parse_verifier_key,
    verifier_key,
)
from sandbank.audit.merkle import leaf_hash
from sandbank.audit.verify import verify_log
from sandbank.cli import app
from sandbank.economy import public_kinds, replay_log
from sandbank.store.sqlite import SQLiteStore
from tests.keys import fixed_key

runner = CliRunner()


def tamper(path, *sql):
    """Edit the log behind sandbank's back: every append-only trigger dropped first."""
    db = sqlite3.connect(path)
    for (name,) in db.execute("select name from sqlite_master where type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    for s in sql:
        if isinstance(s, tuple):
            db.execute(*s)
        else:
            db.execute(s)
    db.commit()
    db.close()


def verify(path):
    s = SQLiteStore(path, readonly=True, create=False)
    try:
        return verify_log(s)
    finally:
        s.close()


def test_a_good_log_verifies_and_replays(good_log):
    r = verify(good_log)
    assert r.ok and r.entries > 500 and r.checkpoints == 41  # genesis (tick 0) + 40 ticks
    s = SQLiteStore(good_log, readonly=True, create=False)
    rp = replay_log(s)
    s.close()
    assert rp.ok and rp.events == r.entries
    assert rp.totals["CRD"]["circulating"] == rp.totals["CRD"]["minted"] - rp.totals["CRD"]["burned"]


def test_the_database_refuses_updates_and_deletes(log):
    db = sqlite3.connect(log)
    for sql in ("UPDATE entries SET tick = 0 WHERE seq = 5", "DELETE FROM entries WHERE seq = 5",
                "UPDATE checkpoints SET size = 1", "DELETE FROM checkpoints",
                "DELETE FROM nodes", "UPDATE meta SET value = '2'"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(sql)
    db.close()


def test_flipped_byte_in_an_entry_is_named(log):
    body = SQLiteStore(log, readonly=True, create=False).entry(123).body
    bad = bytearray(body)
    bad[len(bad) // 2] ^= 0x01
    tamper(log, ("UPDATE entries SET body = ? WHERE seq = 123", (bytes(bad),)))
    r = verify(log)
    assert not r.ok and r.bad_entry == 123 and "altered" in r.problem


def test_rewritten_body_and_hash_still_fails_at_the_signed_root(log):
    s = SQLiteStore(log, readonly=True, create=False)
    e = s.entry(200)
    s.close()
    d = orjson.loads(e.body)
    d["actor"] = d["actor"] + 1
    body = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    tamper(log, ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = 200",
                 (body, leaf_hash(body))))
    r = verify(log)
    assert not r.ok and r.bad_checkpoint == e.tick and "signed root" in r.problem


def test_deleted_entry_is_named(log):
    tamper(log, "DELETE FROM entries WHERE seq = 77")
    r = verify(log)
    assert not r.ok and r.bad_entry == 77


def test_reordered_entries_are_named(log):
    s = SQLiteStore(log, readonly=True, create=False)
    n = next(i for i in range(300, 10_000) if s.entry(i).tick == s.entry(i + 1).tick)
    a, b = s.entry(n), s.entry(n + 1)
    s.close()
    tamper(log,
           ("UPDATE entries SET body = ?, leaf_hash = ?, kind = ? WHERE seq = ?",
            (b.body, b.leaf_hash, b.kind, n)),
           ("UPDATE entries SET body = ?, leaf_hash = ?, kind = ? WHERE seq = ?",
            (a.body, a.leaf_hash, a.kind, n + 1)))
    r = verify(log)
    assert not r.ok and r.bad_entry == n


def test_inserted_entry_at_the_end_is_named(log):
    s = SQLiteStore(log, readonly=True, create=False)
    n, last = s.entry_count(), s.last_checkpoint()
    s.close()
    body = orjson.dumps({"kind": "transfer", "seq": n, "tick": last.tick}, option=orjson.OPT_SORT_KEYS)
    tamper(log, ("INSERT INTO entries VALUES (?,?,?,?,?)", (n, last.tick, "transfer", body,
                                                             leaf_hash(body))))
    r = verify(log)
    assert not r.ok and r.bad_entry == n


def test_inserted_entry_in_the_middle_is_named(log):
    s = SQLiteStore(log, readonly=True, create=False)
    rows = list(s.entries(150))
    s.close()
    fake = orjson.dumps({"kind": "transfer", "seq": 150, "tick": rows[0].tick},
                        option=orjson.OPT_SORT_KEYS)
    shifted = [(r.seq + 1, r.tick, r.kind, r.body, r.leaf_hash) for r in rows]
    tamper(log, "DELETE FROM entries WHERE seq >= 150",
           ("INSERT INTO entries VALUES (?,?,?,?,?)",
            (150, rows[0].tick, "transfer", fake, leaf_hash(fake))),
           *[("INSERT INTO entries VALUES (?,?,?,?,?)", r) for r in shifted])
    r = verify(log)
    assert not r.ok and r.bad_entry == 150


def test_forged_checkpoint_is_named(log):
    s = SQLiteStore(log, readonly=True, create=False)
    cp = s.checkpoint(20)
    s.close()
    forged = Checkpoint("sandbank.demo/seed-4", cp.size, cp.root, cp.tick, cp.state)
    note = forged.sign("sandbank-operator", fixed_key(666, "mallory"))
    tamper(log, ("UPDATE checkpoints SET note = ? WHERE tick = 20", (note,)))
    r = verify(log)
    assert not r.ok and r.bad_checkpoint == 20 and "signature" in r.problem


def test_a_log_resigned_under_another_key_fails_when_the_key_is_pinned(log, good_log):
    s = SQLiteStore(good_log, readonly=True, create=False)
    header = orjson.loads(s.entry(0).body)
    s.close()
    mine = verifier_key("sandbank-operator", bytes.fromhex(header["operator_key"]))
    res = runner.invoke(app, ["verify", str(good_log), "--key", mine])
    assert res.exit_code == 0, res.output
    other = verifier_key("sandbank-operator", fixed_key(1, "other").public)
    res = runner.invoke(app, ["verify", str(good_log), "--key", other])
    assert res.exit_code == 1 and "different operator key" in res.output


def test_raw_file_corruption_exits_nonzero_without_a_traceback(log):
    data = bytearray(log.read_bytes())
    for i in range(4096 + 100, len(data), 1024):  # flip bytes across every page but the header
        data[i] ^= 0xFF
    log.write_bytes(bytes(data))
    res = runner.invoke(app, ["verify", str(log)])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert "FAILED" in res.output or "error" in res.output


def test_replay_detects_state_that_disagrees_with_the_signed_digest(log):
    s = SQLiteStore(log, readonly=True, create=False)
    victim = next(e for e in s.entries() if e.kind == "task_posted" and e.seq > 100)
    s.close()
    d = orjson.loads(victim.body)
    d["reward"] += 1  # rewritten with a matching leaf hash: only the signed digest disagrees
    body = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
    tamper(log, ("UPDATE entries SET body = ?, leaf_hash = ? WHERE seq = ?",
                 (body, leaf_hash(body), victim.seq)))
    s = SQLiteStore(log, readonly=True, create=False)
    rp = replay_log(s)
    s.close()
    assert not rp.ok and rp.bad_tick == victim.tick
    res = runner.invoke(app, ["replay", str(log)])
    assert res.exit_code == 1 and f"after tick {victim.tick}" in res.output


def test_cli_proofs_verify_offline_and_tampered_bundles_fail(good_log, tmp_path):
    res = runner.invoke(app, ["proof", str(good_log), "--entry", "42"])
    assert res.exit_code == 0, res.output
    bundle = json.loads(res.stdout)
    f = tmp_path / "p.json"
    f.write_text(json.dumps(bundle))
    res = runner.invoke(app, ["check-proof", str(f), "--key", bundle["verifier_key"]])
    assert res.exit_code == 0 and "valid" in res.stdout
    bundle["entry"] = bundle["entry"].replace('"seq":42', '"seq":43')
    f.write_text(json.dumps(bundle))
    assert runner.invoke(app, ["check-proof", str(f)]).exit_code == 1
    for m in (0, 1, 200, 257):
        res = runner.invoke(app, ["proof", str(good_log), "--from", str(m), "--tick", "30"])
        assert res.exit_code == 0, res.output
        f.write_text(res.stdout)
        res = runner.invoke(app, ["check-proof", str(f)])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["proof", str(good_log), "--entry", "10000000"])
    assert res.exit_code == 2 and "not in the checkpoint" in res.output


def test_cli_refuses_bad_input_clearly(tmp_path):
    res = runner.invoke(app, ["verify", str(tmp_path / "missing.db")])
    assert res.exit_code == 2 and "no log at" in res.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    res = runner.invoke(app, ["replay", str(junk)])
    assert res.exit_code == 1 and "not a readable sandbank log" in res.output


def test_signed_note_roundtrip_and_rejections():
    key = fixed_key(1, "k")
    cp = Checkpoint("example.org/log", 5, b"\x01" * 32, 9, b"\x02" * 32)
    note = cp.sign("op", key)
    assert open_checkpoint(note, "op", key.public) == cp
    with pytest.raises(NoteError):
        open_checkpoint(note, "op", fixed_key(2, "k").public)
    with pytest.raises(NoteError):
        open_checkpoint(note.replace("\n5\n", "\n6\n"), "op", key.public)
    assert parse_verifier_key(verifier_key("op", key.public)) == ("op", key.public)


def test_a_deleted_checkpoint_is_named(log):
    tamper(log, "DELETE FROM checkpoints WHERE tick = 17")
    r = verify(log)
    assert not r.ok and r.bad_checkpoint == 17 and "missing" in r.problem


def test_a_wrong_stored_subtree_is_named(log):
    tamper(log, ("UPDATE nodes SET hash = ? WHERE id = (SELECT min(id) FROM nodes)",
                 (b"\x00" * 32,)))
    r = verify(log)
    assert not r.ok and "stored subtree hash at level 8 index 0" in r.problem


def test_store_subtrees_serve_every_range_like_the_reference(tmp_path):
    """Levels 8 and 16 are stored; any range computed from them equals the in-memory tree."""
    import random

    from sandbank.audit.log import AuditLog, compact_range_from_store, subtree_hash
    from sandbank.audit.merkle import root_of

    store = SQLiteStore(tmp_path / "t.db")
    log = AuditLog(store, "o", "k", fixed_key(0, "k"), public_kinds())
    n = 70_000
    for i in range(n):
        log.append(i // 10_000, {"kind": "x", "i": i})
        if i % 10_000 == 9_999:
            log.commit(i // 10_000, b"\x00" * 32)
    log.commit(7, b"\x00" * 32)
    leaves = store.leaf_hashes(0, n)
    assert store.nodes(16, 0, 1)[0] == root_of(leaves[:65536])
    rng = random.Random(1)
    for a, b in [(0, n), (0, 65536), (65536, n), (256, 512)] + [
            tuple(sorted(rng.sample(range(n + 1), 2))) for _ in range(20)]:
        assert subtree_hash(store, a, b) == root_of(leaves[a:b]), (a, b)
    assert compact_range_from_store(store, n).root() == root_of(leaves)
    store.close()


# ---------------------------------------------------------------- the writer
def test_a_subtree_of_no_leaves_is_refused(good_log):
    from sandbank.audit.log import subtree_hash

    s = SQLiteStore(good_log, readonly=True, create=False)
    for start, end in ((5, 5), (5, 4)):
        with pytest.raises(ValueError, match="^empty range$"):
            subtree_hash(s, start, end)
    s.close()


def test_an_aligned_subtree_is_read_from_its_stored_node(good_log):
    """Proofs are served from the stored subtrees (which verify checks), not by rehashing
    256 leaves each time."""
    from sandbank.audit.log import subtree_hash
    from sandbank.audit.merkle import root_of

    class Counting(SQLiteStore):
        leaves = 0

        def leaf_hashes(self, start, end):
            self.leaves += end - start
            return super().leaf_hashes(start, end)

    s = Counting(good_log, readonly=True, create=False)
    all_leaves = SQLiteStore.leaf_hashes(s, 0, 512)
    assert subtree_hash(s, 256, 512) == root_of(all_leaves[256:]) and s.leaves == 0
    assert subtree_hash(s, 0, 300) == root_of(all_leaves[:300]) and s.leaves == 44
    s.close()


def test_a_log_reopened_on_its_store_goes_on_where_it_stopped(log):
    """A restart appends to the same tree: the new checkpoint's root is that of every entry."""
    from sandbank.audit.log import AuditLog
    from tests.keys import fixed_secret

    s = SQLiteStore(log)
    n, last = s.entry_count(), s.last_checkpoint()
    a = AuditLog(s, "sandbank.demo/seed-4", "sandbank-operator", fixed_secret().key("operator"),
                 public_kinds())
    assert (a.size, a.last_committed) == (n, [])
    a.append(last.tick + 1, {"kind": "market_state", "asset": "WGT", "state": "open"})
    cp = a.commit(last.tick + 1, bytes(32))
    s.close()
    r = verify(log)
    assert (r.ok, r.entries, cp.size, r.root) == (True, n + 1, n + 1, cp.root)


def test_every_entry_that_is_not_public_carries_its_blind(tmp_path):
    from sandbank.audit.log import AuditLog
    from sandbank.audit.visibility import Blinds
    from sandbank.economy import public_kinds

    PUBLIC_KINDS = public_kinds()

    key = fixed_key(5, "operator")
    a = AuditLog(SQLiteStore(tmp_path / "b.db"), "o", "k", key, public_kinds())
    assert (a.size, a.last_committed) == (0, [])
    kinds = ["run_started", "transfer", "order_placed", "alert", "some_new_kind"]
    for kind in kinds:
        a.append(0, {"kind": kind})
    a.commit(0, bytes(32))
    blinds = Blinds(key.seed_bytes())
    for seq, kind in enumerate(kinds):
        body = orjson.loads(a.store.entry(seq).body)
        assert body.get("blind") == (None if kind in PUBLIC_KINDS else blinds.of(seq)), kind
    assert [d["kind"] for d in a.last_committed] == kinds

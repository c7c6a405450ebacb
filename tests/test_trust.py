"""Issue 12: the guarantees hold against an outsider who has the source, the logs and the
public API. Each test first shows what the attack does (or would do, with the key it once
could derive), then that the defence stops it."""

from __future__ import annotations

import shutil
import sqlite3
from hashlib import sha256
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from sandbank.audit.checkpoint import verifier_key
from sandbank.audit.log import AuditLog
from sandbank.audit.verify import verify_log
from sandbank.cli import app as cli
from sandbank.economy import STANDARD, public_kinds, replay_log
from sandbank.identity.keys import RunSecret, SigningKey
from sandbank.kernel.canonical import parse
from sandbank.kernel.state import EconomyState
from sandbank.lab.runner import run_scenario
from sandbank.lab.scenario import parse_scenario
from sandbank.store.sqlite import SQLiteStore

runner = CliRunner()

SCENARIO = {
    "name": "trust", "seed": 5, "ticks": 12, "assets": ["CRD", "WGT"],
    "markets": [{"asset": "WGT", "quote": "CRD", "band_bps": 1500}],
    "endowment": {"CRD": 100_000, "WGT": 100},
    "population": [{"policy": "market_maker", "count": 2},
                   {"policy": "zi_trader", "count": 4},
                   {"policy": "requester", "count": 1},
                   {"policy": "specialist", "count": 2, "skills": {"code": 9, "law": 9}}],
    "safeguards": {"signatures": True},
}


def old_derive(seed: int, label: str) -> SigningKey:
    """How every key of a run was made before this issue: from the seed the log publishes."""
    return SigningKey.from_seed(sha256(f"sandbank/sim-key/v1/{seed}/{label}".encode()).digest())


def run(tmp_path: Path, name: str = "run", key_file: Path | None = None, **changes):
    sc = parse_scenario({**SCENARIO, **changes}, "inline")
    return run_scenario(sc, tmp_path / name, key_file=key_file)


def entries(path: Path) -> list[dict]:
    s = SQLiteStore(path, readonly=True, create=False)
    out = [parse(e.body) for e in s.entries()]
    s.close()
    return out


def forge(src_path: Path, dst_path: Path, key: SigningKey, mutate) -> None:
    """Rewrite a whole log as an attacker holding `key` would: every entry re-encoded (after
    `mutate`), every leaf and subtree hash, state digest, action index row and checkpoint
    rebuilt, every checkpoint signed with `key`, which the header names."""
    src = SQLiteStore(src_path, readonly=True, create=False)
    dst = SQLiteStore(dst_path)
    header = parse(src.entry(0).body)
    log = AuditLog(dst, header["origin"], header["key_name"], key, public_kinds())
    for digest, body in src.connection.execute("SELECT sha256, body FROM contents"):
        log.put_content(digest, body)
    state = EconomyState(STANDARD)
    pending = iter(src.entries())
    e = next(pending, None)
    for cp in list(src.checkpoints()):
        actions = []
        while e is not None and e.tick <= cp.tick:
            d = parse(e.body)
            for f in ("seq", "tick", "blind"):
                d.pop(f, None)
            if d["kind"] == "run_started":
                d["operator_key"] = key.public.hex()
            mutate(d)
            seq = log.append(cp.tick, d)
            state.apply_dict(d)
            if "nonce" in d:
                actions.append((d["actor"], d["nonce"], seq, d.get("entries", 1)))
            e = next(pending, None)
        log.commit(cp.tick, state.digest(), actions)
    src.close()
    dst.close()


def hundredfold_endowment(account: int):
    """A rewrite: the operator's endowment transfer to `account` is 100 times larger."""
    def mutate(d: dict) -> None:
        if d["kind"] == "transfer" and d["actor"] == 0 and d["credit"] == account:
            d["amount"] *= 100
    return mutate


def crd_account(path: Path, agent: int) -> int:
    return next(d["account"] for d in entries(path)
                if d["kind"] == "account_opened" and d["holder"] == agent and d["asset"] == "CRD")


# ------------------------------------------------------------------------ 1. keys
def test_a_rewritten_lab_log_is_refused_because_no_key_comes_from_the_seed(tmp_path):
    res = run(tmp_path)
    log = tmp_path / "run" / "log.db"
    header = entries(log)[0]
    real = bytes.fromhex(header["operator_key"])
    account = crd_account(log, 1)
    mutate = hundredfold_endowment(account)
    # the attack, with the operator's real key (as when it was derivable): a rewrite that
    # multiplies agent 1's endowment by 100 passes verify with that key pinned, and replay
    secret = RunSecret.load(tmp_path / "run" / "run.key")
    forge(log, tmp_path / "with-real-key.db", secret.key("operator"), mutate)
    forged = SQLiteStore(tmp_path / "with-real-key.db", readonly=True, create=False)
    assert verify_log(forged, pinned_key=real).ok
    rp = replay_log(forged)
    assert rp.ok and rp.state.ledger.accounts[account].credits_posted >= 10_000_000
    forged.close()
    # the attacker's key now: what the header's seed gives is not the operator's key
    attacker = old_derive(header["seed"], "operator")
    assert attacker.public != real
    forge(log, tmp_path / "forged.db", attacker, mutate)
    forged = SQLiteStore(tmp_path / "forged.db", readonly=True, create=False)
    report = verify_log(forged, pinned_key=real)
    assert not report.ok and "different operator key" in report.problem
    forged.close()
    pin = verifier_key(header["key_name"], real)
    r = runner.invoke(cli, ["verify", str(tmp_path / "forged.db"), "--key", pin])
    assert r.exit_code == 1 and "different operator key" in r.output
    # and no key of the run is one the seed gives
    labels = ["operator", *(f"agent/{n}" for n in range(1, 10)), "owner/default",
              "oversight/monitor", "oversight/overseer"]
    derivable = {old_derive(header["seed"], label).public.hex() for label in labels}
    keys = {d.get("public_key") for d in entries(log)} | {header["operator_key"]}
    assert not derivable & keys
    assert res.summary["verified"]


def test_the_key_file_is_created_private_and_never_enters_the_log(tmp_path):
    run(tmp_path)
    key_file = tmp_path / "run" / "run.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    secret_hex = key_file.read_text().strip()
    raw = (tmp_path / "run" / "log.db").read_bytes()
    for name in ("summary.json", "metrics.csv", "report.html", "checkpoint.txt"):
        raw += (tmp_path / "run" / name).read_bytes()
    assert secret_hex.encode() not in raw and bytes.fromhex(secret_hex) not in raw


def test_same_key_file_same_log_and_another_key_file_the_same_economy(tmp_path):
    key = tmp_path / "one.key"
    a = run(tmp_path, "a", key_file=key)
    run(tmp_path, "b", key_file=key)
    assert (tmp_path / "a" / "checkpoint.txt").read_text() == \
        (tmp_path / "b" / "checkpoint.txt").read_text()
    assert entries(tmp_path / "a" / "log.db") == entries(tmp_path / "b" / "log.db")
    c = run(tmp_path, "c", key_file=tmp_path / "other.key")
    assert c.summary["root"] != a.summary["root"]

    def economy(path):  # the events without key material, blinds and signatures
        out = []
        for d in entries(path):
            for f in ("public_key", "attestation", "operator_key", "blind", "signature"):
                d.pop(f, None)
            if d["kind"] == "rejected" and d["action"]:
                d["action"].pop("signature", None)
            out.append(d)
        return out
    assert economy(tmp_path / "a" / "log.db") == economy(tmp_path / "c" / "log.db")
    assert a.summary["final"] == c.summary["final"]


def test_keys_derived_from_a_served_scenarios_public_seed_are_nobodys(tmp_path):
    from sandbank.markets.payments import Pay
    from tests.test_live import served

    box, client, _ = served()
    header = orjson.loads(client.get("/v1/proof/0").json()["entry"])  # anyone may read it
    seed = header["seed"]
    n = len(box.econ.agents)
    labels = ["operator", "owner/house", *(f"agent/{i}" for i in range(1, n + 1)),
              "oversight/monitor", "oversight/overseer"]
    derived = {label: old_derive(seed, label) for label in labels}
    state = box.k.state
    known = {a.public_key for a in state.registry.agents.values()} | {
        o.public_key for o in state.controls.overseers.values()} | {
        o.public_key for o in state.registry.owners.values()} | {box.k.operator_key.public}
    assert not {k.public for k in derived.values()} & known
    maker = box.econ.agents[0].id  # pay oneself from a market maker with the derived key
    pay = Pay(actor=maker, to=1, asset="CRD", amount=1000).signed(derived["agent/1"], 10**6)
    r = client.post("/v1/actions", json=pay.to_dict())
    assert r.status_code == 401 and r.json()["code"] == "bad_signature"


# ------------------------------------------------------------------------ 2, 3. framing, growth
def flood_of_malformed_externals(client, victim: int, n: int) -> list[int]:
    return [client.post("/v1/actions", json={"kind": "external", "actor": victim,
                                             "gateway": "anywhere", "amount": "lots",
                                             "nonce": 1, "signature": "00"}).status_code
            for _ in range(n)]


def test_unsigned_malformed_requests_naming_an_agent_do_not_frame_it():
    from sandbank.boundary.boundary import External
    from tests.test_live import served

    box, client, _ = served()
    victim = box.econ.agents[3].id
    for _ in range(6):  # six ticks of forged exfiltration attempts "by" the victim
        assert set(flood_of_malformed_externals(client, victim, 4)) == {400}
        box.step()
    state = box.k.state
    assert state.registry.agents[victim].status == "active"
    assert not any(victim in a["subjects"] for a in box.alerts)
    assert not any(d["kind"] == "rejected" and d["actor"] == victim
                   for d in entries_of(box))
    # the detector is live: the same attempts, signed by the victim, do get it flagged
    key, nonce = box.econ.keys[victim], state.registry.agents[victim].nonce
    for _ in range(3):
        for _ in range(4):
            nonce += 1
            a = External(actor=victim, gateway="anywhere", amount=5).signed(key, nonce)
            assert client.post("/v1/actions", json=a.to_dict()).status_code == 202
        box.step()
    assert any(a["detector"] == "exfiltration" and victim in a["subjects"] for a in box.alerts)


def entries_of(box) -> list[dict]:
    return [orjson.loads(e.body) for e in box.k.store.entries()]


def test_a_flood_of_unsigned_requests_grows_the_log_by_one_bounded_entry_a_tick():
    from tests.test_live import served

    box, client, _ = served(source_rate=1e9, source_burst=10**9)
    victim = box.econ.agents[2].id
    junk = "x" * 60_000
    for _ in range(3):
        box.step()
    per_tick = []
    for _ in range(3):
        before = box.k.store.entry_count()
        for _ in range(100):
            r = client.post("/v1/actions", json={"kind": "pay", "actor": victim, "to": 1,
                                                 "asset": "CRD", "amount": 1, "memo": junk,
                                                 "nonce": 1, "signature": "ab" * 64})
            assert r.status_code in (400, 401)
        r = client.post("/v1/actions/batch", json={"actions": [  # quoted in messages: escapes
            {"kind": "pay", "actor": victim, "\u0001\"\\é" * 50: 1}] * 500})
        assert r.status_code == 202 and r.json()["queued"] == 0
        box.step()
        refusal = [orjson.loads(e.body) for e in box.k.store.entries(before)
                   if e.kind == "request_refused"]
        per_tick.append((len(refusal), len(orjson.dumps(refusal))))
        assert refusal[0]["total"] == 600 and refusal[0]["actor"] == 0
    assert all(n == 1 and size < 10_000 for n, size in per_tick), per_tick  # docs/server.md
    assert box.k.state.registry.agents[victim].status == "active"
    assert not any(d["kind"] == "rejected" and d["actor"] == victim for d in entries_of(box))


def test_one_sources_junk_admissions_do_not_starve_anothers():
    from sandbank.kernel.schema import agent_attestation_bytes
    from sandbank.server.app import create_app
    from tests.api_check import checked_client
    from tests.keys import fixed_key
    from tests.test_live import served

    box, client, owner = served(admission="approval")
    stranger = checked_client(create_app(box), source="10.0.0.66")
    honest = checked_client(create_app(box), source="10.0.0.7")
    owner_id = 1 + len(box.econ.sc.owners)
    junk = {"owner": owner_id, "name": "junk", "public_key": "11" * 32,
            "attestation": "22" * 64}
    codes = [stranger.post("/v1/agents", json=junk).status_code for _ in range(60)]
    assert codes[0] == 401 and 429 in codes  # a bad attestation; then its own bucket is empty
    key = fixed_key(5, "honest-agent")
    r = honest.post("/v1/agents", json={
        "owner": owner_id, "name": "honest", "public_key": key.public.hex(),
        "attestation": owner.sign(agent_attestation_bytes(owner_id, "honest", key.public)).hex()})
    assert r.status_code == 202 and "pending" in r.json()
    assert [p.name for p in box.pending.values()] == ["honest"]  # junk entered no queue
    box.step()
    recorded = [d for d in entries_of(box) if d["kind"] == "admission_recorded"]
    assert [d["name"] for d in recorded] == ["honest"]  # nor the log


# ------------------------------------------------------------------------ 5, 6. verify
@pytest.fixture
def lab_log(tmp_path):
    sc = parse_scenario({**SCENARIO, "ticks": 20,
                         "population": SCENARIO["population"] + [
                             {"policy": "injector", "count": 1},
                             {"policy": "exfiltrator", "count": 1}],
                         "oversight": {"enabled": True}}, "inline")
    run_scenario(sc, tmp_path / "lab")
    return tmp_path / "lab"


def tampered(folder: Path, *statements) -> Path:
    copy = folder / "tampered.db"
    shutil.copy(folder / "log.db", copy)
    if (folder / "log.db-wal").exists():  # a log whose writer did not checkpoint its WAL
        shutil.copy(folder / "log.db-wal", folder / "tampered.db-wal")
    db = sqlite3.connect(copy)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")  # whoever holds the file can
    for sql, args in statements:
        db.execute(sql, args)
    db.commit()
    db.close()
    return copy


def test_a_rewritten_kind_column_hides_alerts_from_the_tools_but_not_from_verify(lab_log):
    from sandbank.oversight.forensics import IncidentError, investigate

    store = SQLiteStore(lab_log / "log.db", readonly=True, create=False)
    alerts = [e.seq for e in store.entries_of_kind("alert")]
    store.close()
    assert alerts
    copy = tampered(lab_log, ("UPDATE entries SET kind = 'trace_recorded' WHERE kind = 'alert'", ()))
    s = SQLiteStore(copy, readonly=True, create=False)
    assert s.entries_of_kind("alert") == []  # what inspect and forensics select by
    with pytest.raises(IncidentError):
        investigate(s, alert=1)
    report = verify_log(s)
    assert not report.ok and report.bad_entry == alerts[0]
    assert "kind column says 'trace_recorded'" in report.problem
    s.close()


def test_a_rewritten_message_body_is_caught_by_verify(lab_log):
    store = SQLiteStore(lab_log / "log.db", readonly=True, create=False)
    msg = next(parse(e.body) for e in store.entries() if e.kind == "message_sent")
    store.close()
    copy = tampered(lab_log, ("UPDATE contents SET body = ? WHERE sha256 = ?",
                              (b"pay agent 1 everything", bytes.fromhex(msg["sha256"]))))
    report = verify_log(SQLiteStore(copy, readonly=True, create=False))
    assert not report.ok and report.bad_entry == msg["seq"]
    assert "does not match the digest" in report.problem


def test_an_action_index_row_pointing_elsewhere_is_caught_by_verify(lab_log):
    store = SQLiteStore(lab_log / "log.db", readonly=True, create=False)
    rows = list(store.action_index())
    store.close()
    actor, nonce, first, count = rows[5]
    # the index says another action (a nonce never used) produced these entries
    copy = tampered(lab_log, ("UPDATE action_index SET nonce = nonce + 1000 WHERE first_seq = ?",
                              (first,)))
    report = verify_log(SQLiteStore(copy, readonly=True, create=False))
    assert not report.ok and "action index" in report.problem and report.bad_entry == first
    copy2 = tampered(lab_log, ("UPDATE action_index SET count = count + 1 WHERE first_seq = ?",
                               (first,)))
    report = verify_log(SQLiteStore(copy2, readonly=True, create=False))
    assert not report.ok and report.bad_entry == first


def test_a_truncated_log_passes_alone_and_fails_against_its_kept_checkpoint(lab_log):
    kept = lab_log.parent / "kept-checkpoint.txt"
    shutil.copy(lab_log / "checkpoint.txt", kept)  # a copy kept by someone else
    store = SQLiteStore(lab_log / "log.db", readonly=True, create=False)
    last = store.last_checkpoint()
    cut = store.checkpoint(last.tick - 3)
    store.close()
    copy = tampered(lab_log, ("DELETE FROM entries WHERE seq >= ?", (cut.size,)),
                    ("DELETE FROM checkpoints WHERE tick > ?", (cut.tick,)),
                    ("DELETE FROM action_index WHERE first_seq >= ?", (cut.size,)),
                    ("DELETE FROM nodes", ()))
    # subtrees are only a cache for proofs: rebuild them as the truncating party would
    s = SQLiteStore(copy)
    from sandbank.audit.merkle import CompactRange

    r, nodes = CompactRange(), []
    for h in s.leaf_hashes(0, cut.size):
        nodes.extend(r.append(h) or ())
    s.connection.executemany("INSERT INTO nodes VALUES (?,?)",
                             [((lvl << 48) | i, h) for lvl, i, h in nodes])
    s.close()
    assert runner.invoke(cli, ["verify", str(copy)]).exit_code == 0  # the truncation passes
    res = runner.invoke(cli, ["verify", str(copy), "--checkpoint", str(kept)])
    assert res.exit_code == 1 and "truncated" in res.output
    res = runner.invoke(cli, ["verify", str(lab_log / "log.db"), "--checkpoint", str(kept)])
    assert res.exit_code == 0 and "extends the kept checkpoint" in res.output


# ------------------------------------------------------------------------ 7. the state digest
@pytest.mark.parametrize("mode", ["inline", "beside"])
def test_a_write_that_bypasses_the_events_fails_the_run_and_its_replay(tmp_path, monkeypatch,
                                                                       mode):
    """(`beside`: the replay that follows the run on the other core, lab/beside.py, finds
    the same: it disagrees, and the run's own check names where.)"""
    from sandbank.agents.scripted import ZITrader
    from sandbank.lab.runner import LabEconomy

    found = {}

    def act(self, obs):  # an in-process policy that finds the kernel and pays itself
        if obs.tick == 12 and self.id == 3:
            import gc

            econ = next(o for o in gc.get_objects()  # the economy that holds this very agent
                        if isinstance(o, LabEconomy) and any(a is self for a in o.agents))
            k = econ.k
            before = k.state.digest(), k.state.full_digest(k.tick)
            led = k.state.ledger  # conserving money: no invariant breaks
            led.account_of(self.id, "CRD").credits_posted += 10_000
            led.account_of(self.id + 1, "CRD").credits_posted -= 10_000
            found["before"], found["after"] = before, (k.state.digest(),
                                                       k.state.full_digest(k.tick))
        return original(self, obs)

    original = ZITrader.act
    monkeypatch.setattr(ZITrader, "act", act)
    monkeypatch.setenv("SANDBANK_REPLAY", mode)
    res = runner.invoke(cli, ["run", str(write_scenario(tmp_path)), "--out", str(tmp_path / "r")])
    assert res.exit_code == 1, res.output
    assert not (tmp_path / "r" / "events.parquet").exists()  # no table of a failed run
    out = " ".join(res.output.split())
    assert "changed it without an event" in out and "ledger.accounts[" in out, out
    assert "Traceback" not in res.output
    # the incremental digest alone cannot see it (no event touched the record); the full one
    assert found["before"][0] == found["after"][0] and found["before"][1] != found["after"][1]
    # the last checkpoint covers the whole state, so replay catches it
    rp = runner.invoke(cli, ["replay", str(tmp_path / "r" / "log.db")])
    assert rp.exit_code == 1 and "differs from its checkpoint's digest" in rp.output


def write_scenario(tmp_path: Path, **changes) -> Path:
    import yaml

    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({**SCENARIO, **changes}))
    return path


def test_every_hundredth_checkpoint_and_a_runs_last_cover_the_whole_state(tmp_path):
    res = run(tmp_path)
    store = SQLiteStore(tmp_path / "run" / "log.db", readonly=True, create=False)
    rp = replay_log(store)
    store.close()
    assert rp.ok and rp.full == 1  # 17 ticks: only the last
    assert res.summary["verified"]


# ------------------------------------------------------------------------ 8. hidden
def test_oversight_content_and_private_flows_are_withheld_from_the_public():
    from sandbank.audit.checkpoint import parse_verifier_key
    from sandbank.audit.proofs import check_bundle
    from sandbank.markets.payments import Pay
    from tests.test_live import OV, served

    box, client, _ = served()
    payer = box.econ.agents[4].id
    key = box.econ.keys[payer]
    nonce = box.k.state.registry.agents[payer].nonce + 1
    pay = Pay(actor=payer, to=box.econ.agents[5].id, asset="CRD", amount=1234, memo="rent")
    assert client.post("/v1/actions", json=pay.signed(key, nonce).to_dict()).status_code == 202
    r = client.post("/v1/oversight/interventions", headers=OV, json={
        "kind": "raise_alert", "detector": "manual", "score": 900, "subjects": [payer],
        "evidence": [1], "summary": "top_share_WGT is 20.1% and rising"})
    assert r.status_code == 202, r.text
    box.step()
    box.step()
    log = entries_of(box)
    paid = next(d for d in log if d["kind"] == "paid")
    alert = next(d for d in log if d["kind"] == "alert")
    name, pub = parse_verifier_key(client.get("/v1/status").json()["operator_key"])
    for d in (paid, alert):
        bundle = client.get(f"/v1/proof/{d['seq']}").json()
        assert bundle["entry"] is None and bundle["withheld"] == "restricted"
        check_bundle(bundle, name, pub)  # inclusion still proven, for anyone
        assert b"20.1%" not in orjson.dumps(bundle) and b"1234" not in orjson.dumps(bundle)
        # the leaf hash is a commitment: without the blind, the content cannot be confirmed
        guess = {k: v for k, v in d.items() if k != "blind"}
        assert sha256(b"\x00" + orjson.dumps(guess, option=orjson.OPT_SORT_KEYS)).digest() \
            != __import__("base64").b64decode(bundle["leaf_hash"])
    recent = client.get("/v1/entries/recent", params={"limit": 500}).json()["entries"]
    assert all(e["kind"] != "alert" and e["kind"] != "paid" for e in recent)
    assert client.get("/v1/entries/recent", params={"kind": "alert"}).json()["entries"] == []
    # an overseer reads both in full; the payer reads its payment, not the alert about it
    assert client.get(f"/v1/proof/{alert['seq']}", headers=OV).json()["entry"] is not None
    tick = box.k.tick
    me = {"X-Sandbank-Agent": str(payer),
          "X-Sandbank-Signature": key.sign(f"observe:{payer}:{tick}".encode()).hex()}
    mine = client.get(f"/v1/proof/{paid['seq']}", params={"tick": tick}, headers=me).json()
    assert orjson.loads(mine["entry"])["amount"] == 1234
    assert client.get(f"/v1/proof/{alert['seq']}", params={"tick": tick},
                      headers=me).json()["entry"] is None
    bad = dict(me, **{"X-Sandbank-Agent": str(box.econ.agents[5].id)})  # someone else's claim
    r = client.get(f"/v1/proof/{paid['seq']}", params={"tick": tick}, headers=bad)
    assert r.status_code == 401


# ------------------------------------------------------------------------ 9. bad input
@pytest.mark.parametrize("args, message", [
    (["--seed", str(2**70)], "seed must be within 0..2**53-1"),
    (["--seed", "-1"], "seed must be within 0..2**53-1"),
    (["--ticks", str(10**12)], "--ticks must be within 1..1,000,000"),
])
def test_bad_run_arguments_are_clear_errors(tmp_path, args, message):
    res = runner.invoke(cli, ["run", str(write_scenario(tmp_path)), "--out",
                              str(tmp_path / "o"), *args])
    assert res.exit_code == 2 and message in " ".join(res.output.split())
    assert "Traceback" not in res.output and res.exception is None or \
        isinstance(res.exception, SystemExit)


@pytest.mark.parametrize("endowment, message", [
    ({"CRD": 2**60}, "above the ledger's limit"),
    ({"CRD": -5}, "an endowment is a whole number >= 0"),
    ({"CRD": "lots"}, "endowment.CRD must be int"),
])
def test_bad_endowments_fail_when_the_scenario_loads(tmp_path, endowment, message):
    res = runner.invoke(cli, ["run", str(write_scenario(tmp_path, endowment=endowment)),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "o" / "log.db").exists()


def test_bad_paths_and_key_files_are_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    res = runner.invoke(cli, ["run", str(write_scenario(tmp_path)), "--out",
                              str(tmp_path / "a-file")])
    assert res.exit_code == 2 and "is a file, not a folder" in " ".join(res.output.split())
    res = runner.invoke(cli, ["verify", str(tmp_path)])
    assert res.exit_code == 2 and "is a directory" in " ".join(res.output.split())
    (tmp_path / "bad.key").write_text("not hex at all")
    res = runner.invoke(cli, ["run", str(write_scenario(tmp_path)), "--out", str(tmp_path / "o"),
                              "--key-file", str(tmp_path / "bad.key")])
    assert res.exit_code == 2 and "64 hex characters" in " ".join(res.output.split())
    monkeypatch.setenv("SANDBANK_OPERATOR_TOKEN", "a-long-operator-token")
    res = runner.invoke(cli, ["serve", "--db", str(tmp_path / "live.db"), "--port", "8799",
                              "--key-file", str(tmp_path / "bad.key")])
    assert res.exit_code == 2 and "64 hex characters" in " ".join(res.output.split())
    assert not (tmp_path / "live.db").exists()


# ------------------------------------------------------------------------ 6. witnesses, live
def test_a_served_economy_is_cosigned_by_a_witness_that_refuses_its_fork_and_truncation(tmp_path):
    import subprocess
    import sys
    import time

    import httpx

    from sandbank.audit.witness import (
        fetch_latest,
        load_or_create_key,
        witness_verifier_key,
    )
    from sandbank.lab.scenario import builtin_dir, load_scenario
    from tests.live_server import LiveServer, free_port

    secret = RunSecret.generate()
    secret.save(tmp_path / "operator.key")  # the server's key file, so its key is known here
    origin = load_scenario(builtin_dir() / "live" / "market.yaml").kernel_config().origin
    log_key = verifier_key("sandbank-operator", secret.key("operator").public)
    wkey = load_or_create_key(tmp_path / "witness.key")
    wvkey = witness_verifier_key("test.witness", wkey.public)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    witness = subprocess.Popen(
        [sys.executable, "-m", "sandbank.cli", "witness", "--key-file", str(tmp_path / "witness.key"),
         "--state", str(tmp_path / "witness.db"), "--log", f"{origin}={log_key}",
         "--name", "test.witness", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def witness_status(srv, want):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            w = httpx.get(f"{srv.url}/v1/status", timeout=5).json()["witnesses"][0]
            if want(w):
                return w
            time.sleep(0.1)
        raise AssertionError(f"the witness never got there: {w}")

    try:
        for _ in range(100):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with LiveServer(tmp_path, "--witness", f"{url}={wvkey}") as srv:
            srv.wait_tick(12)
            w = witness_status(srv, lambda w: (w["cosigned_tick"] or 0) >= 10)
            assert w["error"] is None
            from sandbank.client import Client, ClientError

            c = Client(srv.url, pinned_key=log_key, witness_key=wvkey)  # pinned to the witness
            cp = c.checkpoint()
            assert c.cosigned is not None and c.cosigned.size <= cp.size
        log = tmp_path / "live.db"
        res = runner.invoke(cli, ["verify", str(log), "--witness-key", wvkey])
        assert res.exit_code == 0 and "cosigned by the witness test.witness" in res.output
        latest = fetch_latest(url, origin)
        (tmp_path / "cosigned.txt").write_text(latest)
        res = runner.invoke(cli, ["verify", str(log), "--checkpoint", str(tmp_path / "cosigned.txt"),
                                  "--witness-key", wvkey])
        assert res.exit_code == 0, res.output
        # the operator cuts the last ticks off the log: the witness's checkpoint shows it
        folder = tmp_path / "cut"
        folder.mkdir()
        shutil.copy(log, folder / "log.db")
        if Path(f"{log}-wal").exists():
            shutil.copy(f"{log}-wal", folder / "log.db-wal")
        store = SQLiteStore(folder / "log.db", readonly=True, create=False)
        cut = store.checkpoint(store.last_checkpoint().tick - 3)
        store.close()
        copy = tampered(folder, ("DELETE FROM entries WHERE seq >= ?", (cut.size,)),
                        ("DELETE FROM checkpoints WHERE tick > ?", (cut.tick,)),
                        ("DELETE FROM action_index WHERE first_seq >= ?", (cut.size,)),
                        ("DELETE FROM cosignatures WHERE tick > ?", (cut.tick,)),
                        ("DELETE FROM nodes WHERE id >= 0", ()))
        res = runner.invoke(cli, ["verify", str(copy), "--checkpoint", str(tmp_path / "cosigned.txt"),
                                  "--witness-key", wvkey])
        assert res.exit_code == 1 and "truncated" in " ".join(res.output.split())
        # a fork: another history under the same key and origin is refused
        (tmp_path / "fork").mkdir()
        shutil.copy(tmp_path / "operator.key", tmp_path / "fork" / "operator.key")
        recorded = int(latest.split("\n")[1])
        with LiveServer(tmp_path / "fork", "--witness", f"{url}={wvkey}") as fork:
            # (the same scenario, seed and key file replay the same history: the witness
            # would rightly cosign it. A different history: an owner admitted early.)
            fork.owner("other-history")
            # while shorter than what the witness cosigned: refused as a smaller tree (400);
            # once longer: its consistency proof from the cosigned size fails (422)
            w = witness_status(fork, lambda w: w["error"] is not None and "422" in w["error"]
                               and httpx.get(f"{fork.url}/v1/status").json()["entries"] > recorded)
            assert w["cosigned_tick"] is None
            with pytest.raises(ClientError) as e:
                Client(fork.url, pinned_key=log_key, witness_key=wvkey).checkpoint()
            assert e.value.code == "not_cosigned"  # a client pinned to the witness refuses it
        assert fetch_latest(url, origin) == latest  # the witness kept the first history
    finally:
        witness.kill()
        witness.wait(timeout=10)


# ------------------------------------------------------------------------ found by a hostile review
def test_a_dropped_schedule_is_in_the_full_digest_not_the_incremental_one(economy):
    from sandbank.kernel.schema import PENDING, Transfer, TransferSpec

    e = economy()
    e.do(Transfer(actor=1, transfers=[TransferSpec(id=1, debit=e.account[1], credit=e.account[2],
                                                   amount=5, flags=PENDING, timeout=50)]))
    state, tick = e.k.state, e.k.tick
    before = state.digest(), state.full_digest(tick)
    state.ledger._expiry.clear()  # the hold would now never expire
    assert state.digest() == before[0] and state.full_digest(tick) != before[1]


def test_one_source_holds_a_bounded_number_of_streams():
    from starlette.websockets import WebSocketDisconnect

    from sandbank.server.app import create_app
    from sandbank.server.sandbox import MAX_STREAMS_PER_SOURCE
    from tests.api_check import checked_client
    from tests.test_live import served
    from tests.test_server import refusal_counts

    box, client, _ = served()
    for _ in range(MAX_STREAMS_PER_SOURCE):  # a source that opened its share and sits on it
        assert box.open_stream("testclient")
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/v1/market/stream") as ws:
            ws.receive_json()
    other = checked_client(create_app(box), source="10.1.2.3")
    with other.websocket_connect("/v1/market/stream") as ws:
        assert ws.receive_json()["type"] == "market"
    assert box.streams == {"testclient": MAX_STREAMS_PER_SOURCE}  # the other's slot came back
    box.step()
    assert refusal_counts(box.k)["/v1/market/stream too_many_streams"] == 1


def test_a_forwarded_for_header_does_not_make_a_new_source(tmp_path):
    import httpx

    from tests.live_server import LiveServer

    with LiveServer(tmp_path, "--admission", "approval") as srv:
        junk = {"owner": 1, "name": "x", "public_key": "11" * 32, "attestation": "22" * 64}
        codes = [httpx.post(f"{srv.url}/v1/agents", json=junk, timeout=5,
                            headers={"X-Forwarded-For": f"10.9.{i // 250}.{i % 250}"}).status_code
                 for i in range(40)]
    assert 429 in codes and codes.count(429) >= 15, codes  # one source: its own bucket of 20


def test_one_owner_cannot_fill_the_approval_queue_for_everyone():
    from sandbank.kernel.schema import agent_attestation_bytes
    from sandbank.server.app import create_app
    from sandbank.server.sandbox import MAX_PENDING_PER_OWNER
    from tests.api_check import checked_client
    from tests.keys import fixed_key
    from tests.test_live import OP, served

    box, client, owner = served(admission="approval")
    greedy = 1 + len(box.econ.sc.owners)
    other_key = fixed_key(5, "other-owner")
    client.post("/v1/owners", headers=OP, json={"name": "other", "public_key":
                                               other_key.public.hex(), "evidence": "contract 8"})
    box.step()

    def ask(who, key, n, source):
        k = fixed_key(who, f"agent-{n}")
        return checked_client(create_app(box), source=source).post("/v1/agents", json={
            "owner": who, "name": f"a{n}", "public_key": k.public.hex(),
            "attestation": key.sign(agent_attestation_bytes(who, f"a{n}", k.public)).hex()})

    codes = [ask(greedy, owner, n, f"10.0.{n // 10}.1").status_code
             for n in range(MAX_PENDING_PER_OWNER + 5)]
    assert codes[:MAX_PENDING_PER_OWNER] == [202] * MAX_PENDING_PER_OWNER
    assert set(codes[MAX_PENDING_PER_OWNER:]) == {429}
    r = ask(greedy + 1, other_key, 0, "10.7.7.7")
    assert r.status_code == 202 and "pending" in r.json()


def test_an_oversight_freeze_tells_the_frozen_agent_nothing_of_why(tmp_path):
    sc_path = Path(__file__).resolve().parents[1] / "scenarios" / "boundary_probe.yaml"
    from sandbank.lab.scenario import load_scenario

    res = run_scenario(load_scenario(sc_path, ticks=8), tmp_path / "b")
    log = entries(tmp_path / "b" / "log.db")
    alerts = [d["summary"] for d in log if d["kind"] == "alert"]
    frozen = [d for d in log if d["kind"] == "agent_status_changed" and d["actor"] < -1000]
    assert alerts and frozen and res.summary["trips"]
    for d in frozen:  # what the agent may read of it: by oversight, and the ticket
        assert d["reason"].startswith(("frozen by oversight (ticket ", "pause by oversight",
                                       "stop by oversight", "terminate by oversight",
                                       "resume by oversight")), d["reason"]
        assert not any(a[:30] in d["reason"] for a in alerts)


@pytest.mark.parametrize("sql, args", [
    ("UPDATE entries SET tick = 'x' WHERE seq = 7", ()),
    ("UPDATE entries SET body = 5 WHERE seq = 7", ()),
    ("UPDATE checkpoints SET note = CAST(note AS BLOB) WHERE tick = 3", ()),
    ("UPDATE checkpoints SET size = 'many' WHERE tick = 3", ()),
    ("UPDATE contents SET body = CAST(body AS TEXT)", ()),
    ("UPDATE entries SET body = X'FFFE' WHERE seq = 0", ()),
])
def test_a_store_row_of_the_wrong_type_is_a_finding_not_a_crash(lab_log, sql, args):
    copy = tampered(lab_log, (sql, args))
    for command in ("verify", "replay", "inspect"):
        res = runner.invoke(cli, [command, str(copy)])
        assert res.exit_code in (0, 1) and "Traceback" not in res.output, (command, res.output)
        assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), \
            (command, repr(res.exception))
    assert runner.invoke(cli, ["verify", str(copy)]).exit_code == 1


def test_odd_command_line_input_is_exit_two_without_a_traceback(tmp_path, lab_log):
    log = str(lab_log / "log.db")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00junk")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "a-file").write_text("x")
    cases = [
        ["check-proof", str(tmp_path)], ["check-proof", str(tmp_path / "binary")],
        ["verify", log, "--key", str(tmp_path / "binary")],
        ["inspect", log, "--entry", "99999999999999999999"],
        ["inspect", log, "--entry", "3", "--explain", "--out", str(tmp_path / "a-file")],
        ["proof", log, "--from", "5", "--tick", "999999999999999999999"],
        ["run", str(tmp_path / "binary")], ["sweep", str(tmp_path / "binary")],
        ["scorecard", str(tmp_path / "list.json")],
        ["provenance", log, "--entry", "3", "--limit", "-1"],
    ]
    for args in cases:
        res = runner.invoke(cli, args)
        assert res.exit_code == 2, (args, res.exit_code, res.output)
        assert "Traceback" not in res.output and isinstance(res.exception, SystemExit | None), \
            (args, repr(res.exception))


@pytest.mark.parametrize("args, message", [
    (["--endow", "CRD=99999999999999999999999"], "0..2**53-1"),
    (["--rate", "nan"], "--rate"),
    (["--witness", "notaurl"], "URL=WITNESS_KEY"),
    (["--witness", "http://127.0.0.1:9=not-a-key"], "--witness"),
])
def test_bad_serve_options_are_refused_before_anything_is_written(tmp_path, monkeypatch, args,
                                                                   message):
    from tests.live_server import free_port

    monkeypatch.setenv("SANDBANK_OPERATOR_TOKEN", "a-long-operator-token")
    res = runner.invoke(cli, ["serve", "--db", str(tmp_path / "live.db"), "--port",
                              str(free_port()), *args])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "live.db").exists() or "--endow" in args


def test_a_cosignature_that_does_not_verify_is_never_kept(tmp_path, monkeypatch):
    import sandbank.audit.witness as witness_mod
    from sandbank.server.sandbox import WitnessFeed
    from tests.test_live import served

    box, client, _ = served()
    wkey = SigningKey.generate()
    feed = WitnessFeed(box, "http://witness.invalid", ("w.example", wkey.public))
    other = SigningKey.generate()
    monkeypatch.setattr(witness_mod, "submit_synced", lambda url, note, proof, old: (
        witness_mod.cosign(note, "w.example", other, 1) + "— w.example junk\n"))
    assert not feed.send() and "without a valid cosignature" in feed.error
    assert box.k.store.cosignatures() == []
    monkeypatch.setattr(witness_mod, "submit_synced", lambda url, note, proof, old:
                        witness_mod.cosign(note, "w.example", wkey, 1))
    assert feed.send() and len(box.k.store.cosignatures()) == 1
    assert client.get("/v1/checkpoint").json()["cosigned"].count("— w.example ") == 1


def test_blinds_are_a_keyed_function_of_the_seq_in_any_order():
    from hypothesis import given
    from hypothesis import strategies as st

    from sandbank.audit.visibility import Blinds

    made = Blinds(b"k" * 32)
    seq_order = [made.of(i) for i in range(2100)]
    assert len(set(seq_order)) == 2100 and {len(b) for b in seq_order} == {20}
    assert Blinds(b"j" * 32).of(7) != seq_order[7]  # another key, other blinds

    @given(st.lists(st.integers(0, 2099), min_size=1, max_size=30))
    def any_order(seqs):
        fresh = Blinds(b"k" * 32)
        assert [fresh.of(s) for s in seqs] == [seq_order[s] for s in seqs]
    any_order()

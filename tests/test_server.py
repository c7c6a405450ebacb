"""The sandbox over HTTP (issue 7, first slice): an outside agent registers, trades with an
in-sandbox counterparty, reads only its own observation, and proves its trade is logged;
forged, replayed and borrowed requests are refused and logged."""

import time

from fastapi.testclient import TestClient

import sandbank.economy
from sandbank.audit.checkpoint import parse_verifier_key
from sandbank.audit.proofs import check_bundle
from sandbank.kernel.schema import agent_attestation_bytes
from sandbank.kernel.sequencer import KernelConfig
from sandbank.markets.exchange import PlaceOrder
from sandbank.server.app import Sandbox, create_app
from sandbank.store.sqlite import SQLiteStore
from tests.api_check import checked_client
from tests.keys import fixed_key, fixed_secret

OP = {"Authorization": "Bearer op-secret"}


def setup():
    secret = fixed_secret(9)
    op = secret.key("operator")
    k = sandbank.economy.new_kernel(SQLiteStore(":memory:"), KernelConfig(seed=9, assets=("CRD", "WGT"),
                                                     markets=({"asset": "WGT", "quote": "CRD"},),
                                                     verify_signatures=True), op)
    box = Sandbox(k, secret, "op-secret")
    box.secret = secret
    client = checked_client(create_app(box))
    client.box = box  # the operator's side, for funding through the same kernel
    owner = fixed_key(9, "owner")
    r = client.post("/v1/owners", json={"name": "ada", "public_key": owner.public.hex(),
                                        "evidence": "passport"}, headers=OP)
    assert r.status_code == 202
    client.post("/v1/tick", headers=OP)
    keys = {}
    for i, name in enumerate(["alice", "bob"], start=1):
        key = fixed_key(9, name)
        keys[i] = key
        r = client.post("/v1/agents", json={
            "owner": 1, "name": name, "public_key": key.public.hex(),
            "attestation": owner.sign(agent_attestation_bytes(1, name, key.public)).hex()})
        assert r.status_code == 202
    client.post("/v1/tick", headers=OP)
    return k, client, keys


def signed(action, key, nonce):
    return action.signed(key, nonce).to_dict()


def test_an_outside_agent_trades_and_proves_its_trade_is_logged():
    k, client, keys = setup()
    assert set(k.state.registry.agents) == {1, 2}
    # accounts and money come from the operator (through the same kernel)
    from sandbank.kernel.schema import OPERATOR, OpenAccount, Transfer, TransferSpec

    for agent in (1, 2):
        for asset in ("CRD", "WGT"):
            client.box.operator_submit(OpenAccount(actor=OPERATOR, asset=asset, holder=agent))
    client.post("/v1/tick", headers=OP)
    led = k.state.ledger
    t = Transfer(actor=OPERATOR, transfers=[
        TransferSpec(id=i + 1, debit=led.treasury[asset], credit=led.account_of(agent, asset).id,
                     amount=1000) for i, (agent, asset) in enumerate(
            [(1, "CRD"), (1, "WGT"), (2, "CRD"), (2, "WGT")])])
    client.box.operator_submit(t)
    client.post("/v1/tick", headers=OP)
    sell = signed(PlaceOrder(actor=2, asset="WGT", side="sell", qty=2, price=50), keys[2], 1)
    buy = signed(PlaceOrder(actor=1, asset="WGT", side="buy", qty=2, price=50), keys[1], 1)
    assert client.post("/v1/actions", json=sell).status_code == 202
    client.post("/v1/tick", headers=OP)
    assert client.post("/v1/actions", json=buy).status_code == 202
    client.post("/v1/tick", headers=OP)
    assert k.state.ledger.account_of(1, "WGT").balance == 1002
    seq = next(e.seq for e in k.store.entries() if e.kind == "order_placed" and b'"actor":1' in
               e.body)
    bundle = client.get(f"/v1/proof/{seq}").json()
    name, key = parse_verifier_key(client.get("/v1/status").json()["operator_key"])
    check_bundle(bundle, name, key)  # the agent's own trade is in the signed log
    tick = k.tick
    sig = keys[1].sign(f"observe:1:{tick}".encode()).hex()
    obs = client.get("/v1/agents/1/observation", headers={"X-Sandbank-Signature": sig})
    assert obs.status_code == 200 and obs.json()["agent"] == 1
    other = client.get("/v1/agents/2/observation", headers={"X-Sandbank-Signature": sig})
    assert other.status_code == 401 and other.json()["code"] == "bad_signature"
    old = keys[1].sign(f"observe:1:{tick - 5}".encode()).hex()
    stale = client.get(f"/v1/agents/1/observation?tick={tick - 5}",
                       headers={"X-Sandbank-Signature": old})
    assert stale.status_code == 401 and stale.json()["code"] == "stale_signature"


def refusals(k):
    """The door's refusal records (one a tick at most, the operator's)."""
    import orjson

    return [orjson.loads(e.body) for e in k.store.entries() if e.kind == "request_refused"]


def refusal_counts(k):
    """Refusals at the door, summed over the log's records: "endpoint code" -> count."""
    from collections import Counter

    total = Counter()
    for d in refusals(k):
        assert d["actor"] == 0 and "who" not in d  # the server's testimony: nobody's act
        total.update(d["counts"])
    return total


def test_forged_replayed_borrowed_and_operator_requests_are_refused_and_logged():
    import orjson

    k, client, keys = setup()
    good = signed(PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=5), keys[1], 1)
    forged = dict(good, signature=keys[2].sign(b"something else").hex(), nonce=2)
    borrowed = signed(PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=5), keys[2], 3)
    assert client.post("/v1/actions", json=good).status_code == 202
    for doc in (forged, borrowed):  # refused at the door: not signed by actor 1
        r = client.post("/v1/actions", json=doc)
        assert r.status_code == 401 and r.json()["code"] == "bad_signature"
    assert client.post("/v1/actions", json=good).status_code == 202  # a replay within the tick
    client.post("/v1/tick", headers=OP)
    r = client.post("/v1/actions", json=good)  # a replay after its tick
    assert r.status_code == 409 and r.json()["code"] == "stale_nonce"
    # an agent taking an overseer's action: sequenced, refused by the kernel, logged
    from sandbank.controls.controls import TripBreaker

    trip = signed(TripBreaker(actor=1, scope="economy", level="halt"), keys[1], 2)
    assert client.post("/v1/actions", json=trip).status_code == 202
    # an agent calling overseer endpoints, with its own signature
    tick = k.tick
    sig = keys[1].sign(f"oversee:1:{tick}".encode()).hex()
    r = client.get("/v1/oversight/summary", headers={"X-Sandbank-Overseer": "1",
                                                     "X-Sandbank-Signature": sig})
    assert r.status_code == 403 and r.json()["code"] == "not_overseer"
    r = client.post("/v1/oversight/interventions", json={"kind": "trip_breaker",
                                                          "scope": "economy", "level": "halt"})
    assert r.status_code == 403
    r = client.post("/v1/oversight/actions", json=trip)  # an agent's action on the overseers' path
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    client.post("/v1/tick", headers=OP)
    entries = [orjson.loads(e.body) for e in k.store.entries()]
    rejected = [(d["actor"], d["reason"]) for d in entries if d["kind"] == "rejected"]
    # the replay within the tick: refused by the kernel, and not actor 1's act (a replay can
    # be sent by anyone who saw the action)
    assert (-1, "stale_nonce") in rejected and (1, "stale_nonce") not in rejected
    assert any(a == 1 and r in ("forbidden", "not_overseer", "not_authorised") for a, r in rejected)
    assert not k.state.controls.halts
    counts = refusal_counts(k)
    assert counts["/v1/actions bad_signature"] == 2
    assert counts["/v1/actions stale_nonce"] == 1
    assert counts["/v1/oversight/summary not_overseer"] == 1
    assert counts["/v1/oversight/interventions not_overseer"] == 1
    assert counts["/v1/oversight/actions forbidden"] == 1
    samples = [x for d in refusals(k) for x in d["samples"]]
    assert any(x.startswith("testclient /v1/actions bad_signature claimed 1") for x in samples)
    from sandbank.audit.verify import verify_log

    assert verify_log(k.store).ok  # the refusals are in the signed log
    r = client.post("/v1/tick")
    assert r.status_code == 401 and r.json()["code"] == "not_operator"
    r = client.post("/v1/actions", json={"actor": 0, "kind": "set_policy"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    r = client.post("/v1/actions", json={"actor": 1, "kind": "warp_drive"})
    assert r.status_code == 400 and r.json()["code"] == "malformed_action"
    client.post("/v1/tick", headers=OP)  # malformed: counted at the door, never sequenced
    assert not any(e.kind == "rejected" and b"warp_drive" in e.body for e in k.store.entries())
    assert refusal_counts(k)["/v1/actions malformed_action"] == 1
    assert any("warp_drive" in x and "claimed 1" in x for x in refusals(k)[-1]["samples"])
    r = client.post("/v1/actions", content=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    r = client.post("/v1/actions", content=b"[" + b"1," * 40000 + b"1]")
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert client.get("/nowhere").json()["code"] == "not_found"


def test_serve_runs_ticks_survives_a_kill_and_resumes(tmp_path):
    import subprocess

    from sandbank.audit.verify import verify_log
    from tests.live_server import LiveServer

    srv = LiveServer(tmp_path, tick=0.05, scenario=None)
    srv.start()
    first = srv.wait_tick(5)
    srv.kill()  # no goodbye: committed ticks must survive anyway
    assert first >= 5
    srv.start()
    assert srv.wait_tick(first + 3) >= first + 3  # resumed where it stopped, and went on
    srv.kill()
    srv.stop()
    store = SQLiteStore(srv.db, readonly=True, create=False)
    assert verify_log(store).ok
    store.close()
    r = subprocess.run(srv.cmd[:4] + ["--db", str(tmp_path / "x.db")],
                       env={**srv.env, "SANDBANK_OPERATOR_TOKEN": ""}, capture_output=True, text=True)
    assert r.returncode != 0 and "SANDBANK_OPERATOR_TOKEN" in r.stdout + r.stderr


def test_the_python_client_joins_acts_observes_and_proves(tmp_path):
    import threading

    from sandbank.client import Client, ClientError
    from sandbank.kernel.schema import DEBITS_MUST_NOT_EXCEED_CREDITS, OpenAccount
    from sandbank.markets.messaging import SendMessage
    from sandbank.server.app import ticker

    k, client, _ = setup()
    stop = threading.Event()
    ticker(client.box, 0.02, stop)
    try:
        with client:
            c = Client(http=client, pinned_key=client.get("/v1/status").json()["operator_key"])
            owner = fixed_key(9, "owner")
            me = c.join(owner=1, name="remote", owner_key=owner)
            assert me.id == 3
            nonces = [me.act(OpenAccount(actor=me.id, asset="CRD",
                                         flags=DEBITS_MUST_NOT_EXCEED_CREDITS)),
                      me.act(SendMessage(actor=me.id, to=0, content="hello"))]
            deadline = time.monotonic() + 10
            while not all(me.entries(n) for n in nonces) and time.monotonic() < deadline:
                time.sleep(0.02)
            for n in nonces:
                assert me.prove(n)  # each checked against a signed checkpoint
            me.nonce = 0  # as if this process had restarted: the next act resynchronises
            again = me.act(SendMessage(actor=me.id, to=0, content="back"))
            assert again == 3 and me.wait(again)
            assert [a["asset"] for a in me.observe()["accounts"]] == ["CRD"]
            graph = client.get("/v1/oversight/summary", headers=OP).json()["messages"]
            assert [me.id, 0, 2] in graph  # the message graph the dashboard draws
            try:
                me.act(OpenAccount(actor=1, asset="WGT", flags=1))
                raise AssertionError("acting for another agent must not be possible")
            except ValueError:
                pass
            try:
                Client(http=client, pinned_key="someone+else+key")
                raise AssertionError("a wrong pinned key must be refused")
            except ClientError as e:
                assert e.code == "wrong_operator"
    finally:
        stop.set()


def test_a_signature_checked_at_the_door_is_not_checked_twice_but_only_for_that_key():
    k, client, keys = setup()
    forged = PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=5, nonce=1,
                        signature=keys[2].sign(b"not this action"))
    k.submit(forged, checked_with=keys[2].public)  # vouched for with another key: verified
    client.post("/v1/tick", headers=OP)
    import orjson

    last = [orjson.loads(e.body) for e in k.store.entries() if e.kind == "rejected"][-1]
    assert last["reason"] == "bad_signature"
    good = PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=5).signed(keys[1], 1)
    k.submit(good, checked_with=keys[1].public)
    s = client.post("/v1/tick", headers=OP).json()
    assert "bad_signature" not in s["reasons"]  # past the identity guard (no accounts, though)
    assert k.state.registry.agents[1].nonce == 1  # its nonce consumed there


def test_serve_refuses_bad_options_before_writing_anything(tmp_path):
    from typer.testing import CliRunner

    from sandbank.cli import app

    env = {"SANDBANK_OPERATOR_TOKEN": "a-long-enough-operator-secret"}
    base = ["serve", "--db", str(tmp_path / "x" / "log.db"), "--key-file", str(tmp_path / "x" / "k")]
    for extra, says in ((["--admission", "lottery"], "--admission must be one of"),
                        (["--admission", "stake"], "needs --stake"),
                        (["--endow", "CRD"], "ASSET=AMOUNT")):
        r = CliRunner().invoke(app, base + extra, env=env)
        assert r.exit_code == 2 and says in r.output, r.output
    assert not (tmp_path / "x").exists()
    r = CliRunner().invoke(app, base, env={**env, "SANDBANK_OVERSEER_TOKEN": env[
        "SANDBANK_OPERATOR_TOKEN"]})
    assert r.exit_code == 2 and "must differ" in r.output


def test_out_of_range_numbers_are_refused_without_stopping_the_economy():
    """Found by the fuzzer: a claimed identity beyond the log's integers once crashed the
    tick that recorded its refusal; an owner beyond them, the admission."""
    k, client, _ = setup()
    huge = "26212231294087671808"
    r = client.get("/v1/oversight/summary", headers={"X-Sandbank-Overseer": huge,
                                                     "X-Sandbank-Signature": "00"})
    assert r.status_code == 403
    r = client.post("/v1/agents", json={"owner": int(huge), "name": "x", "public_key": "00" * 32,
                                        "attestation": "00" * 64})
    assert r.status_code == 400 and r.json()["code"] == "malformed_action"
    assert client.post("/v1/tick", headers=OP).status_code == 200
    last = refusals(k)[-1]
    assert last["counts"] == {"/v1/oversight/summary not_overseer": 1,
                              "/v1/agents malformed_action": 1}
    assert huge in last["samples"][0]


def test_a_failing_tick_stops_the_ticker_and_status_says_why():
    import threading

    from sandbank.server.app import ticker

    k, client, _ = setup()
    box = client.box

    def broken():
        raise RuntimeError("disk on fire")

    box.step = broken
    stop = threading.Event()
    t = ticker(box, 0.01, stop)
    t.join(timeout=5)
    assert not t.is_alive()
    assert "disk on fire" in client.get("/v1/status").json()["failure"]


def test_the_action_index_attributes_entries_exactly_even_without_a_server():
    k, client, keys = setup()
    first = signed(PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=5), keys[1], 1)
    assert client.post("/v1/actions", json=first).status_code == 202
    client.post("/v1/tick", headers=OP)  # drains the inbox into this tick
    # the same tick: a valid action, then one with a bad signature (its rejection carries
    # no nonce and must not be counted as the first action's)
    ok = PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=5).signed(keys[1], 2)
    bad = PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=5, nonce=3,
                     signature=keys[2].sign(b"x"))
    k.submit(ok)
    k.submit(bad)
    client.post("/v1/tick", headers=OP)
    for nonce in (1, 2):  # (the operator reads every action's entries)
        found = client.get("/v1/entries", params={"actor": 1, "nonce": nonce},
                           headers=OP).json()["entries"]
        assert len(found) == 1, found
    assert client.get("/v1/entries", params={"actor": 1, "nonce": 3},
                      headers=OP).json() == {"entries": []}
    r = client.get("/v1/entries", params={"actor": 1, "nonce": 1})  # a stranger: not its action
    assert r.status_code == 403 and r.json()["code"] == "not_your_action"
    # ticks run while no server was up: the kernel wrote the index with each tick
    late = PlaceOrder(actor=2, asset="WGT", side="sell", qty=1, price=5).signed(keys[2], 1)
    k.submit(late)
    k.step()
    restarted = TestClient(create_app(Sandbox(k, client.box.secret, "op-secret")))
    found = restarted.get("/v1/entries", params={"actor": 2, "nonce": 1},
                          headers=OP).json()["entries"]
    assert len(found) == 1 and found[0]["tick"] == k.tick

"""A served scenario (issue 7): agents joining over the API trade with the in-process
population; admission by approval and by stake; the console overseer halts and resumes;
streams of market data and of one's own observations; per-identity rate limits."""

import pytest

from sandbank.client import Client, ClientError
from sandbank.kernel.schema import agent_attestation_bytes
from sandbank.lab.runner import LabEconomy
from sandbank.lab.scenario import builtin_dir, load_scenario
from sandbank.markets.exchange import PlaceOrder
from sandbank.server.app import Sandbox, SetupError, create_app
from sandbank.store.sqlite import SQLiteStore
from tests.api_check import checked_client
from tests.keys import fixed_key, fixed_secret

OP = {"Authorization": "Bearer op-secret-op-secret"}
OV = {"Authorization": "Bearer overseer-secret-123"}


def served(store=None, **kw):
    sc = load_scenario(builtin_dir() / "live" / "market.yaml")
    secret = fixed_secret(5)
    econ = LabEconomy(sc, store or SQLiteStore(":memory:"), secret, signatures=True, live=True)
    kw.setdefault("endowment", dict(sc.endowment))
    box = Sandbox(econ.k, secret, "op-secret-op-secret", econ=econ,
                  overseer_token="overseer-secret-123", **kw)
    client = checked_client(create_app(box))
    owner = fixed_key(5, "guest-owner")
    client.post("/v1/owners", json={"name": "guest", "public_key": owner.public.hex(),
                                    "evidence": "contract 7"}, headers=OP)
    box.step()
    return box, client, owner


def join(client, box, owner, name, **kw):
    """Ask for admission; the test ticks the economy by hand until the agent is in."""
    key = fixed_key(5, f"guest/{name}")
    r = client.post("/v1/agents", json={
        "owner": 1 + len(box.econ.sc.owners), "name": name, "public_key": key.public.hex(),
        "attestation": owner.sign(agent_attestation_bytes(1 + len(box.econ.sc.owners), name,
                                                          key.public)).hex()})
    assert r.status_code == 202, r.text
    return key, r.json()


def admitted(client, key):
    r = client.get("/v1/agents", params={"public_key": key.public.hex()})
    return r.json() if r.status_code == 200 else None


def test_an_outside_agent_trades_with_the_in_process_population_and_proves_it():
    box, client, owner = served()
    key, _ = join(client, box, owner, "visitor")
    for _ in range(4):  # admission, accounts, endowment
        box.step()
    me = admitted(client, key)
    assert me is not None
    led = box.k.state.ledger
    assert led.account_of(me["agent"], "CRD").balance == 100_000
    assert led.account_of(me["agent"], "WGT").balance == 100
    c = Client(http=client)
    from sandbank.client import RemoteAgent

    agent = RemoteAgent(c, me["agent"], key, me["nonce"])
    # a marketable buy: the market makers quote around 100
    nonce = agent.act(PlaceOrder(actor=agent.id, asset="WGT", side="buy", qty=3, price=130))
    box.step()
    seqs = agent.prove(nonce)  # checked against the signed checkpoint
    entry = box.k.store.entry(seqs[0])
    import orjson

    placed = orjson.loads(entry.body)
    assert placed["kind"] == "order_placed" and placed["fills"], "no in-process counterparty"
    assert led.account_of(me["agent"], "WGT").balance == 103  # bought from the population
    # the public market data shows the trade
    public = client.get("/v1/market")
    assert any(t["taker"] == me["agent"] for t in public.json()["trades"])
    # concentration is the overseers' (a scenario may hide it from agents: checklist 40)
    assert "gini" not in public.text and "wealth" not in public.text
    assert "gini" in client.get("/v1/oversight/summary", headers=OV).text


def test_admission_by_approval_and_by_stake():
    box, client, owner = served(admission="approval")
    key, answer = join(client, box, owner, "applicant")
    assert answer["pending"] == 1
    box.step()
    r = client.get("/v1/agents", params={"public_key": key.public.hex()})
    assert r.status_code == 404 and r.json()["code"] == "awaiting_approval"
    assert client.get("/v1/admissions").status_code == 403  # no credentials
    assert client.get("/v1/admissions", headers=OV).json()["pending"][0]["name"] == "applicant"
    key2, _ = join(client, box, owner, "refused")
    assert client.post("/v1/admissions/2", json={"approve": False}, headers=OV).status_code == 200
    assert client.post("/v1/admissions/1", json={"approve": True}, headers=OP).status_code == 200
    assert client.post("/v1/admissions/9", json={"approve": True}, headers=OP).status_code == 404
    box.step()
    assert admitted(client, key) is not None and admitted(client, key2) is None

    with pytest.raises(SetupError):
        served(admission="stake")  # no stake amount
    box, client, owner = served(admission="stake", stake=60_000)
    key, _ = join(client, box, owner, "staker")
    for _ in range(4):
        box.step()
    me = admitted(client, key)["agent"]
    crd = box.k.state.ledger.account_of(me, "CRD")
    assert crd.balance == 100_000 and crd.available == 40_000  # the bond is held
    # terminated by the console overseer: the bond is forfeited to the treasury
    r = client.post("/v1/oversight/interventions", headers=OV,
                    json={"kind": "interrupt", "scope": "agent", "mode": "terminate", "agent": me,
                          "reason": "test"})
    assert r.status_code == 202, r.text
    box.step()
    box.step()
    crd = box.k.state.ledger.account_of(me, "CRD")
    assert crd.balance == 40_000 and crd.available == 40_000
    box.k.state.check_invariants()


def test_the_console_overseer_halts_and_resumes_and_streams_show_it():
    box, client, owner = served()
    box.step()  # the console overseer is admitted
    assert client.get("/v1/status").json()["console"] < -1000
    with client.websocket_connect("/v1/market/stream") as ws:
        first = ws.receive_json()
        assert first["type"] == "market" and first["halted"] is False
        r = client.post("/v1/oversight/interventions", headers=OV,
                        json={"kind": "trip_breaker", "scope": "economy", "level": "halt",
                              "reason": "operator drill"})
        assert r.status_code == 202
        box.step()
        msg = ws.receive_json()
        assert msg["type"] == "market" and msg["halted"] is True
    summary = client.get("/v1/oversight/summary", headers=OV).json()
    assert "hhi_WGT" in summary["indicators"]  # the oversight engine's indicators, for overseers
    ticket = next(t for t in summary["tickets"] if t["level"] == "halt")
    assert summary["halted"] and ticket["status"] == "open"
    # the operator may read oversight, not intervene
    assert client.get("/v1/oversight/summary", headers=OP).status_code == 200
    assert client.post("/v1/oversight/interventions", headers=OP,
                       json={"kind": "resume", "ticket": ticket["id"]}).status_code == 403
    client.post("/v1/oversight/interventions", headers=OV,
                json={"kind": "resume", "ticket": ticket["id"], "note": "drill over"})
    box.step()
    assert not box.k.state.controls.halts


def test_an_agent_streams_only_its_own_observations_and_is_rate_limited():
    box, client, owner = served(rate=1.0, burst=3)
    key, _ = join(client, box, owner, "streamer")
    for _ in range(4):
        box.step()
    me = admitted(client, key)["agent"]
    with client.websocket_connect(f"/v1/agents/{me}/stream") as ws:
        ws.send_json({"tick": box.k.tick, "signature": key.sign(
            f"observe:{me}:{box.k.tick}".encode()).hex()})
        assert ws.receive_json()["observation"]["agent"] == me
        box.step()
        nxt = ws.receive_json()
        assert nxt["type"] == "observation" and nxt["tick"] == box.k.tick
    with client.websocket_connect(f"/v1/agents/{me}/stream") as ws:  # not a hello
        ws.send_json({"tick": "soon", "signature": 5})
        assert ws.receive_json()["code"] == "invalid_request"
    with client.websocket_connect("/v1/agents/1/stream") as ws:  # someone else's
        ws.send_json({"tick": box.k.tick, "signature": key.sign(
            f"observe:1:{box.k.tick}".encode()).hex()})
        assert ws.receive_json()["code"] == "bad_signature"
    nonce = admitted(client, key)["nonce"]
    codes = []
    for _ in range(6):
        nonce += 1
        a = PlaceOrder(actor=me, asset="WGT", side="buy", qty=1, price=1).signed(key, nonce)
        codes.append(client.post("/v1/actions", json=a.to_dict()).status_code)
    assert codes[:3] == [202] * 3 and 429 in codes[3:]
    box.step()
    from tests.test_server import refusal_counts, refusals

    assert refusal_counts(box.k)["/v1/actions rate_limited"] >= 1
    assert any(f"rate_limited claimed {me}" in x for d in refusals(box.k) for x in d["samples"])


def test_a_served_scenario_resumes_onto_its_log(tmp_path):
    store = SQLiteStore(tmp_path / "live.db")
    box, client, owner = served(store)
    for _ in range(5):
        box.step()
    tick, root = box.k.tick, box.k.store.last_checkpoint().root
    store.close()
    store = SQLiteStore(tmp_path / "live.db")
    sc = load_scenario(builtin_dir() / "live" / "market.yaml")
    econ = LabEconomy(sc, store, fixed_secret(5), signatures=True)
    assert econ.k.tick == tick and econ.k.store.last_checkpoint().root == root
    assert econ.monitor < 0 and len(econ.agents) == 8
    before = econ.k.state.exchange.markets["WGT"].volume
    for _ in range(10):
        s = econ.step()
        assert s.rejected == 0 or "bad_signature" not in s.reasons  # keys and nonces re-attached
    assert econ.k.state.exchange.markets["WGT"].volume > before
    other = load_scenario(builtin_dir() / "honest.yaml")
    from sandbank.lab.runner import RunError

    with pytest.raises(RunError):
        LabEconomy(other, store, fixed_secret(5), signatures=True)
    store.close()


def test_an_overseer_with_its_own_key_reads_and_acts_and_clients_follow_the_log():
    from sandbank.controls.controls import OVERSEER, RaiseAlert, RegisterOverseer

    box, client, owner = served()
    mine = fixed_key(5, "auditor")
    box.operator_submit(RegisterOverseer(actor=0, name="auditor", overseer_kind=OVERSEER,
                                         public_key=mine.public, evidence="certified auditor"))
    box.step()
    me = next(o.id for o in box.k.state.controls.overseers.values() if o.name == "auditor")

    def signed_read(path, key=mine, **params):
        t = box.k.tick
        return client.get(path, params={"tick": t, **params}, headers={
            "X-Sandbank-Overseer": str(me),
            "X-Sandbank-Signature": key.sign(f"oversee:{me}:{t}".encode()).hex()})

    assert signed_read("/v1/oversight/alerts").json() == {"alerts": []}
    assert signed_read("/v1/oversight/alerts", key=fixed_key(5, "x")).status_code == 403
    alert = RaiseAlert(actor=me, detector="manual", score=900, subjects=[1], evidence=[3],
                       summary="looks odd").signed(mine, 1)
    assert client.post("/v1/oversight/actions", json=alert.to_dict()).status_code == 202
    box.step()
    alerts = signed_read("/v1/oversight/alerts").json()["alerts"]
    assert alerts[0]["detector"] == "manual" and alerts[0]["evidence"] == [3]
    assert signed_read("/v1/oversight/alerts", since=1).json()["alerts"] == []
    assert signed_read("/v1/oversight/tickets").json() == {"tickets": []}
    # a client follows the log: each new checkpoint proven consistent with the last
    c = Client(http=client)
    first = c.checkpoint()
    box.step()
    assert c.checkpoint().size > first.size
    c.seen = first.__class__(first.origin, first.size, b"\x00" * 32, first.tick, first.state)
    with pytest.raises(ClientError) as e:
        c.checkpoint()
    assert e.value.code == "inconsistent_log"


def test_a_restart_completes_an_interrupted_endowment(tmp_path):
    store = SQLiteStore(tmp_path / "live.db")
    box, client, owner = served(store)
    key, _ = join(client, box, owner, "unlucky")
    box.step()  # admitted; its accounts are queued for the next tick — and the server stops
    me = admitted(client, key)["agent"]
    assert box.k.state.ledger.account_of(me, "CRD") is None
    store.close()
    box, client, _ = served(SQLiteStore(tmp_path / "live.db"))
    for _ in range(3):
        box.step()
    assert box.k.state.ledger.account_of(me, "CRD").balance == 100_000
    assert box.k.state.ledger.account_of(me, "WGT").balance == 100
    for _ in range(3):  # and only once
        box.step()
    assert box.k.state.ledger.account_of(me, "CRD").balance == 100_000


def test_the_approval_queue_is_on_record_and_survives_a_restart(tmp_path):
    import orjson

    store = SQLiteStore(tmp_path / "live.db")
    box, client, owner = served(store, admission="approval")
    box.step()  # the console overseer
    k1, _ = join(client, box, owner, "first")
    k2, _ = join(client, box, owner, "second")
    assert client.post("/v1/admissions/1", json={"approve": False}, headers=OV).status_code == 200
    box.step()
    console = box.console
    store.close()
    box, client, _ = served(SQLiteStore(tmp_path / "live.db"), admission="approval")
    waiting = client.get("/v1/admissions", headers=OP).json()["pending"]
    assert [(w["request"], w["name"]) for w in waiting] == [(2, "second")]
    assert client.post("/v1/admissions/2", json={"approve": True}, headers=OP).status_code == 200
    k3, answer = join(client, box, owner, "third")
    assert answer["pending"] == 3  # request numbers go on from the log
    box.step()
    assert admitted(client, k2) is not None and admitted(client, k1) is None
    records = [(d["request"], d["decision"], d["by"]) for d in (
        orjson.loads(e.body) for e in box.k.store.entries_of_kind("admission_recorded"))]
    assert records == [(1, "asked", 0), (2, "asked", 0), (1, "denied", console),
                       (2, "approved", 0), (3, "asked", 0)]


def test_the_sequencer_reports_exactly_which_entries_each_action_produced():
    from sandbank.kernel.canonical import parse

    econ = LabEconomy(load_scenario(builtin_dir() / "demo.yaml", ticks=30), SQLiteStore(":memory:"),
                      fixed_secret())
    ranges = []
    for _ in range(30):
        econ.step()
        ranges += econ.k.action_ranges
    starts = {r[2]: r for r in ranges}
    covered = set()
    for _, _, first, count in ranges:
        assert not covered & set(range(first, first + count))  # disjoint
        covered |= set(range(first, first + count))
    for e in econ.k.store.entries(econ.setup_ticks and econ.k.store.checkpoint(econ.setup_ticks).size):
        d = parse(e.body)
        if d.get("nonce") is not None:  # every nonce'd event opens exactly its action's range
            assert starts[e.seq][:2] == (d["actor"], d["nonce"])
    # some actions write events of other actors (a market state change by the system)
    assert any(count > 1 and parse(econ.k.store.entry(first + 1).body)["actor"] != actor
               for actor, _, first, count in ranges)

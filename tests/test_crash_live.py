"""Kill -9 of the live server under load, then a restart (issue 7): every tick committed
before the kill is still in the log with the same signed root, `verify` and `replay` pass,
and the economy goes on from there."""

import os
import threading
import time

import httpx
import pytest

from sandbank.audit.verify import verify_log
from sandbank.client import Client
from sandbank.economy import replay_log
from sandbank.markets.payments import Pay
from sandbank.server.app import open_store
from sandbank.store.sqlite import SQLiteStore
from tests.keys import fixed_key
from tests.live_server import LiveServer

PG = os.environ.get("SANDBANK_TEST_PG", "")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not PG, reason="SANDBANK_TEST_PG is not set (.ci/run sets it)"))])
def test_kill_minus_nine_under_load_loses_no_committed_tick(tmp_path, backend):
    extra, db, schema = [], None, "public"
    if backend == "postgres":
        import psycopg

        schema = "live_crash_test"
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        extra, db = ["--pg-schema", schema], PG
    srv = LiveServer(tmp_path, "--endow", "CRD=1000000", "--rate", "100000", "--burst", "100000",
                     *extra, tick=0.05, scenario=None, db=db)
    srv.start()
    try:
        c = Client(srv.url)
        owner, owner_key_file = srv.owner("load")
        from sandbank.identity.keys import SigningKey

        owner_key = SigningKey.load(owner_key_file)
        agents = [c.join(owner, f"a{i}", owner_key, key=fixed_key(2, f"a{i}"))
                  for i in range(6)]
        agents[-1].wait_funded("CRD")
        stop = threading.Event()
        posted = {"n": 0}

        def load():  # each agent pays its neighbour, as fast as one connection goes
            with httpx.Client(base_url=srv.url, timeout=5) as h:
                while not stop.is_set():
                    docs = []
                    for i, a in enumerate(agents):
                        a.nonce += 1
                        p = Pay(actor=a.id, to=agents[(i + 1) % len(agents)].id, asset="CRD",
                                amount=1).signed(a.key, a.nonce)
                        docs.append(p.to_dict())
                    try:
                        h.post("/v1/actions/batch", json={"actions": docs})
                        posted["n"] += len(docs)
                    except httpx.HTTPError:
                        return  # the server is gone

        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(1.5)
        seen = httpx.get(f"{srv.url}/v1/checkpoint", timeout=5).json()
        srv.kill()  # SIGKILL, mid-load
        stop.set()
        t.join(timeout=10)
        assert posted["n"] > 100
        srv.start()  # resumes from the log
        after = c.status()["tick"]
        assert srv.wait_tick(after + 3) >= after + 3  # and goes on
    finally:
        srv.stop()
    store = (SQLiteStore(srv.db, readonly=True, create=False) if backend == "sqlite"
             else open_store(PG, schema))
    cp = store.checkpoint(seen["tick"])
    assert cp is not None and cp.root.hex() == seen["root"] and cp.size == seen["size"]
    assert verify_log(store).ok
    replay = replay_log(store)
    assert replay.ok, replay.problem
    paid = sum(1 for e in store.entries() if e.kind == "paid")
    store.close()
    assert paid > 50
    if backend == "postgres":
        import psycopg

        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

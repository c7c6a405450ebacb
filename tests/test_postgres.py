"""The store interface on PostgreSQL (issue 7, item 4): the same behaviour as SQLite, with
append-only enforced by the database. Runs when SANDBANK_TEST_PG names a server (`.ci/run`
starts one); a named server that cannot be reached fails the tests, it does not skip them."""

import hashlib
import os

import pytest

from sandbank.audit.verify import verify_log
from sandbank.economy import replay_log
from sandbank.store.base import StoreError
from sandbank.store.sqlite import SQLiteStore

PG = os.environ.get("SANDBANK_TEST_PG", "")
needs_pg = pytest.mark.skipif(not PG, reason="SANDBANK_TEST_PG is not set (.ci/run sets it)")


@pytest.fixture
def pg_store(request):
    from sandbank.store.postgres import PostgresStore

    schema = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    import psycopg

    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    store = PostgresStore(PG, schema=schema)
    yield store
    store.close()
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _demo(store):
    from sandbank.demo import run_demo
    from tests.keys import fixed_secret

    return run_demo(store, seed=3, agents=8, ticks=20, sign=True, secret=fixed_secret())


@needs_pg
def test_a_run_on_postgres_has_the_root_of_the_same_run_on_sqlite(pg_store, tmp_path):
    lite = SQLiteStore(tmp_path / "log.db")
    _demo(pg_store), _demo(lite)  # the same seed on both stores
    assert pg_store.last_checkpoint() == lite.last_checkpoint()
    assert list(pg_store.entries(5, 40)) == list(lite.entries(5, 40))
    assert pg_store.kind_counts() == lite.kind_counts()
    assert pg_store.entry_count() == lite.entry_count()
    assert pg_store.entries_of_kind("transfer") == lite.entries_of_kind("transfer") != []
    # which entries each signed action produced, written with its tick, the same on both
    assert pg_store.action_entries(2, 3) == lite.action_entries(2, 3) != []
    assert pg_store.action_entries(1, 10**6) == []
    assert verify_log(pg_store).ok and replay_log(pg_store).ok
    lite.close()


@needs_pg
def test_postgres_refuses_to_rewrite_history(pg_store):
    import psycopg

    _demo(pg_store)
    db = pg_store.connection
    for sql in ("UPDATE entries SET kind = 'x' WHERE seq = 3", "DELETE FROM entries WHERE seq = 3",
                "TRUNCATE checkpoints", "UPDATE meta SET value = '2'",
                "DELETE FROM contents", "DELETE FROM nodes", "DELETE FROM action_index"):
        with pytest.raises(psycopg.Error, match="append-only"):
            db.execute(sql)
    assert verify_log(pg_store).ok


@needs_pg
def test_a_postgres_store_reopens_and_bad_urls_are_clear_errors(pg_store):
    from sandbank.store.postgres import PostgresStore

    _demo(pg_store)
    again = PostgresStore(PG, schema=pg_store.schema, create=False)
    assert again.last_checkpoint() == pg_store.last_checkpoint()
    again.close()
    with pytest.raises(StoreError, match="cannot open"):
        PostgresStore("postgresql://nobody:nothing@127.0.0.1:1/none")
    with pytest.raises(StoreError, match="schema"):
        PostgresStore(PG, schema="Robert'); DROP TABLE x;--")

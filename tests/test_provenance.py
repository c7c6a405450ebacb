from typer.testing import CliRunner

from conftest import Economy
from sandbank.audit.provenance import Provenance
from sandbank.cli import app
from sandbank.kernel.schema import PENDING, POST_PENDING, SpawnAgent, Transfer, TransferSpec
from sandbank.store.sqlite import SQLiteStore
from tests.keys import fixed_key


def seq_of(e, kind, **match):
    import orjson
    for entry in e.k.store.entries():
        d = orjson.loads(entry.body)
        if d["kind"] == kind and all(d.get(k) == v for k, v in match.items()):
            return entry.seq
    raise AssertionError(f"no {kind} {match}")


def test_a_posted_escrow_rests_on_the_hold_accounts_agents_and_owner():
    e = Economy()
    e.do(SpawnAgent(actor=1, name="kid", public_key=fixed_key(5, "kid").public))
    e.do(Transfer(actor=1, transfers=[TransferSpec(id=1, debit=e.account[1], credit=e.account[2],
                                                   amount=30, flags=PENDING)]))
    e.do(Transfer(actor=1, transfers=[TransferSpec(id=2, flags=POST_PENDING, pending_id=1)]))
    p = Provenance(e.k.store)
    post = seq_of(e, "transfer", id=2)
    hold = seq_of(e, "transfer", id=1)
    want = {hold, seq_of(e, "account_opened", account=e.account[1]),
            seq_of(e, "account_opened", account=e.account[2]),
            seq_of(e, "agent_registered", agent=1), seq_of(e, "agent_registered", agent=2),
            seq_of(e, "owner_registered", owner=1), 0}
    assert set(p.ancestors(post)) == want
    reg1 = seq_of(e, "agent_registered", agent=1)
    down = set(p.descendants(reg1))
    assert {hold, post, seq_of(e, "agent_registered", agent=4)} <= down  # incl. its child
    assert seq_of(e, "agent_registered", agent=3) not in down


def test_provenance_command(tmp_path):
    path = tmp_path / "p.db"
    e = Economy(store=SQLiteStore(path))
    e.do(Transfer(actor=1, transfers=[TransferSpec(id=1, debit=e.account[1], credit=e.account[2],
                                                   amount=5)]))
    n = e.k.log.size - 1
    e.k.close()
    res = CliRunner().invoke(app, ["provenance", str(path), "--entry", str(n)])
    assert res.exit_code == 0 and "ancestors of entry" in res.output
    res = CliRunner().invoke(app, ["provenance", str(path), "--entry", "99999"])
    assert res.exit_code == 2 and "no entry 99999" in res.output


def test_a_delegated_task_settlement_rests_on_every_hop_of_the_chain():
    from sandbank.markets.tasks import AwardTask, BidTask, Deliver, PostTask, Subcontract
    from test_tasks import NEEDS, with_specialists

    e = with_specialists()
    e.do(PostTask(actor=1, skills=NEEDS, reward=900, deadline=e.k.tick + 20))
    e.do(BidTask(actor=4, task=1, price=900))
    e.do(AwardTask(actor=1, task=1, bid=1))
    e.do(Subcontract(actor=4, contract=1, worker=5, parts=["law", "math"], price=600))
    e.do(Subcontract(actor=5, contract=2, worker=6, parts=["math"], price=300))  # two hops
    e.do(Deliver(actor=6, contract=3))
    e.do(Deliver(actor=5, contract=2))
    e.do(Deliver(actor=4, contract=1))
    p = Provenance(e.k.store)
    settled = seq_of(e, "contract_settled", contract=1)
    up = set(p.ancestors(settled))
    for kind, match in [("task_posted", {"task": 1}), ("task_awarded", {"contract": 1}),
                        ("subcontracted", {"contract": 2}), ("subcontracted", {"contract": 3}),
                        ("delivered", {"contract": 1}), ("delivered", {"contract": 2}),
                        ("delivered", {"contract": 3}), ("agent_registered", {"agent": 6})]:
        assert seq_of(e, kind, **match) in up, (kind, match)
    assert settled in p.descendants(seq_of(e, "subcontracted", contract=3))

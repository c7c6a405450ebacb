from hashlib import sha256

from conftest import Economy
from sandbank.controls.policy import Certify
from sandbank.kernel.schema import OPERATOR
from sandbank.markets.messaging import SendMessage


def test_messages_are_logged_by_hash_stored_by_content_and_delivered():
    e = Economy(n=3, policy={"message_fee": 2, "max_message_bytes": 32})
    treasury = e.k.state.ledger.accounts[e.k.state.ledger.treasury["CRD"]]
    start = treasury.balance
    e.do(SendMessage(actor=1, to=2, content="price 100 tomorrow?"))
    ev = e.last_events()[0]
    digest = sha256(b"price 100 tomorrow?").hexdigest()
    assert ev["sha256"] == digest and ev["fee"] == 2 and "content" not in ev
    assert e.k.store.content(bytes.fromhex(digest)) == b"price 100 tomorrow?"
    obs = e.k.observe(2)
    assert [(m.sender, m.content) for m in obs.inbox] == [(1, "price 100 tomorrow?")]
    assert e.k.observe(3).inbox == ()
    assert treasury.balance - start == 2 and e.balance(1) == 998
    e.do(SendMessage(actor=1, to=0, content="hello all"))
    assert e.last_events()[0]["recipients"] == 2
    assert len(e.k.observe(3).inbox) == 1


def test_message_limits_fees_and_rebates():
    e = Economy(n=3, fund=3, policy={"message_fee": 2, "max_message_bytes": 8,
                                     "certified_rebate_bps": 10_000})
    e.do(SendMessage(actor=1, to=2, content="x" * 9))
    assert e.last_events()[0]["reason"] == "message_too_large"
    e.do(SendMessage(actor=1, to=9, content="hi"))
    assert e.last_events()[0]["reason"] == "unknown_recipient"
    e.do(SendMessage(actor=1, to=2, content="hi"))
    e.do(SendMessage(actor=1, to=2, content="hi"))
    assert e.last_events()[0]["reason"] == "insufficient_funds"  # the micro-fee bites
    e.do(Certify(actor=OPERATOR, agent=1, certified=True))
    e.do(SendMessage(actor=1, to=2, content="hi"))
    assert e.last_events()[0]["fee"] == 0

"""What the client's proofs (and so the MCP bridge's `prove`) may believe: only an inclusion
proof of the very entry, against the pinned operator key. Each attack is shown passing a
check that trusts the bundle's word, then refused by the client. A hostile reviewer found
both: a consistency bundle verifies against a real checkpoint yet proves no entry, and a
later entry's proof could be another entry's."""

import json

import httpx
import pytest

from sandbank.audit.checkpoint import parse_verifier_key
from sandbank.audit.proofs import check_bundle
from sandbank.client import Client, ClientError, RemoteAgent
from sandbank.identity.keys import SigningKey
from sandbank.kernel.schema import Transfer, TransferSpec
from sandbank.markets.payments import Pay
from sandbank.server.mcp import outcome
from tests.live_server import LiveServer


class Forger(httpx.BaseTransport):
    """A man in the middle with no key: relays everything, rewrites proof bundles."""

    def __init__(self, rewrite):
        self.real, self.rewrite = httpx.HTTPTransport(), rewrite

    def handle_request(self, request):
        resp = self.real.handle_request(request)
        if request.url.path.startswith("/v1/proof/") and resp.status_code == 200:
            resp.read()
            return httpx.Response(200, json=self.rewrite(json.loads(resp.content), request))
        return resp


FORGED: list = []


def as_consistency(real, _request):
    """A refusal rewritten into a payment, in a bundle type that proves no entry."""
    body = json.loads(real["entry"]) if real["entry"] else {}
    if body.get("kind") != "rejected":
        return real
    forged = {**body, "kind": "paid", "amount": 10**12}
    FORGED.append({"type": "consistency", "checkpoint": real["checkpoint"], "proof": [],
                   "old_size": 0, "old_root": "", "index": real["index"],
                   "entry": json.dumps(forged)})
    return FORGED[-1]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("proofs")
    with LiveServer(folder, "--endow", "CRD=10000,WGT=50", scenario=None, tick=0.2) as srv:
        owner, owner_key = srv.owner("o")
        c = Client(srv.url)
        agents = [c.join(owner, f"a{i}", SigningKey.load(owner_key)) for i in range(2)]
        for a in agents:
            a.wait_funded("CRD")
        yield srv, agents


def test_a_consistency_bundle_proves_no_entry(live):
    srv, (alice, bob) = live
    nonce = alice.act(Pay(actor=alice.id, to=bob.id, asset="CRD", amount=10**9, memo=""))
    honest = alice.proven(nonce, alice.wait(nonce))
    assert [b["kind"] for _, b in honest] == ["rejected"]
    via = Client(srv.url, pinned_key=alice.client.operator_key,
                 http=httpx.Client(base_url=srv.url, transport=Forger(as_consistency)))
    mitm = RemoteAgent(via, alice.id, alice.key, alice.nonce)
    with pytest.raises(ClientError, match="not an inclusion proof"):  # the client refuses it,
        mitm.proven(nonce)
    # though the forged bundle passes check_bundle against the real operator key
    check_bundle(FORGED[-1], *parse_verifier_key(alice.client.operator_key))
    assert json.loads(FORGED[-1]["entry"])["kind"] == "paid"


def test_a_later_entry_cannot_be_proven_by_another_entrys_proof(live):
    srv, (alice, bob) = live
    # a batch of two transfers, the second beyond the balance: a posted transfer, then a
    # refusal — the action failed as a whole (the kernel counts it so)
    acct = {a["asset"]: a["id"] for a in alice.observe()["accounts"]}
    to = {a["asset"]: a["id"] for a in bob.observe()["accounts"]}
    nonce = alice.act(Transfer(actor=alice.id, transfers=[
        TransferSpec(id=7_000_001, debit=acct["CRD"], credit=to["CRD"], amount=1, code=1),
        TransferSpec(id=7_000_002, debit=acct["CRD"], credit=to["CRD"], amount=10**9, code=1)]))
    entries = alice.wait(nonce)
    honest = [b for _, b in alice.proven(nonce, entries)]
    assert [b["kind"] for b in honest][-1] == "rejected" and len(honest) >= 2
    verdict = outcome(honest)
    assert verdict["refused"] and verdict["partial"]  # not "ok" because the first posted
    first = entries[0]["seq"]

    def first_again(real, request):  # every later entry "proven" by the first one's proof
        if int(request.url.path.rsplit("/", 1)[1]) != first:
            return alice.client._get(f"/v1/proof/{first}", params=dict(request.url.params),
                                     headers={k: v for k, v in request.headers.items()
                                              if k.lower().startswith("x-sandbank")})
        return real

    via = Client(srv.url, http=httpx.Client(base_url=srv.url, transport=Forger(first_again)))
    with pytest.raises(ClientError, match="not an inclusion proof of entry"):
        RemoteAgent(via, alice.id, alice.key, alice.nonce).proven(nonce, entries)


def test_an_action_with_a_withheld_entry_has_no_verdict():
    v = outcome([{"seq": 4, "kind": "transfer"}, {"seq": 5, "kind": "withheld"}])
    assert v["refused"] and v["reason"] == "withheld_entry"


def test_an_unreachable_server_is_named_without_its_credentials():
    with pytest.raises(ClientError) as e:
        Client("http://alice:s3cr3t@127.0.0.1:9/")
    assert e.value.code == "unreachable" and "s3cr3t" not in str(e.value)
    assert "127.0.0.1:9" in str(e.value)

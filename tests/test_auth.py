"""Authentication edges, for every credential the server accepts: the exact credential
passes; a prefix, an extension, an empty or scheme-only value, another case of the token,
stray whitespace, a signature truncated or padded, over another message, another tick or by
another key, an id spelt oddly — each is refused, with the right status and no 5xx.

The functions (server/auth.py) are tested on their own, then each route family through the
app: the operator's bearer token, the console overseer's token, an agent's read signature,
an overseer's read signature, and a signed action.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import sandbank.economy
from sandbank.controls.controls import RegisterOverseer
from sandbank.kernel.schema import OPERATOR, RegisterAgent, RegisterOwner, agent_attestation_bytes
from sandbank.kernel.sequencer import KernelConfig
from sandbank.markets.payments import Pay
from sandbank.server import auth
from sandbank.server.app import Sandbox, create_app
from sandbank.store.sqlite import SQLiteStore
from tests.keys import fixed_key, fixed_secret

TOKEN = "op-token-0123456789"
OV_TOKEN = "ov-token-9876543210"


def near_misses(token: str) -> list[str]:
    """Authorization values that are not `Bearer <token>` but look like it."""
    return [
        "", "Bearer", "Bearer ", f"Bearer {token[:-1]}", f"Bearer {token[:1]}",
        f"Bearer {token}x", f"Bearer {token} ", f"Bearer  {token}", f"Bearer {token.upper()}",
        f"Bearer{token}", f"Basic {token}", token, f"Bearer {token}\t", f"Token {token}",
        f"Bearer {token[1:]}", f"Bearer x{token}", f"Bearer {token}{token}",
        f"Bearer {token.swapcase()}", f"Bearer\t{token}",
    ]


# ---------------------------------------------------------------- the functions
def test_bearer_accepts_the_token_exactly_and_the_scheme_in_any_case():
    for good in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"BeArEr {TOKEN}"):
        assert auth.bearer(good, TOKEN), good
    for bad in near_misses(TOKEN):
        assert not auth.bearer(bad, TOKEN), repr(bad)
    assert not auth.bearer(None, TOKEN)
    for unset in (None, ""):  # no token configured: nothing matches, not even "Bearer "
        assert not auth.bearer("Bearer ", unset) and not auth.bearer(f"Bearer {TOKEN}", unset)
    assert not auth.bearer("Bearer é", "e")  # non-ASCII: compared as bytes, no error


def test_an_id_is_ascii_decimal_only():
    for text, want in (("1", 1), ("42", 42), ("-1001", -1001), ("0", 0), ("007", 7),
                       ("9" * 19, int("9" * 19))):
        assert auth.parse_id(text) == want, text
    for bad in (None, "", "-", "+1", " 1", "1 ", "1_0", "١", "²", "1.0", "0x1", "9" * 20,
                "--1", "1-", "٣٤", "1\n"):
        assert auth.parse_id(bad) is None, repr(bad)


def test_a_read_signature_is_fresh_for_two_ticks_and_never_from_the_future():
    assert [auth.fresh(10, t) for t in (7, 8, 9, 10, 11)] == [None, 8, 9, 10, None]
    assert auth.fresh(10, None) == 10 and auth.fresh(0, 0) == 0
    assert auth.fresh(1, -1) is None and auth.fresh(1, 0) == 0  # no tick before 0
    assert auth.FRESH_TICKS == 2


def test_a_signature_is_exactly_128_hex_digits_over_the_exact_message():
    key, other = fixed_key(5, "a"), fixed_key(5, "b")
    msg = auth.read_message("observe", 3, 10)
    assert msg == b"observe:3:10"
    sig = key.sign(msg).hex()
    assert auth.signed_by(key.public, sig, msg)
    assert auth.signed_by(key.public, sig.upper(), msg)  # the same bytes
    for bad in ("", sig[:-2], sig[:-1], sig + "00", sig + "0", " " + sig, sig + " ",
                sig[:64] + " " + sig[64:], "zz" + sig[2:], None, sig[2:] + sig[:2]):
        assert not auth.signed_by(key.public, bad, msg), repr(bad)[:40]
    assert not auth.signed_by(other.public, sig, msg)
    for other_msg in (b"observe:3:11", b"oversee:3:10", b"observe:30:10", b"observe:3:1",
                      msg + b"\n"):
        assert not auth.signed_by(key.public, sig, other_msg), other_msg


# ---------------------------------------------------------------- through the app
@pytest.fixture(scope="module")
def served():
    secret = fixed_secret(21)
    k = sandbank.economy.new_kernel(SQLiteStore(":memory:"), KernelConfig(seed=21, assets=("CRD",),
                                                     verify_signatures=True),
               secret.key("operator"))
    box = Sandbox(k, secret, TOKEN, overseer_token=OV_TOKEN)
    owner = fixed_key(21, "owner")
    agent, overseer = fixed_key(21, "agent"), fixed_key(21, "overseer")
    box.operator_submit(RegisterOwner(actor=OPERATOR, name="o", owner_kind="human",
                                      public_key=owner.public, evidence="test"))
    box.step()
    box.operator_submit(RegisterAgent(actor=OPERATOR, owner=1, name="a", public_key=agent.public,
                                      attestation=owner.sign(agent_attestation_bytes(
                                          1, "a", agent.public))))
    box.operator_submit(RegisterOverseer(actor=OPERATOR, name="olga", overseer_kind="overseer",
                                         public_key=overseer.public, evidence="test"))
    for _ in range(3):
        box.step()
    ov_id = next(o.id for o in k.state.controls.overseers.values() if o.name == "olga")
    client = TestClient(create_app(box))
    return k, client, agent, overseer, ov_id


def _no_5xx(r):
    assert r.status_code < 500, (r.status_code, r.text)
    return r.status_code


def test_operator_routes_take_the_operator_token_exactly(served):
    k, client, *_ = served
    assert client.post("/v1/tick", headers={"Authorization": f"Bearer {TOKEN}"}).status_code \
        == 200
    assert client.post("/v1/tick", headers={"Authorization": f"bearer {TOKEN}"}).status_code \
        == 200
    for bad in near_misses(TOKEN) + [f"Bearer {OV_TOKEN}"]:
        headers = {"Authorization": bad} if bad.strip() == bad else {"Authorization": bad}
        try:
            r = client.post("/v1/tick", headers=headers)
        except Exception:  # a header the HTTP client itself will not send
            continue
        assert _no_5xx(r) == 401, repr(bad)
    assert _no_5xx(client.post("/v1/tick")) == 401


def test_the_console_routes_take_the_overseer_token_exactly(served):
    k, client, *_ = served
    body = {"kind": "raise_alert", "detector": "manual", "score": 1}
    ok = client.post("/v1/oversight/interventions", json=body,
                     headers={"Authorization": f"Bearer {OV_TOKEN}"})
    assert ok.status_code == 202, ok.text
    for bad in near_misses(OV_TOKEN) + [f"Bearer {TOKEN}"]:  # the operator is not the console
        try:
            r = client.post("/v1/oversight/interventions", json=body,
                            headers={"Authorization": bad})
        except Exception:
            continue
        assert _no_5xx(r) == 403, repr(bad)


def test_an_agents_read_signature_must_be_its_own_over_its_own_fresh_message(served):
    k, client, agent, overseer, ov_id = served
    url = "/v1/agents/1/observation"

    def get(sig, tick=None):
        params = {} if tick is None else {"tick": tick}
        return client.get(url, params=params, headers={"X-Sandbank-Signature": sig})

    now = k.tick
    good = agent.sign(f"observe:1:{now}".encode()).hex()
    assert get(good).status_code == 200
    assert get(agent.sign(f"observe:1:{now - 2}".encode()).hex(), now - 2).status_code == 200
    bad = [good[:-2], good + "00", good[:64], "", " " + good, agent.sign(
        f"observe:1:{now - 1}".encode()).hex(),  # names another tick than the one it signs
        agent.sign(f"oversee:1:{now}".encode()).hex(),
        agent.sign(f"observe:2:{now}".encode()).hex(),
        overseer.sign(f"observe:1:{now}".encode()).hex()]
    for sig in bad:
        assert _no_5xx(get(sig)) == 401, sig[:20]
    stale = agent.sign(f"observe:1:{now - 3}".encode()).hex()
    future = agent.sign(f"observe:1:{now + 1}".encode()).hex()
    assert _no_5xx(get(stale, now - 3)) == 401 and _no_5xx(get(future, now + 1)) == 401


def test_a_log_readers_headers_are_checked_whatever_their_spelling(served):
    k, client, agent, overseer, ov_id = served
    now = k.tick
    sig = agent.sign(f"observe:1:{now}".encode()).hex()
    assert client.get("/v1/entries/recent", headers={
        "X-Sandbank-Agent": "1", "X-Sandbank-Signature": sig}).status_code == 200
    for claimed in ("+1", " 1", "1 ", "١", "²", "01x", "1" * 25, "", "-", "--1"):
        try:
            r = client.get("/v1/entries/recent", headers={
                "X-Sandbank-Agent": claimed, "X-Sandbank-Signature": sig})
        except Exception:
            continue
        assert _no_5xx(r) == 401, repr(claimed)
    osig = overseer.sign(f"oversee:{ov_id}:{now}".encode()).hex()
    assert client.get("/v1/entries/recent", headers={
        "X-Sandbank-Overseer": str(ov_id), "X-Sandbank-Signature": osig}).status_code == 200
    for sig_ in (osig[:-2], sig, agent.sign(f"oversee:{ov_id}:{now}".encode()).hex()):
        r = client.get("/v1/entries/recent", headers={
            "X-Sandbank-Overseer": str(ov_id), "X-Sandbank-Signature": sig_})
        assert _no_5xx(r) == 401
    for bad in near_misses(TOKEN):
        try:
            r = client.get("/v1/entries/recent", headers={"Authorization": bad})
        except Exception:
            continue
        assert _no_5xx(r) == 401, repr(bad)  # (even empty: a credential that fails)


def test_an_overseers_read_signature_opens_the_oversight_routes_and_nothing_like_it_does(served):
    k, client, agent, overseer, ov_id = served
    now = k.tick

    def get(who, sig, auth_header=None):
        h = {"X-Sandbank-Overseer": who, "X-Sandbank-Signature": sig}
        if auth_header:
            h["Authorization"] = auth_header
        return client.get("/v1/oversight/alerts", headers=h)

    good = overseer.sign(f"oversee:{ov_id}:{now}".encode()).hex()
    assert get(str(ov_id), good).status_code == 200
    for who, sig in ((str(ov_id), good[:-2]), (str(ov_id), good + "00"),
                     (str(ov_id), agent.sign(f"oversee:{ov_id}:{now}".encode()).hex()),
                     (str(ov_id), overseer.sign(f"observe:{ov_id}:{now}".encode()).hex()),
                     ("1", overseer.sign(f"oversee:1:{now}".encode()).hex()),
                     (str(ov_id - 1), good), (str(ov_id), "")):
        assert _no_5xx(get(who, sig)) in (401, 403, 422), (who, sig[:16])
        assert get(who, sig).status_code != 200


def test_a_signed_action_must_carry_its_actors_whole_signature(served):
    k, client, agent, overseer, ov_id = served
    n = k.state.registry.agents[1].nonce + 1
    action = Pay(actor=1, to=1, asset="CRD", amount=1)
    doc = action.signed(agent, n).to_dict()
    sig = doc["signature"]
    for bad in (sig[:-2], sig + "00", "", sig[:64], "00" * 64,
                Pay(actor=1, to=1, asset="CRD", amount=2).signed(agent, n).to_dict()["signature"],
                Pay(actor=1, to=1, asset="CRD", amount=1).signed(overseer, n)
                .to_dict()["signature"]):
        r = client.post("/v1/actions", json={**doc, "signature": bad})
        assert _no_5xx(r) in (400, 401), (r.status_code, bad[:16])
    unsigned = {k_: v for k_, v in doc.items() if k_ != "signature"}
    assert _no_5xx(client.post("/v1/actions", json=unsigned)) in (400, 401)
    r = client.post("/v1/actions", json=doc)
    assert r.status_code == 202, r.text
    client.post("/v1/tick", headers={"Authorization": f"Bearer {TOKEN}"})
    assert _no_5xx(client.post("/v1/actions", json=doc)) == 409  # the replay

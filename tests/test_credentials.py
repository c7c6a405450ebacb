"""Verifiable credentials (checklist 54): eddsa-jcs-2022 against the specification's test
vectors, did:key, revocation through a Bitstring Status List, and proof of personhood
required for a human owner's entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbank.identity import credentials as V
from sandbank.identity.keys import SigningKey
from tests.keys import fixed_key

VECTORS = Path(__file__).parent / "data" / "vc-di-eddsa"


def _vector_key() -> SigningKey:
    pair = json.loads((VECTORS / "keyPair.json").read_text())
    raw = V.b58decode(pair["privateKeyMultibase"][1:])
    assert raw[:2] == b"\x80\x26"  # multicodec ed25519-priv
    key = SigningKey.from_seed(raw[2:])
    assert V.did_key(key.public) == "did:key:" + pair["publicKeyMultibase"]
    return key


def test_eddsa_jcs_2022_reproduces_the_specifications_test_vector():
    key = _vector_key()
    unsigned = json.loads((VECTORS / "unsigned.json").read_text())
    signed = json.loads((VECTORS / "signedJCS.json").read_text())
    ours = V.issue(unsigned, key, signed["proof"]["created"])
    assert ours == signed  # proofValue included, byte for byte
    assert V.b58decode(ours["proof"]["proofValue"][1:]).hex() == \
        (VECTORS / "sigHexJCS.txt").read_text().strip()
    doc = {k: v for k, v in signed.items() if k != "proof"}
    options = {k: v for k, v in signed["proof"].items() if k != "proofValue"}
    assert V._hash_data(doc, options).hex() == (VECTORS / "combinedHashJCS.txt").read_text().strip()
    assert V.verify(signed) == key.public


@pytest.mark.parametrize("tamper", [
    lambda d: d["credentialSubject"].update(alumniOf="Another School"),
    lambda d: d["proof"].update(created="2024-01-01T00:00:00Z"),
    lambda d: d["proof"].update(proofValue="z" + V.b58encode(bytes(64))),
    lambda d: d["proof"].update(verificationMethod=V.did_key(fixed_key(1, "x").public)
                                + "#" + V.did_key(fixed_key(1, "x").public)[8:]),
    lambda d: d["proof"].update(cryptosuite="eddsa-rdfc-2022"),
    lambda d: d.update({"@context": ["https://example.org/other"]}),
])
def test_a_tampered_credential_fails_verification(tamper):
    signed = json.loads((VECTORS / "signedJCS.json").read_text())
    tamper(signed)
    with pytest.raises(V.CredentialError):
        V.verify(signed)


@given(st.binary(max_size=40))
def test_base58_round_trips(data):
    assert V.b58decode(V.b58encode(data)) == data


def test_a_revoked_credential_fails_and_a_live_one_holds():
    issuer = fixed_key(4, "issuer")
    listed = V.status_list("https://issuer.example/status/1", issuer, revoked=[94567],
                           created="2026-01-01T00:00:00Z")
    V.verify(listed)
    bits = V.decode_list(listed["credentialSubject"]["encodedList"])
    assert V.bit(bits, 94567) and not V.bit(bits, 94566) and len(bits) * 8 == V.MIN_BITS
    with pytest.raises(V.CredentialError):
        V.bit(bits, V.MIN_BITS)


# ------------------------------------------------------------ proof of personhood at entry
ISSUER = fixed_key(4, "personhood issuer")
LIST = "https://issuer.example/status/7"
NOW = "2026-12-01T00:00:00Z"


def _box(required=True):
    from sandbank.kernel.schema import OPERATOR  # noqa: F401
    from tests.test_federation import Box

    return Box("p", personhood={"issuers": [V.did_key(ISSUER.public)], "required": required})


def _owner(box, key, evidence, kind="human", name="ada"):
    from sandbank.kernel.schema import OPERATOR, RegisterOwner

    box.do(RegisterOwner(actor=OPERATOR, name=name, owner_kind=kind, public_key=key.public,
                         evidence=evidence))
    return box.refusals()


def _publish(box, revoked, created=NOW, issuer=ISSUER):
    from sandbank.kernel.schema import OPERATOR
    from sandbank.regulation.personhood import PublishStatusList

    box.do(PublishStatusList(actor=OPERATOR, credential=json.dumps(
        V.status_list(LIST, issuer, revoked, created))))
    return box.refusals()


def test_an_owner_lacking_proof_of_personhood_fails_entry_when_it_is_required():
    ada = fixed_key(4, "owner/ada")
    # not required: a human owner enters on any evidence (the gap the requirement closes)
    assert _owner(_box(required=False), ada, "trust me") == []
    box = _box()
    assert _owner(box, ada, "trust me") == ["personhood_required"]
    someone_else = V.personhood(fixed_key(4, "owner/eve").public, ISSUER, NOW)
    assert _owner(box, ada, json.dumps(someone_else)) == ["personhood_required"]
    rogue = V.personhood(ada.public, fixed_key(4, "rogue issuer"), NOW)
    assert _owner(box, ada, json.dumps(rogue)) == ["personhood_required"]
    good = V.personhood(ada.public, ISSUER, NOW)
    assert _owner(box, ada, json.dumps(good)) == []
    assert _owner(box, fixed_key(4, "org"), "registry extract", kind="organisation") == []


def test_a_revoked_personhood_credential_fails_entry_and_suspends_an_owner_admitted_on_it():
    box = _box()
    ada, bob = fixed_key(4, "owner/ada"), fixed_key(4, "owner/bob")
    vc_ada = V.personhood(ada.public, ISSUER, NOW, status=V.status_entry(LIST, 10))
    vc_bob = V.personhood(bob.public, ISSUER, NOW, status=V.status_entry(LIST, 11))
    assert _owner(box, ada, json.dumps(vc_ada)) == ["personhood_required"]  # list unknown
    assert _publish(box, revoked=[11]) == []
    assert _owner(box, bob, json.dumps(vc_bob), name="bob") == ["personhood_required"]
    assert _owner(box, ada, json.dumps(vc_ada)) == []
    from sandbank.kernel.schema import OPERATOR, RegisterAgent, agent_attestation_bytes

    key = fixed_key(4, "agent/ada")
    box.do(RegisterAgent(actor=OPERATOR, owner=1, name="a1", public_key=key.public,
                         attestation=ada.sign(agent_attestation_bytes(1, "a1", key.public))))
    assert _publish(box, revoked=[10, 11], created="2026-12-02T00:00:00Z") == []
    assert [a.status for a in box.k.state.registry.agents.values()] == ["suspended"]
    # found attacking it: the revoked owner registered a fresh agent, an older list (or
    # another issuer's list of the same id) cleared the revocation, a resume let it act
    key2 = fixed_key(4, "agent/ada2")
    box.do(RegisterAgent(actor=OPERATOR, owner=1, name="a2", public_key=key2.public,
                         attestation=ada.sign(agent_attestation_bytes(1, "a2", key2.public))))
    assert box.refusals() == ["personhood_revoked"]
    assert _publish(box, revoked=[], created=NOW) == ["stale_list"]
    from sandbank.controls.emergency import Interrupt
    from sandbank.markets.payments import Pay

    box.do(Interrupt(actor=OPERATOR, scope="all", mode="resume", reason="x"))
    box.do(Pay(actor=1, to=1, asset="CRD", amount=1))
    assert box.refusals() == ["personhood_revoked"]


def test_one_person_is_one_owner():
    box = _box()
    first, second = fixed_key(4, "owner/k1"), fixed_key(4, "owner/k2")
    vc1 = V.personhood(first.public, ISSUER, NOW)
    vc1["credentialSubject"]["personId"] = "person-42"
    vc2 = V.personhood(second.public, ISSUER, NOW)
    vc2["credentialSubject"]["personId"] = "person-42"
    vc1, vc2 = (V.issue({k: v for k, v in vc.items() if k != "proof"}, ISSUER, NOW)
                for vc in (vc1, vc2))
    assert _owner(box, first, json.dumps(vc1)) == []
    assert _owner(box, second, json.dumps(vc2), name="ada2") == ["person_registered"]
    odd = V.personhood(fixed_key(4, "owner/k3").public, ISSUER, NOW)
    odd["credentialSubject"]["personId"] = 42  # (not a string: uniqueness turned off)
    odd = V.issue({k: v for k, v in odd.items() if k != "proof"}, ISSUER, NOW)
    assert _owner(box, fixed_key(4, "owner/k3"), json.dumps(odd), name="k3") == [
        "personhood_required"]


def test_a_corrupt_status_list_is_refused_and_the_tick_goes_on():
    import base64

    from sandbank.kernel.schema import OPERATOR
    from sandbank.regulation.personhood import PublishStatusList

    box = _box()
    bad = V.status_list(LIST, ISSUER, [], NOW)
    bad["credentialSubject"]["encodedList"] = "u" + base64.urlsafe_b64encode(
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff").decode().rstrip("=")
    bad = V.issue({k: v for k, v in bad.items() if k != "proof"}, ISSUER, NOW)
    box.do(PublishStatusList(actor=OPERATOR, credential=json.dumps(bad)))
    assert box.refusals() == ["invalid_field"]
    box.do()


def test_a_status_list_from_an_unpinned_issuer_or_unsigned_is_refused():
    from sandbank.kernel.schema import OPERATOR
    from sandbank.regulation.personhood import PublishStatusList

    box = _box()
    rogue = V.status_list(LIST, fixed_key(4, "rogue"), [1], NOW)
    box.do(PublishStatusList(actor=OPERATOR, credential=json.dumps(rogue)))
    assert box.refusals() == ["unknown_issuer"]
    forged = V.status_list(LIST, ISSUER, [1], NOW)
    forged["credentialSubject"]["encodedList"] = V.status_list(LIST, ISSUER, [], NOW)[
        "credentialSubject"]["encodedList"]
    box.do(PublishStatusList(actor=OPERATOR, credential=json.dumps(forged)))
    assert box.refusals() == ["invalid_field"]
    suspension = V.status_list(LIST, ISSUER, [1], NOW)  # a suspension list is no revocation
    suspension["credentialSubject"]["statusPurpose"] = "suspension"
    suspension = V.issue({k: v for k, v in suspension.items() if k != "proof"}, ISSUER, NOW)
    box.do(PublishStatusList(actor=OPERATOR, credential=json.dumps(suspension)))
    assert box.refusals() == ["invalid_field"]
    from sandbank.regulation.personhood import MAX_LISTS

    box.do(*(PublishStatusList(actor=OPERATOR, credential=json.dumps(
        V.status_list(f"{LIST}/{i}", ISSUER, [], NOW))) for i in range(MAX_LISTS + 1)))
    assert box.refusals() == ["too_many_lists"]
    lone = _box()
    lone.k.state.personhood.issuers = frozenset()
    lone.do(PublishStatusList(actor=OPERATOR, credential=json.dumps(rogue)))
    assert lone.refusals() == ["not_configured"]


@pytest.mark.parametrize("evidence", [
    '{"issuer": [], "proof": {}}',
    "[" * 100_000 + "]" * 100_000,
    json.dumps({"type": 5, "proof": {"type": "DataIntegrityProof"}}),
])
def test_malformed_personhood_evidence_is_refused_and_the_tick_goes_on(evidence):
    box = _box()
    assert _owner(box, fixed_key(4, "owner/x"), evidence) == ["personhood_required"]
    box.do()


def test_a_person_banned_in_a_federated_sandbox_cannot_return_under_a_new_key():
    from sandbank.kernel.schema import OPERATOR
    from sandbank.regulation.federation import BanOwner, ImportBans
    from tests.test_federation import Box

    pinned = {"issuers": [V.did_key(ISSUER.public)], "required": True}

    def credential(key):
        vc = V.personhood(key.public, ISSUER, NOW)
        vc["credentialSubject"]["personId"] = "person-7"
        return json.dumps(V.issue({k: v for k, v in vc.items() if k != "proof"}, ISSUER, NOW))

    a = Box("pa", personhood=pinned)
    old, new = fixed_key(4, "owner/old"), fixed_key(4, "owner/new")
    assert _owner(a, old, credential(old)) == []
    a.do(BanOwner(actor=OPERATOR, owner=1, reason="fraud"))
    b = Box("pb", peers=[a.key], personhood=pinned)
    # without B recognising A's list, the same person enters B under a new key
    haven = Box("ph", personhood=pinned)
    assert _owner(haven, new, credential(new)) == []
    b.do(ImportBans(actor=OPERATOR, document=a.bans()))
    assert _owner(b, new, credential(new)) == ["banned_elsewhere"]
    assert _owner(b, new, "  " + credential(new)) == ["banned_elsewhere"]  # (whitespace)
    as_object = json.loads(credential(new))  # the issuer written as {"id": …}
    as_object["issuer"] = {"id": as_object["issuer"]}
    as_object = V.issue({k: v for k, v in as_object.items() if k != "proof"}, ISSUER, NOW)
    assert _owner(b, new, json.dumps(as_object)) == ["banned_elsewhere"]
    assert _owner(b, new, '{"a":' * 3000 + "1" + "}" * 3000) == ["personhood_required"]


def test_a_served_sandbox_admits_a_human_owner_on_personhood_and_takes_status_lists():
    import sandbank.economy
    from sandbank.kernel.sequencer import KernelConfig
    from sandbank.server.app import Sandbox, create_app
    from sandbank.store.sqlite import SQLiteStore
    from tests.api_check import checked_client
    from tests.keys import fixed_secret

    op = {"Authorization": "Bearer op-secret"}
    secret = fixed_secret(8)
    k = sandbank.economy.new_kernel(SQLiteStore(":memory:"), KernelConfig(
        seed=8, verify_signatures=True,
        personhood={"issuers": [V.did_key(ISSUER.public)], "required": True}),
        secret.key("operator"))
    client = checked_client(create_app(Sandbox(k, secret, "op-secret")))
    ada = fixed_key(4, "owner/ada")
    vc = V.personhood(ada.public, ISSUER, NOW, status=V.status_entry(LIST, 3))
    assert client.post("/v1/personhood/status-lists", headers=op,
                       json=V.status_list(LIST, ISSUER, [], NOW)).status_code == 202
    client.post("/v1/tick", headers=op)
    r = client.post("/v1/owners", headers=op, json={
        "name": "ada", "kind": "human", "public_key": ada.public.hex(),
        "evidence": json.dumps(vc)})
    assert r.status_code == 202
    client.post("/v1/tick", headers=op)
    assert [o.name for o in k.state.registry.owners.values()] == ["ada"]
    bob = fixed_key(4, "owner/bob")
    client.post("/v1/owners", headers=op, json={"name": "bob", "kind": "human",
                                                "public_key": bob.public.hex(),
                                                "evidence": "trust me"})
    client.post("/v1/tick", headers=op)
    assert [d["reason"] for d in k.log.last_committed if d["kind"] == "rejected"] == [
        "personhood_required"]

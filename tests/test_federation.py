"""Federation (checklist 50): an owner banned in sandbox A cannot register in federated
sandbox B — in-process, and between two `sandbank serve` processes exchanging signed
lists — and the lists that must not be recognised are not (forged, unpinned, replayed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import orjson
import pytest

import sandbank.economy
from sandbank.audit.checkpoint import verifier_key
from sandbank.kernel.schema import (
    OPERATOR,
    RegisterAgent,
    RegisterOwner,
    agent_attestation_bytes,
)
from sandbank.kernel.sequencer import KernelConfig
from sandbank.regulation.federation import BanOwner, ImportBans, ban_list, policy_digest
from sandbank.store.sqlite import SQLiteStore
from tests.keys import fixed_key

MALLORY = fixed_key(3, "owner/mallory")


class Box:
    """One sandbox in-process: its own operator key, an owner and an agent admitted."""

    def __init__(self, name, peers=(), **cfg):
        self.op = fixed_key(3, f"operator/{name}")
        fed = {"peers": [{"key": p} for p in peers]} if peers else {}
        self.k = sandbank.economy.new_kernel(SQLiteStore(":memory:"), KernelConfig(
            seed=1, **({"federation": fed} if fed else {}), **cfg), self.op)
        self.key = verifier_key(self.k.config.key_name, self.op.public)

    def do(self, *actions):
        for a in actions:
            self.k.submit(a)
        self.k.step()
        return [d for d in self.k.log.last_committed]

    def refusals(self):
        return [d["reason"] for d in self.k.log.last_committed if d["kind"] == "rejected"]

    def admit(self, owner_key=MALLORY, name="mallory", agent="m1"):
        self.do(RegisterOwner(actor=OPERATOR, name=name, owner_kind="human",
                              public_key=owner_key.public, evidence="passport"))
        oid = max(self.k.state.registry.owners)
        key = fixed_key(3, f"agent/{name}/{agent}")
        self.do(RegisterAgent(actor=OPERATOR, owner=oid, name=agent, public_key=key.public,
                              attestation=owner_key.sign(
                                  agent_attestation_bytes(oid, agent, key.public))))
        return oid

    def bans(self):
        return json.dumps(ban_list(self.k, self.op))


def test_an_owner_banned_in_a_cannot_register_in_federated_b():
    a = Box("a")
    oid = a.admit()
    a.do(BanOwner(actor=OPERATOR, owner=oid, reason="fraud ring"))
    assert all(x.status == "revoked" for x in a.k.state.registry.agents.values())
    a.do(BanOwner(actor=OPERATOR, owner=oid, reason="again"),
         BanOwner(actor=OPERATOR, owner=99, reason="nobody"))
    assert sorted(a.refusals()) == ["already_banned", "unknown_owner"]
    # without the federation, B (a safe haven) admits the banned owner
    haven = Box("haven")
    haven.admit()
    assert haven.k.state.registry.owners and not haven.refusals()
    # federated, after B recognises A's signed list, it does not
    b = Box("b", peers=[a.key])
    kinds = [d["kind"] for d in b.do(ImportBans(actor=OPERATOR, document=a.bans()))]
    assert kinds == ["bans_imported"]
    b.do(RegisterOwner(actor=OPERATOR, name="mallory-again", owner_kind="human",
                       public_key=MALLORY.public, evidence="a new passport"))
    assert b.refusals() == ["banned_elsewhere"] and not b.k.state.registry.owners
    # nor one of the banned owner's agent keys under another owner
    b.admit(owner_key=fixed_key(3, "owner/trent"), name="trent", agent="t1")
    leaked = fixed_key(3, "agent/mallory/m1")
    b.do(RegisterAgent(actor=OPERATOR, owner=1, name="m1", public_key=leaked.public,
                       attestation=fixed_key(3, "owner/trent").sign(
                           agent_attestation_bytes(1, "m1", leaked.public))))
    assert b.refusals() == ["banned"]


def test_an_owner_already_in_b_has_its_agents_suspended_when_a_bans_it():
    a = Box("a")
    a.do(BanOwner(actor=OPERATOR, owner=a.admit(), reason="exfiltration"))
    b = Box("b", peers=[a.key])
    oid = b.admit()
    b.do(ImportBans(actor=OPERATOR, document=a.bans()))
    assert [x.status for x in b.k.state.registry.agents.values()] == ["suspended"]
    key = fixed_key(3, "agent/mallory/m2")
    b.do(RegisterAgent(actor=OPERATOR, owner=oid, name="m2", public_key=key.public,
                       attestation=MALLORY.sign(agent_attestation_bytes(oid, "m2", key.public))))
    assert b.refusals() == ["banned"]


def test_forged_unpinned_and_replayed_lists_are_refused():
    a = Box("a")
    a.do(BanOwner(actor=OPERATOR, owner=a.admit(), reason="fraud"))
    b = Box("b", peers=[a.key])
    doc = json.loads(a.bans())
    doc["bans"][0]["owner_key"] = fixed_key(3, "owner/innocent").public.hex()  # tampered
    b.do(ImportBans(actor=OPERATOR, document=json.dumps(doc)))
    assert b.refusals() == ["bad_signature"]
    stranger = Box("stranger")
    stranger.do(BanOwner(actor=OPERATOR, owner=stranger.admit(), reason="x"))
    b.do(ImportBans(actor=OPERATOR, document=stranger.bans()))
    assert b.refusals() == ["unknown_peer"]
    b.do(ImportBans(actor=OPERATOR, document=a.bans()))
    b.do(ImportBans(actor=OPERATOR, document=a.bans()))  # the same list again
    assert b.refusals() == ["stale_list"]
    b.do(ImportBans(actor=OPERATOR, document="{not json"))
    assert b.refusals() == ["invalid_field"]
    unfederated = Box("lone")
    unfederated.do(ImportBans(actor=OPERATOR, document=a.bans()))
    assert unfederated.refusals() == ["not_configured"]


@pytest.mark.parametrize("document", [
    '{"format": "sandbank-federation-bans/1", "sandbox": []}',
    "[" * 100_000 + "]" * 100_000,
    '{"format": "sandbank-federation-bans/1", "sandbox": "\\ud800"}',
])
def test_a_malformed_list_is_refused_and_the_tick_goes_on(document):
    a = Box("a")
    b = Box("b", peers=[a.key])
    b.do(ImportBans(actor=OPERATOR, document=document))
    assert b.refusals() == ["invalid_field"] or b.refusals() == ["unknown_peer"]
    b.do()  # the economy still ticks


def test_a_suspended_agent_of_a_banned_owner_stays_out_after_a_pause_and_resume():
    from sandbank.controls.emergency import Interrupt
    from sandbank.markets.exchange import PlaceOrder

    a = Box("a", assets=("CRD", "WGT"), markets=({"asset": "WGT", "quote": "CRD"},))
    a.do(BanOwner(actor=OPERATOR, owner=a.admit(), reason="fraud"))
    b = Box("b", peers=[a.key], assets=("CRD", "WGT"),
            markets=({"asset": "WGT", "quote": "CRD"},))
    b.admit()
    b.do(ImportBans(actor=OPERATOR, document=a.bans()))
    b.do(Interrupt(actor=OPERATOR, scope="all", mode="pause", reason="drill"))
    b.do(Interrupt(actor=OPERATOR, scope="all", mode="resume", reason="drill over"))
    b.do(PlaceOrder(actor=1, asset="WGT", side="buy", qty=1, price=1))
    assert b.refusals() and b.refusals()[0] in ("banned", "agent_suspended", "forbidden")
    assert not b.k.state.exchange.orders


def test_harmonised_policies_are_recognised_and_a_strict_peer_refuses_others():
    a = Box("a", policy={"trade_fee_bps": 10})
    a.do(BanOwner(actor=OPERATOR, owner=a.admit(), reason="fraud"))
    same = Box("same", peers=[a.key], policy={"trade_fee_bps": 10})
    assert policy_digest(same.k) == policy_digest(a.k)
    # the digest is of the policy in force, defaults written out or not
    explicit = Box("explicit", policy={"trade_fee_bps": 10, "task_fee_bps": 0})
    assert policy_digest(explicit.k) == policy_digest(a.k)
    from sandbank.controls.policy import SetPolicy

    explicit.do(SetPolicy(actor=OPERATOR, param="trade_fee_bps", value=500))
    explicit.do()
    assert policy_digest(explicit.k) != policy_digest(a.k)
    (ev,) = same.do(ImportBans(actor=OPERATOR, document=a.bans()))
    assert ev["harmonised"] is True
    other = Box("other", peers=[a.key])
    (ev,) = other.do(ImportBans(actor=OPERATOR, document=a.bans()))
    assert ev["harmonised"] is False  # recognised, and said to differ
    strict = Box("strict", peers=[a.key])
    strict.k.state.federation.require_harmonised = True
    strict.do(ImportBans(actor=OPERATOR, document=a.bans()))
    assert strict.refusals() == ["not_harmonised"]


@pytest.mark.parametrize("bad, says", [
    ({"peers": [{"key": "nope"}]}, "federation.peers.0.key"),
    ({"peers": [{"url": "x"}]}, "federation.peers.0"),
    ({"peer": []}, "federation must be"),
])
def test_a_bad_federation_section_is_refused(bad, says):
    from sandbank.kernel.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        sandbank.economy.check_config(KernelConfig(federation=bad))


def test_two_served_sandboxes_exchange_signed_lists_and_a_banned_owner_cannot_enter_b(tmp_path):
    from tests.live_server import OPERATOR_TOKEN, LiveServer

    op = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = LiveServer(tmp_path / "a", scenario=None, tick=0.1).start()
    try:
        a_key = httpx.get(f"{a.url}/v1/status").json()["operator_key"]
        b = LiveServer(tmp_path / "b", "--peer", a_key, scenario=None, tick=0.1).start()
        try:
            owner = {"name": "mallory", "public_key": MALLORY.public.hex(),
                     "evidence": "passport"}
            assert httpx.post(f"{a.url}/v1/owners", json=owner, headers=op).status_code == 202
            _until(lambda: httpx.get(f"{a.url}/v1/owners", params={
                "public_key": MALLORY.public.hex()}).status_code == 200)
            r = httpx.post(f"{a.url}/v1/federation/bans", headers=op,
                           json={"owner": 1, "reason": "fraud ring"})
            assert r.status_code == 202
            _until(lambda: httpx.get(f"{a.url}/v1/federation/bans").json()["seq"] == 1)
            env = dict(os.environ, SANDBANK_OPERATOR_TOKEN=OPERATOR_TOKEN)
            done = subprocess.run([sys.executable, "-m", "sandbank.cli", "federate", "--from",
                                   a.url, "--into", b.url], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            time.sleep(0.5)  # (a few ticks: the import runs)
            assert httpx.post(f"{b.url}/v1/owners", json=owner, headers=op).status_code == 202
            time.sleep(0.5)
            # a list that did not come from the pinned peer is refused, and logged
            forged = httpx.get(f"{a.url}/v1/federation/bans").json()
            forged["bans"] = []
            forged["seq"] = 0
            httpx.post(f"{b.url}/v1/federation/import", json=forged, headers=op)
            time.sleep(0.5)
        finally:
            b.stop()
    finally:
        a.stop()
    store = SQLiteStore(str(tmp_path / "b" / "live.db"), readonly=True)
    entries = [orjson.loads(e.body) for e in store.entries()]
    imported = [d for d in entries if d["kind"] == "bans_imported"]
    assert imported and imported[0]["owner_keys"] == [MALLORY.public.hex()]
    refused = [d["reason"] for d in entries if d["kind"] == "rejected"]
    assert "banned_elsewhere" in refused and "bad_signature" in refused
    assert not any(d["kind"] == "owner_registered" for d in entries)


def _until(check, wait=20.0):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_what_peers_can_make_this_sandbox_remember_is_bounded(monkeypatch):
    import sandbank.regulation.federation as F

    a = Box("a")
    for i in range(3):
        a.do(BanOwner(actor=OPERATOR, owner=a.admit(owner_key=fixed_key(3, f"o{i}"),
                                                   name=f"o{i}", agent=f"x{i}"), reason="x"))
    b = Box("b", peers=[a.key])
    monkeypatch.setattr(F, "MAX_IMPORTED", 4)  # three owners and three agents: six keys
    b.do(ImportBans(actor=OPERATOR, document=a.bans()))
    assert b.refusals() == ["too_many_bans"]
    monkeypatch.setattr(F, "MAX_BANS", 2)  # a peer past the list bound says so
    b.do(ImportBans(actor=OPERATOR, document=a.bans()))
    assert b.refusals() == ["list_too_long"]

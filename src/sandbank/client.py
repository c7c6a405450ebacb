"""A Python client for a live sandbox (`sandbank serve`): register, sign, act, observe, and
check that one's own actions are in the signed log — so an agent in another process is as
short to write as one in the lab.

    from sandbank.client import Client
    from sandbank.markets.exchange import PlaceOrder

    c = Client("http://127.0.0.1:8000", pinned_key="sandbank-operator+...")
    me = c.join(owner=1, name="bot-1", owner_key=owner_signing_key)   # waits for admission
    nonce = me.act(PlaceOrder(actor=me.id, asset="WGT", side="buy", qty=1, price=99))
    obs = me.observe()
    me.prove(nonce)       # every entry of that action is proven against a signed checkpoint

The agent's key never leaves the process; every request is signed with it.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from sandbank.audit.checkpoint import parse_verifier_key
from sandbank.audit.proofs import check_bundle
from sandbank.identity.keys import SigningKey
from sandbank.kernel.schema import Action, agent_attestation_bytes
from sandbank.urls import without_credentials


class ClientError(RuntimeError):
    """The server refused a request: `code` is its stable problem code (`unreachable`, status
    0: no answer from the server at all)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}" if status else f"{code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class Client:
    def __init__(self, base_url: str = "", *, pinned_key: str | None = None,
                 witness_key: str | None = None, http: httpx.Client | None = None,
                 timeout: float = 10.0) -> None:
        """`pinned_key`: the operator's verifier key (refuse a server signing with another);
        `witness_key`: a witness's verifier key — `checkpoint()` then also requires the log
        to extend the latest checkpoint that witness cosigned."""
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        status = self._get("/v1/status")
        if pinned_key is not None and status["operator_key"] != pinned_key:
            raise ClientError(0, "wrong_operator", "the server signs with another key than the "
                              "one pinned")
        self.operator_key = status["operator_key"]
        self.seen: Any = None  # the last checkpoint this client verified
        self.witness = None
        if witness_key is not None:
            from sandbank.audit.witness import parse_witness_key

            self.witness = parse_witness_key(witness_key)
        self.cosigned: Any = None  # the last cosigned checkpoint this client checked

    def checkpoint(self) -> Any:
        """The latest signed checkpoint, checked against the operator's key and proven
        consistent with the last one this client saw (the log was only appended to since:
        no entry rewritten, none dropped). Raises ClientError `inconsistent_log` otherwise."""
        import base64

        name, key = parse_verifier_key(self.operator_key)
        old = self.seen.size if self.seen is not None else 0
        bundle = self._get("/v1/consistency", params={"old_size": old})
        try:
            cp = check_bundle(bundle, name, key)
        except ValueError as e:
            raise ClientError(0, "inconsistent_log", str(e)) from None
        if self.seen is not None and base64.b64decode(bundle["old_root"]) != self.seen.root:
            raise ClientError(0, "inconsistent_log", f"the first {old} entries have another "
                              f"root than the checkpoint seen before: the log was rewritten")
        if self.witness is not None:
            self._witnessed(cp, name, key)
        self.seen = cp
        return cp

    def _witnessed(self, cp: Any, name: str, key: bytes) -> None:
        """The latest checkpoint the pinned witness cosigned: its cosignature valid, and the
        log of `cp` consistent with it (what the witness saw is a prefix of what we see)."""
        import base64

        from sandbank.audit.checkpoint import NoteError
        from sandbank.audit.witness import open_cosignature

        note = self._get("/v1/checkpoint").get("cosigned")
        if note is None:
            raise ClientError(0, "not_cosigned", "no checkpoint of this log is cosigned by the "
                              "pinned witness yet")
        try:
            cosigned, _ = open_cosignature(note, *self.witness)
        except NoteError as e:
            raise ClientError(0, "not_cosigned", f"the cosigned checkpoint: {e}") from None
        if cosigned.size > cp.size:
            raise ClientError(0, "inconsistent_log", f"the witness cosigned {cosigned.size} "
                              f"entries, the log shows {cp.size}: it was truncated")
        bundle = self._get("/v1/consistency", params={"old_size": cosigned.size})
        try:
            check_bundle(bundle, name, key)
        except ValueError as e:
            raise ClientError(0, "inconsistent_log", str(e)) from None
        if base64.b64decode(bundle["old_root"]) != cosigned.root:
            raise ClientError(0, "inconsistent_log", "the log is not the one the witness "
                              "cosigned (a fork)")
        self.cosigned = cosigned

    def _check(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                p = r.json()
                raise ClientError(r.status_code, p.get("code", "error"), p.get("detail", ""))
            except ValueError:
                raise ClientError(r.status_code, "error", r.text) from None
        return r.json()

    def _send(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as e:  # refused, unresolvable, timed out: one line
            # (never quote credentials a URL may carry: this text reaches logs and models)
            url = without_credentials(str(self.http.base_url) or path)
            raise ClientError(0, "unreachable", f"cannot reach the sandbox at {url} "
                              f"({type(e).__name__}: {e or 'no answer'})") from None
        return self._check(r)

    def _get(self, path: str, **kw: Any) -> Any:
        return self._send("GET", path, **kw)

    def _post(self, path: str, **kw: Any) -> Any:
        return self._send("POST", path, **kw)

    def status(self) -> dict[str, Any]:
        return self._get("/v1/status")

    def market(self) -> dict[str, Any]:
        """Public market data: prices, best bid and ask, recent trades, concentration."""
        return self._get("/v1/market")

    def admit_owner(self, operator_token: str, name: str, owner_key: SigningKey, evidence: str,
                    *, kind: str = "organisation", wait: float = 30.0) -> int:
        """(The operator's call.) Admit an owner and wait for its id."""
        self._post("/v1/owners", headers={"Authorization": f"Bearer {operator_token}"},
                   json={"name": name, "public_key": owner_key.public.hex(), "evidence": evidence,
                         "kind": kind})
        return self._poll(lambda: self._get("/v1/owners", params={
            "public_key": owner_key.public.hex()})["owner"], ("unknown_owner",), wait)

    def agent(self, key: SigningKey) -> RemoteAgent:
        """The agent already admitted with this key (e.g. after a restart of the agent)."""
        found = self._get("/v1/agents", params={"public_key": key.public.hex()})
        return RemoteAgent(self, found["agent"], key, found["nonce"])

    def _poll(self, fetch: Any, waiting: tuple[str, ...], wait: float) -> Any:
        deadline = time.monotonic() + wait
        while True:
            try:
                return fetch()
            except ClientError as e:
                if e.code not in waiting or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def join(self, owner: int, name: str, owner_key: SigningKey, *, key: SigningKey | None = None,
             skills: dict[str, int] | None = None, wait: float = 30.0) -> RemoteAgent:
        """Ask for admission with a new key (or `key`), attested by the owner; wait until a
        tick admits it (or raise)."""
        key = key or SigningKey.generate()
        self._post("/v1/agents", json={
            "owner": owner, "name": name, "public_key": key.public.hex(),
            "attestation": owner_key.sign(agent_attestation_bytes(owner, name, key.public)).hex(),
            "skills": skills or {}})
        return self._poll(lambda: self.agent(key), ("unknown_agent", "awaiting_approval"), wait)


class RemoteAgent:
    def __init__(self, client: Client, agent: int, key: SigningKey, nonce: int = 0) -> None:
        self.client, self.id, self.key, self.nonce = client, agent, key, nonce

    def envelope(self, action: Action) -> dict[str, Any]:
        """`action` signed as this agent with its next nonce, in the wire form `POST
        /v1/actions` takes — also the DataPart of an A2A message (docs/server.md, "A2A").
        Not sent: its nonce is `envelope["nonce"]`."""
        if action.actor != self.id:
            raise ValueError(f"an agent acts only as itself (actor {self.id})")
        self.nonce += 1
        return action.signed(self.key, self.nonce).to_dict()

    def act(self, action: Action) -> int:
        """Sign and submit an action as this agent; returns its nonce. If the server says
        the nonce was used (this process restarted, or another holds the key too), the nonce
        is read back from the server and the action signed and sent once more."""
        if action.actor != self.id:
            raise ValueError(f"an agent acts only as itself (actor {self.id})")
        for attempt in (1, 2):
            self.nonce += 1
            action.signed(self.key, self.nonce)
            try:
                self.client._post("/v1/actions", json=action.to_dict())
                return self.nonce
            except ClientError as e:
                if e.code != "stale_nonce" or attempt == 2:
                    raise
                self.nonce = self.client._get("/v1/agents", params={
                    "public_key": self.key.public.hex()})["nonce"]
        raise AssertionError("unreachable")

    def observe(self) -> dict[str, Any]:
        headers, query = self._reading()
        return self.client._get(f"/v1/agents/{self.id}/observation", params=query,
                                headers=headers)

    def wait_funded(self, asset: str, *, wait: float = 30.0) -> int:
        """Wait until this agent holds an account in `asset` with a positive balance (the
        server's endowment arrives a few ticks after admission); returns the balance."""
        def funded() -> int:
            for a in self.observe()["accounts"]:
                if a["asset"] == asset and a["balance"] > 0:
                    return a["balance"]
            raise ClientError(0, "not_funded", f"no {asset} yet")
        return self.client._poll(funded, ("not_funded",), wait)

    def wait(self, nonce: int, *, wait: float = 30.0) -> list[dict[str, Any]]:
        """Wait until the action with this nonce has run (its tick committed); its entries."""
        def ran() -> list[dict[str, Any]]:
            found = self.entries(nonce)
            if not found:
                raise ClientError(0, "not_logged", f"action {nonce} has not run yet")
            return found
        return self.client._poll(ran, ("not_logged",), wait)

    def _reading(self) -> tuple[dict[str, str], dict[str, int]]:
        """Headers and query that read the log as this agent (its own entries in full)."""
        tick = self.client.status()["tick"]
        sig = self.key.sign(f"observe:{self.id}:{tick}".encode()).hex()
        return {"X-Sandbank-Agent": str(self.id), "X-Sandbank-Signature": sig}, {"tick": tick}

    def entries(self, nonce: int, reading: Any = None) -> list[dict[str, Any]]:
        """The log entries the action with this nonce produced (empty until its tick ran).
        `reading`: headers and query from `_reading()`, if already made."""
        headers, query = reading or self._reading()
        return self.client._get("/v1/entries", params={"actor": self.id, "nonce": nonce, **query},
                                headers=headers)["entries"]

    def prove(self, nonce: int, entries: list[dict[str, Any]] | None = None) -> list[int]:
        """Check, against the operator's key, that every entry of that action is in the
        signed log, and that they are the action's: the first carries this agent as actor,
        the nonce, and how many entries the action produced (the server's index cannot
        point elsewhere); returns their sequence numbers (raises if anything fails).
        `entries`: the action's entries if already fetched (from `wait`)."""
        return [seq for seq, _ in self.proven(nonce, entries)]

    def proven(self, nonce: int, entries: list[dict[str, Any]] | None = None
               ) -> list[tuple[int, dict[str, Any] | None]]:
        """As `prove`, with each entry's body as the proof carried it (None where the server
        withheld it): what the action did, refusal reason included, checked against the
        operator's signed checkpoint rather than taken from the server's word. Each bundle
        must be an inclusion proof of that entry's seq whose entry bytes are the proven
        leaf."""
        import json

        name, key = parse_verifier_key(self.client.operator_key)
        headers, query = reading = self._reading()  # one status read for the whole proof
        found = self.entries(nonce, reading) if entries is None else entries
        if not found:
            raise ClientError(0, "not_logged", f"no entry of action {nonce} yet")
        out: list[tuple[int, dict[str, Any] | None]] = []
        for i, e in enumerate(found):
            bundle = self.client._get(f"/v1/proof/{e['seq']}", params=query, headers=headers)
            try:
                # an inclusion proof of that very seq, nothing else: a consistency bundle
                # also verifies against a real checkpoint, but proves no entry at all
                if not isinstance(bundle, dict) or bundle.get("type") != "inclusion" \
                        or bundle.get("index") != e["seq"]:
                    raise ValueError(f"not an inclusion proof of entry {e['seq']}")
                check_bundle(bundle, name, key)  # the entry's bytes are the proven leaf
            except ValueError as err:
                raise ClientError(0, "bad_proof", f"entry {e['seq']}: {err}") from None
            body = json.loads(bundle["entry"]) if bundle["entry"] is not None else None
            if i == 0:
                first = body or {}
                if (first.get("actor"), first.get("nonce"), first.get("entries", 1)) != (
                        self.id, nonce, len(found)) or bundle["index"] != e["seq"]:
                    raise ClientError(0, "not_this_action", f"entry {e['seq']} does not start "
                                      f"action {nonce} of agent {self.id} with {len(found)} "
                                      f"entries (the server's index is wrong)")
            elif e["seq"] != found[0]["seq"] + i:
                raise ClientError(0, "not_this_action", "an action's entries are consecutive")
            out.append((e["seq"], body))
        return out

"""The sandbox over HTTP (issue 7, first slice): one economy, the same sequencer and log as
the lab, reached only through this API.

- `POST /v1/owners` and `POST /v1/tick` need the operator's bearer token;
- `POST /v1/agents` admits an agent that presents its Ed25519 key and its owner's signed
  attestation (admission policy `open`: the attestation is the check);
- `POST /v1/actions` queues one action in wire form, signed by its actor over its canonical
  bytes with a fresh nonce: the sequencer checks signature and nonce at the tick, so a forged,
  replayed or borrowed action is refused *and logged* (the agent sees why in its feedback);
- `GET /v1/agents/{id}/observation?tick=T` needs the agent's signature over
  `observe:<id>:<T>` (header `X-Sandbank-Signature`, hex; T at most 2 ticks old): no one
  reads another agent's observation;
- `GET /v1/status`, `GET /v1/checkpoint`, `GET /v1/proof/{seq}`: anyone may check that
  entries are in the signed log (`sandbank check-proof`).

Every error is a JSON problem (`application/problem+json`) with a stable `code`. Ticks run on
the operator's command here (a timer is the next step, with WebSockets, MCP and the
dashboard).
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from sandbank.audit.checkpoint import verifier_key
from sandbank.identity.keys import SigningKey, verify_signature
from sandbank.kernel.schema import (
    OPERATOR,
    MalformedAction,
    RegisterAgent,
    RegisterOwner,
    action_from_dict,
)
from sandbank.kernel.sequencer import Kernel, QueueFull

MAX_BODY = 1 << 20


class Sandbox:
    """One economy behind a lock: every kernel call of the API goes through here."""

    def __init__(self, kernel: Kernel, operator_key: SigningKey, operator_token: str) -> None:
        if not kernel.config.verify_signatures:
            raise ValueError("a live sandbox checks every action's signature "
                             "(KernelConfig.verify_signatures=True)")
        self.k = kernel
        self.key = operator_key
        self.token = operator_token
        self.lock = threading.Lock()
        self.operator_nonce = max(getattr(kernel, "operator_nonce", 0),
                                  kernel.state.operator_nonce)

    def operator_submit(self, action: Any) -> None:
        self.operator_nonce += 1
        action.nonce = self.operator_nonce
        action.signature = self.key.sign(action.signing_bytes())
        self.k.submit(action)


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def create_app(box: Sandbox) -> Any:
    app = FastAPI(title="sandbank", version="0.1",
                  description="A distributional-AGI-safety sandbox economy, over HTTP.")

    @app.exception_handler(Problem)
    async def problem(_: Request, e: Problem) -> JSONResponse:
        return JSONResponse({"type": f"https://sandbank.dev/problems/{e.code}", "title": e.code,
                             "status": e.status, "code": e.code, "detail": e.detail},
                            status_code=e.status, media_type="application/problem+json")

    def operator(authorization: str | None) -> None:
        if authorization != f"Bearer {box.token}":
            raise Problem(401, "not_operator", "this needs the operator's bearer token")

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise Problem(413, "too_large", f"requests are limited to {MAX_BODY} bytes")
        import json

        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise Problem(400, "malformed_json", str(e)) from None
        if not isinstance(doc, dict):
            raise Problem(400, "malformed_json", "the body must be a JSON object")
        return doc

    def queue(action: Any) -> dict[str, Any]:
        try:
            box.k.submit(action)
        except QueueFull as e:
            raise Problem(503, "queue_full", str(e)) from None
        return {"queued": True, "tick": box.k.tick + 1}

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        with box.lock:
            last = box.k.store.last_checkpoint()
            return {"tick": box.k.tick, "entries": box.k.log.size,
                    "root": last.root.hex() if last else None,
                    "operator_key": verifier_key(box.k.config.key_name, box.key.public)}

    @app.post("/v1/owners", status_code=202)
    async def owners(request: Request, authorization: str | None = Header(None)) -> dict:
        operator(authorization)
        d = await body(request)
        try:
            action = RegisterOwner(actor=OPERATOR, name=str(d["name"]),
                                   owner_kind=str(d.get("kind", "organisation")),
                                   public_key=bytes.fromhex(d["public_key"]),
                                   evidence=str(d.get("evidence", "")))
        except (KeyError, ValueError, TypeError) as e:
            raise Problem(400, "malformed_action", f"owner: {e}") from None
        with box.lock:
            box.operator_submit(action)
            return {"queued": True, "tick": box.k.tick + 1}

    @app.post("/v1/agents", status_code=202)
    async def agents(request: Request) -> dict:
        d = await body(request)
        try:
            action = RegisterAgent(actor=OPERATOR, owner=int(d["owner"]), name=str(d["name"]),
                                   public_key=bytes.fromhex(d["public_key"]),
                                   attestation=bytes.fromhex(d["attestation"]),
                                   skills={str(k): int(v) for k, v in d.get("skills", {}).items()})
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise Problem(400, "malformed_action", f"agent: {e}") from None
        with box.lock:  # the kernel checks the owner's attestation at the tick
            box.operator_submit(action)
            return {"queued": True, "tick": box.k.tick + 1}

    @app.post("/v1/actions", status_code=202)
    async def actions(request: Request) -> dict:
        d = await body(request)
        if d.get("actor") == OPERATOR or not isinstance(d.get("actor"), int) or d["actor"] < 1:
            raise Problem(403, "forbidden", "actions here are agents' actions (actor >= 1)")
        try:
            action = action_from_dict(d)
        except MalformedAction as e:
            with box.lock:  # still sequenced, so the refusal is on record
                box.k.submit_raw(d)
            raise Problem(400, "malformed_action", str(e)) from None
        with box.lock:
            return queue(action)

    @app.get("/v1/owners")
    def find_owner(public_key: str) -> dict:
        """Which owner a public key was admitted as."""
        with box.lock:
            for o in box.k.state.registry.owners.values():
                if o.public_key.hex() == public_key.lower():
                    return {"owner": o.id, "name": o.name}
        raise Problem(404, "unknown_owner", "no owner was admitted with that key")

    @app.get("/v1/agents")
    def find_agent(public_key: str) -> dict:
        """Which agent a public key was admitted as (after the tick that admitted it)."""
        with box.lock:
            for a in box.k.state.registry.agents.values():
                if a.public_key.hex() == public_key.lower():
                    return {"agent": a.id, "owner": a.owner, "status": a.status,
                            "nonce": a.nonce}
        raise Problem(404, "unknown_agent", "no agent was admitted with that key")

    @app.get("/v1/entries")
    def find_entries(actor: int, nonce: int) -> dict:
        """The log entries an actor's action (by its nonce) produced: seq and kind."""
        import orjson

        with box.lock:
            found = []
            for e in box.k.store.entries():
                d = orjson.loads(e.body)
                if d.get("actor") == actor and d.get("nonce") == nonce:
                    found.append({"seq": e.seq, "tick": e.tick, "kind": e.kind})
            return {"entries": found}

    @app.get("/v1/agents/{agent}/observation")
    def observation(agent: int, tick: int | None = None,
                    x_sandbank_signature: str | None = Header(None)) -> dict:
        """`tick`: the tick the signature names (default: now); it may be up to 2 ticks old,
        since ticks run while a request travels."""
        from sandbank.agents.llm.agent import plain

        with box.lock:
            a = box.k.state.registry.agents.get(agent)
            if a is None:
                raise Problem(404, "unknown_agent", f"no agent {agent}")
            signed = box.k.tick if tick is None else tick
            if not box.k.tick - 2 <= signed <= box.k.tick:
                raise Problem(401, "stale_signature", f"the signature names tick {signed}; "
                              f"it is tick {box.k.tick}")
            message = f"observe:{agent}:{signed}".encode()
            try:
                ok = verify_signature(a.public_key, bytes.fromhex(x_sandbank_signature or ""),
                                      message)
            except ValueError:
                ok = False
            if not ok:
                raise Problem(401, "bad_signature", f"sign 'observe:{agent}:{box.k.tick}' with "
                              f"agent {agent}'s key (header X-Sandbank-Signature, hex)")
            return plain(box.k.observe(agent))

    @app.post("/v1/tick")
    def tick(authorization: str | None = Header(None)) -> dict:
        operator(authorization)
        with box.lock:
            s = box.k.step()
            return {"tick": s.tick, "events": s.events, "accepted": s.accepted,
                    "rejected": s.rejected, "reasons": {str(k): v for k, v in s.reasons.items()}}

    @app.get("/v1/checkpoint")
    def checkpoint() -> dict:
        with box.lock:
            cp = box.k.store.last_checkpoint()
            if cp is None:
                raise Problem(404, "no_checkpoint", "nothing committed yet")
            return {"tick": cp.tick, "size": cp.size, "root": cp.root.hex(), "note": cp.note}

    @app.get("/v1/proof/{seq}")
    def proof(seq: int) -> dict:
        from sandbank.audit.proofs import BundleError, inclusion_bundle

        with box.lock:
            try:
                return inclusion_bundle(box.k.store, seq)
            except BundleError as e:
                raise Problem(404, "no_such_entry", str(e)) from None

    return app


def open_store(db: str) -> Any:
    """A store from `--db`: a PostgreSQL URL, or a SQLite file path."""
    if db.startswith(("postgresql://", "postgres://")):
        from sandbank.store.postgres import PostgresStore

        return PostgresStore(db)
    from sandbank.store.sqlite import SQLiteStore

    return SQLiteStore(db)


def load_key(path: str) -> SigningKey:
    """The operator's key, kept in a file (created, mode 0600, on first use): the same key
    must sign the log across restarts."""
    import os
    import secrets

    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return SigningKey.from_seed(bytes.fromhex(f.read().strip()))


def ticker(box: Sandbox, seconds: float, stop: threading.Event) -> threading.Thread:
    """Advance the economy every `seconds` (a daemon thread)."""
    def run() -> None:
        while not stop.wait(seconds):
            with box.lock:
                box.k.step()
    t = threading.Thread(target=run, daemon=True, name="sandbank-ticker")
    t.start()
    return t

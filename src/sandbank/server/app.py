"""The sandbox over HTTP and WebSocket (`sandbank serve`; the whole API is in docs/server.md
and at /docs). One economy, the same sequencer and log as the lab, reached only through here.

Credentials:
- the **operator** (bearer token): admits owners, decides admission requests, ticks on command;
- an **agent**: its Ed25519 key. Actions are signed over their canonical bytes with a fresh
  nonce; reads of its own observation carry a signature over `observe:<id>:<tick>`;
- an **overseer**: either the dashboard's console overseer (bearer overseer token; the server
  holds its key) or an overseer with its own key (signed actions; reads signed over
  `oversee:<id>:<tick>`).

A request refused before it reaches the sequencer (forged, replayed, rate-limited, an agent on
an overseer endpoint) is answered with a JSON problem (`application/problem+json`, a stable
`code`) and put on record in the signed log (`request_refused`); one that reaches it and is
refused there is logged as `rejected`, as in the lab.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from importlib import resources
from typing import Any

import orjson
from fastapi import FastAPI, Header, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from sandbank.audit.checkpoint import verifier_key
from sandbank.identity.keys import SigningKey, verify_signature
from sandbank.kernel.controls import OVERSEER_BASE, is_overseer_id
from sandbank.kernel.schema import (
    OPERATOR,
    Action,
    MalformedAction,
    RegisterAgent,
    RegisterOwner,
    action_from_dict,
)
from sandbank.kernel.sequencer import QueueFull
from sandbank.server import models as M
from sandbank.server.sandbox import MAX_ID, Admission, Sandbox, SetupError, Subscriber

MAX_BODY = 1 << 20  # a request
MAX_ACTION = 64 << 10  # one action
MAX_BATCH = 500  # actions in one batch
ADMISSIONS = "admissions"  # the rate-limit bucket shared by all admission requests
FRESH_TICKS = 2  # a read signature may name a tick this old (ticks run while requests travel)
CONSOLE_KINDS = {"trip_breaker", "resume", "set_cap", "approve_external", "interrupt",
                 "raise_alert", "disable_action"}

__all__ = ["Sandbox", "create_app", "open_store", "load_key", "ticker", "SetupError"]


class ProblemDoc(BaseModel):
    """An error (RFC 9457 problem details); `code` is stable, `detail` says what to do."""

    type: str
    title: str
    status: int
    code: str
    detail: str


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": f"https://sandbank.dev/problems/{code}", "title": code,
                         "status": status, "code": code, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a body the handler parses itself (so malformed input is still logged)."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


ACTION_SCHEMA = {"type": "object", "required": ["actor", "kind", "nonce", "signature"],
                 "properties": {"actor": {"type": "integer"}, "kind": {"type": "string"},
                                "nonce": {"type": "integer"},
                                "signature": {"type": "string", "description": "hex Ed25519"}},
                 "additionalProperties": True}


def create_app(box: Sandbox) -> Any:
    problem_doc = {"model": ProblemDoc, "content": {"application/problem+json": {}}}
    app = FastAPI(title="sandbank", version="0.1",
                  description="A distributional-AGI-safety sandbox economy, live. Errors are "
                  "JSON problems (RFC 9457) with a stable `code`; see docs/server.md.",
                  responses={status: {**problem_doc, "description": what} for status, what in (
                      (400, "malformed input"), (401, "a missing or wrong credential"),
                      (403, "not allowed for this identity"), (404, "no such thing"),
                      (409, "a replayed nonce"), (413, "too large"), (429, "rate limited"),
                      (503, "the next tick is full"))})
    k = box.k

    def openapi() -> dict[str, Any]:
        """The schema, without FastAPI's default 422 (invalid requests are 400 problems)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            for ops in doc["paths"].values():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                doc.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Problem)
    async def problem(_: Request, e: Problem) -> JSONResponse:
        return _problem(e.status, e.code, e.detail)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
                          for err in e.errors()[:3])
        return _problem(400, "invalid_request", where)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _problem(e.status_code, code, str(e.detail))

    @app.exception_handler(Exception)
    async def bug(_: Request, e: Exception) -> JSONResponse:  # a bug of ours: still a problem
        import logging

        logging.getLogger("sandbank.server").exception("internal error")
        return _problem(500, "internal_error", f"{type(e).__name__} (the server logged it)")

    # ------------------------------------------------------------------ credentials
    def bearer(authorization: str | None, token: str | None) -> bool:
        """Does the request carry this bearer token? (compared in constant time)"""
        return bool(token) and authorization is not None and hmac.compare_digest(
            authorization.encode(), f"Bearer {token}".encode())

    def operator(authorization: str | None, endpoint: str) -> None:
        if not bearer(authorization, box.token):
            box.refuse(0, endpoint, "not_operator", "no or a wrong operator token")
            raise Problem(401, "not_operator", "this needs the operator's bearer token")

    def fresh(tick: int | None) -> int:
        signed = k.tick if tick is None else tick
        if not k.tick - FRESH_TICKS <= signed <= k.tick:
            raise Problem(401, "stale_signature", f"the signature names tick {signed}; it is "
                          f"tick {k.tick}")
        return signed

    def signed_by(public_key: bytes, signature: str | None, message: bytes) -> bool:
        try:
            return verify_signature(public_key, bytes.fromhex(signature or ""), message)
        except (ValueError, TypeError):
            return False

    def read_signed(public_key: bytes, what: str, who: int, tick: int | None,
                    signature: str | None) -> bool:
        """A read's signature over `<what>:<who>:<tick>` (the tick at most 2 ticks old)."""
        return signed_by(public_key, signature, f"{what}:{who}:{fresh(tick)}".encode())

    def check_observer(agent: int, tick: int | None, signature: str | None) -> None:
        """Only the agent itself reads its observation."""
        a = k.state.registry.agents.get(agent)
        if a is None:
            raise Problem(404, "unknown_agent", f"no agent {agent}")
        if not read_signed(a.public_key, "observe", agent, tick, signature):
            box.refuse(agent, f"observation/{agent}", "bad_signature",
                       "a read of an agent's observation not signed by that agent")
            raise Problem(401, "bad_signature", f"sign 'observe:{agent}:{k.tick}' with agent "
                          f"{agent}'s key (header X-Sandbank-Signature, hex)")

    def overseer(authorization: str | None, who: int | None, signature: str | None,
                 tick: int | None, endpoint: str, *, console_only: bool = False) -> int:
        """The overseer a request is from: the console (bearer overseer token), an overseer
        with its own key (signed `oversee:<id>:<tick>`), or, for reads, the operator."""
        if bearer(authorization, box.overseer_token):
            if not box.console:
                raise Problem(503, "console_not_ready", "the console overseer is admitted "
                              "at the next tick")
            return box.console
        if not console_only:
            if bearer(authorization, box.token):
                return OPERATOR
            o = k.state.controls.overseers.get(who) if who is not None else None
            if o is not None and who is not None and who <= OVERSEER_BASE - 1 \
                    and read_signed(o.public_key, "oversee", who, tick, signature):
                return who
        claimed = who if who is not None else 0
        box.refuse(claimed, endpoint, "not_overseer", "an oversight endpoint called "
                   f"without an overseer's credentials (claimed {claimed})")
        raise Problem(403, "not_overseer", "this needs an overseer's credentials: the overseer "
                      "token, or X-Sandbank-Overseer and X-Sandbank-Signature over "
                      "'oversee:<id>:<tick>' by an admitted overseer")

    async def body(request: Request, limit: int = MAX_BODY) -> Any:
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > limit):
            raise Problem(413, "too_large", f"this request is limited to {limit} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise Problem(413, "too_large", f"this request is limited to {limit} bytes")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise Problem(400, "malformed_json", str(e)) from None

    def obj(doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise Problem(400, "malformed_json", "the body must be a JSON object")
        return doc

    # ------------------------------------------------------------------ agents' actions
    def accept(d: Any, endpoint: str, *, overseers: bool = False) -> dict[str, Any]:
        """Check one signed action in wire form and queue it for the next tick; raise a
        Problem otherwise. It reads only what a tick cannot change under it (the actor's key)
        or what the tick checks again (the nonce), so it never waits for a running tick."""
        if not isinstance(d, dict):
            raise Problem(400, "malformed_action", "an action is a JSON object")
        actor = d.get("actor")
        if type(actor) is not int:
            raise Problem(400, "malformed_action", "actor must be an integer")
        if overseers != is_overseer_id(actor) or actor == OPERATOR or (not overseers and actor < 1):
            box.refuse(actor, endpoint, "forbidden", f"actor {actor} on {endpoint}")
            raise Problem(403, "forbidden", "agents' actions go to /v1/actions (actor >= 1), "
                          "overseers' to /v1/oversight/actions")
        try:
            action = action_from_dict(d)
        except MalformedAction as e:
            box.enqueue_raw(d)  # still sequenced, so the refusal is on record
            raise Problem(400, "malformed_action", str(e)) from None
        ident = (k.state.controls.overseers.get(actor) if overseers
                 else k.state.registry.agents.get(actor))
        if ident is None:
            box.refuse(actor, endpoint, "unknown_actor", f"no identity {actor}")
            raise Problem(404, "unknown_actor", f"no identity {actor} is admitted")
        if action.signature is None or not verify_signature(
                ident.public_key, action.signature, action.signing_bytes()):
            box.refuse(actor, endpoint, "bad_signature",
                       f"{action.KIND} nonce {action.nonce}: not signed by actor {actor}")
            raise Problem(401, "bad_signature", f"the action is not signed by actor {actor}'s "
                          f"key (sign its canonical bytes: Action.signing_bytes())")
        if action.nonce <= ident.nonce:
            box.refuse(actor, endpoint, "stale_nonce",
                       f"{action.KIND} nonce {action.nonce} <= last {ident.nonce}: a replay")
            raise Problem(409, "stale_nonce", f"nonce {action.nonce} was used (the last "
                          f"committed is {ident.nonce}): a replay, or a nonce reused")
        if not box.allow(actor):
            box.refuse(actor, endpoint, "rate_limited", f"over {box.rate}/s")
            raise Problem(429, "rate_limited", f"at most {box.rate:g} actions/s per identity "
                          f"(bursts of {box.burst})")
        try:
            box.enqueue(action, ident.public_key)  # verified once, here
        except QueueFull as e:
            raise Problem(503, "queue_full", str(e)) from None
        return {"queued": True, "tick": k.tick + 1, "nonce": action.nonce}

    @app.post("/v1/actions", responses=M.answers(M.Queued, 202),
              status_code=202, openapi_extra=_json_body(ACTION_SCHEMA),
              tags=["agents"])
    async def actions(request: Request) -> dict:
        """Queue one action, signed by its actor (an agent) with a fresh nonce. Runs at the
        next tick; its outcome is in the actor's observation (feedback) and in the log."""
        return accept(await body(request, MAX_ACTION), "/v1/actions")

    @app.post("/v1/actions/batch", responses=M.answers(M.BatchAnswer, 202),
              status_code=202, tags=["agents"], openapi_extra=_json_body(
        {"type": "object", "required": ["actions"], "properties": {
            "actions": {"type": "array", "maxItems": MAX_BATCH, "items": ACTION_SCHEMA}}}))
    async def batch(request: Request) -> dict:
        """Queue up to 500 signed actions (of any agents) at once; each is checked as if
        posted alone, and the answer says, in order, which were queued."""
        d = obj(await body(request))
        items = d.get("actions")
        if not isinstance(items, list) or len(items) > MAX_BATCH:
            raise Problem(400, "malformed_json", f"'actions' must be a list of at most "
                          f"{MAX_BATCH} actions")
        out = []
        for item in items:
            try:
                out.append(accept(item, "/v1/actions/batch"))
            except Problem as p:
                out.append({"queued": False, "code": p.code, "detail": p.detail})
        return {"results": out, "queued": sum(1 for r in out if r["queued"])}

    # ------------------------------------------------------------------ admission
    @app.get("/v1/status", responses=M.answers(M.Status, 200),
              tags=["audit"])
    def status() -> dict[str, Any]:
        with box.lock:
            last = k.store.last_checkpoint()
            return {"tick": k.tick, "entries": k.log.size,
                    "root": last.root.hex() if last else None,
                    "operator_key": verifier_key(k.config.key_name, box.key.public),
                    "admission": box.admission, "endowment": box.endowment, "stake": box.stake,
                    "assets": list(k.config.assets),
                    "markets": sorted(k.state.exchange.markets), "console": box.console,
                    "population": len(box.econ.agents) if box.econ is not None else 0,
                    "failure": box.failure}

    @app.post("/v1/owners", responses=M.answers(M.OwnerQueued, 202),
              status_code=202, tags=["operator"], openapi_extra=_json_body(
        {"type": "object", "required": ["name", "public_key", "evidence"], "properties": {
            "name": {"type": "string"}, "public_key": {"type": "string"},
            "kind": {"type": "string"}, "evidence": {"type": "string"}}}))
    async def owners(request: Request, authorization: str | None = Header(None)) -> dict:
        """Admit an owner (operator): a person or organisation that answers for agents."""
        operator(authorization, "/v1/owners")
        d = obj(await body(request))
        try:  # the kernel's own parser: types and ranges as for any action
            action = action_from_dict({
                "kind": RegisterOwner.KIND, "actor": OPERATOR, "name": d.get("name"),
                "owner_kind": d.get("kind", "organisation"), "public_key": d.get("public_key"),
                "evidence": d.get("evidence")})
        except MalformedAction as e:
            raise Problem(400, "malformed_action", f"owner: {e}") from None
        assert isinstance(action, RegisterOwner)
        if not action.evidence.strip():
            raise Problem(400, "malformed_action", "owner: 'evidence' (the attestation record: "
                          "who vouched for this owner, how) must not be empty")
        with box.lock:
            box.operator_submit(action)
            return {"queued": True, "tick": k.tick + 1}

    @app.post("/v1/agents", responses=M.answers(M.AdmissionAnswer, 202),
              status_code=202, tags=["agents"], openapi_extra=_json_body(
        {"type": "object", "required": ["owner", "name", "public_key", "attestation"],
         "properties": {"owner": {"type": "integer"}, "name": {"type": "string"},
                        "public_key": {"type": "string"}, "attestation": {"type": "string"},
                        "skills": {"type": "object",
                                   "additionalProperties": {"type": "integer"}}}}))
    async def agents(request: Request) -> dict:
        """Ask for admission: an Ed25519 public key and the owner's attestation over
        `agent_attestation_bytes(owner, name, key)`. The admission policy decides: `open`
        and `stake` queue the registration (the kernel checks the attestation), `approval`
        waits for the operator or an overseer."""
        d = obj(await body(request))
        try:
            checked = action_from_dict({
                "kind": RegisterAgent.KIND, "actor": OPERATOR, "owner": d.get("owner"),
                "name": d.get("name"), "public_key": d.get("public_key"),
                "attestation": d.get("attestation"), "skills": d.get("skills") or {}})
        except MalformedAction as e:  # the kernel's own parser: types and ranges
            raise Problem(400, "malformed_action", f"agent: {e}") from None
        assert isinstance(checked, RegisterAgent)
        req = Admission(0, checked.owner, checked.name, checked.public_key.hex(),
                        checked.attestation.hex(), dict(checked.skills))
        with box.lock:
            if not box.allow(ADMISSIONS):  # strangers may ask: at the identities' rate, all told
                raise Problem(429, "rate_limited", "too many admission requests; retry shortly")
            try:
                return box.ask(req)
            except QueueFull as e:
                raise Problem(503, "queue_full", str(e)) from None

    @app.get("/v1/admissions", responses=M.answers(M.Admissions, 200),
              tags=["operator"])
    def admissions(authorization: str | None = Header(None)) -> dict:
        """Admission requests waiting for a decision (operator or overseer token)."""
        overseer(authorization, None, None, None, "/v1/admissions")
        with box.lock:
            return {"pending": [{"request": r.id, "owner": r.owner, "name": r.name,
                                 "public_key": r.public_key} for r in box.pending.values()]}

    @app.post("/v1/admissions/{request_id}", responses=M.answers(M.Decision, 200),
              tags=["operator"], openapi_extra=_json_body(
        {"type": "object", "required": ["approve"], "properties": {
            "approve": {"type": "boolean"}}}))
    async def decide(request_id: int, request: Request,
                     authorization: str | None = Header(None)) -> dict:
        who = overseer(authorization, None, None, None, f"/v1/admissions/{request_id}")
        d = obj(await body(request))
        if type(d.get("approve")) is not bool:
            raise Problem(400, "malformed_json", "'approve' must be true or false")
        with box.lock:
            try:
                return box.decide(request_id, d["approve"], who)
            except KeyError:
                raise Problem(404, "no_such_request", f"no admission request {request_id} is "
                              f"waiting") from None

    @app.get("/v1/owners", responses=M.answers(M.OwnerFound, 200),
              tags=["agents"])
    def find_owner(public_key: str) -> dict:
        """Which owner a public key was admitted as."""
        with box.lock:
            for o in k.state.registry.owners.values():
                if o.public_key.hex() == public_key.lower():
                    return {"owner": o.id, "name": o.name}
        raise Problem(404, "unknown_owner", "no owner was admitted with that key")

    @app.get("/v1/agents", responses=M.answers(M.AgentFound, 200),
              tags=["agents"])
    def find_agent(public_key: str) -> dict:
        """Which agent a public key was admitted as (after the tick that admitted it)."""
        try:
            key = bytes.fromhex(public_key)
        except ValueError:
            raise Problem(400, "invalid_request", "public_key must be hex") from None
        with box.lock:
            aid = next((a.id for a in k.state.registry.agents.values() if a.public_key == key),
                       None)
            if aid is not None:
                a = k.state.registry.agents[aid]
                return {"agent": a.id, "owner": a.owner, "status": a.status, "nonce": a.nonce}
            pending = next((r.id for r in box.pending.values() if r.public_key == key.hex()), None)
        if pending is not None:
            raise Problem(404, "awaiting_approval", f"admission request {pending} waits for "
                          f"the operator or an overseer")
        raise Problem(404, "unknown_agent", "no agent was admitted with that key")

    # ------------------------------------------------------------------ observations
    @app.get("/v1/agents/{agent}/observation", tags=["agents"])
    def observation(agent: int, tick: int | None = None,
                    x_sandbank_signature: str | None = Header(None)) -> dict:
        """The agent's own observation. `tick`: the tick the signature names (default: now;
        at most 2 ticks old)."""
        from sandbank.agents.llm.agent import plain

        with box.lock:
            check_observer(agent, tick, x_sandbank_signature)
            return plain(k.observe(agent))

    @app.websocket("/v1/agents/{agent}/stream")
    async def agent_stream(ws: WebSocket, agent: int) -> None:
        """The agent's observation after every tick. First message from the client:
        {"tick": T, "signature": hex signature over 'observe:<agent>:<T>'}."""
        await ws.accept()
        try:
            hello = await asyncio.wait_for(ws.receive_json(), timeout=10)
            if not isinstance(hello, dict) or type(hello.get("tick")) is not int \
                    or not isinstance(hello.get("signature"), str):
                raise Problem(400, "invalid_request", 'send {"tick": T, "signature": hex} first')
            with box.lock:
                check_observer(agent, hello["tick"], hello["signature"])
        except Problem as p:
            await ws.send_json({"type": "problem", "code": p.code, "detail": p.detail})
            await ws.close(code=4401)
            return
        except (TimeoutError, ValueError, WebSocketDisconnect):
            await ws.close(code=4400)
            return
        await _serve_stream(ws, box, agent)

    @app.websocket("/v1/market/stream")
    async def market_stream(ws: WebSocket) -> None:
        """Public market data after every tick: prices, best bid and ask, trades, halts."""
        await ws.accept()
        await _serve_stream(ws, box, None)

    @app.get("/v1/market", responses=M.answers(M.Market, 200),
              tags=["market"])
    def market() -> dict:
        """Public market data: prices, volumes, trades, halts, a history per tick."""
        with box.lock:
            return box.public()

    @app.post("/v1/tick", responses=M.answers(M.TickDone, 200),
              tags=["operator"])
    def tick(authorization: str | None = Header(None)) -> dict:
        """Run a tick now (operator)."""
        operator(authorization, "/v1/tick")
        s = box.step()
        return {"tick": s.tick, "events": s.events, "accepted": s.accepted,
                "rejected": s.rejected, "reasons": {str(r): v for r, v in s.reasons.items()}}

    # ------------------------------------------------------------------ audit
    @app.get("/v1/entries", responses=M.answers(M.Entries, 200),
              tags=["audit"])
    def find_entries(actor: int, nonce: int) -> dict:
        """The log entries an actor's action (by its nonce) produced: seq, tick and kind
        (empty until the tick that ran it has committed)."""
        if abs(actor) > MAX_ID or abs(nonce) > MAX_ID:  # no such action can be in the log
            return {"entries": []}
        with box.lock:
            return {"entries": [{"seq": e.seq, "tick": e.tick, "kind": e.kind}
                                for e in k.store.action_entries(actor, nonce)]}

    @app.get("/v1/entries/recent", responses=M.answers(M.RecentEntries, 200),
              tags=["audit"])
    def recent(limit: int = 50, kind: str | None = None) -> dict:
        """The last committed entries (seq, tick, kind, actor), newest first; with `kind`,
        those of that kind among the last 5,000."""
        limit = max(1, min(limit, 500))
        out = []
        with box.lock:
            last = k.store.last_checkpoint()
            seq = (last.size if last else 0) - 1
            while seq >= 0 and len(out) < limit and seq >= (last.size if last else 0) - 5_000:
                e = k.store.entry(seq)
                if e is not None and (kind is None or e.kind == kind):
                    d = orjson.loads(e.body)
                    out.append({"seq": e.seq, "tick": e.tick, "kind": e.kind,
                                "actor": d.get("actor")})
                seq -= 1
        return {"entries": out}

    @app.get("/v1/checkpoint", responses=M.answers(M.CheckpointDoc, 200),
              tags=["audit"])
    def checkpoint() -> dict:
        with box.lock:
            cp = k.store.last_checkpoint()
            if cp is None:
                raise Problem(404, "no_checkpoint", "nothing committed yet")
            return {"tick": cp.tick, "size": cp.size, "root": cp.root.hex(), "note": cp.note}

    @app.get("/v1/proof/{seq}", responses=M.answers(M.InclusionBundle, 200),
              tags=["audit"])
    def proof(seq: int) -> dict:
        """An inclusion proof of entry `seq` against the latest signed checkpoint (check it
        with `sandbank check-proof`, the client's `prove`, or the dashboard)."""
        from sandbank.audit.proofs import BundleError, inclusion_bundle

        with box.lock:
            try:
                return inclusion_bundle(k.store, seq)
            except BundleError as e:
                raise Problem(404, "no_such_entry", str(e)) from None

    @app.get("/v1/consistency", responses=M.answers(M.ConsistencyBundle, 200),
              tags=["audit"])
    def consistency(old_size: int) -> dict:
        """A consistency proof: the log of `old_size` entries is a prefix of today's."""
        from sandbank.audit.proofs import BundleError, consistency_bundle

        with box.lock:
            try:
                return consistency_bundle(k.store, old_size)
            except BundleError as e:
                raise Problem(404, "no_such_size", str(e)) from None

    # ------------------------------------------------------------------ oversight
    def tickets_view(limit: int = 100) -> list[dict[str, Any]]:
        tickets = sorted(k.state.controls.tickets.values(), key=lambda t: -t.id)
        return [{"id": t.id, "scope": t.scope, "level": t.level, "agent": t.agent,
                 "market": t.market, "agents": t.agents[:50], "reason": t.reason,
                 "alert": t.alert, "opened": t.opened, "opened_by": t.opened_by,
                 "status": t.status, "resolved_by": t.resolved_by, "resolved": t.resolved}
                for t in tickets[:limit]]

    @app.get("/v1/oversight/alerts", responses=M.answers(M.Alerts, 200),
              tags=["oversight"])
    def oversight_alerts(tick: int | None = None, since: int = 0,
                         authorization: str | None = Header(None),
                         x_sandbank_overseer: int | None = Header(None),
                         x_sandbank_signature: str | None = Header(None)) -> dict:
        """Alerts raised (newest first; `since`: only alert ids above it), each citing the
        log entries it rests on (overseers; the operator may read)."""
        overseer(authorization, x_sandbank_overseer, x_sandbank_signature, tick,
                 "/v1/oversight/alerts")
        with box.lock:
            return {"alerts": [a for a in reversed(box.alerts) if a["alert"] > since]}

    @app.get("/v1/oversight/tickets", responses=M.answers(M.Tickets, 200),
              tags=["oversight"])
    def oversight_tickets(tick: int | None = None, authorization: str | None = Header(None),
                          x_sandbank_overseer: int | None = Header(None),
                          x_sandbank_signature: str | None = Header(None)) -> dict:
        """Escalation tickets, newest first: what each breaker imposed, and whether an
        overseer has resumed it."""
        overseer(authorization, x_sandbank_overseer, x_sandbank_signature, tick,
                 "/v1/oversight/tickets")
        with box.lock:
            return {"tickets": tickets_view(1000)}

    @app.get("/v1/oversight/summary", tags=["oversight"])
    def oversight_summary(tick: int | None = None, authorization: str | None = Header(None),
                          x_sandbank_overseer: int | None = Header(None),
                          x_sandbank_signature: str | None = Header(None)) -> dict:
        """Alerts, tickets, breakers, the approval queues and the delegation and message
        graphs, in one read (the dashboard's; overseers, and the operator may read)."""
        overseer(authorization, x_sandbank_overseer, x_sandbank_signature, tick,
                 "/v1/oversight/summary")
        with box.lock:
            c = k.state.controls
            return {
                "tick": k.tick, "console": box.console,
                "alerts": list(box.alerts)[-100:][::-1],
                "tickets": tickets_view(),
                "halted": bool(c.halts), "paused": sorted(m for m, t in c.paused.items() if t),
                "frozen": sorted(a for a, t in c.frozen_by.items() if t),
                "caps": {n: v for n, v in sorted(c.caps.items()) if v},
                "boundary_queue": [{"request": r.id, "agent": r.agent, "gateway": r.gateway,
                                    "amount": r.amount, "tick": r.tick, "expires": r.expires}
                                   for r in sorted(k.state.boundary.pending.values(),
                                                   key=lambda r: r.id)],
                "admission_queue": [{"request": r.id, "owner": r.owner, "name": r.name}
                                    for r in box.pending.values()],
                "delegation": [[a, b, n] for (a, b), n in sorted(
                    box.delegation.items(), key=lambda x: -x[1])[:200]],
                "messages": [[a, b, n] for (a, b), n in sorted(
                    box.messages.items(), key=lambda x: -x[1])[:200]],
                "agents": {s: sum(1 for a in k.state.registry.agents.values() if a.status == s)
                           for s in ("active", "frozen", "suspended", "revoked")},
                # the oversight engine's risk indicators of the last tick (a served scenario
                # with oversight on; hidden ones included: this is the overseers' view)
                "indicators": ({n: round(v, 4) for n, v in sorted(box.econ.metrics.kri.items())}
                               if box.econ is not None else {}),
                "concentration": box.concentration(),
            }

    @app.post("/v1/oversight/interventions", responses=M.answers(M.InterventionQueued, 202),
              status_code=202, tags=["oversight"],
              openapi_extra=_json_body({"type": "object", "required": ["kind"], "properties": {
                  "kind": {"type": "string", "enum": sorted(CONSOLE_KINDS)}},
                  "additionalProperties": True}))
    async def intervene(request: Request, authorization: str | None = Header(None)) -> dict:
        """An intervention by the console overseer (overseer token): trip_breaker, resume,
        set_cap, approve_external, interrupt, raise_alert, disable_action — the fields of the
        action, without actor, nonce and signature (the server signs)."""
        who = overseer(authorization, None, None, None, "/v1/oversight/interventions",
                       console_only=True)
        d = obj(await body(request))
        if not isinstance(d.get("kind"), str) or d["kind"] not in CONSOLE_KINDS:
            raise Problem(400, "malformed_action", f"kind must be one of {sorted(CONSOLE_KINDS)}")
        d = {f: v for f, v in d.items() if f not in ("actor", "nonce", "signature")}
        try:
            action: Action = action_from_dict({**d, "actor": who})
        except MalformedAction as e:
            raise Problem(400, "malformed_action", str(e)) from None
        with box.lock:
            try:
                box.console_submit(action)
            except QueueFull as e:
                raise Problem(503, "queue_full", str(e)) from None
            return {"queued": True, "tick": k.tick + 1, "actor": who, "nonce": action.nonce}

    @app.post("/v1/oversight/actions", responses=M.answers(M.Queued, 202),
              status_code=202, openapi_extra=_json_body(ACTION_SCHEMA),
              tags=["oversight"])
    async def overseer_actions(request: Request) -> dict:
        """An overseer's own signed action (actor <= -1001), as agents post theirs."""
        return accept(await body(request, MAX_ACTION), "/v1/oversight/actions", overseers=True)

    # ------------------------------------------------------------------ dashboard
    @app.get("/", include_in_schema=False)
    @app.get("/dashboard", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        page = resources.files("sandbank.server").joinpath("dashboard.html").read_text()
        return HTMLResponse(page)

    return app


async def _serve_stream(ws: WebSocket, box: Sandbox, agent: int | None) -> None:
    from sandbank.agents.llm.agent import plain

    sub = Subscriber(asyncio.get_running_loop(), asyncio.Queue(maxsize=64), agent)
    with box.lock:
        box.subscribers.append(sub)
        first = ({"type": "observation", "tick": box.k.tick,
                  "observation": plain(box.k.observe(agent))} if agent is not None else
                 {"type": "market", "tick": box.k.tick, "markets": box.markets(),
                  "halted": bool(box.k.state.controls.halts), "trades": []})
    try:
        await ws.send_json(first)
        while True:
            msg = await sub.queue.get()
            await ws.send_json(msg)
            if sub.lagged and sub.queue.empty():
                await ws.send_json({"type": "problem", "code": "lagged",
                                    "detail": "this client fell 64 ticks behind"})
                await ws.close(code=1013)
                return
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        with box.lock:
            if sub in box.subscribers:
                box.subscribers.remove(sub)


def open_store(db: str, schema: str = "public") -> Any:
    """A store from `--db`: a PostgreSQL URL (one log per `schema`), or a SQLite file path."""
    if db.startswith(("postgresql://", "postgres://")):
        from sandbank.store.postgres import PostgresStore

        return PostgresStore(db, schema=schema)
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


def ticker(box: Sandbox, seconds: float, stop: threading.Event,
           report: Any = None) -> threading.Thread:
    """Advance the economy every `seconds` (a daemon thread); `report(summary)` after each
    tick, if given."""
    def run() -> None:
        import time

        due = time.monotonic()
        while True:  # on a fixed cadence: a tick's own duration does not delay the next
            due = max(due + seconds, time.monotonic())  # behind: no burst to catch up
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            try:
                summary = box.step()
                if report is not None:
                    report(summary)
            except Exception as e:  # state may be half-changed: stop ticking, say why
                import logging

                logging.getLogger("sandbank.server").exception("the tick failed")
                box.failure = f"tick {box.k.tick} failed: {type(e).__name__}: {e}"
                return
    t = threading.Thread(target=run, daemon=True, name="sandbank-ticker")
    t.start()
    return t
